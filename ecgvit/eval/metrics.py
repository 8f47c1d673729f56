"""Classification metrics with 95% bootstrap confidence intervals over test records.

- one-vs-one macro AUC: the seed's metric, ``sklearn.metrics.roc_auc_score(multi_class='ovo')`` (Hand & Till 2001);
- one-vs-rest macro AUROC; multi-label macro AUROC (the PTB-XL benchmark's, Strodthoff et al. 2021);
- macro F1 and accuracy (argmax for single-label, 0.5 threshold and exact match for multi-label);
- macro AUPRC (average precision, sklearn's definition) and, for the evaluation suite, every metric under bootstrap
  record weights plus a *paired* bootstrap of the difference between two methods on the same test records.

A bootstrap resample can miss a class entirely. AUCs then average over the classes (or class pairs) that the
resample still has, as sklearn would on that subset, and a resample where a metric has nothing to average is left
out of that metric's interval (the count kept is reported as ``n_boot``).
"""
import math
import numbers
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import f1_score, roc_auc_score

__all__ = ['binary_auc', 'ovo_macro_auc', 'ovr_macro_auc', 'multilabel_macro_auroc', 'compute_metrics',
           'bootstrap_metrics', 'METRIC_NAMES', 'primary_metric', 'average_precision', 'multilabel_macro_auprc',
           'weighted_auroc', 'weighted_average_precision', 'weighted_metric', 'bootstrap_weights',
           'seed_averaged_metric', 'paired_bootstrap_diff', 'diff_interval', 'verdict', 'LOWER_IS_BETTER']

SINGLE_LABEL_METRICS = ('auc_ovo', 'auroc_ovr', 'f1_macro', 'accuracy')
MULTILABEL_METRICS = ('auroc_macro', 'f1_macro', 'accuracy')
METRIC_NAMES = ('auc_ovo', 'auroc_ovr', 'auroc_macro', 'f1_macro', 'accuracy')


def primary_metric(multilabel: bool) -> str:
    """The headline metric: OvO macro AUC (seed) for single-label tasks, macro AUROC for multi-label ones.

    Args:
        multilabel: Whether the task is multi-label.

    Returns:
        'auroc_macro' or 'auc_ovo'.
    """
    return 'auroc_macro' if multilabel else 'auc_ovo'


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC from ranks (Mann-Whitney U, ties averaged): equal to ``roc_auc_score``, at a fraction of its cost.

    Args:
        positive: (N,) truth, read as booleans.
        score: (N,) scores, higher = more positive.

    Returns:
        The AUC; NaN when ``positive`` holds only one class.
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

    Args:
        y: (N,) class indices.
        prob: (N, C) class probabilities.
        use_sklearn: Call sklearn when every class is present (False: always the pairwise path).
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
    """One-vs-rest macro AUROC over the classes present in ``y`` (each needs positives and negatives).

    Args:
        y: (N,) class indices.
        prob: (N, C) class probabilities (with two classes, the binary AUC of class 1).

    Returns:
        The mean AUROC; NaN when no class can be scored.
    """
    y = np.asarray(y)
    if prob.shape[1] == 2:
        return binary_auc(y == 1, prob[:, 1])
    scores = [binary_auc(y == c, prob[:, c]) for c in range(prob.shape[1])]
    scores = [s for s in scores if not math.isnan(s)]
    return float(np.mean(scores)) if scores else math.nan


def multilabel_macro_auroc(y: np.ndarray, prob: np.ndarray) -> float:
    """Macro AUROC over labels, skipping labels with no positive or no negative record.

    Args:
        y: (N, L) multi-hot truth (above 0.5 is positive).
        prob: (N, L) scores per label.

    Returns:
        The mean AUROC; NaN when no label can be scored.
    """
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

    The keys are the same whatever ``n_boot`` is, so results of runs with and without a bootstrap share one table:
    with ``n_boot=0`` every ``_lo`` / ``_hi`` bound is NaN and ``n_boot`` is 0.

    Args:
        y: Class indices (N,) or multi-hot labels (N, C), as for :func:`compute_metrics`.
        prob: Probabilities (N, C), as for :func:`compute_metrics`.
        multilabel: Whether the task is multi-label, as for :func:`compute_metrics`.
        n_boot: Bootstrap resamples, an integer >= 0 (0 gives point estimates with NaN bounds).
        seed: Seed of the resampling.
        alpha: 1 - confidence level (0.05 → 95% intervals).
        names: Metrics to keep (default: all that apply).

    Returns:
        ``{metric: value, ..., 'n_test': N, metric + '_lo': lower, metric + '_hi': upper, ..., 'n_boot': kept}``,
        where ``kept`` is the fewest resamples any metric could use (a bound is NaN where none could).

    Raises:
        ValueError: ``n_boot`` is not an integer >= 0 (a bool, a float or a negative number).

    Example:
        >>> import numpy as np
        >>> out = bootstrap_metrics(np.array([0, 1, 1, 0]), np.eye(2)[[0, 1, 0, 0]], multilabel=False, n_boot=0)
        >>> out['accuracy'], out['accuracy_lo'], out['n_boot']
        (0.75, nan, 0)
    """
    # Checked first: a negative count would otherwise mean "no bootstrap" without a word, and a float would fail in
    # range() only after the point estimates were computed.
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 0:
        raise ValueError(f'n_boot must be an integer >= 0 (0: point estimates only, NaN bounds), got {n_boot!r}.')
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    point = compute_metrics(y, prob, multilabel)
    keep = [k for k in point if names is None or k in names]
    out: Dict[str, float] = {k: point[k] for k in keep}
    n = len(y)
    out['n_test'] = n
    samples: Dict[str, List[float]] = {k: [] for k in keep}
    if n > 0:
        rng = np.random.default_rng(seed)
        for _ in range(int(n_boot)):
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


# ---------------------------------------------------------------------------------------------------------------------
# Weighted (bootstrap) metrics and the paired bootstrap of a difference between two methods.
#
# A bootstrap resample that draws record i c_i times is the same as weighting record i by c_i: every pair of a
# positive and a negative copy is counted c_i * c_j times, and tied copies share one threshold. So a whole set of
# resamples is a count matrix W (B, N), and a metric over all B resamples is a few cumulative sums over records sorted
# once by score, instead of B separate sorts.

LOWER_IS_BETTER = ('mae',)


def _tie_groups(score: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(order sorting ``score`` ascending, start index of each group of equal scores in that order)."""
    order = np.argsort(score, kind='mergesort')
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return order, starts


def _auroc_parts(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(concordant positive-negative pair weight, ties counting one half; total pair weight), each (B,)."""
    positive = np.asarray(positive, dtype=bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order, starts = _tie_groups(np.asarray(score, dtype=np.float64))
    w = weights[:, order]
    pos = positive[order]
    pos_g = np.add.reduceat(w * pos, starts, axis=1)  # (B, G) positive weight per tie group
    neg_g = np.add.reduceat(w * ~pos, starts, axis=1)
    neg_below = np.cumsum(neg_g, axis=1) - neg_g
    return (pos_g * (neg_below + 0.5 * neg_g)).sum(1), pos_g.sum(1) * neg_g.sum(1)


def weighted_auroc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray,
                   groups: Optional[np.ndarray] = None) -> np.ndarray:
    """ROC AUC of ``score`` for ``positive`` under each row of record weights (ties count one half).

    Args:
        positive: (N,) booleans.
        score: (N,) scores, higher = more positive.
        weights: (B, N) non-negative record weights (bootstrap counts; a row of ones is the plain AUC).
        groups: (N,) group of each record (e.g. its source dataset). If given, only positive-negative pairs from the
            same group count (a stratified AUROC): a score that merely tells the groups apart earns nothing.

    Returns:
        (B,) AUCs; NaN where a row gives no weight to (same-group) positive-negative pairs.
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if groups is None:
        num, den = _auroc_parts(positive, score, weights)
    else:
        groups = np.asarray(groups)
        num, den = np.zeros(len(weights)), np.zeros(len(weights))
        for g in np.unique(groups):
            m = groups == g
            n_g, d_g = _auroc_parts(np.asarray(positive)[m], np.asarray(score)[m], weights[:, m])
            num, den = num + n_g, den + d_g
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(den > 0, num / den, np.nan)


def weighted_average_precision(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision (area under the precision-recall curve, sklearn's step definition) per row of weights.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct scores taken as thresholds, highest first; equal to
    ``sklearn.metrics.average_precision_score(positive, score, sample_weight=row)``.

    Args:
        positive: (N,) booleans.
        score: (N,) scores, higher = more positive.
        weights: (B, N) non-negative record weights (a row of ones is the plain AP).

    Returns:
        (B,) APs; NaN where a row gives no weight to the positives.
    """
    positive = np.asarray(positive, dtype=bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order, starts = _tie_groups(-np.asarray(score, dtype=np.float64))  # descending scores
    w = weights[:, order]
    pos = positive[order]
    tp_g = np.add.reduceat(w * pos, starts, axis=1)
    fp_g = np.add.reduceat(w * ~pos, starts, axis=1)
    tp, fp = np.cumsum(tp_g, axis=1), np.cumsum(fp_g, axis=1)
    n_pos = tp[:, -1]
    with np.errstate(invalid='ignore', divide='ignore'):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        ap = (tp_g * precision).sum(1) / n_pos
    return np.where(n_pos > 0, ap, np.nan)


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Average precision of one binary problem (NaN without positives); equals sklearn's.

    Args:
        positive: (N,) truth, read as booleans.
        score: (N,) scores, higher = more positive.
    """
    positive = np.asarray(positive, dtype=bool)
    return float(weighted_average_precision(positive, score, np.ones((1, positive.size)))[0])


def multilabel_macro_auprc(y: np.ndarray, prob: np.ndarray) -> float:
    """Macro average precision over labels, skipping labels with no positive record (as the AUROC skips them).

    Args:
        y: (N, L) multi-hot truth (above 0.5 is positive).
        prob: (N, L) scores per label.

    Returns:
        The mean AP; NaN when no label has a positive.
    """
    scores = [average_precision(y[:, c] > 0.5, prob[:, c]) for c in range(y.shape[1])]
    scores = [s for s in scores if not math.isnan(s)]
    return float(np.mean(scores)) if scores else math.nan


def _nanmean_rows(per_label: List[np.ndarray]) -> np.ndarray:
    stacked = np.stack(per_label, axis=0)  # (L, B)
    with np.errstate(invalid='ignore'):
        keep = ~np.isnan(stacked)
        total = np.where(keep, stacked, 0.0).sum(0)
        count = keep.sum(0)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def weighted_metric(name: str, y: np.ndarray, score: np.ndarray, weights: np.ndarray,
                    groups: Optional[np.ndarray] = None) -> np.ndarray:
    """One metric of one prediction set under each row of record weights.

    Args:
        name: 'auroc' / 'auprc' (macro over labels for multi-hot ``y`` (N, L), binary for (N,) 0/1 ``y`` with (N,)
            scores), 'auc_ovo' (single-label: ``y`` class indices (N,), ``score`` probabilities (N, C); Hand & Till
            over the class pairs present), 'mae' or 'r2' (regression); and, with ``groups``, 'auroc_within'
            (binary AUROC over same-group pairs only) and 'r2_within' (1 - residual / within-group variance), which
            a probe cannot raise by recognising the group (dataset) of a record.
        y: Targets.
        score: Scores or predictions.
        weights: (B, N) record weights; ``np.ones((1, N))`` for the point estimate.
        groups: (N,) group per record, for the '_within' metrics.

    Returns:
        (B,) values; NaN where the resample leaves the metric undefined (e.g. no positives).
    """
    y = np.asarray(y)
    score = np.asarray(score, dtype=np.float64)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if name in ('auroc', 'auprc'):
        fn = weighted_auroc if name == 'auroc' else weighted_average_precision
        if y.ndim == 1:
            return fn(y > 0.5, score if score.ndim == 1 else score[:, -1], weights)
        return _nanmean_rows([fn(y[:, c] > 0.5, score[:, c], weights) for c in range(y.shape[1])])
    if name in ('auroc_within', 'r2_within') and groups is None:
        raise ValueError(f'Metric {name!r} needs groups (the source of each record).')
    if name == 'auroc_within':
        return weighted_auroc(y > 0.5, score if score.ndim == 1 else score[:, -1], weights, groups=groups)
    if name == 'r2_within':
        groups = np.asarray(groups)
        ss_res = (weights * (y - score) ** 2).sum(1)
        ss_tot = np.zeros(len(weights))
        for g in np.unique(groups):
            m = groups == g
            w, yg = weights[:, m], y[m]
            with np.errstate(invalid='ignore', divide='ignore'):
                mean = np.nan_to_num((w * yg).sum(1) / w.sum(1))
            ss_tot += (w * (yg[None] - mean[:, None]) ** 2).sum(1)
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)
    if name == 'auc_ovo':
        classes = np.unique(y)
        pairs = []
        for i, a in enumerate(classes):
            for b in classes[i + 1:]:
                m = (y == a) | (y == b)
                ya = y[m] == a
                auc = 0.5 * (weighted_auroc(ya, score[m, a], weights[:, m]) +
                             weighted_auroc(~ya, score[m, b], weights[:, m]))
                pairs.append(auc)
        return _nanmean_rows(pairs) if pairs else np.full(len(weights), np.nan)
    if name in ('mae', 'r2'):
        total = weights.sum(1)
        with np.errstate(invalid='ignore', divide='ignore'):
            if name == 'mae':
                return (weights * np.abs(y - score)).sum(1) / total
            mean = (weights * y).sum(1) / total
            ss_res = (weights * (y - score) ** 2).sum(1)
            ss_tot = (weights * (y[None] - mean[:, None]) ** 2).sum(1)
            return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)
    raise ValueError(f"Unknown metric {name!r}; use 'auroc', 'auprc', 'auc_ovo', 'mae', 'r2', 'auroc_within' or "
                     f"'r2_within'.")


def bootstrap_weights(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) counts of each record in ``n_boot`` resamples of ``n`` records with replacement.

    Args:
        n: Records.
        n_boot: Resamples (rows).
        seed: Seed of the draws.

    Returns:
        A float array whose rows each sum to ``n``, for :func:`weighted_metric`.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    return counts


def seed_averaged_metric(name: str, y: np.ndarray, scores: Sequence[np.ndarray], weights: np.ndarray,
                         groups: Optional[np.ndarray] = None) -> np.ndarray:
    """The metric averaged over several prediction sets (probe seeds) of the same records, per weight row.

    Args:
        name: Metric (see :func:`weighted_metric`).
        y: Targets.
        scores: One score array per seed.
        weights: (B, N) record weights.
        groups: (N,) group per record, for the '_within' metrics.

    Returns:
        (B,) means over the seeds (NaN in a row where any seed's metric is undefined).
    """
    return np.mean([weighted_metric(name, y, s, weights, groups) for s in scores], axis=0)


def paired_bootstrap_diff(
        name: str,
        y: np.ndarray,
        scores_a: Sequence[np.ndarray],
        scores_b: Sequence[np.ndarray],
        n_boot: int = 1000,
        seed: int = 0,
        alpha: float = 0.05,
        weights: Optional[np.ndarray] = None,
) -> Dict[str, float]:
    """Difference of a metric between methods A and B on the same test records, with a paired bootstrap CI.

    Each resample draws test records with replacement *once* and scores both methods on it, so what the two share
    (which records are hard) cancels in the difference. Each method's metric is the mean over its prediction sets
    (probe seeds).

    Args:
        name: Metric (see :func:`weighted_metric`).
        y: Test targets.
        scores_a, scores_b: One score array per seed for each method (a single array is taken as one seed).
        n_boot: Resamples.
        seed: Resampling seed.
        alpha: 1 - confidence level.
        weights: Precomputed (B, N) resample counts (overrides ``n_boot``/``seed``), to share them across many
            comparisons.

    Returns:
        ``{'a', 'b', 'diff', 'diff_lo', 'diff_hi', 'a_lo', 'a_hi', 'b_lo', 'b_hi', 'p_value', 'n_boot', 'n_test'}``:
        point values on the full test set, percentile CIs, and the two-sided bootstrap p-value of ``diff == 0``.
    """
    if isinstance(scores_a, np.ndarray):
        scores_a = [scores_a]
    if isinstance(scores_b, np.ndarray):
        scores_b = [scores_b]
    n = len(y)
    ones = np.ones((1, n))
    if weights is None:
        weights = bootstrap_weights(n, n_boot, seed)
    return diff_interval(float(seed_averaged_metric(name, y, scores_a, ones)[0]),
                         float(seed_averaged_metric(name, y, scores_b, ones)[0]),
                         seed_averaged_metric(name, y, scores_a, weights),
                         seed_averaged_metric(name, y, scores_b, weights), alpha, n_test=n)


def diff_interval(a: float, b: float, boot_a: np.ndarray, boot_b: np.ndarray, alpha: float = 0.05,
                  n_test: Optional[int] = None) -> Dict[str, float]:
    """Paired-bootstrap summary of ``a - b`` from both methods' metric on the *same* resamples (``boot_a[k]`` and
    ``boot_b[k]`` from resample k); resamples where either is undefined are left out.

    Args:
        a: Method A's metric on the full test set.
        b: Method B's.
        boot_a: (B,) A's metric on each resample.
        boot_b: (B,) B's metric on the same resamples.
        alpha: 1 - confidence level.
        n_test: Test records, passed through to the result.

    Returns:
        Keys as for :func:`paired_bootstrap_diff`; the intervals and p-value are NaN when no resample is usable.
    """
    out = {'a': a, 'b': b, 'diff': a - b, 'n_test': n_test}
    d = np.asarray(boot_a) - np.asarray(boot_b)
    keep = ~np.isnan(d)
    out['n_boot'] = int(keep.sum())
    if not keep.any():
        out.update(dict.fromkeys(('diff_lo', 'diff_hi', 'a_lo', 'a_hi', 'b_lo', 'b_hi', 'p_value'), math.nan))
        return out
    q = (alpha / 2, 1 - alpha / 2)
    out['diff_lo'], out['diff_hi'] = (float(v) for v in np.quantile(d[keep], q))
    out['a_lo'], out['a_hi'] = (float(v) for v in np.quantile(np.asarray(boot_a)[keep], q))
    out['b_lo'], out['b_hi'] = (float(v) for v in np.quantile(np.asarray(boot_b)[keep], q))
    dk = d[keep]
    out['p_value'] = float(min(1.0, 2 * min((dk <= 0).mean(), (dk >= 0).mean()))) if np.any(dk != 0) else 1.0
    return out


def verdict(diff_lo: float, diff_hi: float, metric: str) -> str:
    """'better' / 'worse' when the CI of (A - B) excludes 0 (direction by the metric), else 'no difference shown'.

    Args:
        diff_lo: Lower bound of the CI of A - B.
        diff_hi: Its upper bound.
        metric: The metric's name ('mae' is lower-is-better, see ``LOWER_IS_BETTER``).

    Returns:
        'better', 'worse', 'no difference shown', or 'not computable' when a bound is NaN.
    """
    if math.isnan(diff_lo) or math.isnan(diff_hi):
        return 'not computable'
    sign = -1 if metric in LOWER_IS_BETTER else 1
    if diff_lo > 0:
        return 'better' if sign > 0 else 'worse'
    if diff_hi < 0:
        return 'worse' if sign > 0 else 'better'
    return 'no difference shown'
