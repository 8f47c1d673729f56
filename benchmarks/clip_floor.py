"""What simple predictors score on the Nextclip task: the floor a learned Nextclip decoder has to go below.

MAE-Nextclip's clip term (``ecgvit.pretrain.nextclip``) is the MSE between the half-cycle after a random point of a
z-scored ECG (resampled to ``clip_len`` samples) and what the decoder makes of the [CLS] token of the record zeroed from
that point on. This script draws the same clips the branch draws (its own ``clip_lengths`` / ``sample_starts``, the
record's median RR as in training) over a cache's windows and scores, per record, predictors that need no training and
see only what the encoder sees (the samples before the clip):

- ``zero``: the mean of a z-scored lead. A decoder that has learned nothing but the mean scores about this.
- ``previous_beat``: each target sample copied from the same time after the R peak one beat earlier (R peaks detected
  on the visible part only; linear interpolation between samples).
- ``beat_template``: the mean of that copy over every earlier visible beat.

    python benchmarks/clip_floor.py --cache ~/.cache/ecgvit-runs/pool_cache/cache-pool-default-360hz-3600-ae2d1802d4b4

``--run FOLDER`` (repeatable) also scores trained Nextclip branches (the best weights of an ``ecgvit pretrain``
MAE-Nextclip run folder) on the very same clips, and compares each with ``zero`` and ``beat_template`` by a paired
bootstrap over records (mean MSE of A minus B, 95% CI). ``--seeds`` averages each record over several clip
draws first (the draws are the noisy part: one clip per record).

Reading it: a training ``loss_nextclip`` near ``zero`` means the [CLS] route predicts the mean; below
``beat_template``, it has learned more than a beat template gives.
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/clip_floor.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from benchmarks.mae_floor import load_run, paired_mean_diff, print_report
from ecgvit.data.augment import crop_resize
from ecgvit.data.cache import CachedECGDataset
from ecgvit.data.rpeaks import detect_r_peaks, median_rr_samples
from ecgvit.pretrain.nextclip import NextclipBranch

__all__ = ['PREDICTORS', 'default_branch', 'draw_clips', 'target_positions', 'predict', 'record_losses',
           'load_clip_run', 'run_losses', 'main']

PREDICTORS = ('zero', 'previous_beat', 'beat_template')


def default_branch(length: int, sampling_rate: float) -> NextclipBranch:
    """A Nextclip branch with the method's default settings, for its clip draws (its decoder is not used)."""
    from ecgvit import create_model

    return NextclipBranch(create_model('ecg_vit_tiny', img_size=length), sampling_rate=sampling_rate)


def draw_clips(branch: NextclipBranch, x: torch.Tensor, rr: torch.Tensor, seed: int) -> Tuple[torch.Tensor, ...]:
    """The branch's own draw of one clip per record: ``start`` and ``span`` ``(B,)``, as in training.

    Args:
        branch: The Nextclip branch whose settings (cycle, fraction, context) define the task.
        x: ``(B, C, L)`` records.
        rr: ``(B,)`` median RR in samples, NaN where unknown (the branch's fallback then).
        seed: Seed of the draw.
    """
    span = branch.clip_lengths(x, rr)
    return branch.sample_starts(x, span, torch.Generator().manual_seed(seed)), span


def target_positions(start: int, span: int, clip_len: int) -> np.ndarray:
    """Where in the record each target sample is read (``crop_resize``'s sample centres, clamped to the clip)."""
    pos = start + (np.arange(clip_len) + 0.5) * (span / clip_len) - 0.5
    return np.clip(pos, start, start + span - 1)


def predict(name: str, visible: np.ndarray, positions: np.ndarray, sampling_rate: float,
            peaks: Optional[np.ndarray] = None) -> np.ndarray:
    """One predictor's ``(C, clip_len)`` guess from the samples before the clip.

    Args:
        name: One of :data:`PREDICTORS`.
        visible: ``(C, s)`` the record before the clip's start ``s`` (all the encoder sees).
        positions: ``(clip_len,)`` the target's sample positions (:func:`target_positions`), all ``>= s``.
        sampling_rate: Hz, for the R-peak detector.
        peaks: The R peaks of ``visible`` when already detected (both beat predictors use the same); None detects them.
    """
    if name not in PREDICTORS:
        raise ValueError(f'Unknown predictor {name!r}; valid: {", ".join(PREDICTORS)}.')
    chans, seen = visible.shape
    out = np.zeros((chans, len(positions)), dtype=np.float64)
    if name == 'zero':
        return out
    if peaks is None:
        peaks = detect_r_peaks(visible, sampling_rate)
    if len(peaks) < 2:  # no earlier beat to copy from: the mean
        return out
    phase = positions - peaks[-1]
    grid = np.arange(seen)
    count = np.zeros(len(positions))
    for p in peaks[-2::-1]:  # the previous beat first
        src = p + phase
        ok = (src >= 0) & (src <= seen - 1)
        if ok.any():
            out[:, ok] += np.stack([np.interp(src[ok], grid, lead) for lead in visible])
            count[ok] += 1
        if name == 'previous_beat':
            break
    return out / np.maximum(count, 1)


def _records(signals: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(signals, dtype=np.float32))
    return x.squeeze(2) if x.dim() == 4 else x


def record_losses(
        signals: np.ndarray,
        sampling_rate: float,
        seeds: Sequence[int] = (0,),
        branch: Optional[NextclipBranch] = None,
) -> Dict[str, np.ndarray]:
    """Each predictor's clip MSE per record ``(N,)``, averaged over the clip draws of ``seeds``.

    Args:
        signals: ``(N, C, L)`` (or ``(N, C, 1, L)``) z-scored records.
        sampling_rate: Hz of the records.
        seeds: One clip draw per record per seed.
        branch: Whose clip settings to draw with (default: the method's defaults, :func:`default_branch`).
    """
    x = _records(signals)
    if len(x) == 0:
        raise ValueError('No records to score: the split is empty.')
    branch = branch or default_branch(x.shape[-1], sampling_rate)
    rr = torch.as_tensor(median_rr_samples(x.numpy(), sampling_rate), dtype=torch.float32)
    out = {name: np.zeros(len(x)) for name in PREDICTORS}
    for seed in seeds:
        start, span = draw_clips(branch, x, rr, seed)
        target = crop_resize(x, start, span, branch.clip_len).numpy().astype(np.float64)
        for b in range(len(x)):
            s = int(start[b])
            positions = target_positions(s, int(span[b]), branch.clip_len)
            visible = x[b, :, :s].numpy().astype(np.float64)
            peaks = detect_r_peaks(visible, sampling_rate)  # once per clip, for both beat predictors
            for name in PREDICTORS:
                guess = predict(name, visible, positions, sampling_rate, peaks)
                out[name][b] += np.mean((target[b] - guess) ** 2)
    return {name: v / len(seeds) for name, v in out.items()}


def load_clip_run(folder: Path) -> torch.nn.Module:
    """The pretrainer of an ``ecgvit pretrain`` MAE-Nextclip run folder with the run's best weights."""
    from ecgvit.pretrain.centerclip import CenterclipBranch

    model = load_run(folder)
    clip = getattr(model, 'clip', None)
    if clip is None or isinstance(clip, CenterclipBranch):  # Centerclip sees after its clip: other floors
        raise ValueError(f'{folder} trained a method without a Nextclip branch: nothing to score here.')
    return model


@torch.no_grad()
def run_losses(model: torch.nn.Module, signals: np.ndarray, seeds: Sequence[int] = (0,),
               batch_size: int = 32) -> np.ndarray:
    """Clip MSE per record ``(N,)`` of a trained branch (``model.clip`` on ``model.encoder``, fp32), on the clips of
    :func:`record_losses` with the run's own branch (same seeds, same draws)."""
    x = _records(signals)
    fs = model.clip.sampling_rate
    rr = torch.as_tensor(median_rr_samples(x.numpy(), fs), dtype=torch.float32)
    out = np.zeros(len(x))
    for seed in seeds:
        start, span = draw_clips(model.clip, x, rr, seed)
        for i in range(0, len(x), batch_size):
            xb, sb, pb = x[i:i + batch_size], start[i:i + batch_size], span[i:i + batch_size]
            target = crop_resize(xb, sb, pb, model.clip.clip_len)
            pred = model.clip.decoder(model.encoder.forward_features(model.clip.hide(xb, sb, pb))[:, 0])
            out[i:i + len(xb)] += (pred.float() - target).pow(2).mean(dim=(1, 2)).numpy()
    return out / len(seeds)


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--cache', required=True, help="a cache folder (build_cache / an ecgvit pretrain run's data)")
    p.add_argument('--split', default='val', help="'train', 'val', 'test' or 'all'")
    p.add_argument('--seeds', type=int, default=3, help='clip draws per record, averaged (seeds 0..N-1)')
    p.add_argument('--limit', type=int, default=None, help='score the first N records only')
    p.add_argument('--run', action='append', default=[], metavar='FOLDER',
                   help="also score this pretraining run's clip branch (best weights) on the same clips (repeatable)")
    p.add_argument('--json', action='store_true', help='print JSON instead of a table')
    args = p.parse_args(argv)
    ds = CachedECGDataset(args.cache, split=None if args.split == 'all' else args.split)
    fs = float(ds.preprocessing.sampling_rate)
    signals = ds.signals[:args.limit]
    seeds = list(range(args.seeds))
    models = {folder: load_clip_run(Path(folder)) for folder in args.run}
    # a run's branch defines the task when one is given (its clip settings); the floors draw the same clips
    branch = next(iter(models.values())).clip if models else None
    per_record = record_losses(signals, fs, seeds, branch)
    for folder, model in models.items():
        per_record[folder] = run_losses(model, signals, seeds)
    losses = {name: float(v.mean()) for name, v in per_record.items()}
    pairs: List[Tuple[str, str]] = [(r, b) for r in args.run for b in ('zero', 'beat_template')]
    pairs += [('beat_template', 'zero')] + [(r, args.run[0]) for r in args.run[1:]]
    diffs = [{'a': a, 'b': b, **paired_mean_diff(per_record[a], per_record[b])} for a, b in pairs]
    if args.json:
        print(json.dumps({'records': len(signals), 'split': args.split, 'seeds': seeds, 'losses': losses,
                          'paired': diffs}))
        return 0
    print_report(f'{len(signals)} {args.split} records of {args.cache}, {len(seeds)} clip draw(s) each', losses, diffs,
                 width=14)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
