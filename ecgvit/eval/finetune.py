"""End-to-end fine-tuning: encoder + linear head on [CLS], every weight trains (seed protocol), with an optional
layer-wise learning-rate decay (timm's ``param_groups_layer_decay``, driven by the encoder's ``group_matcher``)."""
import time
from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ecgvit.train.loop import resolve_amp_dtype, seed_everything
from ecgvit.train.optim import create_adam

from .common import TaskInfo, fit_classifier, infer_task, predict
from .linear_probe import save_eval_outputs
from .metrics import bootstrap_metrics, primary_metric

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
        epochs: int = 50,
        batch_size: int = 64,
        lr: float = 3e-4,
        weight_decay: float = 0.05,
        layer_decay: Optional[float] = 0.75,
        warmup_epochs: float = 5.0,
        schedule: str = 'plateau',
        early_stop_patience: int = 10,
        clip_grad: Optional[float] = 1.0,
        n_boot: int = 1000,
        seed: int = 0,
        device: Optional[str] = None,
        amp: str = 'auto',
        num_workers: int = 0,
        output_dir: Optional[str] = None,
        progress: bool = False,
) -> Dict[str, Any]:
    """Fine-tune ``encoder`` end to end with a new linear head, early-stopped on the validation loss.

    Args:
        encoder: The encoder (modified in place: it gets the task's head and the fine-tuned weights).
        train_set, val_set, test_set: Labelled datasets yielding ``(x, y)``.
        task: Label space (default: read from ``train_set``).
        epochs: Maximum epochs.
        batch_size: Training batch.
        lr: AdamW learning rate of the head (blocks below get ``lr * layer_decay ** depth``).
        weight_decay: AdamW weight decay.
        layer_decay: Layer-wise lr decay, or None.
        warmup_epochs: Linear warm-up epochs.
        schedule: 'plateau' or 'cosine' after warm-up.
        early_stop_patience: Epochs without a better validation loss before stopping.
        clip_grad: Gradient-norm clip, or None.
        n_boot: Bootstrap resamples for the test metrics' 95% CIs.
        seed: Seed of the head initialisation, batch order, dropout and bootstrap.
        device: 'cpu', 'cuda' or None.
        amp: 'auto' (bf16 where faster), 'bf16' or 'fp32'.
        num_workers: DataLoader workers.
        output_dir: If set, results.json, predictions.npz and the fine-tuned model.safetensors are written there.
        progress: Show progress bars.

    Returns:
        Test metrics with ``_lo``/``_hi`` CI bounds, plus best_epoch, epochs_run, best_val_loss, time_s, ...

    Example:
        >>> # result = finetune(ecgvit.create_model('ecg_vit_tiny'), train_ds, val_ds, test_ds, epochs=10)
    """
    t0 = time.time()
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    task = task or infer_task(train_set)
    for name, ds in (('train', train_set), ('val', val_set), ('test', test_set)):
        if ds is None or len(ds) == 0:
            raise ValueError(f'The {name} split is empty: fine-tuning needs train, val and test records.')
    if batch_size > len(train_set):
        raise ValueError(f'batch_size {batch_size} is larger than the training split ({len(train_set)} records): '
                         f'use --batch-size {len(train_set)} or less.')
    seed_everything(seed)
    encoder.reset_classifier(task.num_classes)
    encoder.to(dev)
    for p in encoder.parameters():
        p.requires_grad_(True)
    amp_dtype = resolve_amp_dtype(amp, dev)
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=len(train_set) > batch_size,
                              num_workers=num_workers, generator=gen)
    val_loader = DataLoader(val_set, batch_size=batch_size, num_workers=num_workers)
    test_loader = DataLoader(test_set, batch_size=batch_size, num_workers=num_workers)
    optimizer = create_adam(finetune_param_groups(encoder, weight_decay, layer_decay), lr, decoupled=True)
    fit = fit_classifier(encoder, train_loader, val_loader, task, optimizer, epochs, warmup_epochs, schedule,
                         early_stop_patience=early_stop_patience, device=dev, amp_dtype=amp_dtype,
                         clip_grad=clip_grad, progress=progress, desc='finetune')
    y, prob, test_loss = predict(encoder, test_loader, task, dev, amp_dtype)
    result: Dict[str, Any] = {'protocol': 'finetune', 'multilabel': task.multilabel,
                              'num_classes': task.num_classes, 'label_names': task.label_names,
                              'primary_metric': primary_metric(task.multilabel),
                              'amp': 'bf16' if amp_dtype == torch.bfloat16 else 'fp32'}
    result.update(bootstrap_metrics(y, prob, task.multilabel, n_boot=n_boot, seed=seed))
    result.update({k: v for k, v in fit.items() if k != 'history'})
    result.update({'test_loss': test_loss, 'time_s': time.time() - t0, 'history': fit['history']})
    save_eval_outputs(output_dir, result, y, prob, getattr(test_set, 'record_ids', None), encoder)
    return result
