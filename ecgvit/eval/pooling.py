"""Record-level outputs from window-level ones: a record longer than the model's input is cut into windows
(``Preprocessing(crop='windows')``, one cache item per window) and the windows' embeddings or logits are pooled into
one per record.

Pooling: 'mean' (the default: every window counts the same), 'max' (per feature, or per class logit: "the strongest
window"), or 'none' (every window stays its own item). The windows of a record are found by the dataset's
``record_ids`` (a ``CachedECGDataset`` has them); a dataset without them holds one item per record.

Example:
    >>> feats, labels, ids = embed_records(encoder, CachedECGDataset('cache', split='test'))  # doctest: +SKIP
"""
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ecgvit.train.runtime import autocast_context

from .common import TaskInfo, _targets, make_loss, probabilities
from .leads import apply_lead_mask

__all__ = ['POOLINGS', 'record_groups', 'pool_windows', 'pool_labels', 'embed_records', 'predict_records',
           'describe_pooling']

POOLINGS = ('mean', 'max', 'none')


def _check(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f'pooling={pooling!r} is not supported; use one of {POOLINGS}.')
    return pooling


def record_groups(dataset: Dataset, n_items: Optional[int] = None) -> Tuple[List[str], np.ndarray]:
    """The records of ``dataset`` and the record of each item.

    Args:
        dataset: Its ``record_ids`` (one per item, the windows of a record share it) name the records; without
            them every item is its own record, named by its position.
        n_items: The item count when ``dataset`` has no ``len``.

    Returns:
        (record ids in order of first appearance, int64 array item -> position in that list).
    """
    ids = getattr(dataset, 'record_ids', None)
    n = len(dataset) if n_items is None else n_items
    if ids is None:
        return [str(i) for i in range(n)], np.arange(n, dtype=np.int64)
    ids = [str(r) for r in ids]
    if len(ids) != n:
        raise ValueError(f'The dataset has {n} items but {len(ids)} record_ids; give one id per item.')
    order: dict = {}
    index = np.fromiter((order.setdefault(r, len(order)) for r in ids), dtype=np.int64, count=n)
    return list(order), index


def pool_windows(values: np.ndarray, index: np.ndarray, n_records: int, pooling: str = 'mean') -> np.ndarray:
    """Pool rows of ``values`` (items, ...) into (n_records, ...) by ``index`` (item -> record).

    'mean' averages a record's rows, 'max' takes their elementwise maximum; 'none' returns ``values`` unchanged.

    Args:
        values: (items, ...) rows (embeddings or logits).
        index: (items,) record of each row.
        n_records: Records (rows of the result).
        pooling: 'mean', 'max' or 'none'.

    Returns:
        (n_records, ...) pooled rows, float (the input's float type, else float32).
    """
    if _check(pooling) == 'none':
        return values
    values = np.asarray(values)
    out_dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float32
    if pooling == 'mean':
        out = np.zeros((n_records, *values.shape[1:]), dtype=np.float64)
        np.add.at(out, index, values)
        counts = np.bincount(index, minlength=n_records).reshape(-1, *([1] * (values.ndim - 1)))
        return (out / np.maximum(counts, 1)).astype(out_dtype)
    out = np.full((n_records, *values.shape[1:]), -np.inf, dtype=np.float64)
    np.maximum.at(out, index, values)
    return out.astype(out_dtype)


def pool_labels(labels: Optional[np.ndarray], index: np.ndarray, n_records: int) -> Optional[np.ndarray]:
    """One label per record (its first window's); raises when the windows of a record disagree.

    Args:
        labels: (items, ...) labels, or None.
        index: (items,) record of each item, every record from 0 on having at least one.
        n_records: Records; unused (the count follows from ``index``), for the same call as :func:`pool_windows`.

    Returns:
        (records, ...) labels, or None for None.

    Raises:
        ValueError: two windows of one record carry different labels.
    """
    if labels is None:
        return None
    labels = np.asarray(labels)
    _, first = np.unique(index, return_index=True)  # every record has >= 1 window, so this is one per record
    pooled = labels[first]
    same = pooled[index] == labels
    if not np.all(same.reshape(len(index), -1).all(axis=1)):
        raise ValueError('The windows of a record carry different labels; pooling needs one label per record.')
    return pooled


def embed_records(
        encoder: nn.Module,
        dataset: Dataset,
        pooling: str = 'mean',
        batch_size: int = 128,
        device: Optional[torch.device] = None,
        amp: str = 'fp32',
        num_workers: int = 0,
        progress: bool = False,
        lead_mask: Optional[torch.Tensor] = None,
) -> Tuple[np.ndarray, Optional[np.ndarray], List[str]]:
    """Embed every window of ``dataset`` (:func:`~ecgvit.eval.extract_features`) and pool them per record.

    Args:
        encoder: The frozen encoder (pre-logits embeddings are taken).
        dataset: Yields ``x`` or ``(x, y)`` per window; its ``record_ids`` group the windows.
        pooling: 'mean', 'max' or 'none' (one row per window).
        batch_size, device, amp, num_workers, progress, lead_mask: As for ``extract_features``.

    Returns:
        (embeddings float32 (records, D) - or (windows, D) for 'none' -, labels per row or None, record id per row).
    """
    from .linear_probe import extract_features

    _check(pooling)
    feats, labels = extract_features(encoder, dataset, batch_size, device, amp, num_workers, progress, lead_mask)
    ids, index = record_groups(dataset, len(feats))
    if pooling == 'none':
        return feats, labels, [ids[i] for i in index]
    return pool_windows(feats, index, len(ids), pooling), pool_labels(labels, index, len(ids)), ids


@torch.no_grad()
def predict_records(model: nn.Module, dataset: Dataset, task: TaskInfo, device: torch.device,
                    amp_dtype: Optional[torch.dtype] = None, pooling: str = 'mean', batch_size: int = 64,
                    num_workers: int = 0,
                    lead_mask: Optional[torch.Tensor] = None) -> Tuple[np.ndarray, np.ndarray, float, List[str]]:
    """Classify every window of ``dataset`` and pool the logits per record.

    Args:
        model: The classifier (put in eval mode).
        dataset: (signal, label) items, windows of records (its ``record_ids`` name each window's record).
        task: The task (loss and probabilities: softmax or sigmoid).
        device: Where the model runs.
        amp_dtype: Autocast dtype (None: full precision).
        pooling: 'mean' or 'max' of a record's window logits, or 'none' (every window its own row).
        batch_size: Windows per forward pass.
        num_workers: DataLoader worker processes.
        lead_mask: (12,) booleans; absent leads are zeroed before the model (None: all leads kept).

    Returns:
        (labels, probabilities of the pooled logits, mean loss over records, record ids), one row per record (per
        window for 'none').
    """
    _check(pooling)
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    logits, ys = [], []
    for x, y in loader:
        with autocast_context(device, amp_dtype):
            out = model(apply_lead_mask(x.to(device), lead_mask))
        logits.append(out.float().cpu().numpy())
        ys.append(np.asarray(y))
    logits_np, y_np = np.concatenate(logits), np.concatenate(ys)
    ids, index = record_groups(dataset, len(logits_np))
    if pooling != 'none':
        logits_np = pool_windows(logits_np, index, len(ids), pooling)
        y_np = pool_labels(y_np, index, len(ids))
    else:
        ids = [ids[i] for i in index]
    logits_t, t = torch.from_numpy(logits_np), _targets(torch.from_numpy(y_np), task)
    loss = float(make_loss(task)(logits_t, t))
    return t.numpy(), probabilities(logits_t, task).numpy(), loss, ids


def describe_pooling(dataset: Any, pooling: str) -> dict:
    """What pooling did to a split: items (windows) and records, for results.json.

    Args:
        dataset: The split (its ``record_ids``, when it has them, name the record of each item).
        pooling: The pooling used ('mean', 'max' or 'none').

    Returns:
        ``{'pooling', 'n_windows', 'n_records'}``.
    """
    ids: Optional[Sequence[str]] = getattr(dataset, 'record_ids', None)
    n = len(dataset)
    return {'pooling': pooling, 'n_windows': n, 'n_records': n if ids is None else len(set(ids))}
