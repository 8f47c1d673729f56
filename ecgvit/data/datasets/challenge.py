"""PhysioNet/CinC Challenge 2020-2021 layout: ``<name>.hea`` with SNOMED-CT ``# Dx:`` codes + ``<name>.mat``.

Labels are multi-hot over the challenge's code tables (``dx_mapping_scored.csv`` / ``dx_mapping_unscored.csv``, looked
for in the dataset folder and its parents, or passed explicitly). The four pairs of codes the challenge scores as one
diagnosis (CRBBB/RBBB, PAC/SVPB, PVC/VPB, CLBBB/LBBB) are merged by default. The challenge publishes no patient ids
or validation split, so records are split 70/15/15 with a fixed seed, by ``# Patient ID`` when the header has one.

``entry.meta`` holds ``age`` (float years, NaN if unknown) and ``sex`` ('M'/'F'/None) from the header comments, the raw
codes, and for the challenge's copies of PTB-XL (records ``HR<number>``, number = PTB-XL ``ecg_id``) ``ptbxl_ecg_id``,
so a pretraining pool can hold them out with their PTB-XL fold. Some releases write the record name with its file
extension on the header's first line (``E00271.mat 12 500 5000``); ``read_record`` takes the file stem as the name.

Reference: Perez Alday et al., *Classification of 12-lead ECGs: the PhysioNet/CinC Challenge 2020*, Physiol. Meas.
41 (2020); Reyna et al., *Will Two Do?*, CinC 48 (2021).
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ecgvit.constants import LEADS

from ..records import parse_comments
from .base import DatasetLayoutError, ECGDataset, Entry
from .demographics import age_sex

__all__ = ['ChallengeDataset', 'DxCode', 'load_dx_mapping', 'scan_challenge_headers', 'EQUIVALENT_CODES',
           'ptbxl_copy_id']

# The challenge scores each pair as one diagnosis (notes column of dx_mapping_scored.csv); first code is kept.
EQUIVALENT_CODES: dict[str, str] = {
    '59118001': '713427006',  # RBBB -> CRBBB
    '63593006': '284470004',  # SVPB -> PAC
    '17338001': '427172004',  # VPB -> PVC
    '164909002': '733534002',  # LBBB -> CLBBB
}


@dataclass(frozen=True)
class DxCode:
    """One row of a challenge code table.

    Attributes:
        code: The SNOMED CT code.
        abbrev: Its abbreviation (e.g. 'AF').
        name: Its diagnosis name.
        scored: Whether the challenge scores it (False for codes from an ``*unscored*`` table).
    """
    code: str
    abbrev: str
    name: str
    scored: bool


def load_dx_mapping(paths: Iterable[str | os.PathLike]) -> dict[str, DxCode]:
    """Read challenge code tables (columns ``Dx``, ``SNOMEDCTCode``, ``Abbreviation``) into code -> ``DxCode``.

    A table named ``*unscored*`` marks its codes as not scored; others as scored.

    Args:
        paths: The CSV tables; a code listed in several keeps its first table's row.

    Raises:
        DatasetLayoutError: a table lacks one of the three columns.
    """
    out: dict[str, DxCode] = {}
    for path in paths:
        path = Path(path)
        with open(path, newline='', encoding='utf-8') as f:
            reader = csv.DictReader(f)
            need = {'Dx', 'SNOMEDCTCode', 'Abbreviation'}
            if not need <= set(reader.fieldnames or []):
                raise DatasetLayoutError(f'{path}: expected a challenge code table with columns {sorted(need)}, '
                                         f'found {reader.fieldnames}.')
            scored = 'unscored' not in path.name.lower()
            for row in reader:
                code = str(row['SNOMEDCTCode']).strip()
                if code and code not in out:
                    out[code] = DxCode(code, row['Abbreviation'].strip(), row['Dx'].strip(), scored)
    return out


def _find_mapping_files(root: Path) -> list[Path]:
    for folder in (root, *list(root.parents)[:2]):
        found = sorted(folder.glob('dx_mapping_*.csv'))
        if found:
            return found
    return []


def scan_challenge_headers(root: Path) -> list[tuple[str, Path, dict[str, str]]]:
    """All ``.hea`` files under ``root`` (sorted) as (record_id relative to root, base path, parsed comments).

    Only the ``#`` comment lines are parsed (fast; the record is checked when it is read).

    Args:
        root: The folder searched, with its subfolders.
    """
    out = []
    for hea in sorted(root.rglob('*.hea')):
        comments = []
        with open(hea, encoding='latin-1') as f:
            for line in f:
                if line.startswith('#'):
                    comments.append(line.rstrip('\n'))
        rel = hea.relative_to(root).with_suffix('')
        out.append((rel.as_posix(), hea.with_suffix(''), parse_comments(comments)))
    return out


def parse_dx(value: str | None) -> list[str]:
    """'426783006,59118001' -> ['426783006', '59118001'] (empty for None/'Unknown')."""
    if not value:
        return []
    return [c.strip() for c in str(value).replace(';', ',').split(',') if c.strip().isdigit()]


_PTBXL_COPY = re.compile(r'^HR(\d+)$')


def ptbxl_copy_id(record_name: str) -> int | None:
    """PTB-XL ``ecg_id`` of a challenge record named ``HR<number>`` (the challenge's PTB-XL copies), else None.

    Args:
        record_name: The record's name or path (only its last component is read).
    """
    m = _PTBXL_COPY.match(Path(record_name).name)
    return int(m.group(1)) if m else None


def _signal_file_present(base: Path) -> bool:
    return base.with_suffix('.mat').is_file() or base.with_suffix('.dat').is_file()


def records_with_signals(dataset: ECGDataset, headers: Iterable[tuple[str, Path, dict[str, str]]]
                         ) -> Iterator[tuple[str, Path, dict[str, str], list[str]]]:
    """(record id, base path, header comments, Dx codes) of each header whose signal file exists; the others are
    skipped on ``dataset`` with a reason."""
    for rid, base, meta in headers:
        if not _signal_file_present(base):
            dataset._skip(rid, f'no signal file next to {base.name}.hea (expected {base.name}.mat or .dat).')
            continue
        yield rid, base, meta, parse_dx(meta.get('dx'))


class ChallengeDataset(ECGDataset):
    """Any folder of PhysioNet/CinC 2020-2021 challenge records (searched recursively).

    Args:
        root: folder with ``.hea`` + ``.mat`` records (sub-folders per source database are fine).
        label_set: 'scored' (the challenge's scored classes) or 'all' (scored + unscored codes).
        dx_mapping: code table paths; default: ``dx_mapping_*.csv`` in ``root`` or up to two parents.
        merge_equivalent: merge the code pairs the challenge scores as one class.
        drop_empty: leave out records with no label in ``label_set`` (reported in ``skipped``); default keeps them
            with an all-zero label vector, as the challenge does.
        seed: split seed.
        leads: lead order for reading.
        strict: raise on the first bad record instead of collecting it in ``skipped``.

    Example:
        >>> ds = ChallengeDataset('cinc2021_samples')  # doctest: +SKIP
        >>> ds.label_names[:3], ds.multilabel  # doctest: +SKIP
        (['AF', 'AFL', 'BBB'], True)
    """
    name = 'cinc'

    def __init__(self, root: str | os.PathLike, *, label_set: str = 'scored',
                 dx_mapping: Sequence[str | os.PathLike] | None = None, merge_equivalent: bool = True,
                 drop_empty: bool = False, seed: int = 0, leads: Sequence[str] = LEADS, strict: bool = False):
        super().__init__(root, leads=leads, strict=strict)
        if label_set not in ('scored', 'all'):
            raise ValueError(f"label_set must be 'scored' or 'all', got {label_set!r}.")
        if not self.root.is_dir():
            raise DatasetLayoutError(f'{self.name}: {self.root} is not a folder. Expected a folder of challenge '
                                     f'records (<name>.hea with "# Dx:" codes + <name>.mat).')
        paths = list(dx_mapping) if dx_mapping is not None else _find_mapping_files(self.root)
        if not paths:
            raise DatasetLayoutError(f'{self.name}: no code tables found. Expected dx_mapping_scored.csv (and '
                                     f'dx_mapping_unscored.csv) from physionetchallenges/evaluation-2021 in '
                                     f'{self.root} or a parent folder, or pass dx_mapping=[...].')
        self.codes = load_dx_mapping(paths)
        self.merge_equivalent = merge_equivalent
        self.label_set = label_set
        headers = scan_challenge_headers(self.root)
        if not headers:
            raise DatasetLayoutError(f'{self.name}: no .hea files under {self.root}. Expected challenge records '
                                     f'(<name>.hea + <name>.mat).')
        self._build(headers, drop_empty=drop_empty, seed=seed)
        self._finalize()

    def _class_of(self, code: str) -> str | None:
        """Class name for a code under the current label set (None when not a class)."""
        if self.merge_equivalent:
            code = EQUIVALENT_CODES.get(code, code)
        dx = self.codes.get(code)
        if dx is None or (self.label_set == 'scored' and not dx.scored):
            return None
        return dx.abbrev

    def _all_class_names(self) -> list[str]:
        names = []
        for code in self.codes:
            name = self._class_of(code)
            if name is not None and name not in names:
                names.append(name)
        return names

    def _labels_for(self, codes: list[str]) -> tuple[list[str], list[str]]:
        """(class names present, raw codes not in the tables)."""
        names, unknown = [], []
        for code in codes:
            if code not in self.codes and EQUIVALENT_CODES.get(code, code) not in self.codes:
                unknown.append(code)
                continue
            name = self._class_of(code)
            if name is not None and name not in names:
                names.append(name)
        return names, unknown

    def _build(self, headers, *, drop_empty: bool, seed: int) -> None:
        self.label_names = self._all_class_names()
        self.multilabel = True
        index = {n: i for i, n in enumerate(self.label_names)}
        kept = []
        for rid, base, meta, codes in records_with_signals(self, headers):
            if not codes:
                self._skip(rid, 'header has no "# Dx:" SNOMED-CT codes (unlabelled record).')
                continue
            names, unknown = self._labels_for(codes)
            if not names and drop_empty:
                self._skip(rid, f'no {self.label_set} class among codes {codes}.')
                continue
            y = np.zeros(len(self.label_names), dtype=np.float32)
            for n in names:
                y[index[n]] = 1.0
            patient = meta.get('patient_id') or rid
            source = rid.split('/')[0] if '/' in rid else ''
            info = {'dx_codes': codes, 'dx': names, 'unknown_codes': unknown, 'source': source, **age_sex(meta)}
            ecg_id = ptbxl_copy_id(base.name)
            if ecg_id is not None:
                info['ptbxl_ecg_id'] = ecg_id
            kept.append(Entry(record_id=rid, patient_id=str(patient), split='', labels=y, path=str(base), meta=info))
        self._keep_split_by_patient(kept, seed)
