"""Resuming a run exactly: which checkpoint, the warm-up it started with, its counters, optimiser and every rank's
RNG stream."""
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import get_rng_state, latest_checkpoint, load_checkpoint, set_rng_state
from .config import TrainConfig, resolve_warmup_epochs
from .distributed import DistInfo
from .runtime import seed_everything

__all__ = ['checkpoint_to_resume', 'run_warmup_epochs', 'resume_or_seed', 'gather_rng', 'json_rng']

_logger = logging.getLogger(__name__)


def checkpoint_to_resume(config: TrainConfig, ckpt_dir: Path, info: DistInfo) -> Optional[Path]:
    """The checkpoint ``config.resume`` points at: the newest in ``ckpt_dir`` (None: a fresh start), or a path.

    Args:
        config: The run's settings (``resume``: False/None, True or 'auto', or a path).
        ckpt_dir: The run's checkpoint folder.
        info: This process's rank (only rank 0 logs a fresh start).
    """
    if not config.resume:
        return None
    if config.resume is True or config.resume == 'auto':
        found = latest_checkpoint(ckpt_dir)
        if found is None and info.is_main:
            _logger.info('resume: no checkpoint in %s yet, starting fresh', ckpt_dir)
        return found
    return Path(config.resume)


def run_warmup_epochs(config: TrainConfig, saved: Optional[Dict[str, Any]]) -> float:
    """The run's warm-up: as given; else the resumed run's own (its schedule is under way); else auto.

    Args:
        config: The run's settings (``warmup_epochs`` None is auto).
        saved: The resumed checkpoint's state, or None for a fresh run.
    """
    if config.warmup_epochs is None and saved is not None:
        recorded = ((saved.get('config') or {}).get('train') or {}).get('warmup_epochs')
        if recorded is not None:
            return float(recorded)
    return resolve_warmup_epochs(config.warmup_epochs, config.epochs)


def resume_or_seed(resume_from: Optional[Path], module: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
                   steps_per_epoch: int, config: TrainConfig, info: DistInfo) -> Dict[str, Any]:
    """The loop's counters: restored with weights, optimiser, schedule and RNGs from a checkpoint, or fresh.

    Args:
        resume_from: The checkpoint folder, or None for a fresh start (seeded with ``config.seed + rank``).
        module: The model, loaded in place.
        optimizer: Its optimiser, loaded in place (its fused/foreach choice stays this run's).
        schedule: The lr schedule, loaded in place.
        steps_per_epoch: This run's steps per epoch (a checkpoint written with others is refused).
        config: The run's settings.
        info: This process's rank and the world size (a checkpoint of another world size is refused).

    Raises:
        ValueError: the checkpoint was written with other steps per epoch or another number of processes.
    """
    state: Dict[str, Any] = {'epoch': 0, 'batch_in_epoch': 0, 'global_step': 0, 'optimizer_steps': 0,
                             'skipped_steps': 0, 'best_val_loss': None, 'best_epoch': None, 'amp': None,
                             'elapsed_s': 0.0}  # training seconds before this segment (0 for older checkpoints)
    if resume_from is None:
        seed_everything(config.seed + info.rank)
        return state
    loaded = load_checkpoint(resume_from, module, optimizer, restore_rng=True)
    for group in optimizer.param_groups:  # the kernel is this run's choice, not the checkpoint's (older: unfused)
        group['fused'], group['foreach'] = optimizer.defaults.get('fused'), optimizer.defaults.get('foreach')
    saved = loaded.get('config') or {}
    if saved.get('steps_per_epoch') not in (None, steps_per_epoch) or \
            saved.get('world_size') not in (None, info.world_size):
        raise ValueError(
            f'Cannot resume from {loaded["path"]}: it was written with {saved.get("steps_per_epoch")} steps per '
            f'epoch on {saved.get("world_size")} process(es), this run has {steps_per_epoch} on '
            f'{info.world_size}. Resume with the same --batch-size, data and number of processes (or start a new '
            f'--output).')
    schedule.load_state_dict(loaded['schedule'])
    for k in state:
        state[k] = loaded.get(k, state[k])
    if info.distributed and info.rank > 0:
        ranks = loaded.get('rng_other_ranks') or []
        if len(ranks) == info.world_size - 1:
            r = ranks[info.rank - 1]
            set_rng_state({k: torch.tensor(v, dtype=torch.uint8) for k, v in r['torch'].items()}, r['meta'])
    if info.is_main:
        _logger.info('resumed from %s at step %d (epoch %d, batch %d)', loaded['path'], state['global_step'],
                     state['epoch'], state['batch_in_epoch'])
    return state


def gather_rng(info: DistInfo) -> List[Any]:
    """Every rank's RNG state (rank order), so a distributed resume restores each rank's own stream.

    Args:
        info: This process's rank and the world size; every rank must call this (it is a collective).
    """
    mine = get_rng_state()
    if not info.distributed:
        return [mine]
    mine = ({k: v.cpu() for k, v in mine[0].items()}, mine[1])
    gathered: List[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, mine)
    return gathered


def json_rng(states: List[Any]) -> List[Any]:
    """The RNG states of ranks 1 and up as JSON (torch states as byte lists, 5 KB each), for ``state.json``.

    Args:
        states: :func:`gather_rng`'s list; rank 0's state is left out (it goes to safetensors as usual).
    """
    return [{'torch': {k: v.tolist() for k, v in t.items()}, 'meta': m} for t, m in states[1:]]
