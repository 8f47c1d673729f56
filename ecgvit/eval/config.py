"""Settings of the evaluation protocols: :class:`ProbeConfig` (linear probe) and :class:`FinetuneConfig`.

Both follow the seed ("same as pretraining"): a linear warm-up, then ReduceLROnPlateau (factor 0.9, patience 15) on
the validation loss, early stopping on it, and the best-validation model is tested. The warm-up is auto by default:
``min(20, 0.2 x epochs)`` (:func:`ecgvit.train.resolve_warmup_epochs`). Each protocol writes its resolved settings
into its results (``result['config']``).
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from ecgvit.options import RunOptions, documented, option

__all__ = ['FitOptions', 'ProbeConfig', 'FinetuneConfig', 'with_options']


@documented
@dataclass
class FitOptions(RunOptions):
    """What the probe and fine-tuning share: schedule, early stopping, bootstrap (and :class:`RunOptions`)."""
    warmup_epochs: Optional[float] = option(None, 'Linear warm-up epochs. Default auto: min(20, 0.2 x epochs) (the '
                                                  'seed: 20, as in pretraining).')
    schedule: str = option('plateau', 'After warm-up: ReduceLROnPlateau on the validation loss (seed) or cosine decay.',
                           choices=('plateau', 'cosine'))
    plateau_factor: float = option(0.9, 'ReduceLROnPlateau factor (seed: 0.9, as in pretraining).')
    plateau_patience: int = option(15, 'ReduceLROnPlateau patience in epochs (seed: 15, as in pretraining).')
    # Longer than the plateau patience, so the schedule gets to lower the rate before the run stops.
    early_stop_patience: int = option(20, 'Early stopping: epochs without a better validation loss.')
    n_boot: int = option(1000, 'Bootstrap resamples for the test metrics\' 95% CIs.')
    pooling: str = option('mean', "How the windows of one record (--crop windows) become one: 'mean' of their "
                                  'embeddings (the probe fits and tests on one pooled embedding per record) or of '
                                  'their logits (fine-tuning trains on windows and tests on the pooled logits of each '
                                  "record), 'max', or 'none' (every window its own item, metrics per window).",
                          choices=('mean', 'max', 'none'))
    leads: Optional[str] = option(None, 'The leads the data have (a reduced-lead device): a preset - 12, 6 (the limb '
                                        'leads I, II, III, aVR, aVL, aVF), 1 (lead I), precordial - or a comma list '
                                        'such as I,II,V2. Only these are read; the others are zero and masked before '
                                        'the encoder. Default: all 12 (or the subset a cache was built with).',
                                  metavar='LEADS')
    allow_untrained_leads: bool = option(False, 'Run on a lead subset the weights were not trained on (their '
                                                "pretrained cfg's lead_sets) with a warning, instead of refusing "
                                                '(e.g. to measure how a 12-lead model fares on 1 lead).')


@documented
@dataclass
class ProbeConfig(FitOptions):
    """Linear probe of a frozen encoder (:func:`ecgvit.eval.linear_probe`): embed once, fit a linear layer."""
    epochs: int = option(100, 'Maximum epochs over the cached features (early stopping may end sooner).')
    batch_size: int = option(128, 'Batch for embedding and fitting.', short='-b')
    lr: float = option(1e-3, 'Adam learning rate of the linear layer.')
    weight_decay: float = option(0.0, 'Adam weight decay.')
    normalize: bool = option(True, "Standardise the features with the training split's statistics.", cli=False)


@documented
@dataclass
class FinetuneConfig(FitOptions):
    """End-to-end fine-tuning with a new linear head (:func:`ecgvit.eval.finetune`)."""
    epochs: int = option(50, 'Maximum epochs (early stopping may end sooner).')
    batch_size: int = option(64, 'Training batch.', short='-b')
    lr: float = option(3e-4, 'AdamW learning rate of the head (blocks below get lr x layer_decay ** depth).')
    weight_decay: float = option(0.05, 'AdamW weight decay of the weight matrices (MAE fine-tuning recipe).')
    layer_decay: Optional[float] = option(0.75, 'Layer-wise lr decay: each block below the head trains at this '
                                                'fraction of the lr above; 1 (or None) disables.')
    clip_grad: Optional[float] = option(1.0, 'Gradient-norm clip; 0 (or None) disables.')


def with_options(config: Any, options: dict, warn: bool = True) -> Any:
    """``config`` with ``options`` replaced, its values checked (:func:`ecgvit.train.validate.check_option_values`).

    Args:
        config: A dataclass config (``ProbeConfig``, ``FinetuneConfig``); it is not changed.
        options: Field name -> new value.
        warn: Log the check's warnings; False for an early check of a config that is checked again where it is used.

    Returns:
        A copy with the options set.

    Raises:
        ValueError: an unknown option name (the message lists the valid ones), or a value out of its range.
    """
    from ecgvit.train.validate import check_option_values

    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f'Unknown {type(config).__name__} option(s) {unknown}: choose from {sorted(names)}.')
    config = dataclasses.replace(config, **options)
    check_option_values(config, warn)
    return config
