"""Any folder of WFDB records (the user's own data), with an optional labels CSV.

Records are found recursively (``**/*.hea``); a record's id is its path relative to the folder, without extension.
Labels come from a CSV (one row per record: ``record`` plus a label column; optional ``patient_id`` and ``split``), or
from a header comment (e.g. ``# Chagas label: True`` with ``label_from_header='chagas_label'``), or are absent
(unlabelled data for pretraining). Without a split column, records are split 70/15/15 by patient with a fixed seed
(patient ids from the CSV, else from a ``# Patient ID`` header comment, else the record id). ``# Age`` / ``# Sex``
header comments, where present, become ``entry.meta['age']`` (float years) and ``meta['sex']`` ('M'/'F').

Example (``labels.csv``)::

    record,patient_id,label
    ecg_001,p1,AF
    ecg_002,p1,NSR
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgvit.constants import LEADS

from .base import SPLITS, DatasetLayoutError, ECGDataset, Entry, assign_splits
from .challenge import scan_challenge_headers
from .demographics import parse_age, parse_sex

__all__ = ['FolderDataset']


# Spellings of one class that label files mix up; a name normalises to the first of its group.
_SYNONYMS = (('af', 'afib', 'atrialfibrillation'), ('nsr', 'sr', 'normalsinusrhythm', 'sinusrhythm'),
             ('sb', 'sbrad', 'sinusbradycardia', 'brady'), ('stach', 'sinustachycardia', 'tachy'),
             ('bbb', 'bundlebranchblock'), ('rbbb', 'rightbundlebranchblock', 'crbbb'),
             ('lbbb', 'leftbundlebranchblock', 'clbbb'), ('pvc', 'veb', 'prematureventricularcontraction'),
             ('mi', 'myocardialinfarction'))
_SYNONYM_OF = {alias: group[0] for group in _SYNONYMS for alias in group}


def _label_key(name: str) -> str:
    """Case, spaces and punctuation removed, known synonyms merged: equal keys look like one class."""
    key = re.sub(r'[^0-9a-z]+', '', str(name).casefold())
    return _SYNONYM_OF.get(key, key)


def near_duplicate_labels(names: Sequence[str]) -> list[list[str]]:
    """Groups of label names that differ only in case, spacing, punctuation or a known synonym (AF/Afib,
    NSR/'nsr ', ...): almost always one class written two ways, which would train as two classes."""
    groups: dict[str, list[str]] = {}
    for n in dict.fromkeys(names):
        groups.setdefault(_label_key(n), []).append(n)
    return [g for g in groups.values() if len(g) > 1]


def _first(ids: Sequence[str], n: int = 5) -> str:
    return ', '.join(map(str, ids[:n])) + (', ...' if len(ids) > n else '')


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())


class FolderDataset(ECGDataset):
    """A WFDB folder plus optional labels.

    Args:
        root: folder with ``.hea`` (+ ``.dat`` or ``.mat``) records, searched recursively.
        labels_csv: CSV path; default ``root/labels.csv`` when it exists; ``False`` to ignore it.
        record_column: CSV column holding the record id (relative path without extension, or the file stem).
        label_column: CSV column holding the label (class name; for multilabel, names joined by ``label_sep``).
        patient_column: optional CSV column with patient ids.
        split_column: optional CSV column with 'train'/'val'/'test'.
        multilabel: parse labels as ``label_sep``-separated lists into multi-hot vectors.
        label_sep: separator of multilabel cells.
        label_names: fixed class order; default: sorted names found.
        label_from_header: header comment key to use as the label when there is no CSV (e.g. 'chagas_label').
        seed: split seed.
        leads: lead order for reading.
        strict: raise on the first bad record instead of collecting it in ``skipped``.
    """
    name = 'folder'

    def __init__(self, root: str | os.PathLike, *, labels_csv: str | os.PathLike | bool | None = None,
                 record_column: str = 'record', label_column: str = 'label', patient_column: str = 'patient_id',
                 split_column: str = 'split', multilabel: bool = False, label_sep: str = ';',
                 label_names: Sequence[str] | None = None, label_from_header: str | None = None, seed: int = 0,
                 leads: Sequence[str] = LEADS, strict: bool = False):
        super().__init__(root, leads=leads, strict=strict)
        if not self.root.is_dir():
            raise DatasetLayoutError(f'{self.name}: {self.root} is not a folder; expected a folder of WFDB records '
                                     f'(<name>.hea + <name>.dat or .mat).')
        headers = scan_challenge_headers(self.root)
        if not headers:
            raise DatasetLayoutError(f'{self.name}: no .hea files under {self.root}; expected WFDB records '
                                     f'(<name>.hea + <name>.dat or .mat).')
        self.multilabel = bool(multilabel)
        by_id = {rid: (base, meta) for rid, base, meta in headers}
        stems: dict[str, list[str]] = {}
        for rid, base, _ in headers:
            stems.setdefault(base.name, []).append(rid)

        csv_path = self._labels_path(labels_csv)
        rows: dict[str, dict] = {}
        has_split = has_patient = False
        if csv_path is not None:
            rows, has_split, has_patient = self._read_csv(csv_path, record_column, label_column, patient_column,
                                                          split_column, by_id, stems)
        labelled = csv_path is not None or label_from_header is not None

        raw = []  # (rid, base, label cell, patient, split)
        unlisted: list[str] = []  # records without a row in the labels file
        for rid, (base, meta) in by_id.items():
            if not (base.with_suffix('.dat').is_file() or base.with_suffix('.mat').is_file()):
                self._skip(rid, f'no signal file next to {base.name}.hea (expected .dat or .mat).')
                continue
            row = rows.get(rid)
            if csv_path is not None and row is None:
                self._skip(rid, f'no row for this record in {csv_path.name}.')
                unlisted.append(rid)
                continue
            if row is not None:
                cell = row.get(label_column)
                patient = row.get(patient_column) if has_patient else None
                split = row.get(split_column) if has_split else None
            else:
                cell = meta.get(label_from_header) if label_from_header else None
                patient, split = None, None
            if labelled and _is_missing(cell):
                where = csv_path.name if csv_path is not None else f'header comment {label_from_header!r}'
                self._skip(rid, f'empty label in {where}.')
                continue
            if _is_missing(patient):
                patient = meta.get('patient_id') or rid
            raw.append((rid, base, cell, str(patient), None if _is_missing(split) else str(split).strip()))

        if unlisted:
            warnings.warn(f'{self.name}: {len(unlisted)} of {len(by_id)} records under {self.root} have no row in '
                          f'{csv_path} ({_first(unlisted)}); they are left out (see skipped). Add rows for them, or '
                          f'pass labels_csv=False to read the folder unlabelled.', stacklevel=2)
        self._assign_labels(raw, labelled, label_names, label_sep)
        if has_split:
            bad = sorted({s for *_, s in raw if s not in SPLITS})
            if bad:
                raise DatasetLayoutError(f'{csv_path}: split values {bad} are not among {SPLITS}; fix the '
                                         f'{split_column!r} column or leave it out to split by patient.')
        splits = assign_splits([r[3] for r in raw], seed=seed)
        for (rid, base, _, patient, split), y in zip(raw, self._labels):
            meta = by_id[rid][1]
            info = {k: f(meta[k]) for k, f in (('age', parse_age), ('sex', parse_sex)) if k in meta}
            self.entries.append(Entry(record_id=rid, patient_id=patient, split=split or splits[patient], labels=y,
                                      path=str(base), meta=info))
        del self._labels
        self._finalize()

    def _labels_path(self, labels_csv) -> Path | None:
        if labels_csv is False:
            return None
        if labels_csv is None or labels_csv is True:
            default = self.root / 'labels.csv'
            if labels_csv is True and not default.is_file():
                raise DatasetLayoutError(f'{self.name}: labels_csv=True but {default} does not exist.')
            return default if default.is_file() else None
        path = Path(labels_csv)
        if not path.is_file():
            raise DatasetLayoutError(f'{self.name}: labels file {path} not found.')
        return path

    def _read_csv(self, path: Path, record_column, label_column, patient_column, split_column, by_id, stems):
        import pandas as pd

        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        for col in (record_column, label_column):
            if col not in df.columns:
                raise DatasetLayoutError(f'{path}: expected a column {col!r} (record ids and labels: columns '
                                         f'{record_column!r}, {label_column!r}, optional {patient_column!r}, '
                                         f'{split_column!r}); found {list(df.columns)}.')
        counts = df[record_column].value_counts()
        dupes = list(counts[counts > 1].index)
        if dupes:
            raise DatasetLayoutError(f'{path}: duplicate record ids {dupes[:10]} in column {record_column!r}; each '
                                     f'record must have one row.')
        rows, orphans = {}, []
        for row in df.to_dict('records'):
            key = str(row[record_column]).strip()
            key = key[:-4] if key.endswith('.hea') else key
            if key in by_id:
                rows[key] = row
            elif len(stems.get(Path(key).name, [])) == 1:
                rows[stems[Path(key).name][0]] = row
            else:
                self._skip(key, f'listed in {path.name} but no header {key}.hea found under {self.root}.')
                orphans.append(key)
        if orphans:
            warnings.warn(f'{self.name}: {len(orphans)} rows of {path} name no record under {self.root} '
                          f'({_first(orphans)}); they are left out (see skipped). Fix the {record_column!r} column '
                          f'(ids are paths relative to the folder, without extension) or add the records.',
                          stacklevel=4)
        return rows, split_column in df.columns, patient_column in df.columns

    def _assign_labels(self, raw, labelled: bool, label_names, label_sep: str) -> None:
        if not labelled:
            self.label_names = list(label_names or [])
            self._labels = [None] * len(raw)
            return
        cells = [str(r[2]).strip() for r in raw]
        if self.multilabel:
            parsed = [[s.strip() for s in c.split(label_sep) if s.strip()] for c in cells]
            found = sorted({s for p in parsed for s in p})
        else:
            parsed = cells
            found = sorted(set(cells))
        raw_names = {str(r[2]) for r in raw} if not self.multilabel else \
            {s for r in raw for s in str(r[2]).split(label_sep) if s.strip()}
        for group in [g for g in near_duplicate_labels(sorted(raw_names)) if len({n.strip() for n in g}) > 1]:
            message = (f'{self.name}: label names {group} in {self.root} look like one class written '
                       f'{len(group)} ways (case, spaces or a synonym); as written they train as '
                       f'{len({g.strip() for g in group})} classes. Use one spelling in the label file, or pass '
                       f'label_names= to fix the classes.')
            if self.strict:
                raise DatasetLayoutError(message)
            warnings.warn(message, stacklevel=4)
        self.label_names = list(label_names) if label_names is not None else found
        unknown = sorted(set(found) - set(self.label_names))
        if unknown:
            raise DatasetLayoutError(f'{self.name}: labels {unknown} are not in label_names {self.label_names}; add '
                                     f'them to label_names or fix the label file.')
        index = {n: i for i, n in enumerate(self.label_names)}
        if self.multilabel:
            labels = []
            for p in parsed:
                y = np.zeros(len(self.label_names), dtype=np.float32)
                y[[index[s] for s in p]] = 1.0
                labels.append(y)
            self._labels = labels
        else:
            self._labels = [index[c] for c in parsed]
