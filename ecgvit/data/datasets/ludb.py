"""LUDB (Lobachevsky University Electrocardiography Database): 200 10-s 12-lead records at 500 Hz.

Labels come from ``ludb.csv`` (one row per record; cells may span several lines). ``label_set='rhythm'`` is
single-label: the first line of the Rhythms cell (secondary findings such as "wandering atrial pacemaker" are kept in
``entry.meta``). ``label_set='diagnosis'`` is multi-label over every statement line of the diagnostic columns (axis,
conduction, extrasystoles, hypertrophy, pacing, ischaemia, repolarisation, other). Without ``ludb.csv`` the rhythm is
read from the ``#Rhythm:`` header comment. LUDB has no official folds and one record per subject, so records are split
70/15/15 with a fixed seed. ``entry.meta`` holds ``age`` (float years; '>89' is 90.0, "90 or over") and ``sex``
('M'/'F') from ``ludb.csv`` (else the header).

Reference: Kalyakulina et al., *LUDB: A New Open-Access Validation Tool for Electrocardiogram Delineation
Algorithms*, IEEE Access 8 (2020).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ecgvit.constants import LEADS

from .base import DatasetLayoutError, ECGDataset, Entry, assign_splits
from .challenge import scan_challenge_headers
from .demographics import parse_age, parse_sex

__all__ = ['LUDBDataset']

_DIAGNOSIS_COLUMNS = ('Electric axis of the heart', 'Conduction abnormalities', 'Extrasystolies', 'Hypertrophies',
                      'Cardiac pacing', 'Ischemia', 'Non-specific repolarization abnormalities', 'Other states')


def _lines(cell) -> list[str]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    return [s.strip().rstrip('.').strip() for s in str(cell).splitlines() if s.strip().rstrip('.').strip()]


class LUDBDataset(ECGDataset):
    """LUDB with rhythm (single-label) or diagnosis (multi-label) labels.

    Args:
        root: the LUDB folder (``ludb.csv`` and ``data/<n>.hea``), or a folder of its headers.
        label_set: 'rhythm' or 'diagnosis'.
        seed: split seed.
        leads: lead order for reading.
        strict: raise on the first bad record instead of collecting it in ``skipped``.
    """
    name = 'ludb'

    def __init__(self, root: str | os.PathLike, *, label_set: str = 'rhythm', seed: int = 0,
                 leads: Sequence[str] = LEADS, strict: bool = False):
        import pandas as pd

        super().__init__(root, leads=leads, strict=strict)
        if label_set not in ('rhythm', 'diagnosis'):
            raise ValueError(f"LUDB label_set must be 'rhythm' or 'diagnosis', got {label_set!r}.")
        self.label_set = label_set
        data_dir = self.root / 'data' if (self.root / 'data').is_dir() else self.root
        headers = scan_challenge_headers(data_dir) if data_dir.is_dir() else []
        if not headers:
            raise DatasetLayoutError(f'{self.name}: no .hea files in {data_dir}. Expected the PhysioNet LUDB layout: '
                                     f'ludb.csv and data/1.hea, data/1.dat, ...')
        csv_path = self.root / 'ludb.csv'
        rows: dict[str, dict] = {}
        if csv_path.is_file():
            df = pd.read_csv(csv_path)
            if 'ID' not in df.columns or 'Rhythms' not in df.columns:
                raise DatasetLayoutError(f'{csv_path}: expected columns ID, Rhythms, ... (the LUDB table); found '
                                         f'{list(df.columns)}.')
            rows = {str(int(r['ID'])): r.to_dict() for _, r in df.iterrows()}
        elif label_set == 'diagnosis':
            raise DatasetLayoutError(f"{self.name}: label_set='diagnosis' needs {csv_path}; it is missing.")

        raw = []
        for rid, base, meta in headers:
            if not base.with_suffix('.dat').is_file():
                self._skip(rid, f'signal file {base.name}.dat is missing.')
                continue
            row = None
            if rows:
                row = rows.get(base.name)
                if row is None:
                    self._skip(rid, f'no row with ID {base.name} in {csv_path.name}.')
                    continue
                rhythms = _lines(row['Rhythms'])
                diagnoses = [s for col in _DIAGNOSIS_COLUMNS if col in row for s in _lines(row[col])]
            else:
                rhythms = _lines(meta.get('rhythm'))
                diagnoses = []
            if label_set == 'rhythm' and not rhythms:
                self._skip(rid, 'no rhythm statement in ludb.csv or the header.')
                continue
            # Demographics from ludb.csv, else the header's '#<age>: 51' / '#<sex>: F' lines; '>89' is 90.
            age = (row or {}).get('Age', meta.get('age'))
            sex = (row or {}).get('Sex', meta.get('sex'))
            meta = dict(meta, age=parse_age(age), sex=parse_sex(sex))
            raw.append((rid, base, meta, rhythms, diagnoses))

        if label_set == 'rhythm':
            self.label_names = sorted({r[3][0] for r in raw})
            self.multilabel = False
        else:
            self.label_names = sorted({d for r in raw for d in r[4]})
            self.multilabel = True
        index = {n: i for i, n in enumerate(self.label_names)}
        splits = assign_splits([r[0] for r in raw], seed=seed)
        for rid, base, meta, rhythms, diagnoses in raw:
            if label_set == 'rhythm':
                y = index[rhythms[0]]
            else:
                y = np.zeros(len(self.label_names), dtype=np.float32)
                y[[index[d] for d in diagnoses]] = 1.0
            self.entries.append(Entry(record_id=rid, patient_id=rid, split=splits[rid], labels=y, path=str(base),
                                      meta={'rhythms': rhythms, 'diagnoses': diagnoses, 'age': meta.get('age'),
                                            'sex': meta.get('sex')}))
        self._finalize()
