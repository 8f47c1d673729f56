"""What simple predictors score on the MAE task: the floor a learned MAE decoder has to go below.

The MAE loss is the MSE on the masked patches of a z-scored ECG (``ecgvit.pretrain.mae``). This script draws the same
kind of masks (``masking_ids``: 75 % of the 25-sample patches by default) over a cache's windows and scores, on the
masked samples only, three predictors that need no training:

- ``zero``: every masked value is 0, the mean of a z-scored lead. A decoder that has learned nothing but the mean
  scores this.
- ``interpolate``: straight lines between the kept samples on either side of a gap (held flat past the ends).
- ``beat_copy``: the mean of the kept samples at the same time after the R peak in the record's other beats (R peaks
  from ``ecgvit.data.rpeaks``); 0 where no other beat has that sample kept.

    python benchmarks/mae_floor.py --cache ~/.cache/ecgvit-runs/ablation/cache/cache-pool-default-360hz-3600

Reading it: a training ``loss_mae`` near ``zero`` means the decoder predicts the mean; below the best of the three,
it has learned more than these shortcuts.
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/mae_floor.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
from typing import Dict, Optional

import numpy as np
import torch

from ecgvit.data.cache import CachedECGDataset
from ecgvit.data.rpeaks import detect_r_peaks
from ecgvit.pretrain.mae import masking_ids

__all__ = ['PREDICTORS', 'predict', 'floor_losses', 'main']

PREDICTORS = ('zero', 'interpolate', 'beat_copy')


def _beat_copy(x: np.ndarray, kept: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """``(C, L)`` prediction from the same time after the R peak in the other beats; 0 where none is kept."""
    length = x.shape[-1]
    if len(peaks) < 2:
        return np.zeros_like(x)
    t = np.arange(length)
    beat = np.clip(np.searchsorted(peaks, t, side='right') - 1, 0, len(peaks) - 1)  # the beat a sample belongs to
    phase = t - peaks[beat]  # negative before the first peak: measured back from it
    acc = np.zeros_like(x, dtype=np.float64)
    count = np.zeros(length)
    for j, peak in enumerate(peaks):
        src = peak + phase
        ok = (beat != j) & (src >= 0) & (src < length)
        ok[ok] &= kept[src[ok]]
        acc[:, ok] += x[:, src[ok]]
        count[ok] += 1
    return np.where(count > 0, acc / np.maximum(count, 1), 0.0).astype(x.dtype)


def predict(name: str, x: np.ndarray, kept: np.ndarray, sampling_rate: float) -> np.ndarray:
    """One predictor's ``(C, L)`` guess for a record ``x`` of which only the samples where ``kept`` is True are seen.

    Args:
        name: One of :data:`PREDICTORS`.
        x: ``(C, L)`` z-scored record.
        kept: ``(L,)`` bool, True for samples of kept patches.
        sampling_rate: Hz, for the R-peak detector.
    """
    if name == 'zero':
        return np.zeros_like(x)
    if name == 'interpolate':
        t, every = np.flatnonzero(kept), np.arange(x.shape[-1])
        return np.stack([np.interp(every, t, lead[t]) for lead in x]).astype(x.dtype)
    if name == 'beat_copy':
        return _beat_copy(x, kept, detect_r_peaks(x, sampling_rate))
    raise ValueError(f'Unknown predictor {name!r}; choose from {PREDICTORS}.')


def floor_losses(signals: np.ndarray, sampling_rate: float, patch_len: int = 25, mask_ratio: float = 0.75,
                 seed: int = 0) -> Dict[str, float]:
    """Mean masked-patch MSE of each predictor over ``signals`` ``(N, C, L)``, one random mask per record.

    The masks are ``masking_ids``' (the MAE branch's own), drawn from one seeded generator, so two calls agree.
    """
    n = len(signals)
    if n == 0:
        raise ValueError('No records to score: the split is empty.')
    length = signals.shape[-1]
    _, mask, _ = masking_ids(n, length // patch_len, mask_ratio, torch.device('cpu'),
                             torch.Generator().manual_seed(seed))
    masked = np.repeat(mask.numpy().astype(bool), patch_len, axis=1)  # (N, L) per sample
    sums = dict.fromkeys(PREDICTORS, 0.0)
    for i in range(n):
        x = np.asarray(signals[i], dtype=np.float32)
        for name in PREDICTORS:
            err = (x - predict(name, x, ~masked[i], sampling_rate))[:, masked[i]]
            sums[name] += float(np.mean(err.astype(np.float64) ** 2))
    return {name: total / n for name, total in sums.items()}


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--cache', required=True, help='a cache folder (build_cache / an ecgvit pretrain run\'s data)')
    p.add_argument('--split', default='val', help="'train', 'val', 'test' or 'all'")
    p.add_argument('--mask-ratio', type=float, default=0.75)
    p.add_argument('--patch-len', type=int, default=25)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--limit', type=int, default=None, help='score the first N records only')
    p.add_argument('--json', action='store_true', help='print JSON instead of a table')
    args = p.parse_args(argv)
    ds = CachedECGDataset(args.cache, split=None if args.split == 'all' else args.split)
    fs = float(ds.preprocessing.sampling_rate)
    signals = ds.signals[:args.limit]  # a view: None keeps every record
    losses = floor_losses(signals, fs, args.patch_len, args.mask_ratio, args.seed)
    n = len(signals)
    if args.json:
        print(json.dumps({'records': n, 'split': args.split, 'mask_ratio': args.mask_ratio, 'losses': losses}))
        return 0
    print(f'{n} {args.split} records of {args.cache}, mask ratio {args.mask_ratio}, {args.patch_len}-sample patches')
    for name, value in losses.items():
        print(f'  {name:<12} {value:.4f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
