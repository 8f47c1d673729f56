"""CODE-15% exams in the PhysioNet Challenge 2025 WFDB layout: ``<exam_id>.hea`` + ``.dat``, 400 Hz, 12 leads.

The Challenge's conversion removes CODE-15%'s zero padding, so records last 3-10.24 s (most 7.3 s): a 10-s model
input needs ``Preprocessing(pad='zero')``. Labels come from the header comments ``# Chagas label: True/False``
(self-reported, weak); ``# Age``, ``# Sex``, ``# Patient ID`` and ``# Exam ID`` go to ``entry.meta`` (``age`` float
years, ``sex`` 'M'/'F'). There are no official folds: records are split 70/15/15 by patient with a fixed seed (some
patients have several exams).

Reference: Ribeiro et al., *CODE-15%: a large scale annotated dataset of 12-lead ECGs*, Zenodo (2021); Reyna et al.,
*Detection of Chagas Disease from the ECG: The George B. Moody PhysioNet Challenge 2025*.
"""
from __future__ import annotations

import os
from typing import Sequence

from ecgvit.constants import LEADS

from .base import DatasetLayoutError, ECGDataset, Entry
from .challenge import scan_challenge_headers
from .demographics import age_sex

__all__ = ['Code15Dataset', 'CODE15_CLASSES']

CODE15_CLASSES = ('negative', 'chagas')
_TRUE, _FALSE = ('true', '1', 'yes', 'positive'), ('false', '0', 'no', 'negative')


class Code15Dataset(ECGDataset):
    """CODE-15% (Challenge 2025 format) with the Chagas label.

    Args:
        root: the folder (``records/<exam_id>.hea`` + ``.dat``, or the headers directly in it).
        label_set: 'chagas' (single-label: negative / chagas) or None (unlabelled, e.g. for pretraining).
        seed: split seed.
        leads: lead order for reading.
        strict: raise on the first bad record instead of collecting it in ``skipped``.

    Example:
        >>> ds = Code15Dataset('data/code15_samples')  # doctest: +SKIP
        >>> ds.label_names, ds[0].meta['age']  # doctest: +SKIP
        (['negative', 'chagas'], 43.0)
    """
    name = 'code15'

    def __init__(self, root: str | os.PathLike, *, label_set: str | None = 'chagas', seed: int = 0,
                 leads: Sequence[str] = LEADS, strict: bool = False):
        super().__init__(root, leads=leads, strict=strict)
        if label_set not in ('chagas', None):
            raise ValueError(f"CODE-15 label_set must be 'chagas' or None (unlabelled), got {label_set!r}.")
        self.label_set = label_set
        data_dir = self.root / 'records' if (self.root / 'records').is_dir() else self.root
        headers = scan_challenge_headers(data_dir) if data_dir.is_dir() else []
        if not headers:
            raise DatasetLayoutError(f'{self.name}: no .hea files in {data_dir}. Expected the PhysioNet Challenge 2025 '
                                     f'layout: records/<exam_id>.hea + .dat with "# Chagas label:" comments.')
        self.label_names = list(CODE15_CLASSES) if label_set else []
        self.multilabel = False
        raw = []
        for rid, base, meta in headers:
            if not base.with_suffix('.dat').is_file():
                self._skip(rid, f'signal file {base.name}.dat is missing.')
                continue
            y = None
            if label_set:
                cell = str(meta.get('chagas_label', '')).strip().lower()
                if cell not in _TRUE + _FALSE:
                    self._skip(rid, f'no "# Chagas label: True/False" header comment (found {cell or "none"!r}).')
                    continue
                y = int(cell in _TRUE)
            patient = str(meta.get('patient_id') or rid)
            raw.append(Entry(record_id=rid, patient_id=patient, split='', labels=y, path=str(base),
                             meta={'exam_id': meta.get('exam_id', base.name), **age_sex(meta)}))
        self._keep_split_by_patient(raw, seed)
