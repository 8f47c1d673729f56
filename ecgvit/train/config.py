"""Settings of a pretraining run (:class:`TrainConfig`) and the warm-up rule shared with the evaluation protocols.

Seed recipe: Adam, lr 2e-4, batch 64, 20 linear warm-up epochs, then ReduceLROnPlateau (factor 0.9, patience 15) on
the validation loss.
"""
from dataclasses import dataclass, fields
from typing import Any, Dict, Optional

from ecgvit.options import RunOptions, documented, option

__all__ = ['TrainConfig', 'resolve_warmup_epochs', 'SEED_WARMUP_EPOCHS', 'AUTO_WARMUP_FRACTION']

SEED_WARMUP_EPOCHS = 20.0  # seed: 20 linear warm-up epochs
# An auto warm-up takes at most this share of the run, so a short run is not all warm-up; from 100 epochs on it is
# the seed's 20 epochs.
AUTO_WARMUP_FRACTION = 0.2


def resolve_warmup_epochs(warmup_epochs: Optional[float], epochs: int) -> float:
    """The warm-up of a run of ``epochs`` epochs: an explicit value is kept; None ("auto") is
    ``min(20, 0.2 * epochs)``, the seed's 20 epochs once the run is long enough (>= 100 epochs).

    Args:
        warmup_epochs: The warm-up asked for, in epochs (>= 0), or None for auto.
        epochs: The run's length in epochs.

    Raises:
        ValueError: a negative ``warmup_epochs``.

    Example:
        >>> resolve_warmup_epochs(None, 10), resolve_warmup_epochs(None, 710), resolve_warmup_epochs(3, 10)
        (2.0, 20.0, 3.0)
    """
    if warmup_epochs is not None:
        if warmup_epochs < 0:
            raise ValueError(f'warmup_epochs must be >= 0 (or None for auto), got {warmup_epochs}.')
        return float(warmup_epochs)
    return min(SEED_WARMUP_EPOCHS, AUTO_WARMUP_FRACTION * float(epochs))


@documented
@dataclass
class TrainConfig(RunOptions):
    """Settings of a pretraining run (all JSON-serialisable; written to ``config.json`` beside the outputs).

    Each field's help (``dataclasses.fields(TrainConfig)[i].metadata['help']``) is also its ``ecgvit pretrain``
    flag's help; the run settings shared with every command (seed, device, amp, num_workers, progress) come from
    :class:`ecgvit.options.RunOptions`.
    """
    output_dir: str = option('output/pretrain', 'Run folder (metrics.csv, checkpoints/, config.json, summary.json).',
                             cli=False)
    epochs: int = option(10, 'Training epochs (seed: 710 for MAE-MoCo).')
    batch_size: int = option(64, 'Batch per process (seed: 64); under torchrun the global batch is this times the '
                                 'world size.', short='-b')
    lr: float = option(2e-4, 'Adam learning rate (seed: 2e-4).')
    weight_decay: float = option(0.0, 'Adam weight decay (seed: 0).')
    warmup_epochs: Optional[float] = option(None, 'Linear warm-up epochs; may be fractional. Default auto: '
                                                  'min(20, 0.2 x epochs), the seed\'s 20 from 100 epochs on; the '
                                                  'value used is written to config.json.')
    schedule: str = option('plateau', 'After warm-up: ReduceLROnPlateau on the validation loss (seed) or cosine decay.',
                           choices=('plateau', 'cosine'))
    plateau_factor: float = option(0.9, 'ReduceLROnPlateau factor (seed: 0.9).')
    plateau_patience: int = option(15, 'ReduceLROnPlateau patience in epochs (seed: 15).')
    clip_grad: Optional[float] = option(None, 'Clip the global gradient norm to this value (default: no clipping).')
    save_every: int = option(500, 'Write a resumable checkpoint every N steps (0: only at the end of the run).')
    save_every_epochs: int = option(1, 'Also write one at the end of every N epochs (0: off), so a run on a small '
                                       'data set loses at most an epoch when its machine goes away.')
    keep_last: int = option(3, 'Resumable checkpoints to keep (0 keeps all); the best weights are kept apart.')
    log_every: int = option(10, 'Steps between CSV/TensorBoard rows.')
    resume: Any = option(False, 'Continue from the newest checkpoint in output_dir (starts fresh if there is none), '
                                'or from this checkpoint path.', cli=False)
    val_seed: int = option(12345, 'Seed of the validation passes\' masks/augmentations, so epochs compare on equal '
                                  'terms.', cli=False)
    find_unused_parameters: Optional[bool] = option(
        None, "DDP option: None asks the model (a pretrainer's skips_parameters: True only where a step leaves some "
              'parameters without a gradient, e.g. MAE alone, which never uses [CLS]; True for any other module); '
              'True or False forces it. Needless, it costs a graph traversal per step and a warning per process.',
        cli=False)
    compile: bool = option(False, 'torch.compile every transformer block in place (needs a C++ compiler on CPU; the '
                                  'first steps compile).')
    reuse_cpu_memory: bool = option(False, 'On CPU, let glibc recycle freed tensors instead of page-faulting fresh '
                                           'memory for every large activation (ecgvit.train.cpu_memory; measured in '
                                           'benchmarks/README.md). Process-wide and cannot be undone, so off in the '
                                           'API; `ecgvit pretrain`, a process of its own, turns it on.', cli=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'TrainConfig':
        """Build from a dict of settings (e.g. the ``train`` part of a run's config.json).

        Args:
            d: Field name -> value (a subset: the others keep their defaults).

        Raises:
            ValueError: an unknown field (it would otherwise be dropped without a word).
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f'Unknown training option(s) {unknown}; valid ones are {sorted(names)}.')
        return cls(**d)
