"""What the linear probe and fine-tuning share: task inference, the supervised fit loop with early stopping, and
prediction."""
import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ecgvit.train.config import resolve_warmup_epochs
from ecgvit.train.runtime import autocast_context
from ecgvit.train.schedules import create_schedule

from .config import FitOptions
from .leads import apply_lead_mask

__all__ = ['TaskInfo', 'infer_task', 'make_loss', 'fit_classifier', 'predict', 'probabilities']

_logger = logging.getLogger(__name__)


@dataclass
class TaskInfo:
    """The label space of a classification task.

    Attributes:
        num_classes: Classes (single-label) or labels (multi-label).
        multilabel: Whether a record may have several labels (sigmoid and BCE) or has exactly one (softmax and
            cross-entropy).
        label_names: The name of each class or label, when known.
    """
    num_classes: int
    multilabel: bool
    label_names: Optional[List[str]] = None


def _first_label(dataset: Dataset) -> Any:
    item = dataset[0]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise ValueError('Evaluation needs a labelled dataset yielding (x, y) pairs; this one yields '
                         f'{type(item).__name__}. Use a cache built from a labelled dataset.')
    return item[1]


def infer_task(dataset: Dataset, multilabel: Optional[bool] = None, num_classes: Optional[int] = None) -> TaskInfo:
    """Read the label space from the dataset's ``label_names``/``multilabel`` attributes (or its labels).

    Args:
        dataset: Dataset yielding ``(x, y)``; y a class index or a multi-hot vector.
        multilabel: Override the dataset's own flag.
        num_classes: Override the number of classes.

    Returns:
        The task's :class:`TaskInfo`.
    """
    names = getattr(dataset, 'label_names', None)
    if names is None and hasattr(dataset, 'dataset'):  # torch Subset
        names = getattr(dataset.dataset, 'label_names', None)
    if multilabel is None:
        multilabel = getattr(dataset, 'multilabel', None)
        if multilabel is None:
            y = torch.as_tensor(_first_label(dataset))
            multilabel = y.ndim == 1 and y.numel() > 1
    if num_classes is None:
        if names is not None:
            num_classes = len(names)
        elif multilabel:
            num_classes = int(torch.as_tensor(_first_label(dataset)).numel())
        else:
            labels = getattr(dataset, 'labels', None)
            if labels is None:
                labels = [int(dataset[i][1]) for i in range(len(dataset))]
            num_classes = int(np.max(np.asarray(labels))) + 1
    if num_classes == 0:
        raise ValueError('The records have no labels, so there is nothing to classify: give a labelled dataset (a '
                         "'folder' needs a labels.csv beside its records, docs/data.md), or use `ecgvit embed` for "
                         'features without labels.')
    if num_classes < 2:
        raise ValueError(f'A classification task needs at least 2 classes, found {num_classes}: check the label set.')
    return TaskInfo(int(num_classes), bool(multilabel), list(names) if names is not None else None)


def make_loss(task: TaskInfo) -> nn.Module:
    """Cross-entropy for single-label tasks (the seed's), BCE-with-logits for multi-label ones.

    Args:
        task: The task (only ``multilabel`` is read).
    """
    return nn.BCEWithLogitsLoss() if task.multilabel else nn.CrossEntropyLoss()


def _targets(y: torch.Tensor, task: TaskInfo) -> torch.Tensor:
    return y.float() if task.multilabel else y.long().view(-1)


def probabilities(logits: torch.Tensor, task: TaskInfo) -> torch.Tensor:
    """Sigmoid (multi-label) or softmax (single-label) of ``logits``.

    Args:
        logits: (N, C) model outputs.
        task: The task (only ``multilabel`` is read).
    """
    return torch.sigmoid(logits) if task.multilabel else torch.softmax(logits, dim=-1)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, task: TaskInfo, device: torch.device,
            amp_dtype: Optional[torch.dtype] = None,
            lead_mask: Optional[torch.Tensor] = None) -> Tuple[np.ndarray, np.ndarray, float]:
    """Run ``model`` over ``loader``: (labels, probabilities, mean loss).

    Args:
        model: The classifier (put in eval mode).
        loader: (signal, label) batches.
        task: The task (loss, and softmax or sigmoid).
        device: Where the model runs.
        amp_dtype: Autocast dtype (None: full precision).
        lead_mask: (12,) booleans; absent leads are zeroed before the model
            (:func:`~ecgvit.eval.leads.apply_lead_mask`); None keeps every lead.

    Returns:
        (labels as the loss takes them, probabilities, loss averaged over items).
    """
    model.eval()
    loss_fn = make_loss(task)
    ys, ps, total, n = [], [], 0.0, 0
    for x, y in loader:
        x = apply_lead_mask(x.to(device), lead_mask)
        with autocast_context(device, amp_dtype):
            logits = model(x)
        logits = logits.float().cpu()
        t = _targets(y, task)
        total += float(loss_fn(logits, t)) * len(t)
        n += len(t)
        ys.append(t.numpy())
        ps.append(probabilities(logits, task).numpy())
    return np.concatenate(ys), np.concatenate(ps), total / max(n, 1)


def fit_classifier(
        model: nn.Module,
        train_loader: DataLoader,
        val_loader: DataLoader,
        task: TaskInfo,
        optimizer: torch.optim.Optimizer,
        config: FitOptions,
        device: torch.device = torch.device('cpu'),
        amp_dtype: Optional[torch.dtype] = None,
        clip_grad: Optional[float] = None,
        desc: str = 'fit',
        lead_mask: Optional[torch.Tensor] = None,
) -> Dict[str, Any]:
    """Supervised training with warm-up + schedule and early stopping on the validation loss.

    The best-validation weights are loaded back into ``model`` before returning (the seed tests that model).

    Args:
        model: The classifier to train.
        train_loader, val_loader: Batches of ``(x, y)``.
        task: The label space.
        optimizer: Optimiser over the trainable parameters.
        config: A :class:`~ecgvit.eval.ProbeConfig` or :class:`~ecgvit.eval.FinetuneConfig`: epochs, schedule,
            early stopping, progress (``warmup_epochs`` None: auto, see :func:`ecgvit.train.resolve_warmup_epochs`).
        device: Where the model runs.
        amp_dtype: Autocast dtype, None for fp32.
        clip_grad: Gradient-norm clip, or None.
        desc: Progress-bar and log label.
        lead_mask: Bool (12,) of the leads the data have: the others are zeroed in every batch before the model
            (None: every lead; a model over features takes none).

    Returns:
        ``{'best_epoch', 'best_val_loss', 'epochs_run', 'warmup_epochs', 'history': [{epoch, train_loss, val_loss,
        lr}, ...]}``.
    """
    if len(train_loader) == 0:
        raise ValueError('The training split is smaller than one batch: lower --batch-size.')
    loss_fn = make_loss(task)
    steps = len(train_loader)
    epochs = config.epochs
    warmup_epochs = resolve_warmup_epochs(config.warmup_epochs, epochs)
    sched = create_schedule(config.schedule, optimizer, int(round(warmup_epochs * steps)), steps * epochs,
                            config.plateau_factor, config.plateau_patience)
    params = [p for g in optimizer.param_groups for p in g['params']]
    best_loss, best_epoch, best_state, bad_epochs = math.inf, -1, None, 0
    history = []
    iterator = range(epochs)
    if config.progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc=desc, leave=False, dynamic_ncols=True)
    t0 = time.time()
    for epoch in iterator:
        model.train()
        total, n = 0.0, 0
        for x, y in train_loader:
            x, t = apply_lead_mask(x.to(device), lead_mask), _targets(y, task).to(device)
            with autocast_context(device, amp_dtype):
                logits = model(x)
            loss = loss_fn(logits.float(), t)
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                _logger.warning('%s epoch %d: non-finite loss, step skipped', desc, epoch)
                sched.step()
                continue
            loss.backward()
            if clip_grad:
                torch.nn.utils.clip_grad_norm_(params, clip_grad)
            optimizer.step()
            sched.step()
            total += float(loss.detach()) * len(t)
            n += len(t)
        _, _, val_loss = predict(model, val_loader, task, device, amp_dtype, lead_mask)
        sched.epoch_end(val_loss)
        history.append({'epoch': epoch, 'train_loss': total / max(n, 1), 'val_loss': val_loss,
                        'lr': sched.get_last_lr()[0]})
        if val_loss < best_loss:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= config.early_stop_patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return {'best_epoch': best_epoch, 'best_val_loss': best_loss, 'epochs_run': len(history),
            'warmup_epochs': warmup_epochs, 'history': history, 'fit_time_s': time.time() - t0}
