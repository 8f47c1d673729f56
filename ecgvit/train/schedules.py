"""Learning-rate schedules: linear warm-up, then ReduceLROnPlateau (the seed's recipe) or cosine decay.

Both are stepped once per optimiser step (``step()``) and told the validation loss once per epoch
(``epoch_end(val_loss)``). Their state is plain numbers, so checkpoints keep it in JSON.
"""
import math
from typing import Any, Dict, List, Optional

from torch.optim import Optimizer

__all__ = ['WarmupPlateau', 'WarmupCosine', 'create_schedule']


class _WarmupBase:
    def __init__(self, optimizer: Optimizer, warmup_steps: int) -> None:
        if warmup_steps < 0:
            raise ValueError(f'warmup_steps must be >= 0, got {warmup_steps}.')
        self.optimizer = optimizer
        self.warmup_steps = int(warmup_steps)
        # timm's param_groups_layer_decay tags each group with lr_scale; the base lr is the group's lr at creation.
        self.base_lrs: List[float] = [float(g['lr']) for g in optimizer.param_groups]
        self.lr_scales: List[float] = [float(g.get('lr_scale', 1.0)) for g in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def factor(self) -> float:
        raise NotImplementedError

    def _apply(self) -> None:
        f = self.factor()
        for group, base, scale in zip(self.optimizer.param_groups, self.base_lrs, self.lr_scales):
            group['lr'] = base * scale * f

    @property
    def in_warmup(self) -> bool:
        """Whether fewer than ``warmup_steps`` optimiser steps have been taken."""
        return self.step_count < self.warmup_steps

    def warmup_factor(self) -> float:
        """The warm-up's share of the base lr at this step: ``(step + 1) / warmup_steps``, 1 once warm-up is over."""
        if self.warmup_steps == 0:
            return 1.0
        # Step k of warm-up trains at (k + 1) / W of the base lr: the first step is never at lr 0.
        return min(1.0, (self.step_count + 1) / self.warmup_steps)

    def step(self) -> None:
        """Advance one optimiser step."""
        self.step_count += 1
        self._apply()

    def epoch_end(self, val_loss: Optional[float] = None) -> None:
        """Called after each epoch's validation (no-op unless the schedule watches the loss).

        Args:
            val_loss: The epoch's validation loss, or None when the run has no validation.
        """

    def get_last_lr(self) -> List[float]:
        """The learning rate each parameter group has now (as ``torch.optim.lr_scheduler`` schedules report it)."""
        return [float(g['lr']) for g in self.optimizer.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        """Every attribute but the optimiser: plain numbers and lists, so a checkpoint keeps them in JSON."""
        return {k: v for k, v in self.__dict__.items() if k != 'optimizer'}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` and set the optimiser's learning rates to match it.

        Args:
            state: What :meth:`state_dict` returned.
        """
        self.__dict__.update(state)
        self._apply()


class WarmupPlateau(_WarmupBase):
    """Linear warm-up over ``warmup_steps`` optimiser steps, then ReduceLROnPlateau on the validation loss.

    Seed defaults: 20 warm-up epochs, factor 0.9, patience 15 (epochs without a relative improvement of
    ``threshold``). The plateau counter only starts once warm-up is over, as in the seed.

    Args:
        optimizer: The optimiser whose groups' learning rates are set (each group's lr at creation is its base lr,
            times its ``lr_scale`` if it has one).
        warmup_steps: Optimiser steps of linear warm-up (0: none).
        factor: What the lr is multiplied by on a plateau, in (0, 1).
        patience: Epochs after warm-up without a better validation loss that are tolerated; the next one lowers the lr.
        threshold: Relative improvement of the best validation loss that counts as better.
        min_lr: Floor of the largest group's lr (0: none).

    Example:
        >>> import torch
        >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        >>> sched = WarmupPlateau(opt, warmup_steps=10)
        >>> round(sched.get_last_lr()[0], 6)
        0.0001
    """

    def __init__(
            self,
            optimizer: Optimizer,
            warmup_steps: int,
            factor: float = 0.9,  # seed
            patience: int = 15,  # seed
            threshold: float = 1e-4,
            min_lr: float = 0.0,
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f'plateau factor must be in (0, 1), got {factor}.')
        self.factor_ = float(factor)
        self.patience = int(patience)
        self.threshold = float(threshold)
        self.min_lr = float(min_lr)
        self.plateau_scale = 1.0
        self.best: Optional[float] = None
        self.num_bad_epochs = 0
        super().__init__(optimizer, warmup_steps)

    def factor(self) -> float:
        """The share of the base lr to train at now: warm-up times the plateau reductions so far, above ``min_lr``."""
        scale = self.warmup_factor() * self.plateau_scale
        if self.min_lr > 0 and self.base_lrs:
            scale = max(scale, self.min_lr / max(self.base_lrs))
        return scale

    def epoch_end(self, val_loss: Optional[float] = None) -> None:
        """Count an epoch without a better validation loss, and lower the lr once there were more than ``patience``.

        Args:
            val_loss: The epoch's validation loss; None, a non-finite loss, or any loss during warm-up is ignored.
        """
        if val_loss is None or self.in_warmup or not math.isfinite(val_loss):
            return
        if self.best is None or val_loss < self.best * (1.0 - self.threshold):
            self.best = float(val_loss)
            self.num_bad_epochs = 0
            return
        self.num_bad_epochs += 1
        if self.num_bad_epochs > self.patience:
            self.plateau_scale *= self.factor_
            self.num_bad_epochs = 0
            self._apply()


class WarmupCosine(_WarmupBase):
    """Linear warm-up, then half-cosine decay to ``min_factor`` of the base lr at ``total_steps``.

    Args:
        optimizer: The optimiser whose groups' learning rates are set (each group's lr at creation is its base lr,
            times its ``lr_scale`` if it has one).
        warmup_steps: Optimiser steps of linear warm-up (0: none).
        total_steps: The step at which the decay reaches ``min_factor`` (it stays there after), at least 1.
        min_factor: The final lr as a share of the base lr.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, min_factor: float = 0.0) -> None:
        if total_steps < 1:
            raise ValueError(f'total_steps must be >= 1, got {total_steps}.')
        self.total_steps = int(total_steps)
        self.min_factor = float(min_factor)
        super().__init__(optimizer, warmup_steps)

    def factor(self) -> float:
        """The share of the base lr to train at now: the warm-up ramp, then the cosine from 1 to ``min_factor``."""
        if self.in_warmup:
            return self.warmup_factor()
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (self.step_count - self.warmup_steps) / span)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def create_schedule(
        name: str,
        optimizer: Optimizer,
        warmup_steps: int,
        total_steps: int,
        plateau_factor: float = 0.9,
        plateau_patience: int = 15,
) -> _WarmupBase:
    """Build a schedule by name: 'plateau' (seed) or 'cosine'.

    Args:
        name: 'plateau' (:class:`WarmupPlateau`) or 'cosine' (:class:`WarmupCosine`).
        optimizer: The optimiser whose learning rates the schedule sets.
        warmup_steps: Optimiser steps of linear warm-up.
        total_steps: Optimiser steps of the whole run (the cosine's end; unused by 'plateau').
        plateau_factor: Lr multiplier on a plateau ('plateau' only).
        plateau_patience: Epochs without a better validation loss before it applies ('plateau' only).

    Returns:
        The schedule, already applied to the optimiser (its lr is the first warm-up step's).

    Raises:
        ValueError: unknown ``name``.
    """
    if name == 'plateau':
        return WarmupPlateau(optimizer, warmup_steps, factor=plateau_factor, patience=plateau_patience)
    if name == 'cosine':
        return WarmupCosine(optimizer, warmup_steps, total_steps)
    raise ValueError(f"Unknown lr schedule {name!r}: use 'plateau' (the seed's) or 'cosine'.")
