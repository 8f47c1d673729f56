"""``run``: decode the pack, pretrain every job under one wall-clock budget, evaluate, export, report.

Jobs, in the order they start:

1. ``random-<arch>``: the random-init floor of each architecture (the very weights each method starts from: the same
   seed builds the same encoder), probed only.
2. ``seed-<method>``: the seed-size encoders that ship (``mae_moco`` as ``ecg_vit_mae_moco``, ``mae_nextclip`` as
   ``ecg_vit_mae_nextclip``, the paper's passes), ``--minutes`` each; exported as bf16 shards when done.
3. ``small-<method>``: the ablation at ``--ablation-encoder`` (``ecg_vit_small``), ``--ablation-minutes`` each.
4. ``start-<method>``: the weights a seed job continues (``--init``), probed only, and paired with that job.

A pack made with ``pack --no-eval`` holds the pool only: then nothing is probed (no random floors, no ``start-``
jobs), and the CPU gate evaluates what comes back.

With ``--parallel N`` up to N pretraining jobs run at once, each in its own process; the random-init floors, which
only embed and probe, run beside them and take no slot (on the H200, two seed jobs kept the GPU busy a median 80 %
of the time: more processes add less than the first plan assumed). With ``--parallel 0`` every job runs one after
the other in this process. No job starts unless a useful part of its budget is left before ``--total-minutes`` (less
the final reserve), and a job past its end is killed; what it checkpointed is still used.

Every job's end rewrites ``results.json`` and ``results.md`` in ``--out``, so whatever the run finished comes back
even if the command itself is killed at its time limit.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ecgvit.constants import HEADS_NAME
from ecgvit.options import parse_key_value
from ecgvit.train.config import SEED_WARMUP_EPOCHS, TrainConfig

from . import sha256_file
from .pairs import comparison_pairs
from .worker import atomic_json, train_one

__all__ = ['add_run_arguments', 'run', 'paired_bootstrap', 'export_shards', 'parse_jobs', 'job_name', 'MAX_OUT_FILES']

_logger = logging.getLogger('campaign')

MAX_OUT_FILES = 8  # what the device machine sends back: at most 8 files of 16 MiB
MAX_FILE_BYTES = 16 * 2 ** 20
SHIPPED = {'mae_moco': 'ecg_vit_mae_moco', 'mae_nextclip': 'ecg_vit_mae_nextclip'}
TRAINING_ROLES = ('seed', 'ablation')  # the jobs that pretrain; each takes one of --parallel's slots
# The issue's ablation in the order it is worth running when the budget ends first: the baselines and the paper's
# hybrids, the shared-pass variants, then the other MAE weights.
ABLATION = ('mae,moco,mae_moco,mae_nextclip,mae_centerclip,mae_moco_shared,mae_nextclip_shared,mae_centerclip_shared,'
            'mae_moco:alpha=20,mae_nextclip:alpha=1,mae_moco:alpha=10,mae_nextclip:alpha=0.5')
REPORT_FILES = ('results.json', 'results.md', 'campaign.log')
HEADS_FILE = HEADS_NAME  # every seed encoder's pretraining heads, in one returned file (export_heads)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The ``run`` step's options (defaults: the H200 plan of benchmarks/README.md)."""
    p.add_argument('--data', default='.campaign', help='the pack folder (from `pack`)')
    p.add_argument('--out', required=True, help="results and encoder shards (the device's $OUT)")
    p.add_argument('--device', default=None, help='cuda (default when available) or cpu')
    p.add_argument('--amp', default='bf16', choices=('bf16', 'fp32', 'auto'), help='training and probe dtype')
    p.add_argument('--seed-methods', default='mae_moco,mae_nextclip',
                   help="methods pretrained at seed size and exported ('' for none)")
    p.add_argument('--seed-encoder', default=None,
                   help='encoder of the seed jobs (default: the shipped name of each method); e.g. ecg_vit_tiny in '
                        'a CPU test')
    p.add_argument('--ablation', default=ABLATION,
                   help="ablation jobs: method[:key=value...], comma-separated ('' for none)")
    p.add_argument('--ablation-encoder', default='ecg_vit_small', help='encoder of the ablation jobs')
    p.add_argument('--minutes', type=float, default=6.0, help='budget of each seed job (training + probe)')
    p.add_argument('--ablation-minutes', type=float, default=2.0, help='budget of each ablation job')
    p.add_argument('--total-minutes', type=float, default=9.0, help='wall-clock budget of the whole command')
    p.add_argument('--final-reserve-s', type=float, default=45.0, help='kept at the end for the report')
    p.add_argument('--probe-reserve-s', type=float, default=40.0, help='kept at the end of each job for its probe')
    p.add_argument('--parallel', type=int, default=4,
                   help='pretraining jobs at once, each its own process (0: all in this process)')
    recipe = TrainConfig()  # the seed's recipe, declared once in ecgvit.train
    p.add_argument('--batch-size', type=int, default=recipe.batch_size, help='pretraining batch (seed: 64)')
    p.add_argument('--lr', type=float, default=recipe.lr, help='Adam learning rate (seed: 2e-4)')
    p.add_argument('--warmup-epochs', type=float, default=SEED_WARMUP_EPOCHS,
                   help="warm-up epochs (seed: 20), at most a fifth of the epochs the budget allows")
    p.add_argument('--max-epochs', type=int, default=100000, help='stop a job after this many epochs')
    p.add_argument('--chunk-s', type=float, default=60.0, help='seconds of training between resumable checkpoints')
    p.add_argument('--probe-epochs', type=int, default=100, help='linear-probe epochs (early stopping)')
    p.add_argument('--n-boot', type=int, default=1000, help='bootstrap resamples of every CI')
    p.add_argument('--seed', type=int, default=0, help='seed of every job (same init, same data order)')
    p.add_argument('--threads', type=int, default=2, help='CPU threads per job process')
    p.add_argument('--compile', action='store_true', help='torch.compile the transformer blocks of every job')
    p.add_argument('--shard-mib', type=float, default=15.0, help='largest exported shard (the limit is 16 MiB)')
    p.add_argument('--workdir', default=None, help='run folders and decoded arrays (default: a temporary folder)')
    p.add_argument('--probe', action='append', default=[], metavar='NAME=FOLDER',
                   help='also probe a saved encoder folder (e.g. the shipped weights, on the CPU), as job NAME, '
                        'against the random init of its architecture (repeatable)')
    p.add_argument('--init', action='append', default=[], metavar='METHOD=FOLDER',
                   help='continue instead of starting over: the seed job of METHOD starts from the encoder in FOLDER '
                        '(a save_pretrained folder carried with the call, e.g. a copy of weights/<name>, or a .tar.xz '
                        'of one: about 30 %% smaller) and from the '
                        'pretraining heads beside it when there, with a fresh optimiser and schedule (give '
                        '--warmup-epochs 1, as the CPU continuations do); with a pack that has the evaluation folds, '
                        'FOLDER is also probed, as job start-METHOD, and paired with what the job ends with '
                        '(repeatable)')
    p.add_argument('--pair-with', default=None, metavar='RESULTS_JSON',
                   help="pair each --probe job with every seed job of another run's results.json (its test "
                        "predictions): new weights minus these, on the same test records")
    p.add_argument('--wheels', default=None,
                   help='install these wheels first (pip --target $CAMPAIGN_SITE or /tmp/site): for packages the '
                        'GPU image lacks')


def parse_jobs(spec: str) -> list[tuple[str, dict[str, Any]]]:
    """``'mae,mae_moco:alpha=20'`` -> ``[('mae', {}), ('mae_moco', {'alpha': 20})]`` (values read as JSON)."""
    out = []
    for item in (s.strip() for s in spec.split(',')):
        if not item:
            continue
        method, *pairs = item.split(':')
        kwargs: dict[str, Any] = {}
        for pair in pairs:
            try:
                key, value = parse_key_value(pair)
            except ValueError:
                raise ValueError(f'Bad job {item!r}: settings are key=value after the method, '
                                 f'e.g. mae_moco:alpha=20.') from None
            kwargs[key] = value
        out.append((method, kwargs))
    return out


def job_name(prefix: str, method: str, kwargs: dict[str, Any]) -> str:
    tail = ''.join(f'-{k}{v}' for k, v in sorted(kwargs.items()))
    return f'{prefix}-{method}{tail}'.replace('.', 'p')


def paired_bootstrap(y: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray, n_boot: int = 1000, seed: int = 0,
                     alpha: float = 0.05) -> dict[str, float]:
    """Macro AUROC of A minus that of B on the same test records, with a paired percentile bootstrap CI.

    Each resample draws test records with replacement and scores both sets of predictions on the same draw, so the
    interval is that of the difference, not of two independent AUROCs.
    """
    from ecgvit.eval.metrics import multilabel_macro_auroc

    truth = np.asarray(y) > 0.5
    point = multilabel_macro_auroc(truth, prob_a) - multilabel_macro_auroc(truth, prob_b)
    rng = np.random.default_rng(seed)
    n = len(truth)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        d = multilabel_macro_auroc(truth[idx], prob_a[idx]) - multilabel_macro_auroc(truth[idx], prob_b[idx])
        if math.isfinite(d):
            diffs.append(d)
    out = {'diff': float(point), 'n_boot': len(diffs)}
    if diffs:
        arr = np.asarray(diffs)
        out.update(lo=float(np.quantile(arr, alpha / 2)), hi=float(np.quantile(arr, 1 - alpha / 2)),
                   p_not_better=float(np.mean(arr <= 0)))
    return out


def export_shards(encoder_dir: Path, out: Path, prefix: str, max_bytes: int) -> list[dict[str, Any]]:
    """Write an encoder's weights as bf16 safetensors shards of at most ``max_bytes`` each (in state-dict order).

    Returns:
        One entry per shard: file, sha256, bytes, tensor names.
    """
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(encoder_dir / 'model.safetensors'))
    groups: list[dict[str, Any]] = [{}]
    size = 0
    for name, t in tensors.items():
        t = t.to(torch.bfloat16) if torch.is_floating_point(t) else t
        nbytes = t.numel() * t.element_size()
        if nbytes > max_bytes - 2 ** 16:
            raise ValueError(f'Tensor {name} is {nbytes} bytes, more than one shard may hold ({max_bytes}); raise '
                             f'--shard-mib (the device returns files of up to 16 MiB).')
        if size + nbytes > max_bytes - 2 ** 16 and groups[-1]:  # 64 KiB for the header
            groups.append({})
            size = 0
        groups[-1][name] = t.contiguous()
        size += nbytes
    shards = []
    for i, group in enumerate(groups):
        name = f'{prefix}-{i + 1:05d}-of-{len(groups):05d}.safetensors'
        tmp = out / f'.{name}.tmp'
        save_file(group, str(tmp), metadata={'format': 'pt', 'shard': f'{i + 1}/{len(groups)}'})
        os.chmod(tmp, 0o644)  # the files travel and get shared: readable, like every other output
        tmp.replace(out / name)
        shards.append({'file': name, 'sha256': sha256_file(out / name), 'bytes': (out / name).stat().st_size,
                       'tensors': list(group)})
    return shards


def export_heads(encoder_dir: Path, out: Path, prefix: str) -> dict[str, Any] | None:
    """Add an encoder's pretraining heads (``heads.safetensors`` beside it) to the one heads file the run returns,
    under ``<prefix>/`` keys, in bf16; one file for every seed encoder, so the heads cost one returned file.

    Returns:
        What ``unpack`` needs to write them back (method, architecture, extra, tensor count), or None without heads.
    """
    import torch
    from safetensors.torch import load_file, save_file

    from ecgvit.pretrain.heads import read_heads

    if not (encoder_dir / HEADS_FILE).is_file():
        return None
    read = read_heads(encoder_dir)
    combined = load_file(str(out / HEADS_FILE)) if (out / HEADS_FILE).is_file() else {}
    combined = {k: v for k, v in combined.items() if not k.startswith(f'{prefix}/')}
    for key, t in read['tensors'].items():
        combined[f'{prefix}/{key}'] = (t.to(torch.bfloat16) if torch.is_floating_point(t) else t).contiguous()
    tmp = out / f'.{HEADS_FILE}.tmp'
    save_file(combined, str(tmp), metadata={'format': 'pt'})
    os.chmod(tmp, 0o644)
    tmp.replace(out / HEADS_FILE)
    return {'file': HEADS_FILE, 'method': read['method'], 'model': read['model'], 'extra': read['extra'],
            'tensors': len(read['tensors'])}


def _shards_needed(encoder: str, length: int, max_bytes: int) -> int:
    import ecgvit

    n = sum(p.numel() for p in ecgvit.create_model(encoder, img_size=length).state_dict().values())
    return math.ceil(2 * n / (max_bytes - 2 ** 16))


def _extract(archive: Path, into: Path) -> Path:
    """The one folder a ``.tar.xz`` holds, extracted under ``into`` (weights travel about 30 % smaller so)."""
    import tarfile

    try:
        with tarfile.open(archive, 'r:xz') as tar:
            tops = {Path(m.name).parts[0] for m in tar.getmembers() if m.name not in ('', '.')}
            if len(tops) != 1:
                raise SystemExit(f'{archive} holds {sorted(tops)}: make it from one folder (tar -cJf '
                                 f'{archive.name} -C weights <name>).')
            into.mkdir(parents=True, exist_ok=True)
            tar.extractall(into, filter='data')  # no absolute paths, links out or devices
    except (tarfile.TarError, EOFError, OSError) as e:
        raise SystemExit(f'{archive} is not a readable .tar.xz ({type(e).__name__}: {e}): copy or make it again.') \
            from None
    return into / tops.pop()


def init_spec(item: str, seed_methods: list[str], length: int,
              unpack_to: Path | None = None) -> tuple[str, dict[str, Any]]:
    """``--init METHOD=FOLDER``, checked before any job starts: (METHOD, what its seed job starts from).

    FOLDER may also be a ``.tar.xz`` of one such folder, extracted under ``unpack_to``. The record holds the folder,
    its weights' sha256 (``pretrained`` names the shipped weights when it is theirs, so a card can say which published
    weights the run continued) and its heads' sha256 (None: the heads start fresh).
    """
    from ecgvit.hub import encoder_weights_file
    from ecgvit.weights_sha256 import WEIGHTS_SHA256

    method, sep, folder = item.partition('=')
    if not sep or method not in seed_methods:
        raise SystemExit(f'--init {item!r}: give METHOD=FOLDER with METHOD one of the seed jobs\' methods '
                         f'({", ".join(seed_methods) or "none: --seed-methods is empty"}).')
    path = Path(folder).resolve()
    if path.is_file() and path.name.endswith('.tar.xz'):
        path = _extract(path, Path(unpack_to or path.parent) / f'init-{method}')
    if not (path / 'config.json').is_file():
        raise SystemExit(f'--init {item!r}: {path} has no config.json; give a folder written by save_pretrained '
                         f'(e.g. a copy of weights/{SHIPPED.get(method, "<name>")}, carried with the call).')
    cfg = json.loads((path / 'config.json').read_text())
    arch, size = cfg.get('architecture'), (cfg.get('pretrained_cfg') or {}).get('input_size', [None])[-1]
    if size is not None and int(size) != length:
        raise SystemExit(f'--init {item!r}: those weights take {size} samples, the pack holds {length}-sample '
                         f'windows; pack at their length (pack --num-samples {size}).')
    digest = sha256_file(encoder_weights_file(path))
    heads = path / HEADS_FILE
    return method, {'folder': str(path), 'model': arch, 'weights_sha256': digest,
                    'pretrained': arch if WEIGHTS_SHA256.get(arch) == digest else None,
                    'heads_sha256': sha256_file(heads) if heads.is_file() else None}


def _decode(pack_dir: Path, arrays: Path) -> dict[str, Any]:
    """Decode the pack into one .npy per split under ``arrays`` (each job memory-maps them)."""
    from .pack import load_pack

    desc, signals, meta = load_pack(pack_dir)
    arrays.mkdir(parents=True, exist_ok=True)
    for name in ('pool_train', 'pool_val', 'eval_train', 'eval_val', 'eval_test'):
        if name in meta:  # a pack made with --no-eval has the pool only
            np.save(arrays / f'{name}.npy', signals[meta[name]])
    for name in ('train', 'val', 'test'):
        if f'labels_{name}' in meta:
            np.save(arrays / f'labels_{name}.npy', meta[f'labels_{name}'])
    return desc


class _Report:
    """results.json / results.md / campaign.log in the output folder, rewritten after every job."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.out = out
        self.data: dict[str, Any] = dict(header, jobs={}, comparisons=[], encoders={})

    def write(self) -> None:
        self.data['written'] = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
        atomic_json(self.out / 'results.json', self.data)
        tmp = self.out / '.results.md.tmp'
        tmp.write_text(markdown(self.data))
        tmp.replace(self.out / 'results.md')


def _ci(x: dict[str, Any] | None, key: str = 'auroc_macro') -> str:
    if not x or x.get(key) is None:
        return '-'
    lo, hi = x.get(f'{key}_lo'), x.get(f'{key}_hi')
    return f'{x[key]:.3f} [{lo:.3f}, {hi:.3f}]' if lo is not None and hi is not None else f'{x[key]:.3f}'


def markdown(data: dict[str, Any]) -> str:
    """The human-readable report: jobs, then paired differences."""
    m = data.get('machine', {})
    counts = data.get('pack', {}).get('counts', {})
    probed = (f"PTB-XL fold 10 test ({counts['eval_test']} records). Linear probe, superdiagnostic macro AUROC [95% "
              f"bootstrap CI]." if 'eval_test' in counts else 'no evaluation folds (packed with --no-eval): no probe.')
    lines = [f"# GPU campaign results ({data.get('written', '')})", '',
             f"Machine: {m.get('gpu') or m.get('cpu')}, torch {data.get('torch')}; pack: "
             f"{counts.get('pool_train')} pool windows for training, {probed}", '',
             '| job | encoder | status | epochs | steps | train s | s/epoch | best val loss | rel. L2 from init | '
             'probe AUROC |', '|---|---|---|---|---|---|---|---|---|---|']
    for name, j in data['jobs'].items():
        def num(key: str, fmt: str, j: dict[str, Any] = j) -> str:
            v = j.get(key)
            return format(v, fmt) if isinstance(v, (int, float)) else '-'
        status = j.get('status') if not j.get('error') else f"{j.get('status')}: {j['error'][:80]}"
        lines.append(f"| {name} | {j.get('encoder')} | {status} | {num('epochs', 'd')} | "
                     f"{num('steps', 'd')} | {num('train_s', '.0f')} | {num('epoch_s', '.2f')} | "
                     f"{num('best_val_loss', '.4f')} | {num('rel_l2_from_init', '.3f')} | {_ci(j.get('probe'))} |")
    busy = [u for _, u, _, n in data.get('gpu_samples') or [] if n > 0]
    if busy:
        lines += ['', f'GPU utilisation while jobs ran (nvidia-smi every 5 s): median {np.median(busy):.0f}%, '
                      f'{len(busy)} samples.']
    if data['comparisons']:
        lines += ['', 'Paired differences of macro AUROC (A - B, same test records, 95% paired bootstrap CI):', '',
                  '| A | B | A - B | 95% CI | CI excludes 0 |', '|---|---|---|---|---|']
        for c in data['comparisons']:
            lo, hi = c.get('lo'), c.get('hi')
            ci = f'[{lo:+.3f}, {hi:+.3f}]' if lo is not None else '-'
            verdict = '-' if lo is None else ('yes, A better' if lo > 0 else 'yes, B better' if hi < 0 else 'no')
            lines.append(f"| {c['a']} | {c['b']} | {c['diff']:+.3f} | {ci} | {verdict} |")
    if data['encoders']:
        lines += ['', 'Exported encoders (bf16 shards; `gpu_campaign.py unpack` reassembles them):', '']
        for name, e in data['encoders'].items():
            lines.append(f"- `{name}` from job {e['job']}: {', '.join(s['file'] for s in e['shards'])}")
    return '\n'.join(lines) + '\n'


def _comparisons(jobs: dict[str, dict[str, Any]], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """The ablation's questions (:func:`.pairs.comparison_pairs`) on the jobs that were probed; the weights given with
    ``--probe`` against their architecture's random init only."""
    preds = {}
    for name, j in jobs.items():
        f = Path(j.get('run_dir', '')) / 'probe' / 'predictions.npz'
        if j.get('status') == 'done' and f.is_file():
            preds[name] = np.load(f)
    specs = [(n, j['method'], j['method_kwargs'], j['encoder']) for n, j in jobs.items()
             if n in preds and j['role'] in ('seed', 'ablation', 'random')]
    floors = {j['encoder']: n for n, j in jobs.items() if n in preds and j['role'] == 'random'}
    pairs = [(a, b) for a, b, _ in comparison_pairs(specs)]
    pairs += [(n, floors.get(j['encoder'])) for n, j in jobs.items() if n in preds and j['role'] == 'given']
    # A continued seed job against the weights it started from (``--init``): did the extra epochs help?
    pairs += [(n, f"start-{j['method']}") for n, j in jobs.items()
              if n in preds and j['role'] == 'seed' and j.get('init') and f"start-{j['method']}" in preds]
    out = []
    for a, b in pairs:
        if b is None:
            continue
        if not np.array_equal(preds[a]['y'], preds[b]['y']):
            raise RuntimeError(f'{a} and {b} were probed on different test records; cannot pair them.')
        out.append({'a': a, 'b': b, **paired_bootstrap(preds[a]['y'], preds[a]['prob'], preds[b]['prob'], n_boot,
                                                        seed)})
    return out


def _pair_with_other(results: Path, runs: Path, jobs: list[dict[str, Any]], n_boot: int,
                     seed: int) -> list[dict[str, Any]]:
    """Each seed job of another run's ``results.json`` minus each ``--probe`` job here, on the same test records."""
    other = json.loads(results.read_text())
    preds = other.get('test_predictions') or {}
    y = np.asarray(preds.get('y', []), dtype=np.float32)
    out = []
    for job in jobs:
        f = runs / job['name'] / 'probe' / 'predictions.npz'
        if job['role'] != 'given' or not f.is_file():
            continue
        mine = np.load(f)
        if not np.array_equal(mine['y'].astype(np.float32), y):
            raise RuntimeError(f'{results} was probed on other test records than this run (another pack?): its '
                               f'predictions cannot be paired with {job["name"]}.')
        for name, j in other.get('jobs', {}).items():
            if j.get('role') == 'seed' and name in preds.get('prob', {}):
                out.append({'a': f'{name} (from {results.name})', 'b': job['name'],
                            **paired_bootstrap(y, np.asarray(preds['prob'][name]), mine['prob'], n_boot, seed)})
    return out


def _gpu_utilisation() -> tuple[float, float] | None:
    """(GPU utilisation %, memory used MiB) from nvidia-smi, or None where it is missing or fails."""
    if shutil.which('nvidia-smi') is None:
        return None
    try:
        query = ['nvidia-smi', '--query-gpu=utilization.gpu,memory.used', '--format=csv,noheader,nounits']
        line = subprocess.run(query, capture_output=True, text=True, timeout=5, check=True).stdout.splitlines()[0]
        util, mem = (float(v) for v in line.split(','))
        return util, mem
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _salvage(job: dict[str, Any]) -> dict[str, Any]:
    """A job process that died or was killed: its best checkpoint becomes its encoder (no probe)."""
    from ecgvit.hub import save_pretrained
    from ecgvit.pretrain import create_pretrainer, save_heads, split_method
    from ecgvit.train import load_best_into

    res_file = Path(job['run_dir']) / 'result.json'
    res = json.loads(res_file.read_text()) if res_file.is_file() else {
        k: job[k] for k in ('name', 'role', 'method', 'method_kwargs', 'encoder', 'ship_as')}
    if res.get('status') in ('done', 'failed'):
        return res
    res['status'] = 'killed'
    best = Path(job['run_dir']) / 'train' / 'checkpoints' / 'best.safetensors'
    if job['role'] in ('seed', 'ablation') and best.is_file():
        try:
            base, kwargs = split_method(job['method'])
            kwargs.update(job['method_kwargs'])
            if 'clip' in base:
                kwargs.setdefault('sampling_rate', job['pack']['sampling_rate'])
            model = create_pretrainer(base, job['encoder'], {'img_size': job['pack']['num_samples']}, **kwargs)
            load_best_into(model, Path(job['run_dir']) / 'train')
            save_pretrained(model.encoder, Path(job['run_dir']) / 'encoder',
                            pretrained_cfg={'pretrain_method': job['method'], 'preprocessing': job['pack']})
            save_heads(model.state_dict(), Path(job['run_dir']) / 'encoder', method=base, model=job['encoder'])
            res['encoder_dir'] = str(Path(job['run_dir']) / 'encoder')
            res['status'] = 'killed (best checkpoint kept, not probed)'
        except Exception as e:  # noqa: BLE001 - reported, the other jobs go on
            res['salvage_error'] = f'{type(e).__name__}: {e}'
    atomic_json(res_file, res)
    return res


def _log_to(path: Path) -> None:
    """The campaign's own log lines go to stdout and ``path`` (not through the root logger, which tests own)."""
    for h in list(_logger.handlers):
        _logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter('%(asctime)s %(message)s', datefmt='%H:%M:%S')
    for h in (logging.StreamHandler(sys.stdout), logging.FileHandler(path)):
        h.setFormatter(fmt)
        _logger.addHandler(h)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False


def run(args: argparse.Namespace) -> int:
    """The ``run`` step (see the module doc); returns the exit code (0 when both seed encoders were exported)."""
    import torch

    import ecgvit
    from ecgvit.train.runtime import machine_info

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _log_to(out / 'campaign.log')
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    end_all = t0 + 60 * args.total_minutes - args.final_reserve_s
    work = Path(args.workdir or Path(os.environ.get('TMPDIR', '/tmp')) / f'ecgvit-campaign-{os.getpid()}')
    work.mkdir(parents=True, exist_ok=True)
    info = machine_info(torch.device(device))
    _logger.info('campaign: %s | torch %s | ecgvit %s | device %s | budget %.1f min | parallel %d',
                 info.get('gpu') or info.get('cpu'), torch.__version__, ecgvit.__version__, device,
                 args.total_minutes, args.parallel)

    desc = _decode(Path(args.data), work / 'arrays')
    pp = desc['preprocessing']
    length = int(pp['num_samples'])
    _logger.info('pack decoded: %s windows, %s (%.0f s)', desc['shape'][0], desc['counts'], time.time() - t0)

    max_bytes = int(args.shard_mib * 2 ** 20)
    if max_bytes > MAX_FILE_BYTES:
        raise SystemExit(f'--shard-mib {args.shard_mib} is over the 16 MiB a returned file may have.')
    seed_jobs, ablation_jobs = parse_jobs(args.seed_methods), parse_jobs(args.ablation)
    jobs: list[dict[str, Any]] = []
    evaluate = desc.get('label_names') is not None  # False: a --no-eval pack; nothing is probed here
    if args.probe and not evaluate:
        raise SystemExit(f'--probe needs the evaluation folds, and {args.data} was packed with --no-eval.')
    common = dict(arrays=str(work / 'arrays'), pack=pp, label_names=desc['label_names'], device=device,
                  probe=evaluate, amp=args.amp, batch_size=args.batch_size, lr=args.lr,
                  warmup_epochs=args.warmup_epochs, max_epochs=args.max_epochs, chunk_s=args.chunk_s,
                  probe_epochs=args.probe_epochs,
                  n_boot=args.n_boot, seed=args.seed, threads=args.threads, compile=args.compile)
    inits = dict(init_spec(item, [m for m, _ in seed_jobs], length, work) for item in args.init)
    n_files = len(REPORT_FILES)
    archs = []
    for method, kw in seed_jobs:
        enc = args.seed_encoder or SHIPPED.get(method)
        if enc is None:
            raise SystemExit(f'--seed-methods {method}: no shipped name for it; give --seed-encoder.')
        n_files += _shards_needed(enc, length, max_bytes)
        ship = SHIPPED.get(method) if enc == SHIPPED.get(method) and not kw else f'{enc}-{method}'
        start = inits.get(method)
        if start is not None and start['model'] != enc:
            raise SystemExit(f'--init {method}={start["folder"]} holds {start["model"]} weights, but the seed job of '
                             f'{method} trains {enc}: pass weights of {enc} (or --seed-encoder {start["model"]}).')
        jobs.append(dict(common, name=job_name('seed', method, kw), role='seed', method=method, method_kwargs=kw,
                         encoder=enc, ship_as=ship, minutes=args.minutes, init=start))
        archs.append(enc)
    if n_files > MAX_OUT_FILES:
        raise SystemExit(f'{len(seed_jobs)} seed encoders need {n_files} files with the report, more than the '
                         f'{MAX_OUT_FILES} the device returns: export fewer (--seed-methods).')
    with_heads = bool(seed_jobs) and n_files < MAX_OUT_FILES  # the heads file is the one left over, if there is one
    if seed_jobs and not with_heads:
        _logger.info('the seed encoders fill all %d returned files: their pretraining heads stay behind',
                     MAX_OUT_FILES)
    for method, kw in ablation_jobs:
        jobs.append(dict(common, name=job_name('small', method, kw), role='ablation', method=method,
                         method_kwargs=kw, encoder=args.ablation_encoder, ship_as=None, minutes=args.ablation_minutes))
        archs.append(args.ablation_encoder)
    # A continued job's starting weights are probed on the same records, so that the report pairs the two.
    probes = [f'start-{m}={s["folder"]}' for m, s in inits.items() if evaluate] + list(args.probe)
    for item in probes:
        name, sep, folder = item.partition('=')
        if not sep or not Path(folder, 'config.json').is_file():
            raise SystemExit(f'--probe {item!r}: give NAME=FOLDER, a folder written by save_pretrained.')
        arch = json.loads(Path(folder, 'config.json').read_text())['architecture']
        jobs.append(dict(common, name=name, role='given', method='given', method_kwargs={}, encoder=arch,
                         ship_as=None, minutes=2.0, source=str(Path(folder).resolve())))
        archs.append(arch)
    randoms = [dict(common, name=f'random-{a}', role='random', method='random', method_kwargs={}, encoder=a,
                    ship_as=None, minutes=1.0) for a in dict.fromkeys(archs) if evaluate]
    jobs = randoms + jobs
    for j in jobs:
        j['run_dir'] = str(work / 'runs' / j['name'])

    report = _Report(out, {'command': ' '.join(sys.argv), 'machine': info, 'torch': torch.__version__,
                           'ecgvit': ecgvit.__version__, 'device': device, 'pack': desc,
                           'settings': {k: v for k, v in vars(args).items() if k not in ('out',)}})
    for j in jobs:
        report.data['jobs'][j['name']] = {'encoder': j['encoder'], 'method': j['method'], 'status': 'queued'}
    report.write()

    def finished(job: dict[str, Any], res: dict[str, Any]) -> None:
        res['run_dir'] = job['run_dir']
        report.data['jobs'][job['name']] = {k: v for k, v in res.items() if k != 'traceback'}
        _logger.info('%s: %s, %s epochs, probe AUROC %s%s', job['name'], res.get('status'), res.get('epochs'),
                     _ci(res.get('probe')), f" ({res['error']})" if res.get('error') else '')
        if res.get('traceback'):
            _logger.info('%s', res['traceback'])
        if job['role'] == 'seed' and res.get('encoder_dir'):
            try:
                shards = export_shards(Path(res['encoder_dir']), out, job['ship_as'], max_bytes)
                config = json.loads((Path(res['encoder_dir']) / 'config.json').read_text())
                report.data['encoders'][job['ship_as']] = {'job': job['name'], 'shards': shards, 'config': config,
                                                           'method': job['method'], 'encoder': job['encoder']}
                heads = export_heads(Path(res['encoder_dir']), out, job['ship_as']) if with_heads else None
                if heads is not None:  # the file holds every seed encoder's heads so far: its sha256 changes
                    report.data['encoders'][job['ship_as']]['heads'] = heads
                    report.data['heads_sha256'] = sha256_file(out / HEADS_FILE)
            except Exception as e:  # noqa: BLE001 - the report says so; the other encoder may still ship
                _logger.info('%s: export failed: %s: %s', job['name'], type(e).__name__, e)
        report.write()

    pending = list(jobs)
    running: list[tuple[dict[str, Any], subprocess.Popen, float, Any]] = []
    samples: list[list[float]] = []  # [s since start, GPU utilisation %, memory MiB, jobs running]
    report.data['gpu_samples'] = samples
    next_sample = 0.0
    while pending or running:
        now = time.time()
        if device == 'cuda' and now >= next_sample:  # does the GPU idle? (what --parallel should be next time)
            util = _gpu_utilisation()
            if util is not None:
                samples.append([round(now - t0, 1), *util, len(running)])
            next_sample = now + 5.0
        for item in list(running):
            job, proc, kill_at, log = item
            if proc.poll() is None and now > kill_at:
                _logger.info('%s: past its end, stopping it', job['name'])
                proc.kill()
                proc.wait()
            if proc.poll() is not None:
                running.remove(item)
                log.close()
                res = _salvage(job)
                if res.get('status') != 'done':  # the worker's own last lines say why (they stay on the machine)
                    tail = (Path(job['run_dir']) / 'worker.log').read_text(errors='replace')[-2000:]
                    _logger.info('%s: exit code %s, end of its log:\n%s', job['name'], proc.returncode, tail)
                finished(job, res)
        while pending:
            # The random-init floors (and --probe jobs) only embed and probe, in seconds: they run beside the
            # training jobs, not in their slots, so that no seed job starts late behind them.
            busy = sum(1 for j, *_ in running if j['role'] in TRAINING_ROLES)
            job = next((j for j in pending if j['role'] not in TRAINING_ROLES), None)
            if job is None and busy < max(1, args.parallel):
                job = pending[0]
            if job is None:
                break
            pending.remove(job)
            left = end_all - time.time()
            budget = min(60 * job['minutes'], left)
            if budget < args.probe_reserve_s + 10 or budget < 0.25 * 60 * job['minutes']:
                finished(job, {'status': 'skipped (no time left)', 'name': job['name']})
                continue
            # Kept for the probe (with a --no-eval pack, only for saving the encoder).
            reserve = (args.probe_reserve_s if evaluate else 10.0) if job['role'] in TRAINING_ROLES else 0.0
            job['train_deadline'] = time.time() + budget - reserve
            _logger.info('%s: start, %.0f s (%s on %s)', job['name'], budget, job['method'], job['encoder'])
            Path(job['run_dir']).mkdir(parents=True, exist_ok=True)
            if args.parallel <= 0:
                finished(job, train_one(job))
                continue
            job_file = Path(job['run_dir']) / 'job.json'
            job_file.write_text(json.dumps(job, indent=2))
            log = open(Path(job['run_dir']) / 'worker.log', 'w')  # noqa: SIM115 - owned by the process
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parents[1] / 'gpu_campaign.py'),
                                     'train-one', '--job', str(job_file)], stdout=log, stderr=subprocess.STDOUT)
            running.append((job, proc, time.time() + budget + 20, log))
        if running:
            time.sleep(0.5)

    keys = ('role', 'method', 'method_kwargs', 'encoder', 'init')
    report.data['comparisons'] = _comparisons(
        {j['name']: dict(report.data['jobs'][j['name']], **{k: j.get(k) for k in keys}) for j in jobs},
        args.n_boot, args.seed)
    test = work / 'runs'
    ys = [np.load(p)['y'] for p in sorted(test.glob('*/probe/predictions.npz'))]
    if ys:  # the test predictions travel back, for pairing with encoders probed elsewhere (e.g. the current weights)
        report.data['test_predictions'] = {
            'y': ys[0].astype(int).tolist(),
            'prob': {p.parent.parent.name: np.round(np.load(p)['prob'], 5).tolist()
                     for p in sorted(test.glob('*/probe/predictions.npz'))}}
    if args.pair_with:
        report.data['comparisons'] += _pair_with_other(Path(args.pair_with), work / 'runs', jobs, args.n_boot,
                                                       args.seed)
    report.data['wall_s'] = time.time() - t0
    report.write()
    files = [p for p in out.iterdir() if p.is_file() and not p.name.startswith('.')]
    big = [p.name for p in files if p.stat().st_size > MAX_FILE_BYTES]
    _logger.info('done in %.0f s: %d files in %s%s', time.time() - t0, len(files), out,
                 f' (over 16 MiB: {big})' if big else '')
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    exported = set(report.data['encoders'])
    return 0 if len(exported) == len(seed_jobs) else 1
