"""A dataset wrapper that adds each record's median RR interval, detected once instead of once per batch.

Nextclip and Centerclip size their targets from the RR interval (:mod:`ecgvit.data.rpeaks`). Detecting R peaks
inside every training step is a noticeable share of a step (measured in ``benchmarks/README.md``), and the answer
never changes for a record, so :class:`WithRR` detects it once for the whole dataset, up front, and serves it with the
signal. Up front means a few seconds per thousand records at start-up, repeated by every DDP rank and on every
resume.
"""
from typing import Any, Dict

import numpy as np
import torch
from torch.utils.data import Dataset

from ecgvit.data.rpeaks import median_rr_samples

__all__ = ['WithRR']


class WithRR(Dataset):
    """Items become ``{'x': signal, 'y': label, 'rr_samples': median RR in samples (NaN where not found)}``.

    A dict batch is what the pretraining loop passes on: ``x`` is the input and every key other than ``x`` and ``y``
    goes to the model as a keyword argument, here ``rr_samples``. NaN marks records without a plausible RR (flat or
    very noisy), which the clip branches replace by their own fallback, exactly as when they detect in ``forward``.

    Args:
        dataset: Items ``x`` or ``(x, y, ...)`` with ``x`` a ``(leads, samples)`` tensor or array.
        sampling_rate: Hz of the signals.
        chunk: Records detected per call (the detector is vectorised over records).
    """

    def __init__(self, dataset: Dataset, sampling_rate: float, chunk: int = 256) -> None:
        if sampling_rate <= 0:
            raise ValueError(f'sampling_rate must be positive (Hz), got {sampling_rate}.')
        if chunk < 1:
            raise ValueError(f'chunk must be a positive number of records, got {chunk}.')
        self.dataset = dataset
        self.sampling_rate = float(sampling_rate)
        n = len(dataset)
        rr = np.full(n, np.nan, dtype=np.float32)
        signals = getattr(dataset, 'signals', None)  # a cache's memmap: read in slices, no per-item overhead
        sliceable = isinstance(signals, np.ndarray) and len(signals) == n
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            if sliceable:
                batch = np.asarray(signals[lo:hi], dtype=np.float32)
            else:
                batch = np.stack([np.asarray(_signal(dataset[i]), dtype=np.float32) for i in range(lo, hi)])
            rr[lo:hi] = median_rr_samples(batch, self.sampling_rate)
        self.rr_samples = torch.from_numpy(rr)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        item = self.dataset[i]
        out = {'x': _signal(item), 'rr_samples': self.rr_samples[i]}
        if isinstance(item, (tuple, list)) and len(item) > 1:
            out['y'] = item[1]
        return out

    def __getattr__(self, name: str) -> Any:
        # Everything else (preprocessing, labels, classes, ...) is the wrapped dataset's.
        if name == 'dataset':  # not set yet (unpickling): avoid recursing into ourselves
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def found_fraction(self) -> float:
        """Share of records with a detected RR (the rest use the clip branch's fallback)."""
        return float(torch.isfinite(self.rr_samples).float().mean()) if len(self) else 0.0


def _signal(item: Any) -> Any:
    return item[0] if isinstance(item, (tuple, list)) else item
