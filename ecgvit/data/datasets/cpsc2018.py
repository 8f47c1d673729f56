"""CPSC 2018 (China Physiological Signal Challenge): 9 rhythm/morphology classes, multi-label.

Reads the PhysioNet/CinC 2020 distribution of CPSC 2018 (``A*.hea`` with ``# Dx:`` SNOMED-CT codes + ``.mat``). The
nine classes are mapped from their SNOMED-CT codes (the challenge's equivalent codes included). If the folder has the
original ``REFERENCE.csv`` (``Recording, First_label, Second_label, Third_label`` with class numbers 1-9), it is used
instead of the header codes. CPSC 2018 has one record per patient and its test set is hidden, so the public records
are split 70/15/15 by record with a fixed seed.

Reference: Liu et al., *An Open Access Database for Evaluating the Algorithms of ECG Rhythm and Morphology
Abnormality Detection*, J. Med. Imaging Health Inform. 8 (2018).
"""
from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from ecgvit.constants import LEADS

from .base import DatasetLayoutError, ECGDataset, Entry
from .challenge import records_with_signals, scan_challenge_headers
from .demographics import age_sex

__all__ = ['CPSC2018Dataset', 'CPSC2018_CLASSES', 'CPSC2018_CODES']

# Class order = the official class numbers 1..9.
CPSC2018_CLASSES = ('SNR', 'AF', 'IAVB', 'LBBB', 'RBBB', 'PAC', 'PVC', 'STD', 'STE')
CPSC2018_CODES: dict[str, str] = {
    '426783006': 'SNR',
    '164889003': 'AF',
    '270492004': 'IAVB',
    '164909002': 'LBBB', '733534002': 'LBBB',
    '59118001': 'RBBB', '713427006': 'RBBB',
    '284470004': 'PAC', '63593006': 'PAC',
    '164884008': 'PVC', '427172004': 'PVC', '17338001': 'PVC',  # CinC 2020 maps CPSC's PVC to 164884008 (VEB)
    '429622005': 'STD',
    '164931005': 'STE',
}


def _read_reference(path) -> dict[str, list[int]]:
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or 'Recording' not in reader.fieldnames or 'First_label' not in reader.fieldnames:
            raise DatasetLayoutError(f'{path}: expected the CPSC 2018 REFERENCE.csv columns Recording, First_label, '
                                     f'Second_label, Third_label; found {reader.fieldnames}.')
        out = {}
        for row in reader:
            labels = []
            for col in ('First_label', 'Second_label', 'Third_label'):
                v = (row.get(col) or '').strip()
                if v:
                    k = int(float(v))
                    if not 1 <= k <= 9:
                        raise DatasetLayoutError(f'{path}: record {row["Recording"]} has class {k}; CPSC 2018 '
                                                 f'classes are numbered 1-9.')
                    labels.append(k - 1)
            out[row['Recording'].strip()] = labels
        return out


class CPSC2018Dataset(ECGDataset):
    """CPSC 2018, 9 classes, multi-label.

    Args:
        root: folder of the CinC-2020 distribution of CPSC 2018 (``A0001.hea`` / ``A0001.mat`` ...).
        seed: split seed.
        leads: lead order for reading.
        strict: raise on the first bad record instead of collecting it in ``skipped``.
    """
    name = 'cpsc2018'

    def __init__(self, root: str | os.PathLike, *, seed: int = 0, leads: Sequence[str] = LEADS, strict: bool = False):
        super().__init__(root, leads=leads, strict=strict)
        if not self.root.is_dir():
            raise DatasetLayoutError(f'{self.name}: {self.root} is not a folder; expected CPSC 2018 records '
                                     f'(A0001.hea + A0001.mat, ...).')
        self.label_names = list(CPSC2018_CLASSES)
        self.multilabel = True
        ref_path = self.root / 'REFERENCE.csv'
        reference = _read_reference(ref_path) if ref_path.is_file() else None
        headers = scan_challenge_headers(self.root)
        if not headers:
            raise DatasetLayoutError(f'{self.name}: no .hea files under {self.root}; expected CPSC 2018 records in the '
                                     f'PhysioNet/CinC 2020 layout (A0001.hea + A0001.mat).')
        kept = []
        for rid, base, meta, codes in records_with_signals(self, headers):
            if reference is not None:
                if base.name not in reference:
                    self._skip(rid, f'not listed in {ref_path.name}.')
                    continue
                classes = reference[base.name]
            else:
                classes = sorted({CPSC2018_CLASSES.index(CPSC2018_CODES[c]) for c in codes if c in CPSC2018_CODES})
            if not classes:
                self._skip(rid, f'none of the 9 CPSC 2018 classes among Dx codes {codes}.')
                continue
            y = np.zeros(len(CPSC2018_CLASSES), dtype=np.float32)
            y[classes] = 1.0
            kept.append(Entry(record_id=rid, patient_id=meta.get('patient_id') or rid, split='', labels=y,
                              path=str(base), meta={'dx_codes': codes, **age_sex(meta)}))
        self._keep_split_by_patient(kept, seed)
