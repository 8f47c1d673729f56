"""Training: the pretraining loop, its settings, runtime helpers, atomic checkpoints, torchrun/DDP helpers and
learning-rate schedules."""
from ecgvit.errors import RunStopped

from .checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_best,
    load_checkpoint,
    save_checkpoint,
)
from .compat import MethodSettingsError, check_same_method
from .config import TrainConfig, resolve_warmup_epochs
from .distributed import DistInfo, cleanup_distributed, init_distributed, is_main_process
from .loop import load_best_into, train
from .runtime import autocast_context, compile_blocks, machine_info, resolve_amp_dtype, seed_everything
from .sampler import ResumableSampler
from .schedules import WarmupCosine, WarmupPlateau, create_schedule

__all__ = [
    'CheckpointError', 'DistInfo', 'MethodSettingsError', 'ResumableSampler', 'RunStopped', 'TrainConfig',
    'WarmupCosine', 'WarmupPlateau', 'autocast_context', 'check_same_method', 'cleanup_distributed', 'compile_blocks',
    'create_schedule', 'init_distributed', 'is_main_process', 'latest_checkpoint', 'list_checkpoints', 'load_best',
    'load_best_into', 'load_checkpoint', 'machine_info', 'resolve_amp_dtype', 'resolve_warmup_epochs',
    'save_checkpoint', 'seed_everything', 'train',
]
