"""A pretraining pool: several sources merged, long records cut into fixed windows, evaluation splits held out.

Exact duplicates (the same samples in two sources, e.g. PTB-XL records redistributed in the PhysioNet/CinC
challenge) are dropped by ``build_cache``, which hashes every window's signal: the first copy in pool order is kept.
Windows that exactly repeat a record of an *excluded* split are dropped too, so a test record cannot slip into
pretraining through another source's copy of it.

Hashes only catch copies at the same sampling rate. The PhysioNet/CinC challenge redistributes PTB-XL at 500 Hz
(records ``HR<ecg_id>``), while a PTB-XL folder may hold a record only at 100 Hz, so copies are also matched by
``ecg_id`` (``entry.meta['ptbxl_ecg_id']`` against the PTB-XL source's ``meta['ecg_id']``): a copy of a held-out
record (folds 9-10 by default) is held out, a copy of a pooled record is a duplicate and dropped, and a copy whose
``ecg_id`` the PTB-XL table does not list (its fold cannot be checked) is held out while any PTB-XL split is
(``unlisted_ptbxl_copies='keep'`` keeps it). ``held_out_copies`` lists each with the reason.
"""
from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ecgvit.constants import LEADS

from ..records import RecordError, read_header
from .base import SPLITS, ECGDataset, Entry
from .ptbxl import PTBXLDataset

__all__ = ['PretrainingPool']

_logger = logging.getLogger(__name__)


class PretrainingPool(ECGDataset):
    """Merge datasets for self-supervised pretraining.

    Every entry of the pool is one window of ``window_s`` seconds (records shorter than a window give one entry for
    the whole record, which ``Preprocessing(pad=...)`` then pads or rejects); the remainder after the last full
    window is dropped. Entries are unlabelled and all in split 'train'; the source split is kept in
    ``entry.meta['source_split']``.

    Args:
        datasets: the sources (any ``ECGDataset``; names must be distinct, or pass a mapping name -> dataset).
        exclude: what to hold out: ``'ptbxl:test'`` (a split of a source), ``'ptbxl'`` (a whole source), or a mapping
            ``{'ptbxl': ['val', 'test']}``. None (the default): the validation and test splits (folds 9 and 10) of
            every PTB-XL source, where the evaluations test; ``[]`` holds out nothing.
        window_s: window length in seconds (10 s: the model's input).
        dedupe: drop exact duplicate windows across and within sources (done by ``build_cache``).
        leads: lead order for reading.
        strict: raise on the first unreadable header instead of collecting it in ``skipped``.
        val_fraction: share of patients whose windows go to split 'val' (for the validation loss that drives the
            pretraining schedule). Chosen by a hash of the patient id, so it is stable across runs and machines and
            never splits one patient's windows.
        unlisted_ptbxl_copies: 'exclude' (default) or 'keep': another source's copy of a PTB-XL record whose
            ``ecg_id`` the pool's PTB-XL table does not list, while a PTB-XL split is held out (see the module doc).

    Example:
        >>> pool = PretrainingPool([ptbxl, cinc])  # PTB-XL folds 9-10 held out, also as CinC copies  # doctest: +SKIP
    """
    name = 'pool'

    def __init__(self, datasets: Sequence[ECGDataset] | Mapping[str, ECGDataset], *,
                 exclude: Iterable[str] | Mapping[str, Iterable[str]] | None = None, window_s: float = 10.0,
                 dedupe: bool = True, leads: Sequence[str] = LEADS, strict: bool = False, val_fraction: float = 0.0,
                 unlisted_ptbxl_copies: str = 'exclude'):
        super().__init__(None, leads=leads, strict=strict)
        if window_s <= 0:
            raise ValueError(f'window_s must be positive, got {window_s!r}.')
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction!r}.')
        if unlisted_ptbxl_copies not in ('exclude', 'keep'):
            raise ValueError(f"unlisted_ptbxl_copies must be 'exclude' or 'keep', got {unlisted_ptbxl_copies!r}.")
        self.val_fraction = float(val_fraction)
        self.unlisted_ptbxl_copies = unlisted_ptbxl_copies
        named = dict(datasets) if isinstance(datasets, Mapping) else self._name_sources(datasets)
        if not named:
            raise ValueError('PretrainingPool needs at least one dataset.')
        self.sources = named
        self.window_s = float(window_s)
        self.dedupe = dedupe
        if exclude is None:  # a pool built by hand must not leak the evaluation's PTB-XL folds into pretraining
            exclude = {src: ['val', 'test'] for src, ds in named.items() if isinstance(ds, PTBXLDataset)}
        self.excluded = self._parse_exclude(exclude, named)
        self.blocked: list[Entry] = []  # excluded entries, whose signals must not reappear through another source
        self.held_out_copies: list[tuple[str, str]] = []  # (pool record id, why) of PTB-XL copies left out by ecg_id
        ptbxl_splits, ptbxl_held_out = self._ptbxl_index(named)
        for src, ds in named.items():
            self.skipped.extend((f'{src}/{rid}', reason) for rid, reason in ds.skipped)
            drop = self.excluded.get(src, set())
            for e in ds.entries:
                if e.split in drop:
                    self.blocked.extend(self._windows(src, e))  # windowed like the pool, so hashes line up
                    continue
                if not isinstance(ds, PTBXLDataset) and e.meta.get('ptbxl_ecg_id') is not None:
                    reason = self._copy_reason(int(e.meta['ptbxl_ecg_id']), ptbxl_splits, ptbxl_held_out)
                    if reason:
                        self.held_out_copies.append((f'{src}/{e.record_id}', reason))
                        continue
                self.entries.extend(self._windows(src, e))
        if self.held_out_copies:
            _logger.info('pool: %d copies of PTB-XL records in other sources left out by ecg_id (held-out fold, '
                         'duplicate or unlisted; see held_out_copies)', len(self.held_out_copies))
        self._finalize()

    def _ptbxl_index(self, named: Mapping[str, ECGDataset]) -> tuple[dict[int, tuple[str, str]], bool]:
        """(ecg_id -> (PTB-XL source, split) over every PTB-XL source, whether any PTB-XL split is held out)."""
        splits: dict[int, tuple[str, str]] = {}
        held_out = False
        for src, ds in named.items():
            if isinstance(ds, PTBXLDataset):
                held_out = held_out or bool(self.excluded.get(src))
                for e in ds.entries:
                    splits[int(e.meta['ecg_id'])] = (src, e.split)
        return splits, held_out

    def _copy_reason(self, ecg_id: int, ptbxl_splits: dict[int, tuple[str, str]], held_out: bool) -> str | None:
        """Why another source's copy of PTB-XL record ``ecg_id`` must stay out of the pool (None: keep it)."""
        if ecg_id in ptbxl_splits:
            src, split = ptbxl_splits[ecg_id]
            if split in self.excluded.get(src, set()):
                return f'copy of PTB-XL ecg_id {ecg_id}, whose {split} split is held out'
            return f'duplicate of PTB-XL ecg_id {ecg_id}, already pooled from {src}'
        if held_out and self.unlisted_ptbxl_copies == 'exclude':
            return (f'copy of PTB-XL ecg_id {ecg_id}, which the PTB-XL table does not list, so its fold cannot be '
                    f'checked against the held-out ones (unlisted_ptbxl_copies="keep" pools it)')
        return None

    @staticmethod
    def _name_sources(datasets: Sequence[ECGDataset]) -> dict[str, ECGDataset]:
        named: dict[str, ECGDataset] = {}
        for ds in datasets:
            if not isinstance(ds, ECGDataset):
                raise TypeError(f'PretrainingPool takes ECGDataset objects (from get_dataset), got '
                                f'{type(ds).__name__}.')
            name = ds.name
            if name in named:
                raise ValueError(f'Two pool sources are both named {name!r}; pass a mapping '
                                 f'{{"{name}_a": ds1, "{name}_b": ds2}} to name them.')
            named[name] = ds
        return named

    @staticmethod
    def _parse_exclude(exclude, named) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        if exclude is None:
            return out
        items = exclude.items() if isinstance(exclude, Mapping) else [
            tuple(s.split(':', 1)) if ':' in s else (s, None) for s in exclude]
        for src, splits in items:
            if src not in named:
                raise ValueError(f'exclude names source {src!r}, but the pool has {sorted(named)}.')
            splits = SPLITS if splits is None else [splits] if isinstance(splits, str) else list(splits)
            bad = [s for s in splits if s not in SPLITS]
            if bad:
                raise ValueError(f'exclude gives splits {bad} for {src!r}; use {SPLITS}, e.g. "{src}:test".')
            out.setdefault(src, set()).update(splits)
        return out

    def _prefixed(self, src: str, e: Entry, start: float | None, end: float | None, k: int) -> Entry:
        suffix = '' if start is None else f'@{start:g}s'
        patient = f'{src}/{e.patient_id}'
        return Entry(record_id=f'{src}/{e.record_id}{suffix}', patient_id=patient, split=self._split_of(patient),
                     labels=None, path=e.path, start_s=start, end_s=end,
                     meta={'source': src, 'source_record': e.record_id, 'source_split': e.split, 'window': k})

    def _split_of(self, patient: str) -> str:
        # crc32, not hash(): Python salts str hashes per process, and the split must not change between runs.
        return 'val' if zlib.crc32(patient.encode()) / 2 ** 32 < self.val_fraction else 'train'

    @classmethod
    def from_folder(cls, root: str | os.PathLike, *, exclude: Iterable[str] | None = ('ptbxl:val', 'ptbxl:test'),
                    val_fraction: float = 0.05, **kwargs) -> PretrainingPool:
        """Pool every dataset found in the sub-folders of ``root`` (e.g. the project's ``shared/data``).

        Sub-folders are recognised by name: ``ptbxl*`` (read at 500 Hz when present, records without a 500 Hz file at
        100 Hz), ``ludb*``, ``cinc*`` / ``*challenge*`` (PhysioNet/CinC format), ``code15*`` (CODE-15%, Challenge 2025
        format), ``cpsc*``, ``chapman*``; any other sub-folder holding ``.hea`` files is read as a plain WFDB folder.

        Args:
            root: folder of dataset folders.
            exclude: held-out splits (default: the PTB-XL validation and test folds 9 and 10).
            val_fraction: see the class.
            **kwargs: other ``PretrainingPool`` options.

        Raises:
            FileNotFoundError: ``root`` is not a folder or holds no dataset.
        """
        from . import get_dataset

        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f'Pool folder {str(root)!r} does not exist: pass the folder that holds the '
                                    f'dataset folders (ptbxl/, ludb/, ...).')
        sources: dict[str, ECGDataset] = {}
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            low = sub.name.lower()
            if low.startswith('ptbxl') or low.startswith('ptb-xl'):
                rate = 500 if (sub / 'records500').is_dir() else 100
                # label_set 'all': pretraining needs no labels, and the narrower sets skip records (e.g. paced or
                # flutter-only ECGs have no superdiagnostic class) that are still good pretraining data.
                sources['ptbxl'] = get_dataset('ptbxl', sub, sampling_rate=rate, label_set='all')
            elif low.startswith('ludb'):
                sources['ludb'] = get_dataset('ludb', sub)
            elif low.startswith('cinc') or 'challenge' in low:
                sources[sub.name] = get_dataset('cinc', sub)
            elif low.startswith('code15') or low.startswith('code-15'):
                sources[sub.name] = get_dataset('code15', sub, label_set=None)
            elif low.startswith('cpsc'):
                sources[sub.name] = get_dataset('cpsc2018', sub)
            elif low.startswith('chapman'):
                sources[sub.name] = get_dataset('chapman', sub)
            elif next(sub.rglob('*.hea'), None) is not None:
                sources[sub.name] = get_dataset('folder', sub)
        if not sources:
            raise FileNotFoundError(f'No dataset folders under {str(root)!r}: expected sub-folders such as ptbxl/, '
                                    f'ludb/, cinc2021_samples/ or any folder of WFDB records.')
        exclude = [x for x in (exclude or ()) if x.split(':', 1)[0] in sources]
        return cls(sources, exclude=exclude, val_fraction=val_fraction, **kwargs)

    def _windows(self, src: str, e: Entry) -> list[Entry]:
        try:
            header = read_header(e.path)
        except RecordError as err:
            self._skip(f'{src}/{e.record_id}', err.reason)
            return []
        duration = (header.sig_len or 0) / header.fs
        offset = e.start_s or 0.0
        if e.end_s is not None:
            duration = min(duration, e.end_s) - offset
        n = int(duration // self.window_s + 1e-9)
        if n <= 1:
            end = offset + self.window_s if n == 1 else e.end_s
            return [self._prefixed(src, e, offset if n == 1 else e.start_s, end, 0)]
        return [self._prefixed(src, e, offset + k * self.window_s, offset + (k + 1) * self.window_s, k)
                for k in range(n)]

    def descriptor(self) -> dict:
        """The pool's identity for cache fingerprints: its entries, plus each source's descriptor and the pool's
        settings (exclusions, windows, de-duplication, validation share, held-out PTB-XL copies)."""
        d = super().descriptor()
        d.update({'sources': {k: v.descriptor() for k, v in self.sources.items()},
                  'excluded': {k: sorted(v) for k, v in self.excluded.items()}, 'window_s': self.window_s,
                  'dedupe': self.dedupe, 'val_fraction': self.val_fraction,
                  'unlisted_ptbxl_copies': self.unlisted_ptbxl_copies, 'held_out_copies': len(self.held_out_copies)})
        return d

    def __repr__(self) -> str:
        return (f'PretrainingPool(sources={list(self.sources)}, windows={len(self)}, excluded='
                f'{ {k: sorted(v) for k, v in self.excluded.items()} }, blocked={len(self.blocked)}, '
                f'held_out_copies={len(self.held_out_copies)}, skipped={len(self.skipped)})')
