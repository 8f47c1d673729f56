"""Benchmark harness: pretraining methods x evaluation protocols on one dataset, as a CSV, a Markdown table and a plot.

Every method produces an encoder, every protocol evaluates one:

- ``random``: the encoder at its random initialisation (floor). Under ``finetune`` this is training from scratch.
- ``supervised``: the encoder trained from scratch with the labels of the training split, end to end, for the same
  number of epochs the self-supervised methods pretrain (the supervised-pretraining baseline). Its weights are kept
  in ``out/pretrain/supervised`` so that a resumed benchmark reuses them.
- ``mae``, ``moco``, ``mae_moco``, ``mae_nextclip``, ``mae_centerclip``: self-supervised pretraining
  (:func:`ecgvit.pretrain.create_pretrainer` + :func:`ecgvit.train.train`) on the training split, best-validation
  weights. The hybrids are the paper's methods (separate encoder passes); ``mae_moco_shared``,
  ``mae_nextclip_shared`` and ``mae_centerclip_shared`` are ecgvit's shared-pass variants, so both can sit in one
  table.

- ``linear``: frozen encoder, linear layer on cached features (:func:`ecgvit.eval.linear_probe`).
- ``finetune``: end to end with a new head (:func:`ecgvit.eval.finetune`).

Test metrics come with 95% bootstrap CIs over test records. ``random`` and ``supervised`` are always included.

Example:
    >>> # ecgvit benchmark --quick --out results/quick
    >>> # run_benchmark(BenchmarkConfig(methods=['mae_moco'], protocols=['linear'], data='ptbxl:superdiagnostic',
    >>> #                               data_dir='data/ptbxl', pretrain=TrainConfig(epochs=5), out='results/ptbxl'))
"""
import copy
import csv
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from ecgvit.data import Preprocessing
from ecgvit.data.prepare import check_model_data, data_preprocessing, model_data_cfg, prepare_data
from ecgvit.errors import CheckpointError, RunExistsError
from ecgvit.eval.config import FinetuneConfig, ProbeConfig
from ecgvit.files import atomic_open, atomic_savefig, atomic_write_text
from ecgvit.options import DataOptions, RunOptions, documented, model_input_defaults, option, same_setting
from ecgvit.train.config import TrainConfig

__all__ = ['BenchmarkConfig', 'run_benchmark', 'BASELINES', 'PROTOCOLS', 'quick_config', 'format_table',
           'make_encoder', 'load_checkpoint_encoder', 'resolve_input', 'check_earlier_runs']

_logger = logging.getLogger(__name__)

BASELINES = ('random', 'supervised')
PROTOCOLS = ('linear', 'finetune')
DEFAULT_METHODS = ('random', 'supervised', 'mae', 'moco', 'mae_moco', 'mae_nextclip')


@documented
@dataclass
class BenchmarkConfig(DataOptions, RunOptions):
    """Settings of a benchmark run (JSON-serialisable; written to ``config.json`` in ``out``).

    The run settings (seed, device, amp, num_workers, progress: :class:`~ecgvit.options.RunOptions`) and the data
    (:class:`~ecgvit.options.DataOptions`) apply to every stage; each stage's recipe is its own config, nested:
    ``pretrain`` (:class:`~ecgvit.train.TrainConfig`), ``probe`` (:class:`~ecgvit.eval.ProbeConfig`) and
    ``finetune`` (:class:`~ecgvit.eval.FinetuneConfig`), with their defaults. On the command line the nested fields
    are ``--pretrain-epochs``, ``--probe-lr``, ``--finetune-layer-decay``, ...
    """
    methods: List[str] = option(default_factory=lambda: list(DEFAULT_METHODS),
                                help="Comma-separated methods (random and supervised are always added; the hybrids are "
                                     "the paper's methods, add _shared, e.g. mae_moco_shared, for ecgvit's "
                                     'shared-pass variant).')
    protocols: List[str] = option(default_factory=lambda: list(PROTOCOLS),
                                  help="Comma-separated evaluation protocols: 'linear', 'finetune'.")
    out: str = option('benchmark-results', 'Results folder.', cli=False)
    model: str = option('ecg_vit_tiny', 'Encoder architecture for every method (a registered ecgvit name); on the '
                                        "command line with --checkpoint, the checkpoints' own.")
    queue_size: Optional[int] = option(None, "MoCo queue (default: the seed's 65536, as everywhere; a queue longer "
                                             'than the training set is used as is, with a warning).')
    n_boot: int = option(1000, 'Bootstrap resamples for the 95% CIs of every row (the same for every protocol, so '
                               'rows compare).')
    resume: bool = option(False, 'Continue the benchmark already in the output folder: its pretraining runs are '
                                 'reused when finished and continued when interrupted (the data, model, seed and '
                                 'pretraining recipe must be the same), and the supervised baseline is reused when '
                                 'made the same way; without it such a folder is refused.')
    threads: Optional[int] = option(None, "torch intra-op threads for the run (default: torch's).", cli=False)
    checkpoints: Dict[str, str] = option(
        default_factory=dict, cli=False,
        help='Method -> encoder weights pretrained elsewhere (a pretraining run folder, checkpoint or save_pretrained '
             'folder); those methods are evaluated from the weights instead of pretrained here. A key that is not a '
             "method name adds a row under that name (e.g. a user's own checkpoint).")
    pretrain: TrainConfig = option(default_factory=TrainConfig, cli=False,
                                   help='Pretraining recipe of the self-supervised (and supervised) methods.')
    probe: ProbeConfig = option(default_factory=ProbeConfig, cli=False, help='Linear-probe settings.')
    finetune: FinetuneConfig = option(default_factory=FinetuneConfig, cli=False, help='Fine-tuning settings.')


# The nested fields `ecgvit benchmark` takes as flags (--pretrain-epochs, ...); the rest go through --config FILE.
NESTED_FLAGS = {'pretrain': ('epochs', 'batch_size', 'lr', 'warmup_epochs'),
                'probe': ('epochs', 'early_stop_patience'),
                'finetune': ('epochs', 'lr', 'layer_decay', 'early_stop_patience')}


def quick_config(out: str = 'benchmark-quick', **overrides: Any) -> BenchmarkConfig:
    """Tiny settings that finish in under a minute on 2 CPU cores (built-in synthetic data).

    Args:
        out: Output folder.
        **overrides: Any other ``BenchmarkConfig`` field, replacing the quick value.
    """
    cfg = BenchmarkConfig(
        data='synthetic', out=out, model='ecg_vit_tiny', sampling_rate=100.0, num_samples=500,
        synthetic_records=240, queue_size=128, n_boot=200, amp='fp32',
        pretrain=TrainConfig(epochs=4, batch_size=32, lr=1e-3, warmup_epochs=1.0),
        probe=ProbeConfig(epochs=100, early_stop_patience=10),
        finetune=FinetuneConfig(epochs=4, batch_size=32, lr=1e-3, warmup_epochs=1.0, early_stop_patience=10),
        # One thread: a 64-dim model gains nothing from a second one, and on a CPU shared with other jobs extra
        # threads spin waiting for each other (many times slower on 2 busy cores).
        threads=1)
    return dataclasses.replace(cfg, **overrides)


def resolve_input(cfg: BenchmarkConfig) -> BenchmarkConfig:
    """``cfg`` with the sampling rate and input length filled in from the model's pretrained cfg where unset.

    Args:
        cfg: The benchmark's settings (not changed; a copy is returned when something is filled in).
    """
    if cfg.sampling_rate is not None and cfg.num_samples is not None:
        return cfg
    rate, length = model_input_defaults(cfg.model)
    return dataclasses.replace(cfg, sampling_rate=cfg.sampling_rate or rate, num_samples=cfg.num_samples or length)


def _stage(stage_cfg: Any, cfg: BenchmarkConfig, **overrides: Any) -> Any:
    """A stage's config with the benchmark's run settings (one seed, device, precision, ... for every stage)."""
    run = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(RunOptions)}
    return dataclasses.replace(stage_cfg, **run, **overrides)


# ---------------------------------------------------------------------------------------------------------------------
# Encoders


def _method_kwargs(method: str, cfg: BenchmarkConfig, n_train: int) -> Dict[str, Any]:
    kwargs: Dict[str, Any] = {}
    if 'moco' in method and cfg.queue_size is not None:
        kwargs['queue_size'] = int(cfg.queue_size)
    if 'clip' in method:
        kwargs['sampling_rate'] = float(cfg.sampling_rate)
    return kwargs


def load_checkpoint_encoder(method: str, cfg: BenchmarkConfig, preprocessing: Preprocessing) -> Tuple[Any, Dict]:
    """Load ``cfg.checkpoints[method]`` and check that data built with ``preprocessing`` fit its weights.

    Args:
        method: The row name the checkpoint was given under (``cfg.checkpoints``).
        cfg: The benchmark's settings (model name and input length to load with).
        preprocessing: How the benchmark's data were read.

    Returns:
        (encoder, info with ``pretrain_time_s`` 0 and the ``checkpoint`` read).

    Raises:
        IncompatibleDataError: the benchmark's rate, length or leads differ from what the weights were trained on.
    """
    from ecgvit.hub import load_encoder

    path = cfg.checkpoints[method]
    enc, source = load_encoder(path, cfg.model, cfg.num_samples)
    check_model_data(preprocessing, model_data_cfg(enc, source), f'checkpoint {method}={path}')
    return enc, {'pretrain_time_s': 0.0, 'checkpoint': source.get('checkpoint', '')}


def make_encoder(method: str, cfg: BenchmarkConfig, splits: Dict[str, Any], out_dir: Path) -> Tuple[Any, Dict]:
    """Produce the encoder of ``method`` (see the module docstring); returns (encoder, info).

    Args:
        method: 'random', 'supervised', a pretraining method (or variant), or a name of ``cfg.checkpoints``.
        cfg: The benchmark's settings.
        splits: 'train' and 'val' datasets (a pretraining method trains and validates on them).
        out_dir: The pretraining run's output folder.

    Returns:
        (encoder, info: ``pretrain_time_s``, plus ``pretrain_best_val_loss`` of a trained one or the ``checkpoint``
        read).
    """
    import ecgvit
    from ecgvit.train import load_best_into, seed_everything, train

    t0 = time.time()
    cfg = resolve_input(cfg)
    seed_everything(cfg.seed)
    enc_kwargs = dict(img_size=cfg.num_samples)
    if method in cfg.checkpoints:
        return load_checkpoint_encoder(method, cfg, splits['train'].preprocessing)
    if method == 'random':
        return ecgvit.create_model(cfg.model, **enc_kwargs), {'pretrain_time_s': 0.0}
    if method == 'supervised':
        return _supervised_encoder(cfg, splits, out_dir, enc_kwargs)
    from ecgvit.data.lead_mask_dataset import with_lead_masks
    from ecgvit.pretrain import create_pretrainer, queue_copies_per_record, split_method

    base, variant_kwargs = split_method(method)
    model = create_pretrainer(base, cfg.model, encoder_kwargs=enc_kwargs,
                              **_method_kwargs(base, cfg, len(splits['train'])), **variant_kwargs)
    batch_size = min(cfg.pretrain.batch_size, len(splits['train']))
    # A checkpoint at every epoch's end (one kept): a benchmark stopped mid-run continues there with resume.
    tcfg = _stage(cfg.pretrain, cfg, output_dir=str(out_dir), save_every_epochs=1, keep_last=1, resume=cfg.resume,
                  batch_size=batch_size)
    run_config = {'method': method, 'model': cfg.model, 'pretrainer': getattr(model, 'config', {}),
                  'preprocessing': splits['train'].preprocessing.to_dict()}
    if getattr(model, 'moco', None) is not None:
        run_config['data'] = {'n_train': len(splits['train']), 'queue_copies_per_record': queue_copies_per_record(
            model.moco.queue_size, len(splits['train']))}
    # Leads a record lacks are zero-filled in the cache: the batch says so, and no loss learns those zeros.
    train_set, val_set, missing = with_lead_masks(splits['train'], splits['val'])
    if missing is not None:
        run_config.setdefault('data', {})['train_records_missing_leads'] = missing
    summary = train(model, train_set, val_set, tcfg, run_config=run_config)
    load_best_into(model, out_dir)
    return model.encoder.cpu(), {'pretrain_time_s': time.time() - t0,
                                 'pretrain_best_val_loss': summary['best_val_loss']}


# Settings of any training run that only say where and how it runs, not what it learns.
_RUN_ONLY = ('output_dir', 'progress', 'num_workers', 'device')


def _supervised_encoder(cfg: BenchmarkConfig, splits: Dict[str, Any], out_dir: Path,
                        enc_kwargs: Dict[str, Any]) -> Tuple[Any, Dict]:
    """The supervised baseline: trained, or with ``cfg.resume`` read back from ``out_dir`` if made the same way.

    Its weights are kept in ``out_dir`` (``best.safetensors``, with what it was trained on and how in the metadata),
    so that a resumed benchmark does not spend another pretraining-length run on a seeded result it already has.
    """
    import ecgvit
    from ecgvit.eval import finetune
    from ecgvit.train import seed_everything
    from ecgvit.train.checkpoint import best_info, load_best, save_best

    t0 = time.time()
    enc = ecgvit.create_model(cfg.model, **enc_kwargs)
    # The supervised baseline trains as long as the self-supervised methods pretrain, validated on val.
    sup = _stage(cfg.finetune, cfg, epochs=cfg.pretrain.epochs, layer_decay=None, n_boot=0,
                 batch_size=min(cfg.finetune.batch_size, len(splits['train'])))
    made_with = json.loads(json.dumps({
        'model': cfg.model, 'num_samples': cfg.num_samples, 'data': cfg.data,
        'preprocessing': splits['train'].preprocessing.to_dict(),
        'n_train': len(splits['train']), 'n_val': len(splits['val']),
        'finetune': {k: v for k, v in dataclasses.asdict(sup).items() if k not in _RUN_ONLY}}, default=str))
    if cfg.resume and (out_dir / 'best.safetensors').is_file():
        try:
            info = best_info(out_dir)
            if info.get('made_with') == made_with:
                enc.reset_classifier(0)
                load_best(out_dir, enc)
                _logger.info('[supervised] reusing the weights the earlier benchmark trained (%s)', out_dir)
                return enc, {'pretrain_time_s': info['time_s'], 'pretrain_best_val_loss': info['best_val_loss']}
        except CheckpointError as e:
            _logger.warning('[supervised] the earlier weights cannot be used (%s); training again', e)
            info = {}
            seed_everything(cfg.seed)  # a half-loaded encoder must not train on: the fresh run's own init
            enc = ecgvit.create_model(cfg.model, **enc_kwargs)
        if info:
            changed = sorted(k for k in made_with if info.get('made_with', {}).get(k) != made_with[k])
            _logger.info('[supervised] training again: the earlier weights were made with other %s',
                         ', '.join(changed))
    res = finetune(enc, splits['train'], splits['val'], splits['val'], config=sup)
    enc.reset_classifier(0)
    info = {'made_with': made_with, 'time_s': time.time() - t0, 'best_val_loss': res['best_val_loss']}
    save_best(out_dir, enc, info)
    return enc, {'pretrain_time_s': info['time_s'], 'pretrain_best_val_loss': info['best_val_loss']}


# ---------------------------------------------------------------------------------------------------------------------
# Results

_COLUMNS = ('auc_ovo', 'auroc_ovr', 'auroc_macro', 'f1_macro', 'accuracy')
_TITLES = {'auc_ovo': 'AUC OvO', 'auroc_ovr': 'AUROC OvR', 'auroc_macro': 'AUROC macro', 'f1_macro': 'F1 macro',
           'accuracy': 'accuracy'}


def _fmt(row: Dict[str, Any], k: str) -> str:
    v = row.get(k)
    if v is None or v == '' or (isinstance(v, float) and math.isnan(v)):
        return '–'
    lo, hi = row.get(f'{k}_lo'), row.get(f'{k}_hi')
    if lo is None or lo == '' or (isinstance(lo, float) and math.isnan(lo)):
        return f'{float(v):.3f}'
    return f'{float(v):.3f} [{float(lo):.3f}, {float(hi):.3f}]'


def format_table(rows: List[Dict[str, Any]]) -> str:
    """Markdown table of the rows (value [95% CI]); metrics that apply to no row are left out.

    Args:
        rows: Result rows (``method``, ``protocol``, metrics with ``_lo`` / ``_hi`` bounds, ``error``).
    """
    cols = [k for k in _COLUMNS if any(_fmt(r, k) != '–' for r in rows)]
    head = ['method', 'protocol'] + [_TITLES[k] for k in cols]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '|'.join(['---'] * len(head)) + '|']
    for r in rows:
        cells = [r['method'], r['protocol']] + ([_fmt(r, k) for k in cols] if not r.get('error') else
                                                 [f'failed: {r["error"]}'] + [''] * (len(cols) - 1))
        lines.append('| ' + ' | '.join(str(c) for c in cells) + ' |')
    return '\n'.join(lines)


def _plot(rows: List[Dict[str, Any]], metric: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')  # headless: no display on servers and CI
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(dict.fromkeys(r['method'] for r in rows))
    protocols = list(dict.fromkeys(r['protocol'] for r in rows))
    width = 0.8 / max(1, len(protocols))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(methods) + 1.5), 3.6))
    for j, proto in enumerate(protocols):
        vals, los, his = [], [], []
        for m in methods:
            r = next((r for r in rows if r['method'] == m and r['protocol'] == proto), {})
            v = r.get(metric)
            v = float(v) if v not in (None, '') else math.nan
            lo = float(r.get(f'{metric}_lo', math.nan) or math.nan)
            hi = float(r.get(f'{metric}_hi', math.nan) or math.nan)
            vals.append(v)
            los.append(max(0.0, v - lo) if not math.isnan(lo) else 0.0)
            his.append(max(0.0, hi - v) if not math.isnan(hi) else 0.0)
        x = np.arange(len(methods)) + (j - (len(protocols) - 1) / 2) * width
        ax.bar(x, vals, width, yerr=[los, his], capsize=3, label=proto)
    ax.set_xticks(np.arange(len(methods)))
    ax.set_xticklabels(methods, rotation=20)
    ax.set_ylabel(f'{_TITLES.get(metric, metric)} (95% CI)')
    ax.axhline(0.5, color='grey', lw=0.8, ls='--')
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title)
    ax.legend(loc='lower right')
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def _write_csv(rows: List[Dict[str, Any]], path: Path) -> None:
    keys: List[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with atomic_open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in r.items()})


def run_benchmark(cfg: BenchmarkConfig) -> List[Dict[str, Any]]:
    """Run every method x protocol and write results.csv, results.md, results.png and config.json into ``cfg.out``.

    Args:
        cfg: The benchmark's settings (methods, protocols, data, stage configs, output folder).

    Returns:
        One row per method x protocol (metrics with ``_lo``/``_hi`` CI bounds, timings, settings).

    Raises:
        ValueError: unknown method or protocol, or bad data settings (before any work is done).
    """
    from ecgvit.pretrain import list_pretrainers

    known = list(BASELINES) + list_pretrainers(variants=True) + list(cfg.checkpoints)
    methods = [m.strip() for m in cfg.methods if m.strip()]
    methods += [m for m in cfg.checkpoints if m not in methods]
    bad = [m for m in methods if m not in known]
    if bad:
        raise ValueError(f'Unknown method(s) {bad}: choose from {known}.')
    methods = list(BASELINES) + [m for m in methods if m not in BASELINES]  # floors always included, listed first
    protocols = [p.strip() for p in cfg.protocols if p.strip()]
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise ValueError(f'Unknown protocol(s) {bad or protocols}: choose from {list(PROTOCOLS)}.')
    cfg = resolve_input(dataclasses.replace(cfg, methods=methods, protocols=protocols))
    out = Path(cfg.out)
    check_earlier_runs(cfg, [m for m in methods if m not in BASELINES and m not in cfg.checkpoints])
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise ValueError(f'threads must be >= 1, got {cfg.threads}.')
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, out, t_start, methods, protocols)
    finally:
        torch.set_num_threads(threads_before)


# What an earlier benchmark's pretraining runs depend on: a resumed benchmark must ask for the same, or its table
# would mix encoders trained on other data or with another recipe. (Methods, protocols, the probe, fine-tuning and
# the bootstrap may change: they only decide what is evaluated and how.)
_RESUME_SAME = ('data', 'data_dir', 'sampling_rate', 'num_samples', 'crop', 'window_stride', 'short_records',
                'synthetic_records', 'seed', 'amp', 'model', 'queue_size', 'pretrain')
# Pretraining settings that do not change what a run learns.
_RESUME_FREE = _RUN_ONLY + ('resume', 'log_every', 'save_every', 'save_every_epochs', 'keep_last',
                             'find_unused_parameters')


def check_earlier_runs(cfg: BenchmarkConfig, pretrained_here: List[str]) -> None:
    """Refuse, before any work, a benchmark whose output folder holds pretraining runs it would collide with.

    Without ``cfg.resume`` a fresh benchmark would fail on each of them (a run is never overwritten) and replace the
    earlier results with failed rows. With it, the earlier benchmark must have had the settings its runs depend on.

    Args:
        cfg: The benchmark's settings (``out``, ``resume`` and what the pretraining runs depend on).
        pretrained_here: The methods this benchmark pretrains.

    Raises:
        RunExistsError: runs are there and ``cfg.resume`` is off.
        ValueError: ``cfg.resume`` with settings other than the earlier benchmark's (each one named).
    """
    from ecgvit.train.loop import existing_run_files

    out = Path(cfg.out)
    held = [m for m in pretrained_here if existing_run_files(out / 'pretrain' / m)]
    if not held:
        return
    if not cfg.resume:
        raise RunExistsError(
            f'{out} holds the pretraining runs of an earlier benchmark ({", ".join(held)}); a new benchmark there '
            f'would fail on each of them. Continue that benchmark with --resume (resume=True): finished runs are '
            f'reused and interrupted ones continue, with the same settings. Or choose another --output. Nothing was '
            f'changed.')
    try:
        before = json.loads((out / 'config.json').read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f'{out}: cannot resume, its config.json (the earlier benchmark\'s settings) is missing or '
                         f'unreadable ({e}); choose another --output.') from None
    now = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    diffs = []
    for key in _RESUME_SAME:
        old, new = before.get(key), now.get(key)
        if key == 'pretrain' and isinstance(old, dict):
            diffs += [(f'pretrain.{k}', old.get(k), v) for k, v in new.items()
                      if k not in _RESUME_FREE and k in old and old[k] != v]
        elif key in before and not same_setting(key, old, new):
            diffs.append((key, old, new))
    if diffs:
        text = '; '.join(f'{k} {old!r} there, {new!r} here' for k, old, new in diffs)
        raise ValueError(f'{out}: cannot resume the earlier benchmark, its pretraining runs were made with other '
                         f'settings: {text}. Resume with its settings, or choose another --output.')


def _run(cfg: BenchmarkConfig, out: Path, t_start: float, methods: List[str], protocols: List[str]) -> List[Dict]:
    from ecgvit.eval import finetune, linear_probe, primary_metric

    pp = data_preprocessing(cfg.sampling_rate, cfg.num_samples, cfg.crop, cfg.window_stride, cfg.short_records)
    for method in cfg.checkpoints:  # a checkpoint the data do not fit ends the run before anything is trained
        load_checkpoint_encoder(method, cfg, pp)
    splits = prepare_data(cfg.data, cfg.data_dir, cfg.cache_dir or str(out / 'data'), seed=cfg.seed,
                          synthetic_records=cfg.synthetic_records, num_workers=cfg.num_workers, progress=cfg.progress,
                          short_records=cfg.short_records, preprocessing=pp)
    smallest = min(len(splits['train']), len(splits['val']))
    resolved = dict(dataclasses.asdict(cfg), command='benchmark', cache_dir=splits['cache_dir'],
                    label_names=splits['label_names'],
                    multilabel=splits['multilabel'], n_train=len(splits['train']), n_val=len(splits['val']),
                    n_test=len(splits['test']), torch_threads=torch.get_num_threads(),
                    n_skipped=splits['skipped'], skipped_csv=splits['skipped_csv'])
    if splits['skipped']:
        _logger.warning('%s: skipped %d records (listed with reasons in %s)', cfg.data, splits['skipped'],
                        splits['skipped_csv'])
    atomic_write_text(out / 'config.json', json.dumps(resolved, indent=2))
    if smallest < 2:
        raise ValueError(f'{cfg.data}: the train/val splits hold {len(splits["train"])}/{len(splits["val"])} '
                         f'records; a benchmark needs a few of each.')
    metric = primary_metric(splits['multilabel'])
    rows: List[Dict[str, Any]] = []
    for method in methods:
        _logger.info('[%s] building the encoder', method)
        try:
            encoder, info = make_encoder(method, cfg, splits, out / 'pretrain' / method)
        except Exception as e:  # one broken method must not cost the whole table
            _logger.exception('[%s] failed', method)
            for proto in protocols:
                rows.append({'method': method, 'protocol': proto, 'dataset': cfg.data, 'error': str(e)[:200]})
            continue
        for proto in protocols:
            _logger.info('[%s] %s', method, proto)
            eval_dir = out / 'eval' / f'{method}-{proto}'
            enc = copy.deepcopy(encoder)
            try:
                if proto == 'linear':
                    res = linear_probe(enc, splits['train'], splits['val'], splits['test'],
                                       config=_stage(cfg.probe, cfg, n_boot=cfg.n_boot), output_dir=str(eval_dir))
                else:
                    res = finetune(enc, splits['train'], splits['val'], splits['test'],
                                   config=_stage(cfg.finetune, cfg, n_boot=cfg.n_boot,
                                                 batch_size=min(cfg.finetune.batch_size, len(splits['train']))),
                                   output_dir=str(eval_dir))
            except Exception as e:
                _logger.exception('[%s] %s failed', method, proto)
                rows.append({'method': method, 'protocol': proto, 'dataset': cfg.data, 'error': str(e)[:200]})
                continue
            row: Dict[str, Any] = {'method': method, 'protocol': proto, 'dataset': cfg.data, 'model': cfg.model,
                                   'primary_metric': metric}
            for k in _COLUMNS:
                for suffix in ('', '_lo', '_hi'):
                    row[k + suffix] = res.get(k + suffix, '')
            row.update({'n_test': res['n_test'], 'n_boot': res.get('n_boot', 0), 'best_epoch': res['best_epoch'],
                        'epochs_run': res['epochs_run'], 'eval_time_s': res['time_s'], **info, 'error': ''})
            rows.append(row)
            _write_csv(rows, out / 'results.csv')  # after every row: a long run that dies keeps what it finished
    _write_csv(rows, out / 'results.csv')
    table = format_table(rows)
    settings = (f'data `{cfg.data}` ({resolved["n_train"]}/{resolved["n_val"]}/{resolved["n_test"]} train/val/test '
                f'records, {cfg.sampling_rate:g} Hz x {cfg.num_samples} samples), model `{cfg.model}`, pretraining '
                f'{cfg.pretrain.epochs} epochs, probe <= {cfg.probe.epochs} epochs, fine-tune <= '
                f'{cfg.finetune.epochs} epochs, {cfg.n_boot} bootstrap resamples, seed {cfg.seed}; '
                f'total {time.time() - t_start:.0f} s.')
    atomic_write_text(out / 'results.md', f'# Benchmark results\n\n{table}\n\n{settings}\n'
                                          f'Values are test-set point estimates with 95% bootstrap CIs.\n')
    ok = [r for r in rows if not r.get('error')]
    if ok:
        _plot(ok, metric, out / 'results.png', f'{cfg.data}: {_TITLES[metric]}')
    return rows
