"""Convert a dataset once into a float32 memmap + labels + manifest, and read it back with zero copies.

Layout of a cache folder::

    signals.f32     raw float32, shape (N, leads, num_samples), C order; items grouped by split (train, val, test)
    labels.npy      (N,) int64 class index (-1 = unlabelled) or (N, C) float32 multi-hot
    lead_mask.npy   (N, leads) bool: False where a lead was missing or empty in the record, or is not among the
                    preprocessing's ``input_leads`` (a reduced-lead cache), and is zero in signals
    index.csv       item, record_id, patient_id, split, window, sha256 (of the raw record signal), item_sha256, source
    skipped.csv     record_id, path, reason of every record left out (header only when none was)
    manifest.json   written last: settings fingerprint, preprocessing, dataset descriptor, shapes, skipped records,
                    the amplitude / heart-rate plausibility summary

A build writes into a hidden temporary sibling folder and renames it into place, so an interrupted build never leaves
a cache that loads; re-running with the same settings returns at once; a changed setting (preprocessing, dataset
options, the record list or file sizes/times) rebuilds.

Example:
    >>> out = build_cache(get_dataset('synthetic', None, n_records=200), Preprocessing(), 'cache/syn')  # doctest: +SKIP
    >>> ds = CachedECGDataset(out, split='train')  # doctest: +SKIP
    >>> x, y = ds[0]; x.shape  # doctest: +SKIP
    torch.Size([12, 3600])
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import operator
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ecgvit.staging import staging_dir, sweep_stale

from .datasets.base import SPLITS, ECGDataset, Entry
from .plausibility import PLAUSIBILITY_MODES, check_record, summarize
from .preprocess import Preprocessing
from .records import Record, RecordError, canonical_lead_name

__all__ = ['build_cache', 'cache_folder', 'CachedECGDataset', 'CacheBuildError', 'CacheError', 'signal_sha256',
           'CACHE_VERSION']

# 2: lead_mask.npy and skipped.csv; the raw-signal sha256 hashes float64 values (no int32 overflow).
CACHE_VERSION = 2
_MANIFEST = 'manifest.json'
_SIGNALS = 'signals.f32'
_SKIPPED = 'skipped.csv'
_logger = logging.getLogger(__name__)


class CacheBuildError(RuntimeError):
    """A strict build met a bad record (the message names it and why)."""


class ImplausibleDataError(CacheBuildError):
    """``plausibility='strict'``: records whose amplitude or heart rate says the units or the rate are wrong."""


class CacheError(ValueError):
    """A cache folder is missing, incomplete or inconsistent; the message says how to rebuild it."""


def signal_sha256(record: Record) -> str:
    """sha256 of a record's signal on a 1 uV grid plus its rate: equal for exact copies in any file format.

    The grid values are hashed as float64, which holds every magnitude (an integer cast overflows: all records above
    2.1e6 mV once hashed alike and were dropped as duplicates); ``+ 0.0`` folds -0.0 into 0.0 and NaNs are made one
    value, so equal signals give equal bytes.
    """
    h = hashlib.sha256()
    h.update(f'{record.fs:g}|{record.signal.shape}|'.encode())
    grid = np.round(np.asarray(record.signal, dtype=np.float64) * 1000.0) + 0.0
    grid[np.isnan(grid)] = np.nan
    h.update(np.ascontiguousarray(grid).tobytes())
    return h.hexdigest()


# ---- worker side (module level so a process pool can run it)
_STATE: dict[str, Any] = {}


def _init_worker(dataset: ECGDataset, preprocessing: Preprocessing | None, slots: tuple | None = None,
                 plausibility: bool = False) -> None:
    """Per-process state. ``slots`` = (path, shape): write results straight into that memmap instead of returning
    them, so no signal crosses a pipe. ``plausibility``: run ``plausibility.check_record`` on every raw record."""
    _STATE['dataset'] = dataset
    _STATE['pp'] = preprocessing
    _STATE['plausibility'] = plausibility
    _STATE['memmap'] = None if slots is None else np.memmap(slots[0], dtype=np.float32, mode='r+', shape=slots[1])


def _item_sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.float32).data).hexdigest()


def _process(job: tuple[int, int, Entry]) -> tuple:
    """Read + preprocess one entry.

    Returns:
        (position, arrays or None, sha256 of the raw signal, failure reason or None, sha256 per output item,
        lead mask or None, plausibility result or None). With a memmap, the single output array is written at row
        ``slot`` and ``arrays`` is None.
    """
    pos, slot, entry = job
    ds, pp, mm = _STATE['dataset'], _STATE['pp'], _STATE['memmap']
    try:
        rec = ds.read(entry, missing_leads=pp.read_missing_leads if pp is not None else 'error')
        digest = signal_sha256(rec)
        if pp is None:  # hash-only pass (held-out entries of a pool)
            return pos, None, digest, None, [], None, None
        plaus = check_record(_input_leads_of(rec, pp)) if _STATE.get('plausibility') else None
        out, mask = pp(rec, rng=np.random.default_rng(pos), return_mask=True)
        arrays = out if isinstance(out, list) else [out]
        if not arrays:
            return pos, None, digest, 'no complete window in the record.', [], None, plaus
        item_digests = [_item_sha256(a) for a in arrays]
        if mm is not None:
            mm[slot] = arrays[0]
            return pos, None, digest, None, item_digests, mask, plaus
        return pos, arrays, digest, None, item_digests, mask, plaus
    except RecordError as e:
        return pos, None, None, e.reason, [], None, None
    except Exception as e:  # corrupt data can surface as anything inside wfdb/scipy; report it, do not die
        return pos, None, None, f'{type(e).__name__}: {e}', [], None, None


def _input_leads_of(rec: Record, pp: Preprocessing) -> Record:
    """``rec`` with the leads outside ``pp.input_leads`` masked: the plausibility check judges only what is used."""
    if pp.input_leads is None:
        return rec
    keep = np.asarray([canonical_lead_name(n) in pp.input_leads for n in rec.lead_names], dtype=bool)
    if rec.lead_mask is not None:
        keep &= np.asarray(rec.lead_mask, dtype=bool)
    return dataclasses.replace(rec, lead_mask=keep) if keep.any() else rec


def _map(jobs, dataset, preprocessing, num_workers: int, desc: str, progress: bool, slots: tuple | None = None,
         plausibility: bool = False):
    """Yield ``_process`` results in job order, in-process or over a process pool, with a tqdm bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit='rec', disable=not progress or not jobs, file=sys.stderr)
    try:
        if num_workers <= 0 or len(jobs) < 2 * max(num_workers, 1):
            _init_worker(dataset, preprocessing, slots, plausibility)
            try:
                for job in jobs:
                    yield _process(job)
                    bar.update(1)
            finally:
                _STATE.clear()
            return
        # fork shares the dataset index for free; spawn (non-Linux) pickles it once per worker.
        ctx = mp.get_context('fork' if 'fork' in mp.get_all_start_methods() else 'spawn')
        chunk = max(1, min(16, len(jobs) // (num_workers * 8) or 1))
        init = (dataset, preprocessing, slots, plausibility)
        with ctx.Pool(num_workers, initializer=_init_worker, initargs=init) as pool:
            for res in pool.imap(_process, jobs, chunksize=chunk):
                yield res
                bar.update(1)
    finally:
        bar.close()


def _fingerprint(dataset: ECGDataset, preprocessing: Preprocessing) -> tuple[str, dict]:
    desc = dataset.descriptor()
    key = {'cache_version': CACHE_VERSION, 'preprocessing': preprocessing.to_dict(), 'dataset': desc,
           'dedupe': bool(getattr(dataset, 'dedupe', False))}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest(), desc


def _read_manifest(cache_dir: Path) -> dict | None:
    try:
        with open(cache_dir / _MANIFEST) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_valid(cache_dir: Path, manifest: dict | None) -> bool:
    if not manifest or not manifest.get('complete'):
        return False
    n, c, length = manifest['shape']
    sig = cache_dir / _SIGNALS
    return sig.is_file() and sig.stat().st_size == n * c * length * 4 and (cache_dir / 'labels.npy').is_file()


def cache_folder(dataset: ECGDataset, preprocessing: Preprocessing, root: str | os.PathLike, name: str) -> Path:
    """Where the cache of ``dataset`` under ``preprocessing`` lives inside ``root``: ``root/name``, unless that
    folder already holds the cache of other records or settings (another data folder, crop, stride or rate under the
    same readable name); then ``root/name-<fingerprint>``, so two runs sharing a cache folder never rebuild each
    other's caches in turn.

    Args:
        dataset: The records (their index, as :func:`build_cache` fingerprints it).
        preprocessing: The recipe.
        root: The folder of caches (``--cache-dir``).
        name: The readable name, e.g. ``cache-ptbxl-superdiagnostic-100hz-1000``.
    """
    plain = Path(root) / name
    manifest = _read_manifest(plain)
    fingerprint, _ = _fingerprint(dataset, preprocessing)
    if manifest is None or manifest.get('fingerprint') == fingerprint:
        return plain
    return Path(root) / f'{name}-{fingerprint[:12]}'


def build_cache(dataset: ECGDataset, preprocessing: Preprocessing, out_dir: str | os.PathLike, *,
                num_workers: int = 2, strict: bool = False, force: bool = False, progress: bool = True,
                plausibility: str = 'warn') -> Path:
    """Preprocess every record of ``dataset`` into a memmap cache at ``out_dir``.

    Args:
        dataset: any ``ECGDataset`` (``get_dataset(...)``, a ``PretrainingPool``).
        preprocessing: the ``Preprocessing`` to apply; stored in the manifest.
        out_dir: cache folder (created; replaced atomically when rebuilt).
        num_workers: processes for reading/preprocessing (0 = in this process).
        strict: raise ``CacheBuildError`` at the first bad record; by default bad records are skipped and listed
            (with reasons) in ``skipped.csv`` and in ``manifest.json`` under ``skipped``, and a warning counts them.
        force: rebuild even if a valid cache with the same settings exists.
        progress: show a tqdm progress bar.
        plausibility: 'warn' (default): check every record's amplitude and heart rate (``ecgvit.data.plausibility``)
            and warn, naming the records and the likely fix (units, gain, sampling rate), when they are not those
            of an ECG in mV; 'strict': raise ``ImplausibleDataError`` instead; 'off': skip the check (2-3 ms
            a record, once per build). The summary is in the manifest under ``plausibility``.

    Returns:
        ``Path(out_dir)``.

    Raises:
        CacheBuildError: ``strict=True`` and a record failed, or no record at all could be converted.
        ImplausibleDataError: ``plausibility='strict'`` and records (or the dataset as a whole) look implausible.
        CacheError: ``out_dir`` exists, is not empty and is not a cache (it is never overwritten).
    """
    if plausibility not in PLAUSIBILITY_MODES:
        raise ValueError(f'plausibility={plausibility!r} is not supported; use one of {PLAUSIBILITY_MODES}.')
    if not isinstance(preprocessing, Preprocessing):
        raise TypeError(f'preprocessing must be an ecgvit.data.Preprocessing, got {type(preprocessing).__name__}.')
    if not isinstance(dataset, ECGDataset):
        raise TypeError(f'dataset must be an ecgvit.data ECGDataset (from get_dataset or PretrainingPool), got '
                        f'{type(dataset).__name__}.')
    out = Path(out_dir).absolute()
    fingerprint, desc = _fingerprint(dataset, preprocessing)
    manifest = _read_manifest(out)
    if not force and _is_valid(out, manifest) and manifest.get('fingerprint') == fingerprint:
        if plausibility == 'strict':
            _raise_implausible(manifest.get('plausibility') or {}, out)
        return out
    if out.exists() and manifest is None and (not out.is_dir() or any(out.iterdir())):
        raise CacheError(f'{out} exists and is not an ecgvit cache (no {_MANIFEST}); refusing to overwrite it. '
                         f'Choose an empty or new out_dir.')
    if strict and dataset.skipped:
        rid, reason = dataset.skipped[0]
        raise CacheBuildError(f'{rid}: {reason} ({len(dataset.skipped)} records were skipped while indexing).')
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out)
    tmp = staging_dir(out)
    t0 = time.perf_counter()
    try:
        stats = _write(dataset, preprocessing, tmp, num_workers=num_workers, strict=strict, progress=progress,
                       plausibility=plausibility != 'off')
        if plausibility == 'strict':
            _raise_implausible(stats['plausibility'], out)
        elapsed = time.perf_counter() - t0
        manifest = {
            'cache_version': CACHE_VERSION, 'complete': True, 'fingerprint': fingerprint,
            'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'preprocessing': preprocessing.to_dict(), 'dataset': desc,
            'label_names': list(dataset.label_names), 'multilabel': bool(dataset.multilabel),
            'shape': [stats['n_items'], len(preprocessing.leads), preprocessing.num_samples], 'dtype': 'float32',
            'split_ranges': stats['split_ranges'], 'signals_sha256': stats['signals_sha256'],
            'signals_sha256_scheme': 'sha256 of the concatenated per-item sha256 hex digests (index.csv item_sha256)',
            'n_entries': len(dataset), 'n_skipped': len(stats['skipped']), 'skipped': stats['skipped'],
            'duplicates': stats['duplicates'], 'n_partial_leads': stats['n_partial_leads'],
            'partial_leads': stats['partial_leads'],
            'plausibility': stats['plausibility'], 'seconds': round(elapsed, 3),
            'records_per_s': round(len(dataset) / elapsed, 1) if elapsed > 0 else None,
        }
        with open(tmp / _MANIFEST, 'w') as f:
            json.dump(manifest, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _report(manifest, out, dataset.name)
    return out


def _report(manifest: dict, out: Path, name: str) -> None:
    """Warn about what a build left out or found doubtful, so nothing is dropped without a word."""
    skipped = manifest.get('skipped') or []
    if skipped:
        first = ', '.join(f"{s['record_id']} ({s['reason']})" for s in skipped[:3])
        indexing = _n_index_skipped(manifest)
        # The dataset's own record count leaves out those skipped while indexing: say how the two counts relate.
        stages = (f' ({indexing} while indexing, which the dataset\'s {manifest["n_entries"]} records do not count; '
                  f'{len(skipped) - indexing} while converting)' if indexing else '')
        warnings.warn(f'{name}: {len(skipped)} of {manifest["n_entries"] + indexing} records were left out of the '
                      f'cache{stages}, e.g. {first}; all are listed in {out / _SKIPPED}.', stacklevel=3)
    partial = manifest.get('n_partial_leads') or 0
    if partial:
        pp = manifest['preprocessing']
        absent = manifest.get('partial_leads')
        which = (', '.join(f'{lead} ({n})' for lead, n in absent.items()) if absent else
                 f'some of {pp.get("input_leads") or pp["leads"]}')  # a manifest written before the counts
        warnings.warn(f'{name}: {partial} of {manifest["shape"][0]} cached items lack leads (missing or empty in the '
                      f'record; items lacking each in brackets): {which}. Those leads are zero and marked False in '
                      f'{out / "lead_mask.npy"} (CachedECGDataset.lead_mask).', stacklevel=3)
    plaus = manifest.get('plausibility') or {}
    flagged = plaus.get('flagged') or []
    problems = list(plaus.get('dataset_problems') or [])
    if flagged:
        first = '; '.join(f"{f['record_id']}: {f['problem']}" for f in flagged[:3])
        problems.append(f'{name}: {len(flagged)} record(s) do not look like an ECG in mV at their declared rate '
                        f'(all in {out / _MANIFEST} under "plausibility"), e.g. {first}')
    for p in problems:
        warnings.warn(p, stacklevel=3)


def _n_index_skipped(manifest: dict) -> int:
    """Records skipped while indexing are not among the dataset's entries but are in ``skipped``."""
    return sum(1 for s in manifest.get('skipped') or [] if s.get('stage') == 'index')


def _raise_implausible(plaus: dict, out: Path) -> None:
    flagged = plaus.get('flagged') or []
    problems = list(plaus.get('dataset_problems') or [])
    problems += [f"{f['record_id']}: {f['problem']}" for f in flagged[:5]]
    if problems:
        more = f' ({len(flagged)} records flagged in all)' if len(flagged) > 5 else ''
        raise ImplausibleDataError(f'{out}: plausibility="strict" and the data do not look like ECGs in mV at their '
                                   f'declared rates{more}: ' + ' | '.join(problems) +
                                   ' (plausibility="warn" builds anyway).')


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``, setting an existing ``out`` aside first.

    Another process may build the same cache at the same moment (two commands sharing a ``--cache-dir``): when its
    rename lands between ours, ``out`` is a non-empty folder again and the rename fails. If what is there now is a
    complete cache with our fingerprint, it is the same cache and we keep it; otherwise we set it aside and retry.
    """
    fingerprint = (_read_manifest(tmp) or {}).get('fingerprint')
    for _ in range(5):
        old = None
        if out.exists():
            old = out.parent / f'.{out.name}.old-{os.getpid()}-{time.time_ns()}'
            try:
                os.replace(out, old)
            except FileNotFoundError:  # the other process moved it aside first
                old = None
        try:
            os.replace(tmp, out)
        except OSError:
            theirs = _read_manifest(out)
            if fingerprint and _is_valid(out, theirs) and theirs.get('fingerprint') == fingerprint:
                shutil.rmtree(tmp, ignore_errors=True)
                return
            continue
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return
    raise CacheError(f'{out}: could not move the new cache into place ({tmp}); another process keeps replacing it. '
                     f'Give each run its own cache folder (--cache-dir).')


def _combine_digests(item_digests) -> str:
    """The cache's content hash: sha256 over the per-item sha256 hex digests, in item order."""
    h = hashlib.sha256()
    for d in item_digests:
        h.update(d.encode())
    return h.hexdigest()


def _write(dataset: ECGDataset, pp: Preprocessing, tmp: Path, *, num_workers: int, strict: bool,
           progress: bool, plausibility: bool = True) -> dict:
    skipped = [{'record_id': rid, 'path': '', 'reason': reason, 'stage': 'index'} for rid, reason in dataset.skipped]
    dedupe = bool(getattr(dataset, 'dedupe', False))

    # Hashes of held-out records (pool exclusions): a copy of one of them must not enter the cache.
    blocked: dict[str, str] = {}
    blocked_entries = list(getattr(dataset, 'blocked', []) or [])
    if blocked_entries:
        jobs = [(i, i, e) for i, e in enumerate(blocked_entries)]
        for pos, _, digest, *_ in _map(jobs, dataset, None, num_workers, 'hash held-out', progress):
            if digest is not None:
                blocked.setdefault(digest, blocked_entries[pos].record_id)

    # Process entries split by split, so each split is one contiguous block of the memmap.
    order = [i for s in SPLITS for i, e in enumerate(dataset.entries) if e.split == s]
    jobs = [(i, slot, dataset.entries[i]) for slot, i in enumerate(order)]
    item_shape = (len(pp.leads), pp.num_samples)
    item_bytes = int(np.prod(item_shape)) * 4
    path = tmp / _SIGNALS
    # One output per record (every crop but 'windows'): workers write rows of a preallocated memmap in place.
    in_place = pp.crop != 'windows' and len(jobs) > 0
    slots = (str(path), (len(jobs), *item_shape)) if in_place else None
    with open(path, 'wb') as f:
        if in_place:
            f.truncate(len(jobs) * item_bytes)

    seen: dict[str, str] = {}
    duplicates, rows, labels, item_digests, kept_slots, masks, checks = [], [], [], [], [], [], []
    with open(path, 'r+b' if in_place else 'wb') as f:
        for (pos, arrays, digest, reason, digests, mask, plaus), (_, slot, _) in zip(
                _map(jobs, dataset, pp, num_workers, f'cache {dataset.name}', progress, slots, plausibility), jobs):
            entry = dataset.entries[pos]
            if plaus is not None:
                checks.append(dict(plaus, record_id=entry.record_id))
            if reason is None and digest is not None:
                if digest in blocked:
                    reason = f'exact copy of held-out record {blocked[digest]}.'
                elif digest in seen:
                    if dedupe:
                        reason = f'exact duplicate of {seen[digest]}.'
                    else:
                        duplicates.append({'record_id': entry.record_id, 'duplicate_of': seen[digest]})
                else:
                    seen[digest] = entry.record_id
            if reason is not None:
                if strict:
                    raise CacheBuildError(f'{entry.record_id} ({entry.path}): {reason}')
                skipped.append({'record_id': entry.record_id, 'path': entry.path, 'reason': reason, 'stage': 'read'})
                continue
            if in_place:
                kept_slots.append(slot)
            else:
                for arr in arrays:
                    f.write(np.ascontiguousarray(arr, dtype=np.float32).data)
            for k, item_digest in enumerate(digests):
                rows.append((len(rows), entry.record_id, entry.patient_id, entry.split, k, digest, item_digest,
                             entry.meta.get('source', dataset.name)))
                labels.append(entry.labels)
                item_digests.append(item_digest)
                masks.append(mask)
        n_items = len(rows)
        if in_place and n_items < len(jobs):
            # Close the gaps of skipped records: kept slots only move down, so a forward copy is safe.
            mm = np.memmap(path, dtype=np.float32, mode='r+', shape=(len(jobs), *item_shape))
            for new, old in enumerate(kept_slots):
                if new != old:
                    mm[new] = mm[old]
            mm.flush()
            del mm
            f.truncate(n_items * item_bytes)
        f.flush()
        os.fsync(f.fileno())
    if n_items == 0:
        reasons = '; '.join(f"{s['record_id']}: {s['reason']}" for s in skipped[:3])
        short = any('short' in str(s['reason']).lower() for s in skipped)
        fix = ' (e.g. pad=\'zero\' / --short-records pad for short records)' if short else \
            ' (is it the right folder for this dataset?)'
        raise CacheBuildError(f'No record of {dataset.name!r} could be converted ({len(skipped)} skipped, e.g. '
                              f'{reasons}). Fix the data or the preprocessing{fix}.')

    if dataset.multilabel:
        lab = np.stack([np.asarray(y, dtype=np.float32) for y in labels])
    else:
        lab = np.asarray([-1 if y is None else int(y) for y in labels], dtype=np.int64)
    np.save(tmp / 'labels.npy', lab)
    lead_mask = np.stack(masks) if masks else np.zeros((0, len(pp.leads)), dtype=bool)
    np.save(tmp / 'lead_mask.npy', lead_mask)
    _write_skipped(tmp / _SKIPPED, skipped)
    import pandas as pd

    columns = ['item', 'record_id', 'patient_id', 'split', 'window', 'sha256', 'item_sha256', 'source']
    pd.DataFrame(rows, columns=columns).to_csv(tmp / 'index.csv', index=False)
    split_ranges = {}
    for s in SPLITS:
        idx = [r[0] for r in rows if r[3] == s]
        if idx:
            split_ranges[s] = [idx[0], idx[-1] + 1]
    return {'n_items': n_items, 'skipped': skipped, 'duplicates': duplicates, 'split_ranges': split_ranges,
            'signals_sha256': _combine_digests(item_digests),
            # Items lacking a lead they should have: outside input_leads every item lacks them by design.
            'n_partial_leads': int((~lead_mask[:, pp.input_mask]).any(axis=1).sum()),
            # Which of them, in how many items each (the warning names these, not every lead).
            'partial_leads': {lead: int(n) for lead, n, wanted in zip(pp.leads, (~lead_mask).sum(axis=0),
                                                                      pp.input_mask) if wanted and n},
            'plausibility': summarize(checks, dataset.name) if plausibility else None}


def _write_skipped(path: Path, skipped: list[dict]) -> None:
    """``skipped.csv``: one row per record left out (record_id, path, stage, reason), a header when none was."""
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['record_id', 'path', 'stage', 'reason'])
        for s in skipped:
            w.writerow([s['record_id'], s.get('path', ''), s.get('stage', ''), s['reason']])


def _torch_dataset_base():
    import torch.utils.data

    return torch.utils.data.Dataset


class CachedECGDataset(_torch_dataset_base()):
    """A torch ``Dataset`` over a cache built by ``build_cache``.

    ``__getitem__`` returns ``(x, y)``: ``x`` a float32 tensor (leads, num_samples) that shares memory with the
    memmap (no copy; the map is copy-on-write, so writing to ``x`` never changes the file), ``y`` a long scalar
    (single-label; -1 for unlabelled) or a float32 multi-hot vector.

    Args:
        cache_dir: folder written by ``build_cache``.
        split: 'train', 'val', 'test' or None (all items).
        verify: recompute the signals' sha256 and compare with the manifest (reads the whole file).

    Attributes:
        signals: memmap (N, leads, num_samples) of this split (a view of the file, no copy).
        labels: (N,) int64 or (N, C) float32 numpy array.
        lead_mask: (N, leads) bool numpy array, False where the record lacked the lead (or it was empty, or it is
            not among ``preprocessing.input_leads``) and the signal row is zero-filled.
        label_names, multilabel, record_ids, patient_ids, splits, windows, preprocessing, manifest.

    Example:
        >>> ds = CachedECGDataset('cache/syn', split='val')  # doctest: +SKIP
        >>> loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2)  # doctest: +SKIP
    """

    def __init__(self, cache_dir: str | os.PathLike, split: str | None = None, *, verify: bool = False):
        import pandas as pd

        self.cache_dir = Path(cache_dir)
        manifest = _read_manifest(self.cache_dir)
        if manifest is None:
            raise CacheError(f'{self.cache_dir} holds no readable {_MANIFEST}: not a cache, or an interrupted build. '
                             f'Run ecgvit.data.build_cache(dataset, preprocessing, {str(self.cache_dir)!r}).')
        if manifest.get('cache_version') != CACHE_VERSION:
            raise CacheError(f'{self.cache_dir} was built with cache version {manifest.get("cache_version")}, this '
                             f'ecgvit reads version {CACHE_VERSION}; rebuild it with build_cache(..., force=True).')
        if not _is_valid(self.cache_dir, manifest):
            raise CacheError(f'{self.cache_dir} is incomplete (signals file size does not match the manifest shape '
                             f'{manifest.get("shape")}); rebuild it with build_cache(..., force=True).')
        if split is not None and split not in SPLITS:
            raise ValueError(f'Unknown split {split!r}; use one of {SPLITS} or None.')
        self.manifest = manifest
        self.split = split
        self.label_names: list[str] = list(manifest['label_names'])
        self.multilabel: bool = bool(manifest['multilabel'])
        self.preprocessing = Preprocessing.from_dict(manifest['preprocessing'])
        self._shape = tuple(manifest['shape'])
        lo, hi = (0, self._shape[0]) if split is None else manifest['split_ranges'].get(split, (0, 0))
        self._range = (int(lo), int(hi))
        index = pd.read_csv(self.cache_dir / 'index.csv', dtype={'record_id': str, 'patient_id': str})
        if len(index) != self._shape[0]:
            raise CacheError(f'{self.cache_dir}: index.csv has {len(index)} rows for {self._shape[0]} items; rebuild '
                             f'with build_cache(..., force=True).')
        index = index.iloc[lo:hi]
        self.record_ids: list[str] = index['record_id'].tolist()
        self.patient_ids: list[str] = index['patient_id'].tolist()
        self.splits: list[str] = index['split'].tolist()
        self.windows: list[int] = index['window'].tolist()
        self.labels = np.load(self.cache_dir / 'labels.npy')[lo:hi]
        try:
            self.lead_mask: np.ndarray = np.load(self.cache_dir / 'lead_mask.npy')[lo:hi]
        except (OSError, ValueError) as e:
            raise CacheError(f'{self.cache_dir}: lead_mask.npy is missing or unreadable ({e}); rebuild with '
                             f'build_cache(..., force=True).') from None
        self._signals = None
        self._labels_t = None
        if verify:
            self.verify()

    def __len__(self) -> int:
        return self._range[1] - self._range[0]

    @property
    def signals(self) -> np.ndarray:
        """Copy-on-write memmap (N, leads, samples) of this split, opened lazily (once per worker process)."""
        if self._signals is None:
            full = np.memmap(self.cache_dir / _SIGNALS, dtype=np.float32, mode='c', shape=self._shape)
            self._signals = full[self._range[0]:self._range[1]]
        return self._signals

    def _label_tensor(self):
        if self._labels_t is None:
            import torch

            self._labels_t = torch.from_numpy(np.ascontiguousarray(self.labels))
        return self._labels_t

    def __getitem__(self, i: int):
        import torch

        i = operator.index(i)  # ints, numpy ints and 0-d integer tensors
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f'index {i} out of range for {len(self)} items.')
        return torch.from_numpy(self.signals[i]), self._label_tensor()[i]

    def __getstate__(self):
        # Never pickle the mapped data (DataLoader workers under spawn): each process reopens the file.
        state = self.__dict__.copy()
        state['_signals'] = None
        state['_labels_t'] = None
        return state

    def verify(self) -> None:
        """Recompute the content hash of the signals (per-item sha256, combined) and compare it with the manifest."""
        full = np.memmap(self.cache_dir / _SIGNALS, dtype=np.float32, mode='r', shape=self._shape)
        if _combine_digests(_item_sha256(full[i]) for i in range(self._shape[0])) != self.manifest['signals_sha256']:
            raise CacheError(f'{self.cache_dir}/{_SIGNALS} does not match the sha256 in the manifest (changed or '
                             f'corrupted); rebuild with build_cache(..., force=True).')

    @property
    def skipped(self) -> list[dict]:
        """Records left out of the cache, with reasons (also in ``skipped_csv``)."""
        return list(self.manifest.get('skipped', []))

    @property
    def skipped_csv(self) -> Path:
        """The file listing the records left out of the cache (record_id, path, stage, reason)."""
        return self.cache_dir / _SKIPPED

    def __repr__(self) -> str:
        return (f'CachedECGDataset({str(self.cache_dir)!r}, split={self.split!r}, items={len(self)}, '
                f'shape={tuple(self.signals.shape)}, classes={len(self.label_names)}, multilabel={self.multilabel})')
