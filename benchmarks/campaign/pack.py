"""``pack``: the pretraining pool and the PTB-XL evaluation folds as a compact folder that travels with the code.

Run here (where the data and ``wfdb`` are); the GPU machine only decodes. The folder holds:

- ``pack.json``: what was packed (preprocessing, counts, label names, sizes, quantisation error, sha256 of each file);
- ``meta.npz``: per stored window its limb-lead coefficients, the split indices and the evaluation labels;
- ``signals-NNNNN.xz``: the windows, :mod:`benchmarks.campaign.codec`-encoded, ``CHUNK`` windows per file.

Windows are stored once: the PTB-XL training folds 1-8 of the evaluation are the pool's own PTB-XL windows (the same
preprocessing gives the same bytes, checked by each item's sha256), so they are indices into the pool.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import codec, sha256_file

__all__ = ['pack', 'load_pack', 'PACK_VERSION', 'CHUNK']

PACK_VERSION = 1
CHUNK = 256  # windows per compressed file: bounds the encoder's memory (about 1 GB of float64 at 3600 samples)


def _ptbxl_folder(data_dir: Path) -> Path:
    for sub in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        if sub.name.lower().startswith(('ptbxl', 'ptb-xl')):
            return sub
    raise FileNotFoundError(f'No PTB-XL folder (ptbxl*) under {str(data_dir)!r}: the evaluation needs PTB-XL; pass '
                            f'--data-dir the folder that holds ptbxl/ and the other dataset folders.')


def _item_hashes(cache: Any) -> list[str]:
    """Each cache item's sha256 (of its preprocessed signal), in cache order."""
    import pandas as pd

    return pd.read_csv(Path(cache.cache_dir) / 'index.csv')['item_sha256'].astype(str).tolist()


def _rows(cache: Any, split: str) -> np.ndarray:
    """The cache rows of one split (build_cache stores each split as one contiguous range)."""
    lo, hi = cache.manifest['split_ranges'].get(split, (0, 0))
    return np.arange(int(lo), int(hi), dtype=np.int64)


def pack(data_dir: str | os.PathLike, out: str | os.PathLike, sampling_rate: float = 360.0, num_samples: int = 3600,
         cache_dir: str | os.PathLike | None = None, step: float = codec.QUANT_STEP, preset: int = 6,
         num_workers: int = 0, log=print, with_eval: bool = True) -> dict[str, Any]:
    """Build the pack from the dataset folders under ``data_dir`` into ``out`` (replaced atomically).

    Args:
        data_dir: folder of dataset folders (the project's ``shared/data``): the pool is
            ``PretrainingPool.from_folder(data_dir)`` (PTB-XL folds 9 and 10 held out), the evaluation
            ``ptbxl:superdiagnostic`` from its ``ptbxl*`` sub-folder (folds 1-8 train, 9 val, 10 test).
        out: the pack folder (e.g. ``.campaign``, git-ignored).
        sampling_rate, num_samples: the model's input, as ``ecgvit pretrain --sampling-rate/--num-samples``.
        cache_dir: where the preprocessed caches go (default: a temporary folder, removed afterwards).
        step: quantisation step in standard deviations (:mod:`~benchmarks.campaign.codec`).
        preset: LZMA preset.
        num_workers: cache-building processes.
        log: where progress lines go.
        with_eval: also pack the PTB-XL evaluation folds (False: the pool only, about 15 % smaller, for a call
            that also carries weights to continue; its jobs are then not probed there, the CPU gate does that).

    Returns:
        The pack's description (``pack.json``).
    """
    from ecgvit.data import CachedECGDataset, prepare_data
    from ecgvit.data.prepare import data_preprocessing

    t0 = time.time()
    data_dir, out = Path(data_dir), Path(out)
    tmp_cache = None
    if cache_dir is None:
        tmp_cache = tempfile.mkdtemp(prefix='ecgvit-pack-cache-')
        cache_dir = tmp_cache
    try:
        pp = data_preprocessing(sampling_rate, num_samples)
        pool = prepare_data('pool', data_dir, cache_dir, preprocessing=pp, num_workers=num_workers)
        ev = prepare_data('ptbxl:superdiagnostic', _ptbxl_folder(data_dir), cache_dir, preprocessing=pp,
                          num_workers=num_workers) if with_eval else None
        log(f'pack: pool {len(pool["train"])} train + {len(pool["val"])} val windows; ' + (
            f'PTB-XL superdiagnostic {len(ev["train"])} / {len(ev["val"])} / {len(ev["test"])} (folds 1-8 / 9 / 10)'
            if ev else 'no evaluation folds') + f', {time.time() - t0:.0f} s')
        # Stored windows: the pool's (train, then val), then evaluation records that are not pool windows.
        pool_all = CachedECGDataset(pool['cache_dir'])
        pool_rows = {s: _rows(pool_all, s) for s in ('train', 'val')}
        order = np.concatenate([pool_rows['train'], pool_rows['val']])
        extra: list[int] = []  # evaluation cache rows stored after the pool's windows
        splits: dict[str, np.ndarray] = {'pool_train': np.arange(len(pool_rows['train'])),
                                         'pool_val': len(pool_rows['train']) + np.arange(len(pool_rows['val']))}
        labels: dict[str, np.ndarray] = {}
        ev_all = CachedECGDataset(ev['cache_dir']) if ev else None
        pool_hashes, ev_hashes = _item_hashes(pool_all), _item_hashes(ev_all) if ev else []
        by_hash = {pool_hashes[r]: k for k, r in enumerate(order)}
        for name in ('train', 'val', 'test') if ev else ():
            stored = []
            for r in _rows(ev_all, name):
                k = by_hash.get(ev_hashes[r])
                if k is None:
                    k = len(order) + len(extra)
                    extra.append(int(r))
                stored.append(k)
            splits[f'eval_{name}'] = np.asarray(stored, dtype=np.int64)
            labels[f'labels_{name}'] = np.asarray(ev[name].labels, dtype=np.float32)
        pool_signals, ev_signals = pool_all.signals, ev_all.signals if ev else None
        total = len(order) + len(extra)
        shape = (total, pool_signals.shape[1], pool_signals.shape[2])

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.tmp-', dir=out.parent))
        try:
            coefs, files, clipped, sq_err = [], [], 0, 0.0
            for c, lo in enumerate(range(0, total, CHUNK)):
                rows = range(lo, min(total, lo + CHUNK))
                x = np.stack([pool_signals[order[r]] if r < len(order) else ev_signals[extra[r - len(order)]]
                              for r in rows]).astype(np.float32)
                blob, cf, stats = codec.encode(x, step, preset)
                name = f'signals-{c:05d}.xz'
                (tmp / name).write_bytes(blob)
                coefs.append(cf)
                files.append(name)
                clipped += stats['clipped']
                sq_err += stats['rms_error'] ** 2 * x.size
            meta = dict(splits, **labels, coefs=np.concatenate(coefs) if coefs else np.zeros((0, 4, 3), np.float32))
            np.savez(tmp / 'meta.npz', **meta)
            files.append('meta.npz')
            sizes = {f: (tmp / f).stat().st_size for f in files}
            desc = {
                'pack_version': PACK_VERSION, 'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                'data_dir': str(data_dir), 'preprocessing': pp.to_dict(), 'shape': list(shape),
                'quant_step': step, 'clipped_values': clipped,
                'rms_error': float(np.sqrt(sq_err / max(1, np.prod(shape)))),
                'chunk': CHUNK, 'files': files, 'sha256': {f: sha256_file(tmp / f) for f in files}, 'bytes': sizes,
                'total_bytes': int(sum(sizes.values())), 'int16_bytes': int(2 * np.prod(shape)),
                'label_names': list(ev['label_names']) if ev else None,
                'counts': {k: int(len(v)) for k, v in splits.items()},
                'pool': {'sources': _sources(pool_all),
                         'excluded': 'PTB-XL folds 9-10 (val, test)', 'windows': int(len(order))},
                'eval': {'spec': 'ptbxl:superdiagnostic', 'train_from_pool': int(len(ev['train']) - sum(
                    1 for k in splits['eval_train'] if k >= len(order))), 'stored_apart': len(extra)} if ev else None,
                'pack_time_s': round(time.time() - t0, 1),
            }
            (tmp / 'pack.json').write_text(json.dumps(desc, indent=2))
            os.chmod(tmp, 0o755)
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        if tmp_cache is not None:
            shutil.rmtree(tmp_cache, ignore_errors=True)
    log(f'pack: {total} windows in {desc["total_bytes"] / 2 ** 20:.1f} MiB ({desc["int16_bytes"] / 2 ** 20:.0f} MiB '
        f'as int16), rms error {desc["rms_error"]:.4f} sd, {desc["clipped_values"]} values clipped, '
        f'{desc["pack_time_s"]:.0f} s -> {out}')
    return desc


def _sources(ds: Any) -> list[str]:
    import pandas as pd

    index = pd.read_csv(Path(ds.cache_dir) / 'index.csv')
    return sorted(index['source'].dropna().astype(str).unique().tolist()) if 'source' in index else []


def load_pack(folder: str | os.PathLike, verify: bool = True) -> tuple[dict[str, Any], np.ndarray, dict[str, Any]]:
    """Decode a pack: (its ``pack.json``, all windows (N, 12, L) float32, ``meta.npz`` arrays).

    Raises:
        FileNotFoundError: no pack there.
        ValueError: a file's sha256 differs from ``pack.json`` (a damaged or partial copy).
    """
    folder = Path(folder)
    if not (folder / 'pack.json').is_file():
        raise FileNotFoundError(f'No pack at {str(folder)!r} (pack.json missing): build it with '
                                f'`python benchmarks/gpu_campaign.py pack --data-dir DATA --out {folder}`.')
    desc = json.loads((folder / 'pack.json').read_text())
    if verify:
        for f, digest in desc['sha256'].items():
            if sha256_file(folder / f) != digest:
                raise ValueError(f'{folder / f} does not match its sha256 in pack.json: the copy is damaged; pack '
                                 f'again.')
    meta = dict(np.load(folder / 'meta.npz'))
    n, leads, length = desc['shape']
    out = np.empty((n, leads, length), dtype=np.float32)
    for c, f in enumerate(x for x in desc['files'] if x.startswith('signals-')):
        lo = c * desc['chunk']
        hi = min(n, lo + desc['chunk'])
        out[lo:hi] = codec.decode((folder / f).read_bytes(), (hi - lo, leads, length), meta['coefs'][lo:hi],
                                  desc['quant_step'])
    return desc, out, meta
