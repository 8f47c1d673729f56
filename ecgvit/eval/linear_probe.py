"""Linear probe: the encoder is frozen, so embed every record once and train only a linear layer on the features.

The features are standardised with the training split's mean and std (the role MAE's affine-free BatchNorm plays
before its probe head); the standardisation is folded into the linear layer afterwards, so the result is a plain
``encoder + nn.Linear`` classifier.

Records longer than the model input arrive as several windows (a cache built with ``crop='windows'``); their
embeddings are pooled into one per record (``ProbeConfig.pooling``, mean by default) before the layer is fitted and
tested, so the metrics are per record. A record's windows are always in one split (splits are assigned per record,
by patient), so pooling never mixes train and test.
"""
import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ecgvit.files import atomic_save_safetensors, atomic_savez, atomic_write_text, owned_tensors
from ecgvit.train.runtime import autocast_context, resolve_amp_dtype, seed_everything

from .common import TaskInfo, fit_classifier, infer_task, predict
from .config import ProbeConfig, with_options
from .leads import apply_lead_mask, check_encoder_leads, lead_mask_tensor, resolve_data_leads
from .metrics import bootstrap_metrics, primary_metric
from .pooling import describe_pooling, embed_records

__all__ = ['extract_features', 'linear_probe', 'save_eval_outputs']


@contextlib.contextmanager
def _single_thread(device: torch.device):
    # A (batch x dim) @ (dim x classes) matmul is far below what a thread pool pays off for: on a busy CPU the
    # intra-op threads mostly wait on each other (orders of magnitude slower on 2 shared cores).
    if device.type != 'cpu':
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pooled(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # The pre-logits embedding ([CLS] for the seed's encoder), whatever head the encoder currently has.
    if hasattr(encoder, 'forward_features') and hasattr(encoder, 'forward_head'):
        return encoder.forward_head(encoder.forward_features(x), pre_logits=True)
    return encoder(x)


@torch.no_grad()
def extract_features(
        encoder: nn.Module,
        dataset: Dataset,
        batch_size: int = 128,
        device: Optional[torch.device] = None,
        amp: str = 'fp32',
        num_workers: int = 0,
        progress: bool = False,
        lead_mask: Optional[torch.Tensor] = None,
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Embed every record of ``dataset`` with the frozen encoder.

    Args:
        encoder: An ecgvit encoder (any head; the pre-logits embedding is taken).
        dataset: Yields ``x`` or ``(x, y)``; x is (12, L).
        batch_size: Records per forward pass.
        device: Where to run (default: CUDA when available).
        amp: 'fp32', 'bf16' or 'auto'.
        num_workers: DataLoader workers.
        progress: Show a tqdm bar.
        lead_mask: Bool (12,) (or (N, 12) in dataset order) of the leads present: the others are set to 0 in every
            batch before the encoder, whatever the dataset holds there (``ecgvit.eval.leads``). None: all leads.

    Returns:
        (features float32 (N, D), labels (N,) or (N, C), or None for an unlabelled dataset).

    Example:
        >>> import torch, ecgvit
        >>> from torch.utils.data import TensorDataset
        >>> feats, _ = extract_features(ecgvit.create_model('ecg_vit_tiny'), TensorDataset(torch.randn(3, 12, 500)))
        >>> feats.shape
        (3, 64)
    """
    device = device or torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    amp_dtype = resolve_amp_dtype(amp, device)
    was_training = encoder.training
    encoder.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if progress:
        from tqdm.auto import tqdm
        loader = tqdm(loader, desc='embed', leave=False, dynamic_ncols=True)
    feats, labels = [], []
    start = 0
    for batch in loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        mask = lead_mask[start:start + len(x)] if lead_mask is not None and lead_mask.dim() == 2 else lead_mask
        start += len(x)
        with autocast_context(device, amp_dtype):
            f = _pooled(encoder, apply_lead_mask(x.to(device), mask))
        feats.append(f.float().cpu().numpy())
        if isinstance(batch, (tuple, list)) and len(batch) > 1:
            labels.append(np.asarray(batch[1]))
    encoder.train(was_training)
    return np.concatenate(feats).astype(np.float32), (np.concatenate(labels) if labels else None)


def save_eval_outputs(output_dir: Optional[str], result: Dict[str, Any], y: np.ndarray, prob: np.ndarray,
                      ids: Optional[Any], model: Optional[nn.Module] = None) -> None:
    """Write results.json, predictions.npz (y, prob, ids) and the classifier's model.safetensors into a folder.

    Each file is written atomically, and ``results.json`` is removed first and written last: a folder that holds one
    holds a single run's complete set (an interrupted rerun cannot leave new results beside old predictions).

    Args:
        output_dir: The folder (created); None writes nothing.
        result: The results, written as JSON (numpy numbers as floats).
        y: Test labels.
        prob: Test probabilities.
        ids: Record id of each test row (saved as strings), or None to leave ``ids`` out.
        model: The classifier whose weights are saved, or None.
    """
    if output_dir is None:
        return
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'results.json').unlink(missing_ok=True)
    arrays = {'y': y, 'prob': prob}
    if ids is not None:
        arrays['ids'] = np.asarray([str(i) for i in ids])
    atomic_savez(out / 'predictions.npz', **arrays)
    if model is not None:
        atomic_save_safetensors(out / 'model.safetensors', owned_tensors(model.state_dict()), metadata={'format': 'pt'})
    elif (out / 'model.safetensors').is_file():
        (out / 'model.safetensors').unlink()  # an earlier run's classifier, not this one's
    atomic_write_text(out / 'results.json', json.dumps(result, indent=2, default=float))


def linear_probe(
        encoder: nn.Module,
        train_set: Dataset,
        val_set: Dataset,
        test_set: Dataset,
        task: Optional[TaskInfo] = None,
        config: Optional[ProbeConfig] = None,
        output_dir: Optional[str] = None,
        *,
        random_init: bool = False,
        **options: Any,
) -> Dict[str, Any]:
    """Linear probe of a frozen encoder: embed once, fit a linear layer, test the best-validation layer.

    On a lead subset (``leads='6'``, or data read with ``Preprocessing(input_leads=...)``) every batch is masked to
    the subset before the encoder, after checking that the weights were trained on it (``lead_sets`` in their
    pretrained cfg; ``allow_untrained_leads=True`` runs anyway, with a warning).

    Args:
        encoder: The encoder to probe (left unchanged except for its head, which becomes the fitted layer).
        train_set, val_set, test_set: Labelled datasets yielding ``(x, y)``.
        task: Label space (default: read from ``train_set``).
        config: Settings (default: :class:`~ecgvit.eval.ProbeConfig`, which documents each one).
        output_dir: If set, results.json, predictions.npz and the classifier weights are written there.
        random_init: The encoder is at its random initialisation: any lead subset is allowed (nothing to contradict).
        **options: :class:`~ecgvit.eval.ProbeConfig` fields overriding ``config`` (e.g. ``epochs=60``, ``leads='1'``).

    Returns:
        Test metrics with ``_lo``/``_hi`` CI bounds, plus best_epoch, epochs_run, best_val_loss, time_s, the leads
        used (``leads``, ``leads_trained``), and the resolved settings under ``config`` (the warm-up actually used
        included).

    Raises:
        ValueError: an empty or unlabelled split, an unknown option, leads the data do not hold.
        UntrainedLeadsError: the weights were not trained on the lead subset (and ``allow_untrained_leads`` is off).

    Example:
        >>> # result = linear_probe(ecgvit.create_model('ecg_vit_tiny'), train_ds, val_ds, test_ds, epochs=60)
        >>> # result['auc_ovo'], result['auc_ovo_lo'], result['auc_ovo_hi']
    """
    cfg = with_options(config or ProbeConfig(), options)
    t0 = time.time()
    dev = torch.device(cfg.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    task = task or infer_task(train_set)
    leads, leads_trained = check_encoder_leads(encoder, resolve_data_leads(cfg.leads, train_set, val_set, test_set),
                                               cfg.allow_untrained_leads, random_init=random_init)
    mask = lead_mask_tensor(leads)
    splits, test_ids, windows = {}, None, {}
    for name, ds in (('train', train_set), ('val', val_set), ('test', test_set)):
        if ds is None or len(ds) == 0:
            raise ValueError(f'The {name} split is empty: the probe needs train, val and test records.')
        # One pooled embedding per record (a record's windows never straddle splits: splits are per record).
        feats, labels, ids = embed_records(encoder, ds, cfg.pooling, cfg.batch_size, dev, cfg.amp, cfg.num_workers,
                                           cfg.progress, lead_mask=mask)
        if labels is None:
            raise ValueError(f'The {name} split has no labels: the probe needs a labelled dataset.')
        splits[name] = (torch.from_numpy(feats), torch.from_numpy(labels))
        windows[name] = describe_pooling(ds, cfg.pooling)
        if name == 'test' and getattr(ds, 'record_ids', None) is not None:
            test_ids = ids
    embed_s = time.time() - t0
    mean = splits['train'][0].mean(0)
    std = splits['train'][0].std(0).clamp_min(1e-6)
    if not cfg.normalize:
        mean, std = torch.zeros_like(mean), torch.ones_like(std)
    loaders = {}
    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    for name, (f, y) in splits.items():
        loaders[name] = DataLoader(TensorDataset((f - mean) / std, y), batch_size=cfg.batch_size,
                                   shuffle=name == 'train', generator=gen if name == 'train' else None)
    head = nn.Linear(mean.numel(), task.num_classes).to(dev)
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    with _single_thread(dev):
        fit = fit_classifier(head, loaders['train'], loaders['val'], task, optimizer, cfg, device=dev, desc='probe')
        y, prob, test_loss = predict(head, loaders['test'], task, dev)
    result: Dict[str, Any] = {'protocol': 'linear', 'multilabel': task.multilabel, 'num_classes': task.num_classes,
                              'label_names': task.label_names, 'primary_metric': primary_metric(task.multilabel),
                              'leads': list(leads), 'leads_trained': leads_trained}
    result.update(bootstrap_metrics(y, prob, task.multilabel, n_boot=cfg.n_boot, seed=cfg.seed))
    result.update({k: v for k, v in fit.items() if k != 'history'})
    result.update({'test_loss': test_loss, 'embed_time_s': embed_s, 'time_s': time.time() - t0, 'windows': windows,
                   'config': dataclasses.asdict(dataclasses.replace(cfg, warmup_epochs=fit['warmup_epochs'])),
                   'history': fit['history']})
    # Fold the standardisation into the layer and install it as the encoder's head: encoder(x) is now the probe.
    with torch.no_grad():
        w = head.weight.cpu() / std
        b = head.bias.cpu() - w @ mean
    if hasattr(encoder, 'reset_classifier'):
        encoder.reset_classifier(task.num_classes)
        encoder.head.weight.data.copy_(w)
        encoder.head.bias.data.copy_(b)
        classifier = encoder
    else:
        classifier = None
    save_eval_outputs(output_dir, result, y, prob, test_ids, classifier)
    return result
