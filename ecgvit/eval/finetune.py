"""End-to-end fine-tuning: encoder + linear head on [CLS], every weight trains (seed protocol), with an optional
layer-wise learning-rate decay (timm's ``param_groups_layer_decay``, driven by the encoder's ``group_matcher``).

Records longer than the model input arrive as several windows (``crop='windows'``): training and early stopping see
every window as an item labelled with its record's label; the test averages the windows' logits per record
(``FinetuneConfig.pooling``: 'mean', 'max', or 'none' for per-window metrics), so the metrics are per record."""
import dataclasses
import time
from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ecgvit.train.optim import create_adam
from ecgvit.train.runtime import resolve_amp_dtype, seed_everything

from .common import TaskInfo, fit_classifier, infer_task
from .config import FinetuneConfig, with_options
from .leads import check_encoder_leads, lead_mask_tensor, resolve_data_leads
from .linear_probe import save_eval_outputs
from .metrics import bootstrap_metrics, primary_metric
from .pooling import describe_pooling, predict_records

__all__ = ['finetune', 'finetune_param_groups']


def finetune_param_groups(model: nn.Module, weight_decay: float, layer_decay: Optional[float]):
    """Parameter groups for fine-tuning: no weight decay on norms/biases/embeddings; per-block lr scales.

    Args:
        model: An ecgvit encoder with its classification head.
        weight_decay: Decoupled weight decay for the weight matrices.
        layer_decay: Each block below the head trains at ``layer_decay`` times the lr of the one above
            (e.g. 0.75); None or 1.0 trains all at the same lr.
    """
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay

    skip = model.no_weight_decay() if hasattr(model, 'no_weight_decay') else set()
    if layer_decay is not None and layer_decay != 1.0 and hasattr(model, 'group_matcher'):
        return param_groups_layer_decay(model, weight_decay=weight_decay, no_weight_decay_list=skip,
                                        layer_decay=layer_decay)
    return param_groups_weight_decay(model, weight_decay=weight_decay, no_weight_decay_list=skip)


def finetune(
        encoder: nn.Module,
        train_set: Dataset,
        val_set: Dataset,
        test_set: Dataset,
        task: Optional[TaskInfo] = None,
        config: Optional[FinetuneConfig] = None,
        output_dir: Optional[str] = None,
        *,
        random_init: bool = False,
        **options: Any,
) -> Dict[str, Any]:
    """Fine-tune ``encoder`` end to end with a new linear head, early-stopped on the validation loss.

    On a lead subset (``leads='6'``, or data read with ``Preprocessing(input_leads=...)``) every training, validation
    and test batch is masked to the subset before the encoder, after checking that the weights were trained on it
    (``lead_sets`` in their pretrained cfg; ``allow_untrained_leads=True`` runs anyway, with a warning).

    Args:
        encoder: The encoder (modified in place: it gets the task's head and the fine-tuned weights).
        train_set, val_set, test_set: Labelled datasets yielding ``(x, y)``.
        task: Label space (default: read from ``train_set``).
        config: Settings (default: :class:`~ecgvit.eval.FinetuneConfig`, which documents each one).
        output_dir: If set, results.json, predictions.npz and the fine-tuned model.safetensors are written there.
        random_init: The encoder is at its random initialisation: any lead subset is allowed (nothing to contradict).
        **options: :class:`~ecgvit.eval.FinetuneConfig` fields overriding ``config`` (e.g. ``epochs=10``).

    Returns:
        Test metrics with ``_lo``/``_hi`` CI bounds, plus best_epoch, epochs_run, best_val_loss, time_s, the leads
        used (``leads``, ``leads_trained``), and the resolved settings under ``config`` (the warm-up actually used
        included).

    Raises:
        ValueError: an empty split, a batch larger than the training split, an unknown option, leads the data do not
            hold.
        UntrainedLeadsError: the weights were not trained on the lead subset (and ``allow_untrained_leads`` is off).

    Example:
        >>> # result = finetune(ecgvit.create_model('ecg_vit_tiny'), train_ds, val_ds, test_ds, epochs=10)
    """
    cfg = with_options(config or FinetuneConfig(), options)
    t0 = time.time()
    dev = torch.device(cfg.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    task = task or infer_task(train_set)
    for name, ds in (('train', train_set), ('val', val_set), ('test', test_set)):
        if ds is None or len(ds) == 0:
            raise ValueError(f'The {name} split is empty: fine-tuning needs train, val and test records.')
    batch_size = cfg.batch_size
    if batch_size > len(train_set):
        raise ValueError(f'batch_size {batch_size} is larger than the training split ({len(train_set)} records): '
                         f'use --batch-size {len(train_set)} or less.')
    leads, leads_trained = check_encoder_leads(encoder, resolve_data_leads(cfg.leads, train_set, val_set, test_set),
                                               cfg.allow_untrained_leads, random_init=random_init)
    mask = lead_mask_tensor(leads)
    seed_everything(cfg.seed)
    encoder.reset_classifier(task.num_classes)
    encoder.to(dev)
    for p in encoder.parameters():
        p.requires_grad_(True)
    amp_dtype = resolve_amp_dtype(cfg.amp, dev)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=len(train_set) > batch_size,
                              num_workers=cfg.num_workers, generator=gen)
    val_loader = DataLoader(val_set, batch_size=batch_size, num_workers=cfg.num_workers)
    optimizer = create_adam(finetune_param_groups(encoder, cfg.weight_decay, cfg.layer_decay), cfg.lr, decoupled=True)
    fit = fit_classifier(encoder, train_loader, val_loader, task, optimizer, cfg, device=dev, amp_dtype=amp_dtype,
                         clip_grad=cfg.clip_grad or None, desc='finetune', lead_mask=mask)
    # Trained and early-stopped on windows; tested per record on the pooled window logits (cfg.pooling).
    y, prob, test_loss, test_ids = predict_records(encoder, test_set, task, dev, amp_dtype, cfg.pooling, batch_size,
                                                   cfg.num_workers, lead_mask=mask)
    result: Dict[str, Any] = {'protocol': 'finetune', 'multilabel': task.multilabel,
                              'num_classes': task.num_classes, 'label_names': task.label_names,
                              'primary_metric': primary_metric(task.multilabel),
                              'amp': 'bf16' if amp_dtype == torch.bfloat16 else 'fp32',
                              'leads': list(leads), 'leads_trained': leads_trained}
    result.update(bootstrap_metrics(y, prob, task.multilabel, n_boot=cfg.n_boot, seed=cfg.seed))
    result.update({k: v for k, v in fit.items() if k != 'history'})
    result.update({'test_loss': test_loss, 'time_s': time.time() - t0,
                   'windows': {n: describe_pooling(d, cfg.pooling) for n, d in (('train', train_set), ('val', val_set),
                                                                               ('test', test_set))},
                   'config': dataclasses.asdict(dataclasses.replace(cfg, warmup_epochs=fit['warmup_epochs'])),
                   'history': fit['history']})
    save_eval_outputs(output_dir, result, y, prob, test_ids if hasattr(test_set, 'record_ids') else None, encoder)
    return result
