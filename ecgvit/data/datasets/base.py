"""The dataset contract every ECG source follows: an indexed list of entries with labels, patients and splits.

A dataset here is an *index* (cheap to build, picklable): it knows which records exist, their labels, patient ids and
official split, and how to read one. Converting to model input is ``Preprocessing`` + ``build_cache``; a torch
``Dataset`` over the result is ``CachedECGDataset``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ecgvit.constants import LEADS

from ..records import Record, RecordError, read_header, read_record

__all__ = ['Entry', 'ECGDataset', 'DatasetLayoutError', 'SPLITS', 'assign_splits']

SPLITS = ('train', 'val', 'test')


class DatasetLayoutError(ValueError):
    """A dataset folder or label file does not have the expected layout; the message says what was expected."""


@dataclass
class Entry:
    """One item of a dataset index.

    Attributes:
        record_id: unique id within the dataset.
        patient_id: patient the record belongs to (the record id when the source has none).
        split: 'train', 'val' or 'test'.
        labels: class index (single-label) or multi-hot float32 vector (multilabel); None for unlabelled data.
        path: record path without extension.
        start_s / end_s: optional time window within the record (seconds); None = whole record.
        meta: anything else (raw labels, source database, fold, age, sex, ...).
    """
    record_id: str
    patient_id: str
    split: str
    labels: Any
    path: str
    start_s: float | None = None
    end_s: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def assign_splits(patient_ids: Sequence[str], seed: int = 0,
                  fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> dict[str, str]:
    """Patient-wise deterministic split (same as the synthetic generator's); see ``synthetic.split_by_patient``.

    Args:
        patient_ids: The patient of each record (repeats allowed: a patient's records share a split).
        seed: Seed of the assignment.
        fractions: Train, val and test shares of the patients.

    Returns:
        patient id -> 'train', 'val' or 'test'.
    """
    from ..synthetic import split_by_patient

    return split_by_patient(patient_ids, seed=seed, fractions=fractions)


def _record_line_length(path: str) -> tuple[int, float] | None:
    """(samples, Hz) from a WFDB header's record line ('name n_sig fs[/cfreq][(base)] n_samples ...'), read alone:
    a third of the time of a full ``read_header``, which any other header form falls back to (None)."""
    try:
        with open(str(path) + '.hea', encoding='latin-1') as f:
            for line in f:
                text = line.strip()
                if text and not text.startswith('#'):
                    parts = text.split()
                    if len(parts) < 4 or '/' in parts[0]:  # multi-segment records: the full reader
                        return None
                    return int(parts[3]), float(parts[2].split('/')[0].split('(')[0])
    except (OSError, ValueError):
        return None
    return None


class ECGDataset:
    """Base class: an indexed ECG dataset.

    Subclasses fill ``entries``, ``label_names``, ``multilabel`` and ``skipped`` in ``__init__`` and call
    ``self._finalize(strict)``, which checks for duplicate record ids and patients crossing splits.

    Attributes:
        name: short source name ('ptbxl', 'cinc', ...).
        root: dataset folder.
        label_names: class names; ``labels`` index into them.
        multilabel: True when ``labels`` are multi-hot vectors.
        entries: the index.
        skipped: (record_id, reason) pairs of records left out while indexing.
        dedupe: True when ``build_cache`` must drop records whose signal exactly repeats an earlier one.
    """
    name = 'ecg'
    dedupe = False

    def __init__(self, root: str | os.PathLike, *, leads: Sequence[str] = LEADS, strict: bool = False):
        self.root = Path(root) if root is not None else None
        self.leads = tuple(leads)
        self.strict = strict
        self.label_names: list[str] = []
        self.multilabel = False
        self.entries: list[Entry] = []
        self.skipped: list[tuple[str, str]] = []

    # ---- the index
    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> Entry:
        return self.entries[i]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __repr__(self) -> str:
        counts = {s: sum(e.split == s for e in self.entries) for s in SPLITS}
        return (f'{type(self).__name__}(root={str(self.root)!r}, records={len(self)}, splits={counts}, '
                f'classes={len(self.label_names)}, multilabel={self.multilabel}, skipped={len(self.skipped)})')

    @property
    def record_ids(self) -> list[str]:
        """Record id per entry."""
        return [e.record_id for e in self.entries]

    def split_entries(self, split: str) -> list[Entry]:
        """Entries of one split ('train', 'val', 'test').

        Args:
            split: The split's name.

        Raises:
            ValueError: an unknown split.
        """
        if split not in SPLITS:
            raise ValueError(f'Unknown split {split!r}; use one of {SPLITS}.')
        return [e for e in self.entries if e.split == split]

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Per split, the number of records carrying each label."""
        out = {}
        for split in SPLITS:
            counts = dict.fromkeys(self.label_names, 0)
            for e in self.split_entries(split):
                if e.labels is None:
                    continue
                if self.multilabel:
                    for k in np.flatnonzero(np.asarray(e.labels)):
                        counts[self.label_names[k]] += 1
                else:
                    counts[self.label_names[int(e.labels)]] += 1
            out[split] = counts
        return out

    # ---- reading
    def read(self, i: int | Entry, **kwargs) -> Record:
        """Read the record of entry ``i`` (an index or an ``Entry``); windows (start_s/end_s) are applied.

        Args:
            i: Index into ``entries``, or the ``Entry`` itself.
            **kwargs: Passed to ``read_record`` (e.g. ``missing_leads='zero'``); ``leads`` defaults to the
                dataset's ``leads``.
        """
        entry = self.entries[i] if not isinstance(i, Entry) else i
        kwargs.setdefault('leads', self.leads)
        rec = read_record(entry.path, record_id=entry.record_id, **kwargs)
        rec.metadata.setdefault('patient_id', entry.patient_id)
        if entry.start_s is not None or entry.end_s is not None:
            start = int(round((entry.start_s or 0.0) * rec.fs))
            end = rec.num_samples if entry.end_s is None else int(round(entry.end_s * rec.fs))
            rec.signal = np.ascontiguousarray(rec.signal[:, start:end])
        return rec

    def signal_length(self, entry: Entry) -> tuple[int, float] | None:
        """(samples, Hz) of an entry's signal (its window when it has one) from the header alone; None when the
        header cannot be read (reading the record then reports why).

        Args:
            entry: One of ``entries``.
        """
        length = _record_line_length(entry.path)
        if length is None:
            try:
                header = read_header(entry.path)
            except (RecordError, OSError):
                return None
            length = int(header.sig_len or 0), float(header.fs)
        n, fs = length
        if n <= 0 or not fs > 0:
            return None
        if entry.start_s is not None or entry.end_s is not None:
            start = int(round((entry.start_s or 0.0) * fs))
            end = n if entry.end_s is None else int(round(entry.end_s * fs))
            n = max(0, min(end, n) - start)
        return n, fs

    # ---- identity (for cache fingerprints)
    def descriptor(self) -> dict[str, Any]:
        """JSON-ready description of what this index contains; a change in it triggers a cache rebuild."""
        h = hashlib.sha256()
        for e in self.entries:
            labels = None if e.labels is None else np.asarray(e.labels).tolist()
            h.update(f'{e.record_id}|{e.patient_id}|{e.split}|{labels}|{e.path}|{e.start_s}|{e.end_s}\n'.encode())
            for ext in ('.hea', '.dat', '.mat'):
                p = e.path + ext
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                h.update(f'{ext}:{st.st_size}:{st.st_mtime_ns}\n'.encode())
        return {'name': self.name, 'class': type(self).__name__, 'root': None if self.root is None else str(self.root),
                'n_entries': len(self.entries), 'label_names': list(self.label_names), 'multilabel': self.multilabel,
                'leads': list(self.leads), 'index_sha256': h.hexdigest()}

    # ---- checks
    def _skip(self, record_id: str, reason: str) -> None:
        """Record a left-out record, or raise at once in strict mode."""
        if self.strict:
            raise RecordError(record_id, reason)
        self.skipped.append((record_id, reason))

    def _keep_split_by_patient(self, entries: list[Entry], seed: int) -> None:
        """Give each entry its patient's split (deterministic in ``seed``), keep them as the index and check it."""
        splits = assign_splits([e.patient_id for e in entries], seed=seed)
        for e in entries:
            e.split = splits[e.patient_id]
        self.entries = entries
        self._finalize()

    def _finalize(self) -> None:
        """Check the index: unique record ids, valid splits, no patient in two splits."""
        seen: dict[str, int] = {}
        dupes = []
        for e in self.entries:
            if e.split not in SPLITS:
                raise DatasetLayoutError(f'{self.name}: record {e.record_id!r} has split {e.split!r}; splits must be '
                                         f'one of {SPLITS}.')
            seen[e.record_id] = seen.get(e.record_id, 0) + 1
            if seen[e.record_id] == 2:
                dupes.append(e.record_id)
        if dupes:
            raise DatasetLayoutError(f'{self.name}: duplicate record ids {dupes[:10]}{"..." if len(dupes) > 10 else ""}'
                                     f' ({len(dupes)} in all). Record ids must be unique; rename the records or drop '
                                     f'the duplicate rows from the label file.')
        where: dict[str, set] = {}
        for e in self.entries:
            where.setdefault(e.patient_id, set()).add(e.split)
        crossing = sorted(p for p, s in where.items() if len(s) > 1)
        if crossing:
            raise DatasetLayoutError(f'{self.name}: patients {crossing[:10]} ({len(crossing)} in all) have records in '
                                     f'more than one split, which leaks patients between train and test. Give each '
                                     f'patient one split (or leave the split column out to split by patient).')
