"""A pretraining pool: several sources merged, long records cut into fixed windows, evaluation splits held out.

Exact duplicates (the same samples in two sources, e.g. PTB-XL records redistributed in the PhysioNet/CinC
challenge) are dropped by ``build_cache``, which hashes every window's signal: the first copy in pool order is kept.
Windows that exactly repeat a record of an *excluded* split are dropped too, so a test record cannot slip into
pretraining through another source's copy of it.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from ecgvit.constants import LEADS

from ..records import RecordError, read_header
from .base import SPLITS, ECGDataset, Entry

__all__ = ['PretrainingPool']


class PretrainingPool(ECGDataset):
    """Merge datasets for self-supervised pretraining.

    Every entry of the pool is one window of ``window_s`` seconds (records shorter than a window give one entry for
    the whole record, which ``Preprocessing(pad=...)`` then pads or rejects); the remainder after the last full
    window is dropped. Entries are unlabelled and all in split 'train'; the source split is kept in
    ``entry.meta['source_split']``.

    Args:
        datasets: the sources (any ``ECGDataset``; names must be distinct, or pass a mapping name -> dataset).
        exclude: what to hold out: ``'ptbxl:test'`` (a split of a source), ``'ptbxl'`` (a whole source), or a mapping
            ``{'ptbxl': ['val', 'test']}``.
        window_s: window length in seconds (10 s: the model's input).
        dedupe: drop exact duplicate windows across and within sources (done by ``build_cache``).
        leads: lead order for reading.
        strict: raise on the first unreadable header instead of collecting it in ``skipped``.

    Example:
        >>> pool = PretrainingPool([ptbxl, cinc], exclude=['ptbxl:val', 'ptbxl:test'])  # doctest: +SKIP
    """
    name = 'pool'

    def __init__(self, datasets: Sequence[ECGDataset] | Mapping[str, ECGDataset], *,
                 exclude: Iterable[str] | Mapping[str, Iterable[str]] | None = None, window_s: float = 10.0,
                 dedupe: bool = True, leads: Sequence[str] = LEADS, strict: bool = False):
        super().__init__(None, leads=leads, strict=strict)
        if window_s <= 0:
            raise ValueError(f'window_s must be positive, got {window_s!r}.')
        named = dict(datasets) if isinstance(datasets, Mapping) else self._name_sources(datasets)
        if not named:
            raise ValueError('PretrainingPool needs at least one dataset.')
        self.sources = named
        self.window_s = float(window_s)
        self.dedupe = dedupe
        self.excluded = self._parse_exclude(exclude, named)
        self.blocked: list[Entry] = []  # excluded entries, whose signals must not reappear through another source
        for src, ds in named.items():
            self.skipped.extend((f'{src}/{rid}', reason) for rid, reason in ds.skipped)
            drop = self.excluded.get(src, set())
            for e in ds.entries:
                if e.split in drop:
                    self.blocked.extend(self._windows(src, e))  # windowed like the pool, so hashes line up
                    continue
                self.entries.extend(self._windows(src, e))
        self._finalize()

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
        return Entry(record_id=f'{src}/{e.record_id}{suffix}', patient_id=f'{src}/{e.patient_id}', split='train',
                     labels=None, path=e.path, start_s=start, end_s=end,
                     meta={'source': src, 'source_record': e.record_id, 'source_split': e.split, 'window': k})

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

    def descriptor(self):
        d = super().descriptor()
        d.update({'sources': {k: v.descriptor() for k, v in self.sources.items()},
                  'excluded': {k: sorted(v) for k, v in self.excluded.items()}, 'window_s': self.window_s,
                  'dedupe': self.dedupe})
        return d

    def __repr__(self) -> str:
        return (f'PretrainingPool(sources={list(self.sources)}, windows={len(self)}, excluded='
                f'{ {k: sorted(v) for k, v in self.excluded.items()} }, blocked={len(self.blocked)}, '
                f'skipped={len(self.skipped)})')
