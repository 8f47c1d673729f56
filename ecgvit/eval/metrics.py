"""Classification metrics with 95% bootstrap confidence intervals over test records.

- one-vs-one macro AUC: the seed's metric, ``sklearn.metrics.roc_auc_score(multi_class='ovo')`` (Hand & Till 2001);
- one-vs-rest macro AUROC; multi-label macro AUROC (the PTB-XL benchmark's, Strodthoff et al. 2021);
- macro F1 and accuracy (argmax for single-label, 0.5 threshold and exact match for multi-label).

A bootstrap resample can miss a class entirely. AUCs then average over the classes (or class pairs) that the
resample still has, as sklearn would on that subset, and a resample where a metric has nothing to average is left
out of that metric's interval (the count kept is reported as ``n_boot``).
"""
import math
from typing import Dict, Optional, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import f1_score, roc_auc_score

__all__ = ['binary_auc', 'ovo_macro_auc', 'ovr_macro_auc', 'multilabel_macro_auroc', 'compute_metrics',
           'bootstrap_metrics', 'METRIC_NAMES', 'primary_metric']

SINGLE_LABEL_METRICS = ('auc_ovo', 'auroc_ovr', 'f1_macro', 'accuracy')
MULTILABEL_METRICS = ('auroc_macro', 'f1_macro', 'accuracy')
METRIC_NAMES = ('auc_ovo', 'auroc_ovr', 'auroc_macro', 'f1_macro', 'accuracy')


def primary_metric(multilabel: bool) -> str:
    """The headline metric: OvO macro AUC (seed) for single-label tasks, macro AUROC for multi-label ones."""
    return 'auroc_macro' if multilabel else 'auc_ovo'


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC from ranks (Mann-Whitney U, ties averaged): equal to ``roc_auc_score``, at a fraction of its cost.

    Returns NaN when ``positive`` holds only one class.
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def ovo_macro_auc(y: np.ndarray, prob: np.ndarray, use_sklearn: bool = True) -> float:
    """One-vs-one macro AUC over the class pairs present in ``y`` (NaN with fewer than two classes).

    With every class present and ``use_sklearn`` this is ``roc_auc_score(y, prob, multi_class='ovo')`` itself (the
    seed's call); otherwise the same Hand & Till average is computed pair by pair (the bootstrap's fast path).
    """
    y = np.asarray(y)
    num_classes = prob.shape[1]
    present = np.unique(y)
    if len(present) < 2:
        return math.nan
    if num_classes == 2:
        return binary_auc(y == 1, prob[:, 1])
    if use_sklearn and len(present) == num_classes:
        return float(roc_auc_score(y, prob, multi_class='ovo', average='macro', labels=np.arange(num_classes)))
    scores = []
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            mask = (y == a) | (y == b)
            ya = y[mask] == a
            scores.append(0.5 * (binary_auc(ya, prob[mask, a]) + binary_auc(~ya, prob[mask, b])))
    return float(np.mean(scores))


def ovr_macro_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """One-vs-rest macro AUROC over the classes present in ``y`` (each needs positives and negatives)."""
    y = np.asarray(y)
    if prob.shape[1] == 2:
        return binary_auc(y == 1, prob[:, 1])
    scores = [binary_auc(y == c, prob[:, c]) for c in range(prob.shape[1])]
    scores = [s for s in scores if not math.isnan(s)]
    return float(np.mean(scores)) if scores else math.nan


def multilabel_macro_auroc(y: np.ndarray, prob: np.ndarray) -> float:
    """Macro AUROC over labels, skipping labels with no positive or no negative record."""
    scores = [binary_auc(y[:, c] > 0.5, prob[:, c]) for c in range(y.shape[1])]
    scores = [s for s in scores if not math.isnan(s)]
    return float(np.mean(scores)) if scores else math.nan


def _macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    # truth/pred: (N, C) booleans; per-class F1 = 2TP / (2TP + FP + FN), 0 where a class is never true nor predicted
    # (sklearn's zero_division=0).
    tp = (truth & pred).sum(0)
    denom = 2 * tp + (~truth & pred).sum(0) + (truth & ~pred).sum(0)
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1.mean()) if f1.size else math.nan


def compute_metrics(y: np.ndarray, prob: np.ndarray, multilabel: bool, fast: bool = False) -> Dict[str, float]:
    """All metrics for one set of predictions.

    Args:
        y: Class indices (N,) for single-label tasks, multi-hot (N, C) for multi-label ones.
        prob: Probabilities (N, C): softmax for single-label, sigmoid for multi-label.
        multilabel: Which of the two the task is.
        fast: Use the rank-based AUC and numpy F1 throughout (same values; for bootstrap resamples).

    Returns:
        Single-label: auc_ovo, auroc_ovr, f1_macro, accuracy. Multi-label: auroc_macro, f1_macro, accuracy.

    Example:
        >>> import numpy as np
        >>> y = np.array([0, 1, 2, 1]); p = np.eye(3)[[0, 1, 2, 2]] * 0.8 + 0.2 / 3
        >>> round(compute_metrics(y, p, multilabel=False)['accuracy'], 2)
        0.75
    """
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    if multilabel:
        pred = prob >= 0.5
        truth = y > 0.5
        return {
            'auroc_macro': multilabel_macro_auroc(truth, prob),
            'f1_macro': _macro_f1(truth, pred) if fast else float(f1_score(truth, pred, average='macro',
                                                                                 zero_division=0)),
            'accuracy': float((pred == truth).all(axis=1).mean()),
        }
    y = y.astype(np.int64)
    pred = prob.argmax(axis=1)
    present = np.unique(np.concatenate([y, pred]))
    if fast:
        onehot = np.arange(prob.shape[1])
        f1 = _macro_f1(y[:, None] == onehot[present][None], pred[:, None] == onehot[present][None])
    else:
        f1 = float(f1_score(y, pred, labels=present, average='macro', zero_division=0))
    return {
        'auc_ovo': ovo_macro_auc(y, prob, use_sklearn=not fast),
        'auroc_ovr': ovr_macro_auc(y, prob),
        # Macro over the classes seen in truth or prediction, as sklearn does by default.
        'f1_macro': f1,
        'accuracy': float((pred == y).mean()),
    }


def bootstrap_metrics(
        y: np.ndarray,
        prob: np.ndarray,
        multilabel: bool,
        n_boot: int = 1000,
        seed: int = 0,
        alpha: float = 0.05,
        names: Optional[Sequence[str]] = None,
) -> Dict[str, float]:
    """Point estimates and percentile bootstrap CIs, resampling test records with replacement.

    Args:
        y, prob, multilabel: As for :func:`compute_metrics`.
        n_boot: Bootstrap resamples (0 gives point estimates only).
        seed: Seed of the resampling.
        alpha: 1 - confidence level (0.05 → 95% intervals).
        names: Metrics to keep (default: all that apply).

    Returns:
        ``{metric: value, metric + '_lo': lower, metric + '_hi': upper, ..., 'n_test': N, 'n_boot': kept}``.
    """
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    point = compute_metrics(y, prob, multilabel)
    keep = [k for k in point if names is None or k in names]
    out: Dict[str, float] = {k: point[k] for k in keep}
    n = len(y)
    out['n_test'] = n
    if n_boot <= 0 or n == 0:
        return out
    rng = np.random.default_rng(seed)
    samples = {k: [] for k in keep}
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        m = compute_metrics(y[idx], prob[idx], multilabel, fast=True)
        for k in keep:
            if not math.isnan(m[k]):
                samples[k].append(m[k])
    kept = []
    for k in keep:
        vals = np.asarray(samples[k])
        if len(vals):
            out[f'{k}_lo'] = float(np.quantile(vals, alpha / 2))
            out[f'{k}_hi'] = float(np.quantile(vals, 1 - alpha / 2))
        else:
            out[f'{k}_lo'] = out[f'{k}_hi'] = math.nan
        kept.append(len(vals))
    out['n_boot'] = min(kept) if kept else 0
    return out
