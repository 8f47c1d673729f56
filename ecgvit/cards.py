"""Machine-readable model cards: the Hugging Face YAML metadata of an encoder's ``README.md``.

A card's front matter is built with huggingface_hub's own ``ModelCardData`` and ``EvalResult``, so the Hub reads it
as it writes it: ``library_name: timm`` (the folder is a timm checkpoint: ``config.json`` + ``model.safetensors``,
loaded by ``timm.create_model('hf-hub:...')`` once ``import ecgvit`` has registered the architectures),
``pipeline_tag: feature-extraction`` (the encoder returns embeddings), ``license``, ``tags``, ``datasets``,
``metrics`` and a ``model-index`` whose results are generated from evaluation output rows, never typed in.

Results rows are plain dicts, one per number (long format)::

    {'task': 'ptbxl_superdiagnostic', 'protocol': 'linear', 'metric': 'auroc_macro', 'value': 0.793}

with optional ``dataset`` (a source name, default: the task's first word), ``config`` (default: the rest of the task
name), ``split`` (default 'test'). :func:`benchmark_rows` turns the benchmark harness's ``results.csv`` (one row per
method x protocol, a column per metric) into these, :func:`suite_rows` the evaluation suite's ``results.csv``.

Dataset ids: none of the ECG sets used here is published on the Hub by its owners (PhysioNet, Zenodo), so the
``datasets:`` entries are the sets' short names, not Hub dataset ids (:data:`DATASETS`).

Example:
    >>> rows = [{'task': 'ptbxl_superdiagnostic', 'protocol': 'linear', 'metric': 'auroc_macro', 'value': 0.79}]
    >>> data = card_data('ecg_vit_mae_moco', datasets=['ptbxl'], eval_rows=rows)
    >>> data.eval_results[0].metric_type, data.eval_results[0].dataset_type
    ('roc_auc', 'ptb-xl')
"""
import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from huggingface_hub import EvalResult, ModelCardData

__all__ = ['DATASETS', 'METRICS', 'PROTOCOLS', 'TAGS', 'dataset_entry', 'eval_results', 'benchmark_rows',
           'suite_rows', 'card_data', 'encoder_card_data', 'front_matter', 'split_front_matter']

TAGS = ('ecg', 'electrocardiogram', 'time-series', 'vision-transformer', 'self-supervised', 'timm', 'ecgvit')

# ecgvit source / task prefix -> (``datasets:`` entry, pretty name). Short names: no owner publishes these on the Hub.
DATASETS: Dict[str, Tuple[str, str]] = {
    'ptbxl': ('ptb-xl', 'PTB-XL'),
    'ludb': ('ludb', 'LUDB'),
    'cinc': ('physionet-challenge-2021', 'PhysioNet/CinC Challenge 2020/2021 training data'),
    'cinc2021': ('physionet-challenge-2021', 'PhysioNet/CinC Challenge 2020/2021 training data'),
    'code15': ('code-15', 'CODE-15%'),
    'cpsc2018': ('cpsc2018', 'CPSC 2018 (China Physiological Signal Challenge)'),
    'chapman': ('chapman-shaoxing', 'Chapman-Shaoxing 12-lead ECG'),
    'synthetic': ('ecgvit-synthetic', 'ecgvit synthetic ECGs'),
    'pool': ('ecgvit-pool', 'pooled ECG sources'),
}

# ecgvit metric -> (Hub metric id, readable name, metric config).
METRICS: Dict[str, Tuple[str, str, Optional[str]]] = {
    'auroc_macro': ('roc_auc', 'macro AUROC', 'macro'),
    'auroc_ovr': ('roc_auc', 'macro AUROC, one-vs-rest', 'ovr'),
    'auc_ovo': ('roc_auc', 'macro AUC, one-vs-one', 'ovo'),
    'auroc': ('roc_auc', 'AUROC', None),
    'auroc_within': ('roc_auc', 'AUROC within source', 'within-source'),
    'auprc': ('average_precision', 'AUPRC', None),
    'f1_macro': ('f1', 'macro F1', 'macro'),
    'accuracy': ('accuracy', 'accuracy', None),
    'r2': ('r_squared', 'R^2', None),
    'r2_within': ('r_squared', 'R^2 within source', 'within-source'),
    'mae': ('mae', 'mean absolute error', None),
}

PROTOCOLS = {'linear': 'linear probe', 'finetune': 'fine-tuning'}
_TASK_TYPE = 'time-series-classification'  # ECG records are multichannel time series; no Hub pipeline tag fits better


def dataset_entry(name: str) -> Tuple[str, str]:
    """(``datasets:`` entry, pretty name) of an ecgvit source or task prefix ('ptbxl', 'cinc2021_samples', ...).

    Args:
        name: The source name, any case, optionally with a ``:label-set`` suffix (``'ptbxl:superdiagnostic'``); an
            unknown one is returned lower-cased, with itself as the pretty name.
    """
    key = name.lower().split(':')[0]
    for suffix in ('_samples', '_records'):
        key = key[:-len(suffix)] if key.endswith(suffix) else key
    return DATASETS.get(key, (key, name))


def _task_parts(task: str) -> Tuple[str, Optional[str]]:
    """'ptbxl_superdiagnostic' -> ('ptbxl', 'superdiagnostic'); a task not named after a source -> ('pool', task)."""
    head, _, rest = task.partition('_')
    return (head, rest or None) if head.lower() in DATASETS else ('pool', task)


def _number(value: Any) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def eval_results(rows: Iterable[Mapping[str, Any]], digits: int = 4) -> List[EvalResult]:
    """huggingface_hub ``EvalResult`` objects from results rows (see the module docstring); rows without a number
    (a failed or skipped evaluation) are left out.

    One (task, dataset, split) is one model-index result; the protocol is part of each metric's name, because the Hub
    groups results by task and dataset and would merge a linear probe with a fine-tuning of the same task.

    Args:
        rows: Results rows (``task``, ``metric``, ``value``; optional ``protocol``, ``dataset``, ``config``, ``split``).
        digits: Decimals the values are rounded to.
    """
    out = []
    for row in rows:
        value = _number(row.get('value'))
        if value is None:
            continue
        task = str(row['task'])
        source, config = _task_parts(task)
        dataset_id, pretty = dataset_entry(str(row.get('dataset') or source))
        config = row.get('config', config)
        metric = str(row['metric'])
        metric_type, metric_name, metric_config = METRICS.get(metric, (metric, metric, None))
        protocol = str(row.get('protocol') or '')
        label = PROTOCOLS.get(protocol, protocol)
        out.append(EvalResult(
            task_type=_TASK_TYPE, task_name=f'ECG classification: {task}',
            dataset_type=dataset_id, dataset_name=pretty + (f' ({config})' if config else ''),
            dataset_config=config, dataset_split=str(row.get('split') or 'test'),
            metric_type=metric_type, metric_value=round(value, digits),
            metric_name=f'{metric_name} ({label})' if label else metric_name, metric_config=metric_config))
    return out


def benchmark_rows(results: Iterable[Mapping[str, Any]], method: str, task: str,
                   metrics: Sequence[str] = ('auroc_macro', 'auc_ovo', 'auroc_ovr', 'f1_macro'),
                   ) -> List[Dict[str, Any]]:
    """Results rows of ``method`` from the benchmark harness's ``results.csv`` rows (``ecgvit benchmark``,
    ``benchmarks/release_weights.py``): one per protocol x metric with a value; failed rows are left out.

    Args:
        results: The csv rows (dicts with ``method``, ``protocol``, a column per metric, ``error``).
        method: The row name of the model the card describes (e.g. 'mae_moco').
        task: The task these rows evaluate (e.g. 'ptbxl_superdiagnostic').
        metrics: Columns to report.
    """
    rows = []
    for r in results:
        if r.get('method') != method or r.get('error'):
            continue
        for metric in metrics:
            value = _number(r.get(metric))
            if value is not None:
                rows.append({'task': task, 'protocol': r.get('protocol', ''), 'metric': metric, 'value': value,
                             'ci_lo': _number(r.get(f'{metric}_lo')), 'ci_hi': _number(r.get(f'{metric}_hi')),
                             'n_test': r.get('n_test')})
    return rows


def suite_rows(results: Iterable[Mapping[str, Any]], encoder: str, fraction: float = 1.0,
               leads: str = '12') -> List[Dict[str, Any]]:
    """Results rows of ``encoder`` from the evaluation suite's ``results.csv`` rows (task, metric, encoder,
    fraction, mean, ci_lo, ci_hi, n_test: linear probes on frozen embeddings), at one label fraction and one lead
    subset (the ``leads`` column: '12', '6', '1', ...; rows written before it existed are 12-lead).

    Args:
        results: The csv rows.
        encoder: The encoder column's value of the model the card describes.
        fraction: The label fraction of the rows kept (1.0: the full training labels).
        leads: The lead subset of the rows kept.
    """
    rows = []
    for r in results:
        if r.get('encoder') != encoder or _number(r.get('fraction', 1.0)) != float(fraction) or \
                str(r.get('leads') or '12') != str(leads):
            continue
        protocol = 'linear' if float(fraction) == 1.0 else f'linear probe, {float(fraction):.0%} of training labels'
        rows.append({'task': r['task'], 'protocol': protocol, 'metric': r['metric'], 'value': _number(r.get('mean')),
                     'ci_lo': _number(r.get('ci_lo')), 'ci_hi': _number(r.get('ci_hi')), 'n_test': r.get('n_test')})
    return rows


def card_data(model_name: str, *, license: str = 'apache-2.0', datasets: Sequence[str] = (),
              eval_rows: Iterable[Mapping[str, Any]] = (), tags: Sequence[str] = ()) -> ModelCardData:
    """The Hub metadata of an ecgvit encoder's card.

    Args:
        model_name: The model-index name (the architecture or Hub repo name).
        license: SPDX-style id of the weights' licence.
        datasets: ecgvit source names of the pretraining and evaluation data (mapped by :func:`dataset_entry`).
        eval_rows: Results rows (module docstring); their datasets are added to ``datasets``.
        tags: Extra tags (e.g. the pretraining method).
    """
    results = eval_results(eval_rows)
    names = [dataset_entry(d)[0] for d in datasets] + [r.dataset_type for r in results]
    metrics = [r.metric_type for r in results]
    return ModelCardData(
        library_name='timm', license=license, pipeline_tag='feature-extraction',
        tags=list(dict.fromkeys([*TAGS, *tags])), datasets=list(dict.fromkeys(names)) or None,
        metrics=list(dict.fromkeys(metrics)) or None, model_name=model_name if results else None,
        eval_results=results or None)


def encoder_card_data(config: Mapping[str, Any], datasets: Sequence[str] = (),
                      eval_rows: Iterable[Mapping[str, Any]] = ()) -> ModelCardData:
    """:func:`card_data` of an encoder from its ``config.json`` content (architecture, licence, pretraining method).

    Args:
        config: The parsed ``config.json`` (``architecture``, ``pretrained_cfg``).
        datasets: ecgvit source names of the pretraining and evaluation data.
        eval_rows: Results rows (module docstring).
    """
    cfg = config.get('pretrained_cfg') or {}
    method = cfg.get('pretrain_method')
    return card_data(str(config.get('architecture') or 'ecg_vit'), license=cfg.get('license') or 'apache-2.0',
                     datasets=datasets, eval_rows=eval_rows, tags=[method.replace('_', '-')] if method else [])


def front_matter(data: ModelCardData) -> str:
    """The card's YAML block, ``---`` lines included.

    Args:
        data: The card's metadata (:func:`card_data`).
    """
    return f'---\n{data.to_yaml()}\n---\n'


def split_front_matter(text: str) -> Tuple[str, str]:
    """(YAML block without its ``---`` lines, body) of a card; ('', text) when it has none.

    Args:
        text: The card's text (README.md).
    """
    if text.startswith('---\n'):
        end = text.find('\n---\n', 4)
        if end != -1:
            return text[4:end], text[end + 5:]
    return '', text
