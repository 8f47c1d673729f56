"""Adam / AdamW built with torch's fused kernel wherever every parameter allows it."""
import logging
from typing import Any, Dict, Iterable, List, Union

import torch

__all__ = ['create_adam', 'fused_supported']

_logger = logging.getLogger(__name__)

# Device types with a fused Adam kernel (CPU since torch 2.4; older versions fall back, see create_adam).
_FUSED_DEVICES = ('cpu', 'cuda')

ParamsT = Union[Iterable[torch.Tensor], Iterable[Dict[str, Any]]]


def fused_supported(params: List[torch.Tensor]) -> bool:
    """Whether torch's fused Adam can step these parameters: all floating point, all on one supported device type.

    Args:
        params: The parameters the optimiser will step.
    """
    types = {p.device.type for p in params}
    return len(types) == 1 and types <= set(_FUSED_DEVICES) and all(p.is_floating_point() for p in params)


def create_adam(
        params: ParamsT,
        lr: float,
        weight_decay: float = 0.0,
        decoupled: bool = False,
) -> torch.optim.Optimizer:
    """Adam (or AdamW with ``decoupled=True``), fused when :func:`fused_supported` says so.

    torch steps CPU parameters one tensor at a time unless asked otherwise; the fused kernel does the same arithmetic
    in one pass over each tensor (several times faster on CPU: ``benchmarks/README.md``). Results
    agree with the unfused optimiser to float rounding.

    Args:
        params: Parameters or parameter groups, as for ``torch.optim.Adam``.
        lr: Learning rate.
        weight_decay: L2 penalty (Adam) or decoupled weight decay (AdamW).
        decoupled: Build ``AdamW`` instead of ``Adam``.

    Returns:
        The optimiser.
    """
    # Lists, not generators: the parameters are read twice (here and by torch).
    groups = [dict(g, params=list(g['params'])) if isinstance(g, dict) else g for g in params]
    flat = [p for g in groups for p in (g['params'] if isinstance(g, dict) else [g])]
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    if fused_supported(flat):
        try:
            return cls(groups, lr=lr, weight_decay=weight_decay, fused=True)
        except RuntimeError as e:  # torch < 2.4 has no fused kernel for CPU parameters
            _logger.debug('fused %s unavailable here (%s); using the unfused one', cls.__name__, e)
    return cls(groups, lr=lr, weight_decay=weight_decay)
