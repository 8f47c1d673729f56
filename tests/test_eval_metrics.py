"""Metrics: agreement with sklearn, bootstrap CIs, and resamples that miss a class."""
import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from ecgvit.eval import binary_auc, bootstrap_metrics, compute_metrics, ovo_macro_auc, ovr_macro_auc


def _single(n=150, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, np.round(prob, 2) / np.round(prob, 2).sum(1, keepdims=True)  # rounding makes ties


def test_binary_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300).astype(bool)
    s = np.round(rng.random(300) + 0.3 * y, 1)
    assert binary_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert math.isnan(binary_auc(np.ones(5, bool), np.arange(5.0)))


def test_single_label_metrics_match_sklearn():
    y, p = _single()
    m = compute_metrics(y, p, multilabel=False)
    assert m['auc_ovo'] == pytest.approx(roc_auc_score(y, p, multi_class='ovo'), abs=1e-12)
    assert m['auroc_ovr'] == pytest.approx(roc_auc_score(y, p, multi_class='ovr'), abs=1e-12)
    assert m['f1_macro'] == pytest.approx(f1_score(y, p.argmax(1), average='macro'), abs=1e-12)
    fast = compute_metrics(y, p, multilabel=False, fast=True)
    assert fast == pytest.approx(m, abs=1e-12)
    # The pairwise path (used when a class is missing) is the same Hand & Till average as sklearn's.
    assert ovo_macro_auc(y, p, use_sklearn=False) == pytest.approx(m['auc_ovo'], abs=1e-12)


def test_multilabel_metrics_match_sklearn():
    rng = np.random.default_rng(2)
    y = (rng.random((120, 5)) < 0.3).astype(np.float32)
    p = np.clip(0.6 * y + 0.5 * rng.random((120, 5)), 0, 1)
    m = compute_metrics(y, p, multilabel=True)
    assert m['auroc_macro'] == pytest.approx(roc_auc_score(y, p, average='macro'), abs=1e-12)
    assert m['f1_macro'] == pytest.approx(f1_score(y, p >= 0.5, average='macro', zero_division=0), abs=1e-12)
    assert compute_metrics(y, p, True, fast=True) == pytest.approx(m, abs=1e-12)


def test_absent_class_is_handled():
    y, p = _single(c=4)
    keep = y != 3  # class 3 never occurs in this test set
    m = compute_metrics(y[keep], p[keep], multilabel=False)
    assert 0.5 < m['auc_ovo'] <= 1.0 and 0.5 < m['auroc_ovr'] <= 1.0
    assert math.isnan(ovr_macro_auc(np.zeros(4, int), p[:4]))


def test_bootstrap_ci_brackets_point_and_survives_rare_classes():
    y, p = _single(n=60, c=5)
    y[:2] = 4
    y[2:] = np.where(y[2:] == 4, 0, y[2:])  # class 4 has two records: many resamples miss it
    out = bootstrap_metrics(y, p, multilabel=False, n_boot=200, seed=0)
    for k in ('auc_ovo', 'auroc_ovr', 'f1_macro', 'accuracy'):
        assert out[f'{k}_lo'] <= out[k] + 1e-9 and out[k] <= out[f'{k}_hi'] + 1e-9
    assert out['n_boot'] == 200 and out['n_test'] == 60
    # the resampling is real: the intervals have width (they collapse onto the point if it is removed)
    assert all(out[f'{k}_hi'] - out[f'{k}_lo'] > 0.01 for k in ('auc_ovo', 'auroc_ovr', 'accuracy'))
    again = bootstrap_metrics(y, p, multilabel=False, n_boot=200, seed=0)
    assert again == out  # seeded
    yl = np.zeros((30, 3), np.float32)
    yl[0, 2] = 1  # one positive only: most resamples cannot score label 2
    pl = np.random.default_rng(0).random((30, 3))
    yl[:15, 0] = 1
    yl[10:, 1] = 1
    out = bootstrap_metrics(yl, pl, multilabel=True, n_boot=100)
    assert not math.isnan(out['auroc_macro_lo'])


def test_bootstrap_keys_do_not_depend_on_n_boot():
    # Without a bootstrap the CI keys are there with NaN bounds, so every result has one set of columns.
    y, p = _single(n=40, c=3)
    none = bootstrap_metrics(y, p, multilabel=False, n_boot=0)
    some = bootstrap_metrics(y, p, multilabel=False, n_boot=np.int64(20))  # numpy integers count as integers
    assert list(none) == list(some)
    assert none['n_boot'] == 0 and some['n_boot'] == 20
    for k in ('auc_ovo', 'auroc_ovr', 'f1_macro', 'accuracy'):
        assert none[k] == some[k] and math.isnan(none[f'{k}_lo']) and math.isnan(none[f'{k}_hi'])
        assert not math.isnan(some[f'{k}_lo'])
    kept = bootstrap_metrics(y, p, multilabel=False, n_boot=0, names=('accuracy',))
    assert list(kept) == ['accuracy', 'n_test', 'accuracy_lo', 'accuracy_hi', 'n_boot']


@pytest.mark.parametrize('n_boot', [-1, 2.0, 0.5, True, None, '100'])
def test_bootstrap_refuses_a_count_that_is_not_a_whole_number(n_boot):
    y, p = _single(n=20, c=3)
    with pytest.raises(ValueError, match='n_boot'):
        bootstrap_metrics(y, p, multilabel=False, n_boot=n_boot)
