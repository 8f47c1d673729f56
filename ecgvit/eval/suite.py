"""The powered evaluation suite: many tasks, linear probes on cached embeddings, paired comparisons between encoders.

One call (or ``ecgvit benchmark --suite real --data-dir DIR``) evaluates any set of encoders (registered names with
their published weights, checkpoints, or modules) plus ``random``, a seed-0 random initialisation of the first
encoder's architecture (the floor), on the tasks of :mod:`ecgvit.eval.suite_data`:

1. every source is preprocessed once per model input format (``Preprocessing.from_pretrained_cfg``, checked with
   ``check_compatible``; records shorter than the window are zero-padded, longer ones centre-cropped) into a memmap
   cache, and embedded once per encoder (:mod:`ecgvit.eval.embeddings`, reused across runs);
2. per task, label fraction and seed, a linear probe is fitted on the standardised embeddings (statistics of the whole
   training split, which uses no labels): L2-regularised logistic regression (one per label for multi-label tasks,
   multinomial for single-label ones) or ridge regression, with the L2 strength chosen on the full validation split;
   the fraction's training subset depends only on the labels and the seed, so every encoder sees the same records;
3. test metrics are averaged over seeds, and every pair of encoders is compared on the same test records with a
   paired bootstrap: one set of resamples per (task, fraction), shared by every encoder and metric. "better" /
   "worse" means the 95% CI of the difference excludes 0.

At fraction 1.0 the probe is deterministic (convex problem, full batch, no subsampling), so one fit stands for every
seed and the seed sd there is 0 by construction.

Reduced leads (``SuiteConfig.leads``, ``--leads 12,6,1``): every subset but the full 12 leads runs the PTB-XL tasks
again on input read with only those leads (``Preprocessing(input_leads=...)``: the others are zero and masked before
the encoder), with its own caches and embeddings; every output row carries its ``leads``. An encoder whose weights
were not trained on a subset (``lead_sets`` in its pretrained cfg) is refused unless ``allow_untrained_leads``; the
random floor runs on every subset (``lead_check`` says which case a row is).

Outputs in ``out``: predictions.csv, results.csv, results.md, pairwise.csv, differences.png, splits.csv,
skipped.csv and suite_config.json (see :func:`run_suite`).
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ecgvit.constants import LEADS
from ecgvit.factory import create_model, list_models
from ecgvit.files import atomic_open, atomic_savefig, atomic_write_text
from ecgvit.lead_sets import describe_leads

from .leads import check_encoder_leads, leads_label, parse_lead_subsets
from .metrics import LOWER_IS_BETTER, bootstrap_weights, diff_interval, verdict, weighted_metric
from .suite_data import TASK_NAMES, Task, assign_record_splits, build_tasks, load_sources, subsample_train

__all__ = ['SuiteConfig', 'run_suite', 'resolve_encoders', 'fit_probe', 'preprocessing_for', 'source_caches',
           'bootstrap_seed', 'c_sensitivity']

_logger = logging.getLogger(__name__)



@dataclass
class SuiteConfig:
    """Settings of a suite run (written to ``suite_config.json``).

    Attributes:
        data_dir: Folder holding ptbxl/, ludb/, cinc2021_samples/, code15_samples/ (any subset).
        out: Output folder.
        encoders: name -> a registered model name (loaded with ``pretrained=True``), a checkpoint path (anything
            ``ecgvit.hub.load_encoder`` reads) or an ``nn.Module`` with a ``pretrained_cfg``.
        random_floor: Add ``random`` (seed-0 random init of the first encoder's architecture).
        seeds: Probe seeds (label-fraction draws).
        fractions: Fractions of the training labels.
        tasks: Task names to run (default: all of ``suite_data.TASK_NAMES`` whose source is present).
        n_boot: Bootstrap resamples.
        split_seed: Seed of the patient splits of every source but PTB-XL.
        split_fractions: train/val/test fractions of patients for those sources.
        min_positives: Positive records a label (class) needs in train and in test to stay in its task (1: drop only
            labels without positives; more makes per-label AUROCs less noisy at the cost of labels).
        c_grid: Inverse L2 strengths tried for logistic regression (sklearn's C); ridge uses alpha = 1 / C.
        max_iter: L-BFGS iterations per logistic fit.
        cache_dir: Preprocessed signals and embeddings (default: ``out/cache``); reused across runs.
        batch_size: Records per forward pass when embedding.
        device: 'cpu' / 'cuda' / None (CUDA when available).
        amp: Autocast of the embedding pass.
        workers: Processes for reading and preprocessing records.
        progress: Progress bars.
        leads: Lead subsets to evaluate on (``ecgvit.eval.leads.parse_lead_subsets``: presets '12', '6', '1',
            'precordial' or leads joined by '+' such as 'I+II'); every subset but all 12 runs the PTB-XL tasks only.
        allow_untrained_leads: Evaluate encoders on subsets their weights were not trained on (with a warning and
            ``lead_check='untrained'`` in the rows) instead of refusing.
        global_pool: Read every encoder (and the floor) through this pooling of its tokens: ``'token'`` ([CLS]) or
            ``'avg'`` (the mean of the normed patch tokens, ``reset_classifier(0, 'avg')``); None keeps each one's own.
        c_sensitivity: Tasks whose headline metric at fraction 1.0 is also reported at every C of ``c_grid``, for
            each encoder and for each pair of encoders probed at the same C (``c_sensitivity.csv``): how much of a
            difference between two encoders comes from the C each one's validation split chose.
    """
    data_dir: str
    out: str
    encoders: Dict[str, Any] = field(default_factory=lambda: {'ecg_vit_mae_moco': 'ecg_vit_mae_moco'})
    random_floor: bool = True
    seeds: Tuple[int, ...] = (0, 1, 2)
    fractions: Tuple[float, ...] = (0.01, 0.1, 1.0)
    tasks: Optional[Tuple[str, ...]] = None
    n_boot: int = 1000
    split_seed: int = 0
    split_fractions: Tuple[float, float, float] = (0.6, 0.2, 0.2)
    min_positives: int = 1
    c_grid: Tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    max_iter: int = 300
    cache_dir: Optional[str] = None
    batch_size: int = 64
    device: Optional[str] = None
    amp: str = 'fp32'
    workers: int = 0
    progress: bool = False
    leads: Tuple[str, ...] = ('12',)
    allow_untrained_leads: bool = False
    global_pool: Optional[str] = None
    c_sensitivity: Tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------------------------
# Encoders


def _architecture(model: nn.Module) -> Optional[str]:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    return cfg.get('architecture') if isinstance(cfg, dict) else getattr(cfg, 'architecture', None)


def resolve_encoders(specs: Dict[str, Any], random_floor: bool = True,
                     global_pool: Optional[str] = None) -> Dict[str, Tuple[nn.Module, Dict[str, Any]]]:
    """Build every encoder of a suite: name -> (module in eval mode, description of where it came from).

    Args:
        specs: name -> a registered model name (loaded with ``pretrained=True``), a checkpoint or run folder
            (``ecgvit.hub.load_encoder``) or an ``nn.Module`` with a ``pretrained_cfg`` dict.
        random_floor: Add ``'random'`` first: a seed-0 random init of the first encoder's architecture, reading the
            same input format and pooling its tokens the same way (``global_pool``).
        global_pool: Set every encoder's ``global_pool`` to this (a copy when a module was given); None keeps them.

    Returns:
        name -> (encoder in eval mode, where it came from), ``'random'`` first when added.

    Raises:
        ValueError: no encoder, an encoder named 'random' beside the floor, an encoder without a ``pretrained_cfg``
            dict, or a floor asked of a first encoder whose architecture is not registered.
    """
    from ecgvit.hub import load_encoder  # run folders and checkpoints, as every command reads them

    if not specs:
        raise ValueError('The suite needs at least one encoder: a registered name (e.g. ecg_vit_mae_moco) or a '
                         'checkpoint, as name=path.')
    if random_floor and 'random' in specs:
        raise ValueError("'random' is the suite's own floor; give your encoder another name.")
    out: Dict[str, Tuple[nn.Module, Dict[str, Any]]] = {}
    for name, spec in specs.items():
        if isinstance(spec, nn.Module):
            model, info = spec, {'module': type(spec).__name__}
        elif str(spec) in list_models() and not Path(str(spec)).exists():
            model, info = create_model(str(spec), pretrained=True), {'model': str(spec), 'pretrained': True}
        else:
            model, info = load_encoder(str(spec), None, None)
        if global_pool is not None and getattr(model, 'global_pool', global_pool) != global_pool:
            if isinstance(spec, nn.Module):
                model = copy.deepcopy(model)  # the caller's module keeps its pooling
            model.reset_classifier(0, global_pool)
            info = dict(info, global_pool=global_pool)
        if not isinstance(getattr(model, 'pretrained_cfg', None), dict):
            raise ValueError(f'Encoder {name!r} has no pretrained_cfg dict (sampling_rate, input_size, lead_names), '
                             f'so the suite cannot tell which data it takes; set model.pretrained_cfg.')
        out[name] = (model.eval(), info)
    if random_floor:
        ref_name, (ref, _) = next(iter(out.items()))
        arch = _architecture(ref)
        if arch is None or arch not in list_models():
            raise ValueError(f'The random floor copies the architecture of the first encoder ({ref_name!r}), whose '
                             f'pretrained_cfg names no registered architecture ({arch!r}); put a registered encoder '
                             f'first or pass random_floor=False.')
        size = getattr(getattr(ref, 'patch_embed', None), 'img_size', None)
        kwargs = {'img_size': int(size[-1])} if size is not None else {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_model(arch, pretrained=False, **kwargs)
        model.pretrained_cfg = dict(ref.pretrained_cfg)  # same input format as the encoder it is the floor of
        pool = getattr(ref, 'global_pool', None)
        if pool is not None and pool != getattr(model, 'global_pool', pool):  # and the same embedding of its tokens
            model.reset_classifier(0, pool)
        out = {'random': (model.eval(), {'model': arch, 'pretrained': False, 'init_seed': 0,
                                         'floor_of': ref_name}), **out}
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Probes


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x - mean) / std).astype(np.float64)


def _val_score(kind: str, metric: str, y: np.ndarray, s: np.ndarray) -> float:
    v = float(weighted_metric(metric, y, s, np.ones((1, len(y))))[0])
    return -v if metric in LOWER_IS_BETTER else v


def fit_probe(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
              x_test: np.ndarray, c_grid: Sequence[float], max_iter: int = 300,
              num_classes: Optional[int] = None) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Fit a linear probe for each L2 strength, keep the best on validation, return its test scores.

    Args:
        kind: 'multilabel', 'binary', 'multiclass' or 'regression'.
        x_train, x_val, x_test: Standardised features.
        y_train, y_val: Targets (multi-hot (N, L), 0/1, class index or float).
        c_grid: Inverse L2 strengths (ridge: alpha = 1 / C).
        max_iter: L-BFGS iterations.
        num_classes: Classes of a multiclass task (probabilities of classes absent from the training subset are 0).

    Returns:
        (test scores: (N, L) probabilities, (N,) probability, (N, C) probabilities or (N,) predictions,
        {'C': chosen, 'val': validation metric per C}).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge

    c_grid = sorted(c_grid)
    val_metric = {'multilabel': 'auroc', 'binary': 'auroc', 'multiclass': 'auc_ovo', 'regression': 'mae'}[kind]
    val_scores, test_scores = [], []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        if kind == 'regression':
            for c in c_grid:
                m = Ridge(alpha=1.0 / c).fit(x_train, y_train)
                val_scores.append(m.predict(x_val))
                test_scores.append(m.predict(x_test))
        elif kind == 'multiclass':
            classes = np.unique(y_train)
            m = LogisticRegression(max_iter=max_iter, warm_start=True)
            for c in c_grid:
                pv = np.zeros((len(x_val), num_classes))
                pt = np.zeros((len(x_test), num_classes))
                if len(classes) > 1:
                    m.set_params(C=c).fit(x_train, y_train)
                    pv[:, classes], pt[:, classes] = m.predict_proba(x_val), m.predict_proba(x_test)
                else:
                    pv[:, classes], pt[:, classes] = 1.0, 1.0
                val_scores.append(pv)
                test_scores.append(pt)
        else:
            yt = y_train.reshape(len(y_train), -1)
            n_labels = yt.shape[1]
            pv = np.zeros((len(c_grid), len(x_val), n_labels))
            pt = np.zeros((len(c_grid), len(x_test), n_labels))
            for j in range(n_labels):
                t = yt[:, j] > 0.5
                if t.all() or not t.any():  # nothing to learn from: a constant score (AUROC 0.5, AP = prevalence)
                    pv[:, :, j] = pt[:, :, j] = float(t.mean())
                    continue
                m = LogisticRegression(max_iter=max_iter, warm_start=True)
                for k, c in enumerate(c_grid):
                    m.set_params(C=c).fit(x_train, t)
                    pv[k, :, j], pt[k, :, j] = m.predict_proba(x_val)[:, 1], m.predict_proba(x_test)[:, 1]
            squeeze = kind == 'binary'
            val_scores = [p[:, 0] if squeeze else p for p in pv]
            test_scores = [p[:, 0] if squeeze else p for p in pt]
    vals = [_val_score(kind, val_metric, y_val, s) for s in val_scores]
    finite = [v for v in vals if not math.isnan(v)]
    best = int(np.nanargmax(vals)) if finite else len(c_grid) // 2  # first best = strongest L2 among ties
    # Every C's test scores stay in memory (not in predictions.csv) for the C-sensitivity report.
    return test_scores[best], {'C': c_grid[best], 'val_metric': val_metric, 'c_grid': c_grid,
                               'test_by_c': test_scores,
                               'val': [None if math.isnan(v) else (-v if val_metric in LOWER_IS_BETTER else v)
                                       for v in vals]}


def _stable_seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256('|'.join(map(str, parts)).encode()).digest()[:4], 'little')


def bootstrap_seed(task: str, fraction: float) -> int:
    """The seed of the suite's bootstrap resamples of ``task`` at label ``fraction`` (one set for every encoder), so a
    comparison made later from kept predictions draws the same resamples as the suite did.

    Args:
        task: The task's name (e.g. 'ptbxl_superdiagnostic').
        fraction: The label fraction of the probes (e.g. 0.1).

    Returns:
        A seed from a hash of the two, the same in every process and Python version.
    """
    return _stable_seed('boot', task, fraction)


def _probe_task(task: Task, feats: np.ndarray, cfg: SuiteConfig) -> Dict[Tuple[float, int], Dict[str, Any]]:
    """(fraction, seed) -> {'scores': test scores, 'n_train', 'C', ...} for one encoder's features of ``task``."""
    tr, va, te = task.indices('train'), task.indices('val'), task.indices('test')
    mean, std = feats[tr].mean(0), feats[tr].std(0)
    std = np.where(std > 1e-6, std, 1.0)
    x = {s: _standardise(feats[i], mean, std) for s, i in (('train', tr), ('val', va), ('test', te))}
    num_classes = len(task.label_names) if task.kind == 'multiclass' else None
    out = {}
    for fraction in cfg.fractions:
        seeds = cfg.seeds[:1] if fraction >= 1.0 else cfg.seeds  # deterministic at 1.0: one fit stands for all
        for seed in seeds:
            sub = subsample_train(task.y[tr], task.kind, fraction, _stable_seed(task.name, fraction, seed))
            scores, info = fit_probe(task.kind, x['train'][sub], task.y[tr][sub], x['val'], task.y[va], x['test'],
                                     cfg.c_grid, cfg.max_iter, num_classes)
            out[(fraction, seed)] = dict(info, scores=scores, n_train=int(len(sub)))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Data meets model


def preprocessing_for(model: nn.Module, leads: Optional[Tuple[str, ...]] = None):
    """How the suite reads records for ``model`` (on the lead subset ``leads``): its pretrained cfg's format.

    Args:
        model: An encoder with a ``pretrained_cfg`` (sampling rate, input length, leads).
        leads: The leads read (the others zero-filled and masked); None or all 12 reads every lead.

    Returns:
        A ``Preprocessing`` that centre-crops longer records, zero-pads shorter ones and keeps a flat lead as zeros.
    """
    from ecgvit.data import Preprocessing

    # Shorter records (CODE-15%: mostly 7.3 s) are zero-padded, longer ones centre-cropped; a flat lead is kept at 0
    # instead of dropping the record. A lead subset reads only its leads (the others zero, masked).
    pp = Preprocessing.from_pretrained_cfg(model.pretrained_cfg, crop='center', pad='zero', empty_lead_policy='zero',
                                           input_leads=None if leads is None or leads == LEADS else list(leads))
    pp.check_compatible(model.pretrained_cfg)
    return pp


def _lead_checks(encoders: Dict[str, Tuple[nn.Module, Dict[str, Any]]], subsets: List[Tuple[str, ...]],
                 allow_untrained: bool) -> Dict[Tuple[str, str], str]:
    """(subset label, encoder) -> 'trained', 'untrained' (allowed) or 'random init', checked before any work."""
    out = {}
    for leads in subsets:
        for name, (model, info) in encoders.items():
            random_init = info.get('pretrained') is False and not info.get('checkpoint')
            _, trained = check_encoder_leads(model, leads, allow_untrained, f'Encoder {name!r}', random_init)
            out[(leads_label(leads), name)] = 'random init' if random_init else 'trained' if trained else 'untrained'
    return out


def source_caches(sources, pp, cache_root: Path, workers: int = 0, progress: bool = False) -> Dict[str, Path]:
    """Source name -> the folder of its signal cache under ``cache_root`` for preprocessing ``pp`` (built if needed).

    Args:
        sources: Source name -> its dataset (``load_sources``).
        pp: The ``Preprocessing`` to cache the signals with (its fingerprint names the folder).
        cache_root: Folder of the suite's caches; signals go under ``signals/<source>-<fingerprint>``.
        workers: Processes reading and preprocessing records (0: this process).
        progress: Show progress bars.
    """
    from ecgvit.data import build_cache

    out = {}
    for name, src in sources.items():
        out[name] = build_cache(src, pp, cache_root / 'signals' / f'{name}-{pp.fingerprint()[:12]}',
                                num_workers=workers, progress=progress)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Statistics


def _seed_scores(fits: Dict[Tuple[float, int], Dict[str, Any]], fraction: float) -> List[np.ndarray]:
    return [v['scores'] for (f, _), v in sorted(fits.items(), key=lambda kv: kv[0][1]) if f == fraction]


def c_sensitivity(tasks: List[Task], fits: Dict[str, Dict[str, Dict]], encoders: List[str],
                  cfg: SuiteConfig) -> List[Dict[str, Any]]:
    """The headline metric of each task in ``cfg.c_sensitivity`` at every C of the grid (fraction 1.0, the first
    seed), with every pair of encoders paired at the same C on the suite's own bootstrap resamples.

    The suite's verdicts use the C each encoder's validation split chose; when two encoders' choices differ, their
    difference mixes what the weights do with what the regularisation does. These rows separate the two. They decide
    nothing.

    Returns:
        Rows with ``task, metric, fraction (1.0), C, encoder_a, encoder_b`` (``encoder_b`` empty for a single
        encoder's score), ``a`` (and ``b``, ``diff``, ``diff_lo``, ``diff_hi`` for pairs) and ``chosen_a`` /
        ``chosen_b`` (whether that C is the one validation chose).
    """
    if 1.0 not in cfg.fractions:
        return []
    rows = []
    for task in tasks:
        if task.name not in cfg.c_sensitivity:
            continue
        te = task.indices('test')
        y, groups = task.y[te], task.groups[te]
        weights = bootstrap_weights(len(y), cfg.n_boot, bootstrap_seed(task.name, 1.0))
        ones = np.ones((1, len(y)))
        metric = task.headline
        fit = {e: min(((k, v) for k, v in fits[e][task.name].items() if k[0] == 1.0), key=lambda kv: kv[0][1])[1]
               for e in encoders}
        for k, c in enumerate(fit[encoders[0]]['c_grid']):
            point = {e: float(weighted_metric(metric, y, fit[e]['test_by_c'][k], ones, groups)[0]) for e in encoders}
            boot = {e: weighted_metric(metric, y, fit[e]['test_by_c'][k], weights, groups) for e in encoders}
            for i, a in enumerate(encoders):
                rows.append({'task': task.name, 'metric': metric, 'fraction': 1.0, 'C': c, 'encoder_a': a,
                             'encoder_b': '', 'a': point[a], 'chosen_a': fit[a]['C'] == c})
                for b in encoders[i + 1:]:
                    r = diff_interval(point[a], point[b], boot[a], boot[b], n_test=len(y))
                    rows.append({'task': task.name, 'metric': metric, 'fraction': 1.0, 'C': c, 'encoder_a': a,
                                 'encoder_b': b,
                                 'a': r['a'], 'b': r['b'], 'diff': r['diff'], 'diff_lo': r['diff_lo'],
                                 'diff_hi': r['diff_hi'], 'chosen_a': fit[a]['C'] == c, 'chosen_b': fit[b]['C'] == c})
    return rows


def _compare(tasks: List[Task], fits: Dict[str, Dict[str, Dict]], encoders: List[str], cfg: SuiteConfig):
    results, pairwise = [], []
    for task in tasks:
        y = task.y[task.indices('test')]
        groups = task.groups[task.indices('test')]
        for fraction in cfg.fractions:
            weights = bootstrap_weights(len(y), cfg.n_boot, bootstrap_seed(task.name, fraction))
            for metric in task.metrics:
                per = {e: _seed_scores(fits[e][task.name], fraction) for e in encoders}
                ones = np.ones((1, len(y)))
                seed_vals = {e: [float(weighted_metric(metric, y, s, ones, groups)[0]) for s in per[e]]
                             for e in encoders}
                # One set of resamples for every encoder: each encoder's metric per resample is computed once and
                # every pairwise difference is taken resample by resample (paired).
                boot = {e: np.mean([weighted_metric(metric, y, s, weights, groups) for s in per[e]], axis=0)
                        for e in encoders}
                pairs = {}
                for a in encoders:
                    for b in encoders:
                        if a != b:
                            pairs[(a, b)] = diff_interval(float(np.mean(seed_vals[a])), float(np.mean(seed_vals[b])),
                                                          boot[a], boot[b], n_test=len(y))
                for i, a in enumerate(encoders):
                    for b in encoders[i + 1:]:
                        r = pairs[(a, b)]
                        pairwise.append({'task': task.name, 'metric': metric, 'fraction': fraction,
                                         'encoder_a': a, 'encoder_b': b, 'a': r['a'], 'b': r['b'],
                                         'diff': r['diff'], 'diff_lo': r['diff_lo'], 'diff_hi': r['diff_hi'],
                                         'p_value': r['p_value'], 'verdict': verdict(r['diff_lo'], r['diff_hi'],
                                                                                    metric),
                                         'n_test': r['n_test'], 'n_boot': r['n_boot']})
                for e in encoders:
                    vals = boot[e][~np.isnan(boot[e])]
                    point = float(np.mean(seed_vals[e]))
                    fit_list = [v for (f, _), v in fits[e][task.name].items() if f == fraction]
                    row = {'task': task.name, 'kind': task.kind, 'metric': metric, 'headline': metric == task.headline,
                           'encoder': e,
                           'fraction': fraction, 'n_seeds': len(seed_vals[e]),
                           'n_train': int(np.mean([v['n_train'] for v in fit_list])), 'n_test': len(y),
                           'n_labels': len(task.label_names), 'mean': point,
                           'sd': float(np.std(seed_vals[e], ddof=1)) if len(seed_vals[e]) > 1 else 0.0,
                           'ci_lo': float(np.quantile(vals, 0.025)) if len(vals) else math.nan,
                           'ci_hi': float(np.quantile(vals, 0.975)) if len(vals) else math.nan,
                           'C': ','.join(f'{v["C"]:g}' for v in fit_list)}
                    if e != 'random' and 'random' in encoders:
                        r = pairs[(e, 'random')]
                        row.update({'diff_vs_random': r['diff'], 'diff_lo': r['diff_lo'], 'diff_hi': r['diff_hi'],
                                    'verdict_vs_random': verdict(r['diff_lo'], r['diff_hi'], metric)})
                    else:
                        row.update({'diff_vs_random': math.nan, 'diff_lo': math.nan, 'diff_hi': math.nan,
                                    'verdict_vs_random': ''})
                    others = [f'{verdict(pairs[(e, o)]["diff_lo"], pairs[(e, o)]["diff_hi"], metric)} vs {o}'
                              for o in encoders if o not in (e, 'random')]
                    row['vs_others'] = '; '.join(others)
                    results.append(row)
    return results, pairwise


# ---------------------------------------------------------------------------------------------------------------------
# Outputs


def _write_csv(path: Path, rows: List[Dict[str, Any]], columns: Optional[List[str]] = None) -> None:
    columns = columns or (list(rows[0]) if rows else [])
    with atomic_open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction='ignore')
        w.writeheader()
        for r in rows:
            w.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in r.items()})


def _write_predictions(path: Path, runs: List[Dict[str, Any]]) -> int:
    """Every test score of every run (lead subset), task, encoder, fraction and seed; returns the row count."""
    n = 0
    with atomic_open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['task', 'encoder', 'seed', 'fraction', 'record_id', 'label', 'y', 'score', 'leads'])
        for run in runs:
            leads = leads_label(run['leads'])
            for task in run['tasks']:
                te = task.indices('test')
                keys = [task.keys[i] for i in te]
                y = task.y[te]
                for enc, per_task in run['fits'].items():
                    for (fraction, seed), fit in sorted(per_task[task.name].items()):
                        s = fit['scores']
                        for i, key in enumerate(keys):
                            if task.kind in ('binary', 'regression'):
                                w.writerow([task.name, enc, seed, fraction, key, task.label_names[0], f'{y[i]:g}',
                                            f'{s[i]:.6g}', leads])
                                n += 1
                                continue
                            for j, label in enumerate(task.label_names):
                                truth = float(y[i] == j) if task.kind == 'multiclass' else float(y[i, j])
                                w.writerow([task.name, enc, seed, fraction, key, label, f'{truth:g}', f'{s[i, j]:.6g}',
                                            leads])
                                n += 1
    return n


def _fmt(v: float, digits: int = 3) -> str:
    return 'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.{digits}f}'


def _write_markdown(path: Path, results: List[Dict[str, Any]], runs: List[Dict[str, Any]],
                    summary: Dict[str, Any]) -> None:
    lines = ['# Evaluation suite results', '',
             f'Linear probes on frozen embeddings; mean +- sd over {len(summary["seeds"])} probe seeds (label-fraction '
             f'draws; one deterministic fit at fraction 1.0). CI: 95% bootstrap over test records of the '
             f'seed-averaged metric. diff vs random: paired bootstrap on the same test records; "better"/"worse" when '
             f'its 95% CI excludes 0 (for MAE lower is better). Verdicts are per comparison, not corrected for '
             f'multiplicity: of {sum(r["verdict_vs_random"] != "" for r in results)} comparisons with random, about '
             f'5% would read "better" or "worse" by chance if the encoders were equal. Wall time '
             f'{summary["wall_time_s"]:.0f} s.', '']
    several = len(runs) > 1
    for run in runs:
        label = leads_label(run['leads'])
        rows = [r for r in results if r['leads'] == label]
        if several:
            untrained = sorted({r['encoder'] for r in rows if r['lead_check'] == 'untrained'})
            lines += [f'# {describe_leads(run["leads"])} input', '',
                      f'Leads {", ".join(run["leads"])} read, the others zero and masked before the encoder.' +
                      (f' Not trained on this subset (run with allow_untrained_leads): {", ".join(untrained)}.'
                       if untrained else ''), '']
        lines += _markdown_block(rows, run['tasks'], f' ({describe_leads(run["leads"])})' if several else '')
    atomic_write_text(path, '\n'.join(lines) + '\n')


def _markdown_block(results: List[Dict[str, Any]], tasks: List[Task], suffix: str) -> List[str]:
    """The summary tables and the per-task tables of one lead subset's rows."""
    lines: List[str] = []
    encoders = list(dict.fromkeys(r['encoder'] for r in results))
    for fraction in dict.fromkeys(r['fraction'] for r in results):
        lines += [f'### Summary at {fraction:.0%} of the training labels (headline metric; diff vs random, verdict)'
                  f'{suffix}', '', '| task | metric | ' + ' | '.join(encoders) + ' |',
                  '|---|---|' + '---|' * len(encoders)]
        for name in dict.fromkeys(r['task'] for r in results):
            cells = []
            for e in encoders:
                r = next((r for r in results if r['task'] == name and r['encoder'] == e and r['fraction'] == fraction
                          and r['headline']), None)
                if r is None:
                    cells.append('')
                    continue
                extra = '' if math.isnan(r['diff_vs_random']) else \
                    f' ({r["diff_vs_random"]:+.3f}, {r["verdict_vs_random"]})'
                cells.append(f'{_fmt(r["mean"])}{extra}')
            metric = next(r['metric'] for r in results if r['task'] == name and r['headline'])
            lines.append(f'| {name} | {metric} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    by_task = {t.name: t for t in tasks}
    for name in dict.fromkeys(r['task'] for r in results):
        t = by_task[name]
        c = t.counts()
        dropped = ', '.join(f'{d["label"]} ({d["reason"]})' for d in t.dropped_labels)
        lines += [f'## {name}{suffix}', '', f'{t.description}. {len(t.label_names)} label(s); records train/val/test '
                  f'{c["train"]}/{c["val"]}/{c["test"]}; {len(t.excluded)} record(s) left out (skipped.csv).' +
                  (f' Dropped labels: {dropped}.' if dropped else ''), '',
                  '| metric | fraction | encoder | n train | mean +- sd | 95% CI | diff vs random [95% CI] | verdict '
                  '| vs others |', '|---|---|---|---|---|---|---|---|---|']
        for r in (r for r in results if r['task'] == name):
            diff = '' if math.isnan(r['diff_vs_random']) else \
                f'{r["diff_vs_random"]:+.3f} [{r["diff_lo"]:+.3f}, {r["diff_hi"]:+.3f}]'
            lines.append(f'| {r["metric"]} | {r["fraction"]:g} | {r["encoder"]} | {r["n_train"]} | '
                         f'{_fmt(r["mean"])} +- {_fmt(r["sd"])} | [{_fmt(r["ci_lo"])}, {_fmt(r["ci_hi"])}] | {diff} | '
                         f'{r["verdict_vs_random"]} | {r["vs_others"]} |')
        lines.append('')
    return lines


def _plot(path: Path, results: List[Dict[str, Any]], fractions: Sequence[float]) -> None:
    import matplotlib

    matplotlib.use('Agg')  # headless
    import matplotlib.pyplot as plt

    rows = [r for r in results if r['headline'] and r['encoder'] != 'random']
    if not rows or all(math.isnan(r['diff_vs_random']) for r in rows):
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis('off')
        ax.text(0.5, 0.5, 'No comparison with the random-init floor in this run', ha='center', va='center')
        atomic_savefig(fig, path, dpi=100)
        plt.close(fig)
        return
    tasks = list(dict.fromkeys(r['task'] for r in rows))
    encoders = list(dict.fromkeys(r['encoder'] for r in rows))
    fig, axes = plt.subplots(1, len(fractions), figsize=(4.2 * len(fractions), 0.55 * len(tasks) * max(1, len(
        encoders)) ** 0.5 + 1.8), sharey=True, squeeze=False)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, fraction in zip(axes[0], fractions):
        ax.axvline(0.0, color='0.3', lw=1)
        for k, enc in enumerate(encoders):
            for i, task in enumerate(tasks):
                r = next((r for r in rows if r['task'] == task and r['encoder'] == enc and r['fraction'] == fraction),
                         None)
                if r is None or math.isnan(r['diff_vs_random']):
                    continue
                yv = i + (k - (len(encoders) - 1) / 2) * 0.8 / max(1, len(encoders))
                shown = r['verdict_vs_random'] in ('better', 'worse')
                ax.errorbar(r['diff_vs_random'], yv, xerr=[[r['diff_vs_random'] - r['diff_lo']],
                                                           [r['diff_hi'] - r['diff_vs_random']]],
                            fmt='o', mfc=colours[k % len(colours)] if shown else 'white',
                            color=colours[k % len(colours)], capsize=3)
        ax.set_yticks(range(len(tasks)))
        ax.set_yticklabels([f'{t} ({next(r["metric"] for r in rows if r["task"] == t)})' for t in tasks])
        ax.set_title(f'{fraction:.0%} of the training labels')
        ax.set_xlabel('difference to random init (95% paired CI)')
        ax.grid(axis='x', alpha=0.3)
    axes[0][0].invert_yaxis()  # shared y: once for all panels, first task on top
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker='o', ls='', color=colours[k % len(colours)], label=enc)
               for k, enc in enumerate(encoders)]
    handles.append(Line2D([], [], marker='o', ls='', color='0.4', mfc='white', label='CI contains 0 (open)'))
    fig.legend(handles=handles, loc='lower center', ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.suptitle('Linear probe: encoder minus random-init floor (right of 0 = better)')
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


# ---------------------------------------------------------------------------------------------------------------------
# The run


def run_suite(cfg: SuiteConfig) -> Dict[str, Any]:
    """Run the whole suite and write its outputs into ``cfg.out``.

    Args:
        cfg: The suite's settings (data folder, output folder, encoders, tasks, fractions, seeds, lead subsets, ...).

    Writes:
        predictions.csv (task, encoder, seed, fraction, record_id, label, y, score: every test record),
        results.csv / results.md (task x metric x encoder x fraction: mean +- sd over seeds, 95% CI, diff vs random
        with its paired 95% CI and verdict, verdicts vs the other encoders), pairwise.csv (every pair of encoders),
        differences.png, splits.csv (source, record_id, patient_id, split), skipped.csv (every record left out, at
        which stage and why), suite_config.json (settings, data counts, dropped labels, encoders and fingerprints,
        timings, wall time).

    Returns:
        The summary written to suite_config.json, plus ``results`` and ``pairwise`` rows.

    Raises:
        ValueError: a label fraction outside (0, 1], no seeds, no task that the data can build, or an encoder that
            cannot be used (see :func:`resolve_encoders`; one not trained on a lead subset, unless allowed).
        FileNotFoundError: no suite source under ``cfg.data_dir``.

    Example:
        >>> # run_suite(SuiteConfig(data_dir='/data', out='suite', encoders={'mae_moco': 'ecg_vit_mae_moco'}))
    """
    t_start = time.perf_counter()
    timings: Dict[str, float] = {}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else out / 'cache'
    for f in cfg.fractions:
        if not 0 < f <= 1:
            raise ValueError(f'Label fractions must be in (0, 1], got {f}.')
    if not cfg.seeds:
        raise ValueError('The suite needs at least one probe seed.')
    stray = sorted(set(cfg.c_sensitivity) - set(cfg.tasks or TASK_NAMES))
    if stray:
        raise ValueError(f'c_sensitivity names tasks this run does not probe: {stray}; choose from '
                         f'{list(cfg.tasks or TASK_NAMES)}.')
    if cfg.c_sensitivity and 1.0 not in cfg.fractions:
        raise ValueError('c_sensitivity reports the probes at 100% of the labels: add fraction 1.0.')
    subsets = parse_lead_subsets(cfg.leads)

    t0 = time.perf_counter()
    sources, missing = load_sources(cfg.data_dir)
    splits = assign_record_splits(sources, cfg.split_seed, tuple(cfg.split_fractions))
    tasks, not_built = build_tasks(sources, splits, cfg.tasks, cfg.min_positives)
    if not tasks:
        raise ValueError(f'No suite task could be built from {cfg.data_dir}: {not_built}.')
    timings['index_s'] = time.perf_counter() - t0

    encoders = resolve_encoders(cfg.encoders, cfg.random_floor, cfg.global_pool)
    lead_checks = _lead_checks(encoders, subsets, cfg.allow_untrained_leads)  # refused before anything is cached
    skipped: List[Dict[str, str]] = [{'stage': 'index', 'source': n, 'record_id': rid, 'task': '', 'reason': why,
                                      'leads': ''} for n, s in sources.items() for rid, why in s.skipped]
    names = list(encoders)
    runs: List[Dict[str, Any]] = []
    enc_info: Dict[str, Dict[str, Any]] = {}
    for leads in subsets:
        label = leads_label(leads)
        if leads == LEADS:
            sub_tasks = tasks
        else:  # a reduced-lead subset reruns the PTB-XL tasks (the 12/6/1-lead table)
            sub_tasks = [t for t in tasks if t.name.startswith('ptbxl_')]
            if not sub_tasks:
                not_built[f'ptbxl_* on {describe_leads(leads)} input'] = 'no PTB-XL task in this run'
                continue
        needed = {k.split('/', 1)[0] for t in sub_tasks for k in t.keys}
        run = _run_subset(leads, {n: src for n, src in sources.items() if n in needed}, sub_tasks, encoders, cfg,
                          cache_root, timings, skipped, not_built)
        runs.append(run)
        for name in names:
            stats = run['encoders'][name]
            info = enc_info.setdefault(name, dict(encoders[name][1], fingerprint=stats['fingerprint'],
                                                  preprocessing=stats['preprocessing'],
                                                  embedding_dim=stats['embedding_dim'], embed_s=0.0,
                                                  embeddings_reused=True, probe_s=0.0, leads={}))
            info['embed_s'] = round(info['embed_s'] + stats['embed_s'], 2)
            info['probe_s'] = round(info['probe_s'] + stats['probe_s'], 2)
            info['embeddings_reused'] = info['embeddings_reused'] and stats['embeddings_reused']
            info['leads'][label] = {'lead_check': lead_checks[(label, name)], 'preprocessing': stats['preprocessing']}

    if not runs:
        raise ValueError(f'No suite task to run on the lead subsets {[leads_label(x) for x in subsets]}: {not_built}.')
    main = next((r for r in runs if r['leads'] == LEADS), runs[0])
    t0 = time.perf_counter()
    results, pairwise, c_rows = [], [], []
    for run in runs:
        label = leads_label(run['leads'])
        res, pair = _compare(run['tasks'], run['fits'], names, cfg)
        results += [dict(r, leads=label, lead_check=lead_checks[(label, r['encoder'])]) for r in res]
        pairwise += [dict(r, leads=label) for r in pair]
        c_rows += [dict(r, leads=label) for r in c_sensitivity(run['tasks'], run['fits'], names, cfg)]
    timings['bootstrap_s'] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_pred = _write_predictions(out / 'predictions.csv', runs)
    _write_csv(out / 'results.csv', results)
    _write_csv(out / 'pairwise.csv', pairwise)
    if c_rows:
        _write_csv(out / 'c_sensitivity.csv', c_rows, ['task', 'metric', 'fraction', 'leads', 'C', 'encoder_a',
                                                         'encoder_b', 'a', 'b', 'diff', 'diff_lo', 'diff_hi',
                                                         'chosen_a', 'chosen_b'])
    _write_csv(out / 'skipped.csv', skipped, ['stage', 'source', 'record_id', 'task', 'reason', 'leads'])
    split_rows = [{'source': n, 'record_id': e.record_id, 'patient_id': e.patient_id.split(':', 1)[1],
                   'split': splits[f'{n}/{e.record_id}']} for n, s in sources.items() for e in s.entries]
    _write_csv(out / 'splits.csv', split_rows, ['source', 'record_id', 'patient_id', 'split'])
    timings['write_s'] = time.perf_counter() - t0
    wall = time.perf_counter() - t_start
    summary = {
        'config': {k: v for k, v in asdict(cfg).items() if k != 'encoders'},
        'encoders': enc_info,
        'sources': {n: {'root': str(s.root), 'records': len(s), 'skipped_by_reader': len(s.skipped),
                        'with_age': sum(e.meta.get('age') is not None for e in s.entries),
                        'with_sex': sum(e.meta.get('sex') is not None for e in s.entries)}
                    for n, s in sources.items()},
        'sources_missing': missing,
        'split_rule': {'ptbxl': 'strat_fold 1-8 train, 9 val, 10 test',
                       'others': f'by patient, seed {cfg.split_seed}, fractions {list(cfg.split_fractions)}'},
        'tasks': {t.name: {'kind': t.kind, 'description': t.description, 'metrics': list(t.metrics),
                           'labels': t.label_names, 'records': t.counts(), 'excluded_records': len(t.excluded),
                           'dropped_labels': t.dropped_labels} for t in main['tasks']},
        'leads': {leads_label(r['leads']): {'description': describe_leads(r['leads']), 'leads': list(r['leads']),
                                            'tasks': {t.name: t.counts() for t in r['tasks']},
                                            'unreadable_records': r['unreadable']} for r in runs},
        'tasks_not_built': not_built,
        'unreadable_records': main['unreadable'],
        'skipped_rows': len(skipped),
        'skipped_by_stage_and_task': _count_skipped(skipped),
        'prediction_rows': n_pred,
        'seeds': list(cfg.seeds),
        'fractions': list(cfg.fractions),
        'probe': {'model': 'L2 logistic regression (sklearn lbfgs; one per label for multi-label), ridge for age',
                  'standardisation': 'mean/sd of the whole training split (no labels used)',
                  'l2_selection': 'C from c_grid by the full validation split (macro AUROC / OvO AUC / MAE)',
                  'fraction_1_note': 'deterministic: one fit stands for every seed, so its sd is 0'},
        'finetune': 'off (not part of this run)',
        'timings_s': {k: round(v, 2) for k, v in timings.items()},
        'wall_time_s': round(wall, 2),
        'outputs': ['predictions.csv', 'results.csv', 'results.md', 'pairwise.csv', 'differences.png', 'splits.csv',
                    'skipped.csv', 'suite_config.json'] + (['c_sensitivity.csv'] if c_rows else []),
    }
    _write_markdown(out / 'results.md', results, runs, summary)
    several = len(runs) > 1
    _plot(out / 'differences.png', [dict(r, task=f'{r["task"]} [{r["leads"]} leads]') for r in results] if several
          else results, cfg.fractions)
    summary['wall_time_s'] = round(time.perf_counter() - t_start, 2)
    atomic_write_text(out / 'suite_config.json', json.dumps(summary, indent=1, default=_json_default))
    return dict(summary, results=results, pairwise=pairwise, c_sensitivity=c_rows)


def _run_subset(leads: Tuple[str, ...], sources: Dict[str, Any], tasks: List[Task],
                encoders: Dict[str, Tuple[nn.Module, Dict[str, Any]]], cfg: SuiteConfig, cache_root: Path,
                timings: Dict[str, float], skipped: List[Dict[str, str]], not_built: Dict[str, str]) -> Dict[str, Any]:
    """Cache, embed and probe ``tasks`` on input read with the lead subset ``leads``.

    Appends to ``skipped`` (records unreadable on this input, per task) and ``not_built`` (tasks left empty), adds
    to ``timings``. Returns ``{'leads', 'tasks' (restricted to the readable records), 'fits' (encoder -> task ->
    probe fits), 'encoders' (name -> embedding statistics), 'unreadable' (count)}``.
    """
    from .embeddings import embed_cached, encoder_fingerprint

    label = leads_label(leads)
    on = '' if leads == LEADS else f' on {describe_leads(leads)} input'
    unreadable: Dict[str, str] = {}
    caches: Dict[str, Dict[str, Path]] = {}
    pp_of: Dict[str, Any] = {}
    t0 = time.perf_counter()
    for name, (model, _) in encoders.items():  # every input format first, so all encoders share one record set
        pp = pp_of[name] = preprocessing_for(model, leads)
        key = pp.fingerprint()
        if key in caches:
            continue
        caches[key] = source_caches(sources, pp, cache_root, cfg.workers, cfg.progress)
        for src_name, cdir in caches[key].items():
            read_skips = {r for r, _ in sources[src_name].skipped}
            for s in json.loads((cdir / 'manifest.json').read_text()).get('skipped', []):
                k = f'{src_name}/{s["record_id"]}'
                if k not in unreadable and s['record_id'] not in read_skips:
                    unreadable[k] = s['reason']
                    skipped.append({'stage': 'read/preprocess', 'source': src_name, 'record_id': s['record_id'],
                                    'task': '', 'reason': s['reason'], 'leads': label})
    timings['cache_s'] = timings.get('cache_s', 0.0) + time.perf_counter() - t0

    # Records that could not be read leave every task (listed once per task).
    final_tasks = []
    for task in tasks:
        restricted = _restrict(task, unreadable)
        counts = restricted.counts()
        if min(counts['train'], counts['test']) == 0:
            not_built[task.name + on] = (f'empty split once unreadable records are left out (records per split: '
                                         f'{counts})')
        else:
            final_tasks.append(restricted)
        for k in task.keys:
            if k in unreadable:
                skipped.append({'stage': 'task', 'source': k.split('/')[0], 'record_id': k.split('/', 1)[1],
                                'task': task.name, 'reason': f'unreadable: {unreadable[k]}', 'leads': label})
        for k, why in task.excluded:
            skipped.append({'stage': 'task', 'source': k.split('/')[0], 'record_id': k.split('/', 1)[1],
                            'task': task.name, 'reason': why, 'leads': label})
    if not final_tasks:
        raise ValueError(f'No suite task is left{on} once unreadable records are left out: {not_built}.')

    fits: Dict[str, Dict[str, Dict]] = {}
    stats: Dict[str, Dict[str, Any]] = {}
    for name, (model, _) in encoders.items():
        pp = pp_of[name]
        fp = encoder_fingerprint(model)
        index: Dict[str, int] = {}
        blocks, reused, embed_s = [], [], 0.0
        for src_name, cdir in caches[pp.fingerprint()].items():
            # Keyed by the cache's fingerprint, which holds the lead subset: each subset has its own embeddings.
            feats, ids, einfo = embed_cached(model, cdir, cache_root / 'embeddings', encoder_fp=fp,
                                             batch_size=cfg.batch_size, device=cfg.device, amp=cfg.amp,
                                             progress=cfg.progress)
            embed_s += einfo['seconds']
            reused.append(einfo['reused'])
            offset = sum(len(b) for b in blocks)
            index.update({f'{src_name}/{rid}': offset + i for i, rid in enumerate(ids)})
            blocks.append(feats)
        features = np.concatenate(blocks)
        bad = ~np.isfinite(features).all(axis=1)
        if bad.any():
            rows = sorted(k for k, i in index.items() if bad[i])
            raise ValueError(f'Encoder {name!r} gives non-finite embeddings{on} for {len(rows)} records (e.g. '
                             f'{rows[:3]}); check its weights (a diverged checkpoint?) before evaluating it.')
        t1 = time.perf_counter()
        fits[name] = {t.name: _probe_task(t, features[[index[k] for k in t.keys]], cfg) for t in final_tasks}
        stats[name] = {'fingerprint': fp, 'preprocessing': pp.to_dict(), 'embedding_dim': int(features.shape[1]),
                       'embed_s': embed_s, 'embeddings_reused': all(reused), 'probe_s': time.perf_counter() - t1}
        _logger.info('suite%s: %s embedded in %.1f s (reused: %s), probed in %.1f s', on, name, embed_s, all(reused),
                     time.perf_counter() - t1)
    return {'leads': leads, 'tasks': final_tasks, 'fits': fits, 'encoders': stats, 'unreadable': len(unreadable)}


def _count_skipped(skipped: List[Dict[str, str]]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for r in skipped:
        key = f'{r["stage"]}:{r["task"] or r["source"]}'
        if r.get('leads') not in (None, '', '12'):
            key += f'@{r["leads"]}-lead'
        counts[key] = counts.get(key, 0) + 1
    return counts


def _restrict(task: Task, unreadable: Dict[str, str]) -> Task:
    """``task`` without the records that could not be read."""
    keep = [i for i, k in enumerate(task.keys) if k not in unreadable]
    if len(keep) == len(task.keys):
        return task
    return Task(task.name, task.kind, task.metrics, task.label_names, [task.keys[i] for i in keep],
                task.split[keep], task.y[keep], task.dropped_labels, task.excluded, task.description)
