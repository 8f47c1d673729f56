"""What a DataLoader batch holds for the model: the signal tensor and the keyword arguments beside it."""
from typing import Any, Dict

import torch

__all__ = ['batch_inputs', 'batch_kwargs']


def batch_inputs(batch: Any) -> torch.Tensor:
    """The signal tensor of a batch: datasets may yield ``x`` alone or ``(x, y, ...)``.

    Args:
        batch: A tensor, a tuple or list whose first item is ``x``, or a dict with key ``'x'``.
    """
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        return batch['x']
    return batch


def batch_kwargs(batch: Any, device: torch.device) -> Dict[str, Any]:
    """The model's keyword arguments in a batch, moved to ``device``.

    Args:
        batch: What the DataLoader yields. A dict passes every entry but ``x`` and ``y`` (e.g. ``rr_samples`` from
            :class:`ecgvit.data.rr_dataset.WithRR`); tuples and tensors pass nothing.
        device: Where the model runs.

    Returns:
        Keyword arguments for ``model(x, **kwargs)``.
    """
    if not isinstance(batch, dict):
        return {}
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items() if k not in ('x', 'y')}
