"""Evaluation: linear probe (:class:`ProbeConfig`), end-to-end fine-tuning (:class:`FinetuneConfig`), metrics with
bootstrap confidence intervals, and the evaluation suite (``run_suite``: many tasks, linear probes on cached
embeddings, paired comparisons between encoders)."""
from .common import TaskInfo, fit_classifier, infer_task, predict
from .config import FinetuneConfig, ProbeConfig
from .finetune import finetune, finetune_param_groups
from .linear_probe import extract_features, linear_probe
from .metrics import (
    METRIC_NAMES,
    average_precision,
    binary_auc,
    bootstrap_metrics,
    compute_metrics,
    multilabel_macro_auprc,
    multilabel_macro_auroc,
    ovo_macro_auc,
    ovr_macro_auc,
    paired_bootstrap_diff,
    primary_metric,
    weighted_metric,
)
from .pooling import embed_records, predict_records
from .suite import SuiteConfig, run_suite

__all__ = [
    'METRIC_NAMES', 'FinetuneConfig', 'ProbeConfig', 'TaskInfo', 'binary_auc', 'bootstrap_metrics', 'compute_metrics',
    'embed_records', 'extract_features', 'finetune', 'finetune_param_groups', 'fit_classifier', 'infer_task',
    'linear_probe', 'multilabel_macro_auroc', 'ovo_macro_auc', 'ovr_macro_auc', 'predict', 'predict_records',
    'primary_metric', 'average_precision', 'multilabel_macro_auprc', 'paired_bootstrap_diff', 'weighted_metric',
    'SuiteConfig', 'run_suite',
]
