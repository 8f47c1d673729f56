"""PTB-XL: 12-lead, 10-s records at 100 or 500 Hz with SCP-ECG statements; official patient-stratified folds.

Label sets follow the PTB-XL benchmark (Strodthoff et al., *Deep Learning for ECG Analysis: Benchmarks and Insights
from PTB-XL*, IEEE JBHI 2021): 'all' (71 statements), 'diagnostic' (44), 'subdiagnostic' (23 diagnostic
subclasses), 'superdiagnostic' (5 superclasses), 'form' (19), 'rhythm' (12). A statement counts whatever its
likelihood, and records with no label in the chosen set are left out (as in the benchmark; see ``skipped``). The class
list comes from ``scp_statements.csv``, so it is the same for any subset of the database. Splits: ``strat_fold`` 1-8
train, 9 val, 10 test.

Subsets that hold a record only at 100 Hz (e.g. the project's data: 500 Hz files for ecg_id 1-500 only, while
``filename_hr`` names a file for every row) are read at 100 Hz for those records when 500 Hz is asked for, with a
warning that counts them (``missing_500hz='error'`` raises instead, naming them); preprocessing resamples every record
to the model rate, so the mix is harmless. ``entry.meta`` holds ``ecg_id``, ``age`` (float years, NaN if unknown; ages
over 89 are 90.0, "90 or over": v1.0.3 codes them as 300, v1.0.1 rows give 90 or 91), ``sex`` ('M'/'F' from the table's
0/1), ``strat_fold``, ``scp_codes`` and ``fs`` (the rate of the file read).

Reference: Wagner et al., *PTB-XL, a large publicly available electrocardiography dataset*, Sci. Data 7, 154 (2020).
"""
from __future__ import annotations

import ast
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgvit.constants import LEADS

from .base import DatasetLayoutError, ECGDataset, Entry
from .demographics import parse_age, parse_sex

__all__ = ['PTBXLDataset', 'PTBXL_LABEL_SETS', 'fold_to_split', 'statement_classes']

PTBXL_LABEL_SETS = ('all', 'diagnostic', 'subdiagnostic', 'superdiagnostic', 'form', 'rhythm')
_DB_COLUMNS = ('patient_id', 'scp_codes', 'strat_fold', 'filename_lr', 'filename_hr')


def fold_to_split(fold: int) -> str:
    """Official PTB-XL split of a ``strat_fold``: 1-8 train, 9 val, 10 test.

    Args:
        fold: The record's ``strat_fold`` (anything ``int()`` reads).

    Raises:
        ValueError: a fold outside 1-10.
    """
    fold = int(fold)
    if not 1 <= fold <= 10:
        raise ValueError(f'strat_fold must be 1-10, got {fold}.')
    return 'test' if fold == 10 else 'val' if fold == 9 else 'train'


def statement_classes(stmts, label_set: str) -> tuple[list[str], dict[str, list[str]]]:
    """(class names, statement -> classes) for a label set, from scp_statements.csv.

    Args:
        stmts: scp_statements.csv as a pandas DataFrame indexed by statement code.
        label_set: 'all', 'diagnostic', 'form', 'rhythm' (the statements themselves), 'superdiagnostic' or
            'subdiagnostic' (diagnostic statements mapped to their class or subclass).
    """
    import pandas as pd

    def flag(col):
        return stmts[col].fillna(0).astype(float) == 1.0

    if label_set == 'all':
        names = list(stmts.index)
        return names, {s: [s] for s in names}
    if label_set in ('diagnostic', 'form', 'rhythm'):
        names = list(stmts.index[flag(label_set)])
        return names, {s: [s] for s in names}
    col = 'diagnostic_class' if label_set == 'superdiagnostic' else 'diagnostic_subclass'
    diag = stmts[flag('diagnostic') & stmts[col].notna()]
    mapping = {s: [str(diag.loc[s, col])] for s in diag.index}
    names = sorted(pd.unique(diag[col].astype(str)))
    if label_set == 'superdiagnostic':  # the benchmark's conventional order
        order = ['NORM', 'MI', 'STTC', 'CD', 'HYP']
        names = [n for n in order if n in names] + [n for n in names if n not in order]
    return names, mapping


class PTBXLDataset(ECGDataset):
    """PTB-XL with the benchmark's label sets and the official folds.

    Args:
        root: folder holding ``ptbxl_database.csv``, ``scp_statements.csv`` and ``records100/`` / ``records500/``.
        sampling_rate: 100 or 500 (which copy of the records to read).
        missing_500hz: with ``sampling_rate=500``, what to do with a record whose 500 Hz file is absent but whose
            100 Hz file exists: 'fallback' (read it at 100 Hz, warn with the count; ``fallback_records`` lists them)
            or 'error' (raise ``DatasetLayoutError`` naming them).
        label_set: one of ``PTBXL_LABEL_SETS``.
        drop_empty: leave out records with no label in the set (benchmark convention).
        leads: lead order for reading.
        strict: raise on the first bad record instead of collecting it in ``skipped``.

    Example:
        >>> ds = PTBXLDataset('data/ptbxl', sampling_rate=100, label_set='superdiagnostic')  # doctest: +SKIP
        >>> ds.label_names  # doctest: +SKIP
        ['NORM', 'MI', 'STTC', 'CD', 'HYP']
    """
    name = 'ptbxl'

    def __init__(self, root: str | os.PathLike, *, sampling_rate: int = 500, label_set: str = 'superdiagnostic',
                 drop_empty: bool = True, missing_500hz: str = 'fallback', leads: Sequence[str] = LEADS,
                 strict: bool = False):
        import pandas as pd

        super().__init__(root, leads=leads, strict=strict)
        if int(sampling_rate) not in (100, 500):
            raise ValueError(f'PTB-XL has records at 100 or 500 Hz, got sampling_rate={sampling_rate!r}.')
        if label_set not in PTBXL_LABEL_SETS:
            raise ValueError(f'Unknown PTB-XL label_set {label_set!r}; use one of {PTBXL_LABEL_SETS}.')
        if missing_500hz not in ('fallback', 'error'):
            raise ValueError(f"missing_500hz must be 'fallback' or 'error', got {missing_500hz!r}.")
        self.sampling_rate = int(sampling_rate)
        self.label_set = label_set
        self.fallback_records: list[str] = []  # read at 100 Hz although 500 Hz was asked for
        db_path, st_path = self.root / 'ptbxl_database.csv', self.root / 'scp_statements.csv'
        for p in (db_path, st_path):
            if not p.is_file():
                raise DatasetLayoutError(f'{self.name}: {p} not found. Expected the PhysioNet PTB-XL layout: '
                                         f'ptbxl_database.csv, scp_statements.csv, records100/, records500/.')
        db = pd.read_csv(db_path, index_col='ecg_id')
        missing = [c for c in _DB_COLUMNS if c not in db.columns]
        if missing:
            raise DatasetLayoutError(f'{db_path}: missing columns {missing}; expected the official PTB-XL table '
                                     f'(ecg_id, patient_id, scp_codes, strat_fold, filename_lr, filename_hr, ...).')
        stmts = pd.read_csv(st_path, index_col=0)
        need = {'diagnostic', 'form', 'rhythm', 'diagnostic_class', 'diagnostic_subclass'}
        if not need <= set(stmts.columns):
            raise DatasetLayoutError(f'{st_path}: missing columns {sorted(need - set(stmts.columns))}; expected the '
                                     f'official scp_statements.csv.')
        self.label_names, mapping = statement_classes(stmts, label_set)
        self.multilabel = True
        index = {n: i for i, n in enumerate(self.label_names)}
        file_col = 'filename_lr' if self.sampling_rate == 100 else 'filename_hr'

        for ecg_id, row in db.iterrows():
            rid = str(ecg_id)
            try:
                codes = ast.literal_eval(row['scp_codes'])
                if not isinstance(codes, dict):
                    raise ValueError
            except (ValueError, SyntaxError):
                self._skip(rid, f'unparseable scp_codes {row["scp_codes"]!r}; expected a dict string such as '
                                f"\"{{'NORM': 100.0}}\".")
                continue
            y = np.zeros(len(self.label_names), dtype=np.float32)
            for code in codes:
                for cls in mapping.get(code, ()):
                    y[index[cls]] = 1.0
            if drop_empty and not y.any():
                self._skip(rid, f'no {label_set} label among scp_codes {sorted(codes)}.')
                continue
            base, fs = self._record_path(db_path, rid, file_col, row[file_col]), self.sampling_rate
            if (base is None or not base.with_suffix('.hea').is_file()) and self.sampling_rate == 500:
                low = self._record_path(db_path, rid, 'filename_lr', row['filename_lr'])
                if low is not None and low.with_suffix('.hea').is_file():
                    self.fallback_records.append(rid)
                    base, fs = low, 100
            if base is None or not base.with_suffix('.hea').is_file():
                where = f'header {base}.hea not found' if base is not None else f'empty {file_col}'
                self._skip(rid, f'{where} (no {self.sampling_rate} Hz copy of the record'
                                f'{"" if self.sampling_rate == 100 else " and no 100 Hz copy either"}).')
                continue
            patient = row['patient_id']
            patient = str(int(patient)) if isinstance(patient, float) and patient.is_integer() else str(patient)
            self.entries.append(Entry(
                record_id=rid, patient_id=patient, split=fold_to_split(row['strat_fold']), labels=y, path=str(base),
                meta={'ecg_id': int(ecg_id), 'strat_fold': int(row['strat_fold']), 'scp_codes': codes,
                      'age': parse_age(row.get('age'), top_code=True), 'sex': parse_sex(row.get('sex'), numeric=True),
                      'fs': fs}))
        if self.fallback_records:
            ids = self.fallback_records
            listed = f'{", ".join(ids[:10])}{", ..." if len(ids) > 10 else ""}'
            if missing_500hz == 'error':
                raise DatasetLayoutError(f'{self.name}: {len(ids)} records have no 500 Hz file under {self.root} '
                                         f'(ecg_id {listed}). Use sampling_rate=100, or missing_500hz="fallback" to '
                                         f'read those records at 100 Hz.')
            warnings.warn(f'{self.name}: {len(ids)} of {len(self.entries)} records have no 500 Hz file and are read '
                          f'at 100 Hz (ecg_id {listed}); preprocessing resamples them to the model rate, so they hold '
                          f'nothing above 50 Hz. In Python, PTBXLDataset(..., missing_500hz="error") refuses them '
                          f'instead.', stacklevel=2)
        self._finalize()

    def _record_path(self, db_path, rid: str, column: str, value) -> Path | None:
        """``root / value`` for a filename cell, which must name a path inside the dataset folder.

        The table is data, not code: a cell such as ``../../home/x`` or ``/etc/x`` would make indexing read files
        anywhere on the machine, so it is refused (lexically, so symbolic links inside the folder still work).
        """
        text = '' if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
        if not text:
            return None  # an empty cell: no file at this rate (the record is skipped or read at the other rate)
        text = text.replace('\\', '/')
        norm = os.path.normpath(text)
        if os.path.isabs(text) or re.match(r'^[A-Za-z]:', text) or norm in ('.', '..') or \
                norm.startswith('../'):
            raise DatasetLayoutError(f'{db_path}: ecg_id {rid} has {column} {value!r}, which is not a path inside '
                                     f'the dataset folder {self.root}. The official table gives relative paths such '
                                     f'as records100/00000/00001_lr: fix that cell (or remove the row).')
        return self.root / norm
