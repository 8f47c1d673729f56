"""Training: the pretraining loop, atomic checkpoints, torchrun/DDP helpers and learning-rate schedules."""
from .checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_best,
    load_checkpoint,
    save_checkpoint,
)
from .distributed import DistInfo, cleanup_distributed, init_distributed, is_main_process
from .loop import ResumableSampler, TrainConfig, load_best_into, resolve_amp_dtype, seed_everything, train
from .schedules import WarmupCosine, WarmupPlateau, create_schedule

__all__ = [
    'CheckpointError', 'DistInfo', 'ResumableSampler', 'TrainConfig', 'WarmupCosine', 'WarmupPlateau',
    'cleanup_distributed', 'create_schedule', 'init_distributed', 'is_main_process', 'latest_checkpoint',
    'list_checkpoints', 'load_best', 'load_best_into', 'load_checkpoint', 'resolve_amp_dtype', 'save_checkpoint',
    'seed_everything', 'train',
]
