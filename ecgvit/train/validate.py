"""Validation of pretraining settings (:class:`~ecgvit.train.config.TrainConfig`), option by option.

Without it, ``warmup_epochs=nan`` failed deep inside the schedule with a raw ``ValueError: cannot convert float NaN to
integer``, ``save_every=-1`` saved a checkpoint at every step, and ``output_dir=''`` trained into the current folder.
:func:`validate_train_config` raises one ValueError naming the field, its ``ecgvit pretrain`` option, the bad value
and what is allowed. It only reads attributes, so it works on a TrainConfig or anything shaped like one.
"""
import logging
import math
from typing import Any, Dict, Tuple

from ecgvit.options import flag_name

__all__ = ['validate_train_config', 'check_option_values']

_logger = logging.getLogger(__name__)

_CHOICES: Dict[str, Tuple[str, ...]] = {'schedule': ('plateau', 'cosine'), 'amp': ('auto', 'bf16', 'fp32'),
                                      'pooling': ('mean', 'max', 'none')}
# field -> (smallest allowed int, what it means)
_INTS: Dict[str, Tuple[int, str]] = {
    'epochs': (1, 'at least one epoch'),
    'batch_size': (1, 'at least one record per batch'),
    'plateau_patience': (0, '0 or more epochs'),
    'seed': (-2 ** 63, 'an integer'),
    'save_every': (0, 'a step count, or 0 for a checkpoint only at the end of the run'),
    'save_every_epochs': (0, 'an epoch count, or 0 for no end-of-epoch checkpoints'),
    'keep_last': (0, 'a count, or 0 to keep every checkpoint'),
    'log_every': (1, 'at least every step'),
    'num_workers': (0, '0 (load in the main process) or more worker processes'),
    'val_seed': (-2 ** 63, 'an integer'),
    # The probe's and fine-tuning's (ecgvit.eval.FitOptions): absent from a TrainConfig, so skipped there.
    'early_stop_patience': (0, '0 or more epochs without a better validation loss'),
    'n_boot': (0, '0 (no confidence intervals) or more bootstrap resamples'),
}


def _name(field: str) -> str:
    # The flag is derived from the field, as ecgvit.options builds it: nothing to keep in step by hand (the output
    # folder is the one option the command line names after the command, not the field).
    return f'{"-o/--output" if field == "output_dir" else flag_name(field)} ({field})'


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_train_config(config: Any, warn: bool = True) -> None:
    """Raise a ValueError for the first setting of ``config`` that no run can use.

    Args:
        config: A :class:`~ecgvit.train.loop.TrainConfig` (or an object with the same attributes).
        warn: Log the warnings of :func:`check_option_values`; False for an early check whose config is checked
            again where it is used (the command line before building its data, then ``train()``).

    Raises:
        ValueError: the message names the option (``--warmup-epochs (warmup_epochs)``), the value and the range.
    """
    output = getattr(config, 'output_dir', None)
    if output is None or not str(output).strip():
        _fail(config, 'output_dir', 'a folder for the run (an empty path would train into the current folder)')
    check_option_values(config, warn)


def _fail(config: Any, field: str, want: str) -> None:
    raise ValueError(f'{_name(field)} must be {want}, got {getattr(config, field)!r}.')


def check_option_values(config: Any, warn: bool = True) -> None:
    """Raise a ValueError for the first optimisation setting of ``config`` out of its range.

    Checks the fields a config has among those of :class:`~ecgvit.train.TrainConfig`,
    :class:`~ecgvit.eval.ProbeConfig` and :class:`~ecgvit.eval.FinetuneConfig` (epochs, batch size, lr, decays,
    schedule, patience, bootstrap resamples, ...); a missing field is not checked. Logs a warning for a warm-up longer
    than the run (the rate would never reach ``lr``).

    Args:
        config: Any of those configs, or an object with some of the same attributes.
        warn: Log the warning; False for an early check of a config that is checked again where it is used.

    Raises:
        ValueError: the message names the option (``--n-boot (n_boot)``), the value and the range.
    """
    def fail(field: str, want: str) -> None:
        _fail(config, field, want)

    for field, (low, want) in _INTS.items():
        value = getattr(config, field, low)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            fail(field, want)
    lr = getattr(config, 'lr', 1.0)
    if not _number(lr) or not math.isfinite(lr) or lr <= 0:
        fail('lr', 'a finite number above 0 (seed: 2e-4)')
    decay = getattr(config, 'weight_decay', 0.0)
    if not _number(decay) or not math.isfinite(decay) or decay < 0:
        fail('weight_decay', 'a finite number, 0 or more')
    warmup = getattr(config, 'warmup_epochs', 0.0)
    if warmup is not None and (not _number(warmup) or not math.isfinite(warmup) or warmup < 0):  # None: auto
        fail('warmup_epochs', 'a finite number of epochs, 0 or more, or None for min(20, 0.2 x epochs)')
    factor = getattr(config, 'plateau_factor', 0.5)
    if not _number(factor) or not 0 < factor < 1:
        fail('plateau_factor', 'a factor between 0 and 1, exclusive (seed: 0.9)')
    clip = getattr(config, 'clip_grad', None)
    if clip is not None and (not _number(clip) or not math.isfinite(clip) or clip < 0):
        fail('clip_grad', 'a finite gradient-norm bound above 0 (or None / 0 for no clipping); a negative one '
                          'would reverse the update')
    layer_decay = getattr(config, 'layer_decay', None)
    if layer_decay is not None and (not _number(layer_decay) or not 0 < layer_decay <= 1):
        fail('layer_decay', 'a factor above 0 and at most 1 (1 or None: every block at the same lr); above 1 the '
                            'lower blocks would train faster than the head')
    epochs = getattr(config, 'epochs', None)
    if warn and warmup is not None and _number(epochs) and warmup > epochs:
        _logger.warning('%s is %g epochs, longer than the run (%s epochs): the learning rate never reaches %s.',
                        _name('warmup_epochs'), warmup, epochs, _name('lr'))
    for field, allowed in _CHOICES.items():
        if getattr(config, field, allowed[0]) not in allowed:
            fail(field, f'one of {", ".join(allowed)}')
