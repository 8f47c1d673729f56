"""Chapman-Shaoxing 12-lead ECG database: rhythm labels merged into the 4 classes SB, AFIB, GSVT, SR.

Reads the PhysioNet/CinC 2021 distribution (``JS*.hea`` with ``# Dx:`` SNOMED-CT codes + ``.mat``). The merge follows
the database paper: AFIB = atrial fibrillation + atrial flutter; GSVT = supraventricular tachycardia, atrial
tachycardia, AV node / AV reentrant tachycardia, wandering atrial pacemaker and sinus tachycardia; SR = sinus rhythm +
sinus irregularity; SB = sinus bradycardia. A record whose rhythm codes fall in two merged classes is ambiguous and
left out (reported in ``skipped``); the raw codes are kept in ``entry.meta['dx_codes']``. Each patient has one
record; the split is patient-wise, 70/15/15 with a fixed seed.

Reference: Zheng et al., *A 12-lead electrocardiogram database for arrhythmia research covering more than 10,000
patients*, Sci. Data 7, 48 (2020).
"""
from __future__ import annotations

import os
from typing import Sequence

from ecgvit.constants import LEADS

from .base import DatasetLayoutError, ECGDataset, Entry
from .challenge import records_with_signals, scan_challenge_headers
from .demographics import age_sex

__all__ = ['ChapmanDataset', 'CHAPMAN_CLASSES', 'CHAPMAN_RHYTHM_CODES']

CHAPMAN_CLASSES = ('SB', 'AFIB', 'GSVT', 'SR')
CHAPMAN_RHYTHM_CODES: dict[str, str] = {
    '426177001': 'SB',  # sinus bradycardia
    '164889003': 'AFIB', '164890007': 'AFIB',  # atrial fibrillation, atrial flutter
    '427084000': 'GSVT',  # sinus tachycardia
    '426761007': 'GSVT',  # supraventricular tachycardia
    '713422000': 'GSVT',  # atrial tachycardia
    '233896004': 'GSVT',  # AV node reentrant tachycardia
    '233897008': 'GSVT',  # AV reentrant tachycardia
    '195101003': 'GSVT',  # wandering atrial pacemaker (SAAWR in the paper)
    '426783006': 'SR',  # sinus rhythm
    '427393009': 'SR',  # sinus arrhythmia ("sinus irregularity")
}


class ChapmanDataset(ECGDataset):
    """Chapman-Shaoxing, 4 merged rhythm classes, single-label.

    Args:
        root: folder of ``JS*.hea`` + ``.mat`` records (searched recursively).
        seed: split seed (patient-wise).
        leads: lead order for reading.
        strict: raise on the first bad record instead of collecting it in ``skipped``.
    """
    name = 'chapman'

    def __init__(self, root: str | os.PathLike, *, seed: int = 0, leads: Sequence[str] = LEADS, strict: bool = False):
        super().__init__(root, leads=leads, strict=strict)
        if not self.root.is_dir():
            raise DatasetLayoutError(f'{self.name}: {self.root} is not a folder; expected Chapman-Shaoxing records '
                                     f'(JS00001.hea + JS00001.mat, ...).')
        self.label_names = list(CHAPMAN_CLASSES)
        self.multilabel = False
        headers = scan_challenge_headers(self.root)
        if not headers:
            raise DatasetLayoutError(f'{self.name}: no .hea files under {self.root}; expected Chapman-Shaoxing records '
                                     f'in the PhysioNet/CinC 2021 layout (JS00001.hea + JS00001.mat).')
        kept = []
        for rid, base, meta, codes in records_with_signals(self, headers):
            merged = sorted({CHAPMAN_RHYTHM_CODES[c] for c in codes if c in CHAPMAN_RHYTHM_CODES})
            if not merged:
                self._skip(rid, f'no rhythm of the 4 merged classes among Dx codes {codes}.')
                continue
            if len(merged) > 1:
                self._skip(rid, f'ambiguous rhythm: Dx codes {codes} fall in classes {merged}.')
                continue
            kept.append(Entry(record_id=rid, patient_id=meta.get('patient_id') or rid, split='',
                              labels=CHAPMAN_CLASSES.index(merged[0]), path=str(base),
                              meta={'dx_codes': codes, **age_sex(meta)}))
        self._keep_split_by_patient(kept, seed)
