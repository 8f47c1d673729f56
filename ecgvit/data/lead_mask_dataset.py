"""A dataset wrapper that puts each record's lead mask in the batch, so a model can tell absent leads from flat ones.

A record that lacked a lead is zero-filled in that lead by the cache, and its ``lead_mask`` row says so
(:class:`~ecgvit.data.cache.CachedECGDataset`). Without the mask in the batch, the zeros would look like signal: the
MAE would learn to reconstruct them. :class:`WithLeadMask` serves the mask beside the signal; the pretraining loop
passes every batch key other than ``x`` and ``y`` to the model (``model(x, lead_mask=...)``).
"""
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ['WithLeadMask', 'with_lead_masks']


class WithLeadMask(Dataset):
    """Items become ``{'x': signal, 'y': label, 'lead_mask': (leads,) bool}`` (True = the record has the lead).

    Items that are already dicts (e.g. from :class:`~ecgvit.data.rr_dataset.WithRR`) keep their keys and gain
    ``lead_mask``; ``x`` alone or ``(x, y, ...)`` become ``{'x', 'y', 'lead_mask'}``.

    Args:
        dataset: The dataset to wrap.
        lead_mask: ``(N, leads)`` bool per item; default: ``dataset.lead_mask`` (a cache's, also through wrappers
            that forward attributes).

    Raises:
        ValueError: no mask is given and the dataset has none, or its shape does not fit the dataset.
    """

    def __init__(self, dataset: Dataset, lead_mask: Optional[Any] = None) -> None:
        if lead_mask is None:
            lead_mask = getattr(dataset, 'lead_mask', None)
            if lead_mask is None:
                raise ValueError(f'{type(dataset).__name__} has no lead_mask: pass WithLeadMask(dataset, '
                                 f'lead_mask=...) with one (N, leads) bool row per item (a CachedECGDataset has its '
                                 f'own).')
        mask = torch.from_numpy(np.ascontiguousarray(np.asarray(lead_mask, dtype=bool)))
        if mask.dim() != 2 or mask.shape[0] != len(dataset):
            raise ValueError(f'lead_mask must be (items, leads) = ({len(dataset)}, leads), got {tuple(mask.shape)}.')
        self.dataset = dataset
        self.lead_mask = mask

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        item = self.dataset[i]
        if isinstance(item, dict):
            out = dict(item)
        elif isinstance(item, (tuple, list)):
            out = {'x': item[0]}
            if len(item) > 1:
                out['y'] = item[1]
        else:
            out = {'x': item}
        out['lead_mask'] = self.lead_mask[i]
        return out

    def __getattr__(self, name: str) -> Any:
        # Everything else (preprocessing, labels, rr_samples, ...) is the wrapped dataset's.
        if name == 'dataset':  # not set yet (unpickling): avoid recursing into ourselves
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def missing_fraction(self) -> float:
        """Share of records lacking at least one lead (0.0: the mask changes no loss)."""
        return float((~self.lead_mask).any(dim=1).float().mean()) if len(self) else 0.0


def with_lead_masks(train_set: Dataset, val_set: Optional[Dataset]
                    ) -> Tuple[Dataset, Optional[Dataset], Optional[float]]:
    """Wrap a training and a validation set in :class:`WithLeadMask` when they come with lead masks (a cache's).

    Args:
        train_set: The training set; whether it has a ``lead_mask`` decides for both.
        val_set: The validation set, or None (left as is when empty or without a mask).

    Returns:
        ``(train_set, val_set, missing_fraction)``: wrapped, with the share of training records lacking a lead; the
        sets unchanged and None when the training set has no mask (nothing was zero-filled).
    """
    if getattr(train_set, 'lead_mask', None) is None:
        return train_set, val_set, None
    train_set = WithLeadMask(train_set)
    if val_set is not None and len(val_set) and getattr(val_set, 'lead_mask', None) is not None:
        val_set = WithLeadMask(val_set)
    return train_set, val_set, train_set.missing_fraction()
