"""Evaluation: linear probe (:class:`ProbeConfig`), end-to-end fine-tuning (:class:`FinetuneConfig`) and metrics with
bootstrap confidence intervals."""
from .common import TaskInfo, fit_classifier, infer_task, predict
from .config import FinetuneConfig, ProbeConfig
from .finetune import finetune, finetune_param_groups
from .linear_probe import extract_features, linear_probe
from .metrics import (
    METRIC_NAMES,
    binary_auc,
    bootstrap_metrics,
    compute_metrics,
    multilabel_macro_auroc,
    ovo_macro_auc,
    ovr_macro_auc,
    primary_metric,
)
from .pooling import embed_records, predict_records

__all__ = [
    'METRIC_NAMES', 'FinetuneConfig', 'ProbeConfig', 'TaskInfo', 'binary_auc', 'bootstrap_metrics', 'compute_metrics',
    'embed_records', 'extract_features', 'finetune', 'finetune_param_groups', 'fit_classifier', 'infer_task',
    'linear_probe', 'multilabel_macro_auroc', 'ovo_macro_auc', 'ovr_macro_auc', 'predict', 'predict_records',
    'primary_metric',
]
