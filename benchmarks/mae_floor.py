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

``--run FOLDER`` (repeatable) also scores trained MAE branches (an ``ecgvit pretrain`` run folder's best weights) on
the very same records and masks, and compares each with the first run and with ``beat_copy`` by a paired bootstrap
over records (mean masked MSE of A minus B, 95% CI)::

    python benchmarks/mae_floor.py --cache ... --run ~/.cache/ecgvit-runs/posinit/small-mae \\
        --run ~/.cache/ecgvit-runs/posinit/small-mae-decoder_pos_initsincos
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/mae_floor.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ecgvit.data.cache import CachedECGDataset
from ecgvit.data.rpeaks import detect_r_peaks
from ecgvit.pretrain.mae import encode_masked, masking_ids

__all__ = ['PREDICTORS', 'predict', 'draw_masks', 'record_losses', 'floor_losses', 'load_run', 'load_mae_run',
           'run_losses', 'paired_mean_diff', 'print_report', 'main']

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


def draw_masks(n: int, length: int, patch_len: int = 25, mask_ratio: float = 0.75,
               seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """One MAE mask per record, as the MAE branch draws them (``masking_ids``), from one seeded generator: every
    scorer of a call sees the same masks. Returns ``(noise, mask)``: the ``(N, patches)`` ranking the masks come
    from (``encode_masked`` takes it) and ``mask`` (1 = masked patch)."""
    if n == 0:
        raise ValueError('No records to score: the split is empty.')
    noise = torch.rand(n, length // patch_len, generator=torch.Generator().manual_seed(seed))
    _, mask, _ = masking_ids(n, length // patch_len, mask_ratio, torch.device('cpu'), noise=noise)
    return noise, mask


def record_losses(signals: np.ndarray, sampling_rate: float, patch_len: int = 25, mask_ratio: float = 0.75,
                  seed: int = 0) -> Dict[str, np.ndarray]:
    """Masked-patch MSE of each predictor on each record of ``signals`` ``(N, C, L)``: ``{name: (N,) array}``."""
    _, mask = draw_masks(len(signals), signals.shape[-1], patch_len, mask_ratio, seed)
    masked = np.repeat(mask.numpy().astype(bool), patch_len, axis=1)  # (N, L) per sample
    out = {name: np.zeros(len(signals)) for name in PREDICTORS}
    for i in range(len(signals)):
        x = np.asarray(signals[i], dtype=np.float32)
        for name in PREDICTORS:
            err = (x - predict(name, x, ~masked[i], sampling_rate))[:, masked[i]]
            out[name][i] = float(np.mean(err.astype(np.float64) ** 2))
    return out


def floor_losses(signals: np.ndarray, sampling_rate: float, patch_len: int = 25, mask_ratio: float = 0.75,
                 seed: int = 0) -> Dict[str, float]:
    """Mean masked-patch MSE of each predictor over ``signals`` ``(N, C, L)``, one random mask per record.

    The masks are ``masking_ids``' (the MAE branch's own), drawn from one seeded generator, so two calls agree.
    """
    losses = record_losses(signals, sampling_rate, patch_len, mask_ratio, seed)
    return {name: float(v.mean()) for name, v in losses.items()}


def load_run(folder: Path) -> torch.nn.Module:
    """The pretrainer of an ``ecgvit pretrain`` run folder (its ``config.json``) with the run's best weights, in
    eval mode."""
    from ecgvit.pretrain import create_pretrainer
    from ecgvit.train.checkpoint import load_best

    folder = Path(folder).expanduser()
    config = folder / 'config.json'
    if not config.is_file():
        raise FileNotFoundError(f'{folder} is not an `ecgvit pretrain` run folder (no config.json).')
    cfg = json.loads(config.read_text())
    length = (cfg.get('args') or {}).get('num_samples')  # what the CLI built the encoder for
    model = create_pretrainer(cfg['method'], cfg['model'], encoder_kwargs={'img_size': length} if length else None,
                              **cfg.get('method_kwargs', {}))
    load_best(folder / 'checkpoints', model)
    return model.eval()


def load_mae_run(folder: Path) -> torch.nn.Module:
    """:func:`load_run`, for a run with an MAE branch."""
    model = load_run(folder)
    if getattr(model, 'mae', None) is None:
        cfg = json.loads((Path(folder).expanduser() / 'config.json').read_text())
        raise ValueError(f'{folder} trained {cfg["method"]!r}, which has no MAE branch to score.')
    return model


@torch.no_grad()
def run_losses(model: torch.nn.Module, signals: np.ndarray, patch_len: int = 25, mask_ratio: float = 0.75,
               seed: int = 0, batch_size: int = 32) -> np.ndarray:
    """Masked-patch MSE of a trained MAE branch (``model.mae`` on ``model.encoder``) on each record, under the masks
    of :func:`draw_masks` (the floors' own): ``(N,)``."""
    if model.mae.patch_len != patch_len:
        raise ValueError(f'The run encodes {model.mae.patch_len}-sample patches, not {patch_len}: pass '
                         f'--patch-len {model.mae.patch_len}.')
    positions = model.mae.decoder.decoder_pos_embed.shape[1]
    if signals.shape[-1] // patch_len != positions:
        raise ValueError(f'The run was trained on {positions * patch_len}-sample windows, these are '
                         f'{signals.shape[-1]}: score it on a cache of its own window length.')
    noise, _ = draw_masks(len(signals), signals.shape[-1], patch_len, mask_ratio, seed)
    out = np.zeros(len(signals))
    for i in range(0, len(signals), batch_size):
        x = torch.as_tensor(np.asarray(signals[i:i + batch_size], dtype=np.float32))
        latent, mask, ids_restore = encode_masked(model.encoder, x, mask_ratio, noise=noise[i:i + batch_size])
        pred = model.mae.forward_decoder(latent, ids_restore)
        for j in range(len(x)):  # per record: forward_loss averages over what it is given
            out[i + j] = float(model.mae.forward_loss(x[j:j + 1], pred[j:j + 1], mask[j:j + 1]))
    return out


def paired_mean_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> Dict[str, float]:
    """Mean of ``a`` minus mean of ``b`` over the same records, with a paired percentile bootstrap 95% CI."""
    from ecgvit.eval.metrics import bootstrap_weights  # the suite's resampling, so its CIs read the same

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    boot = bootstrap_weights(len(d), n_boot, seed) @ d / len(d)
    return {'diff': float(d.mean()), 'lo': float(np.quantile(boot, 0.025)), 'hi': float(np.quantile(boot, 0.975))}


def _verdict(r: Dict[str, float]) -> str:
    return 'lower' if r['hi'] < 0 else 'higher' if r['lo'] > 0 else 'no difference shown'


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--cache', required=True, help='a cache folder (build_cache / an ecgvit pretrain run\'s data)')
    p.add_argument('--split', default='val', help="'train', 'val', 'test' or 'all'")
    p.add_argument('--mask-ratio', type=float, default=0.75)
    p.add_argument('--patch-len', type=int, default=25)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--limit', type=int, default=None, help='score the first N records only')
    p.add_argument('--run', action='append', default=[], metavar='FOLDER',
                   help='also score this pretraining run\'s MAE branch (best weights) on the same masks (repeatable)')
    p.add_argument('--json', action='store_true', help='print JSON instead of a table')
    args = p.parse_args(argv)
    ds = CachedECGDataset(args.cache, split=None if args.split == 'all' else args.split)
    fs = float(ds.preprocessing.sampling_rate)
    signals = ds.signals[:args.limit]  # a view: None keeps every record
    per_record = record_losses(signals, fs, args.patch_len, args.mask_ratio, args.seed)
    for folder in args.run:
        model = load_mae_run(Path(folder))
        per_record[folder] = run_losses(model, signals, args.patch_len, args.mask_ratio, args.seed)
    losses = {name: float(v.mean()) for name, v in per_record.items()}
    pairs: List[Tuple[str, str]] = [(r, 'beat_copy') for r in args.run] + [(r, args.run[0]) for r in args.run[1:]]
    diffs = [{'a': a, 'b': b, **paired_mean_diff(per_record[a], per_record[b])} for a, b in pairs]
    n = len(signals)
    if args.json:
        print(json.dumps({'records': n, 'split': args.split, 'mask_ratio': args.mask_ratio, 'losses': losses,
                          'paired': diffs}))
        return 0
    print_report(f'{n} {args.split} records of {args.cache}, mask ratio {args.mask_ratio}, {args.patch_len}-sample '
                 f'patches', losses, diffs)
    return 0


def print_report(header: str, losses: Dict[str, float], diffs: List[Dict[str, Any]], width: int = 12) -> None:
    """The floors' table: one line per predictor or run (a run by its folder's name), then each paired difference."""
    print(header)
    for name, value in losses.items():
        print(f'  {Path(name).name:<{width}} {value:.4f}')
    for r in diffs:
        print(f'  {Path(r["a"]).name} minus {Path(r["b"]).name}: {r["diff"]:+.4f} [{r["lo"]:+.4f}, {r["hi"]:+.4f}] '
              f'{_verdict(r)}')


if __name__ == '__main__':
    raise SystemExit(main())
