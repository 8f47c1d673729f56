"""Every speed and memory figure of the project in one run: a pass/fail table on stdout and one JSON file.

The figures and their targets (issue 7, "Speed and memory"):

======================================  ==================================================================  =========
figure                                  what                                                                target
======================================  ==================================================================  =========
``mfu``                                 MAE-MoCo pretraining step (the paper's passes, seed size, batch 64)  >= 0.60
                                        in the faster dtype: model FLOP/s over the same-dtype matmul peak
``mae_moco_over_mae_per_flop``          step time MAE-MoCo / MAE, divided by their FLOP ratio (efficiency     <= 1.1
                                        parity: the FLOP ratio itself is fixed by the method), faster dtype
``mae_nextclip_over_mae_per_flop``      the same for MAE-Nextclip                                            <= 1.1
``speedup_vs_mtae``                     peer MTAE (ST-MEM) step time / our MAE step time (null without it)   >= 1.2
``mfu_fp32``, ``mfu_bf16``              ``mfu`` in each dtype (unsuffixed figures: the faster one)           >=.60/.50
``speedup_vs_mtae_fp32`` / ``_bf16``    ``speedup_vs_mtae`` in each dtype                                    >= 1.2
``infer_ratio_vs_timm``                 batch-1 latency of ecgvit's fast inference path / timm ViT, fp32     <= 0.6
``loader_records_per_s``                cached DataLoader throughput, 2 workers, batch 64                    >= 5000
``peak_rss_gb``                         peak resident memory of MAE-MoCo pretraining (batch 64, Adam) in a   <= 4
                                        fresh process, in GB (10^9 bytes)
``gpu_mfu``                             on a CUDA device: the MAE-MoCo step's FLOP utilisation in bf16       >= 0.40
                                        (null without one; ``gpu_pretrain.py``)
``gpu_epoch_s``                         on a CUDA device: one PTB-XL-size epoch (17,440 records) of the      <= 30
                                        training loop, bf16, seconds
``mfu_shared``                          ``mfu`` for ecgvit's shared pass (``mae_moco_shared``)               >= 0.60
``mae_moco_shared_over_mae``            step time of the shared-pass MAE-MoCo / MAE, faster dtype            <= 1.6
``mae_nextclip_shared_over_mae``        the same for the shared-pass MAE-Nextclip                            <= 1.4
``peak_rss_gb_grad_ckpt``               ``peak_rss_gb`` with ``encoder.set_grad_checkpointing()``            <= 4
``peak_rss_gb_shared``                  ``peak_rss_gb`` of the shared pass                                   <= 4
======================================  ==================================================================  =========

The paper's MAE-MoCo runs the encoder on all 145 tokens for the query (with gradient) and the key, and MAE-Nextclip
on all 145 tokens of the zeroed record, against MAE's 36: their steps cost 5-6x and 4-5x MAE's in FLOPs, whatever the
kernels, so their step ratios are judged per FLOP. The unsuffixed figures measure those, the methods' defaults; the
``_shared`` ones ecgvit's shared pass (one masked pass reads [CLS]; ``ecgvit.pretrain.hybrid``), whose step is close
to MAE's in FLOPs and so is held to the plain time ratios.

Each figure comes from the script that owns it (``pretrain_step.py``, ``peer_mtae.py``, ``infer_latency.py``,
``data_throughput.py``, imported from this folder); timed figures are medians of ``--repeats`` (default 5) runs.
The default run takes about 6.5 minutes on 2 cores (a seed-size MAE-MoCo step at batch 64 takes
about 1.3 s there with the shared pass, 5-6 s with the paper's).

Usage (from the repository root):
    python benchmarks/run_all.py --json results/bench.json          # the full run
    python benchmarks/run_all.py --quick --json /tmp/bench.json     # smoke test: tiny settings, < 1 minute
    python benchmarks/run_all.py --skip peer,loader --profile        # skip figures (or groups), add a profile
"""
import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SPEED_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'avx512_fp16', 'amx_tile', 'amx_bf16',
               'amx_int8')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}
PRETRAIN_METHODS = 'mae,mae_moco,mae_nextclip,mae_moco_shared,mae_nextclip_shared'


@dataclasses.dataclass(frozen=True)
class Figure:
    """One reported figure: the benchmark group that measures it and its target."""

    name: str
    group: str
    op: str  # '>=' or '<=': which side of the target passes
    target: float
    unit: str = ''


FIGURES = (
    Figure('mfu', 'pretrain', '>=', 0.60),
    Figure('mae_moco_over_mae_per_flop', 'pretrain', '<=', 1.1, 'x'),
    Figure('mae_nextclip_over_mae_per_flop', 'pretrain', '<=', 1.1, 'x'),
    Figure('mfu_shared', 'pretrain', '>=', 0.60),
    Figure('mae_moco_shared_over_mae', 'pretrain', '<=', 1.6, 'x'),
    Figure('mae_nextclip_shared_over_mae', 'pretrain', '<=', 1.4, 'x'),
    Figure('mfu_fp32', 'pretrain', '>=', 0.60),
    Figure('mfu_bf16', 'pretrain', '>=', 0.50),
    Figure('speedup_vs_mtae', 'peer', '>=', 1.2, 'x'),
    Figure('speedup_vs_mtae_fp32', 'peer', '>=', 1.2, 'x'),
    Figure('speedup_vs_mtae_bf16', 'peer', '>=', 1.2, 'x'),
    Figure('infer_ratio_vs_timm', 'infer', '<=', 0.6, 'x'),
    Figure('loader_records_per_s', 'loader', '>=', 5000.0, ' rec/s'),
    Figure('peak_rss_gb', 'rss', '<=', 4.0, ' GB'),
    Figure('peak_rss_gb_grad_ckpt', 'rss', '<=', 4.0, ' GB'),
    Figure('peak_rss_gb_shared', 'rss', '<=', 4.0, ' GB'),
    Figure('gpu_mfu', 'gpu', '>=', 0.40),
    Figure('gpu_epoch_s', 'gpu', '<=', 30.0, ' s'),
)
GROUPS = ('pretrain', 'peer', 'infer', 'loader', 'rss', 'gpu')


@dataclasses.dataclass
class Settings:
    """Sizes of one run; ``full()`` is the default run, ``quick()`` the smoke test.

    Attributes:
        encoder: Encoder of the pretraining figures (pretrain_step, peak RSS, profile).
        batch: Pretraining batch (also the peer comparison's).
        repeats: Timed repeats per figure (steps, loader epochs; 4x as many batch-1 inference passes).
        warmup: Untimed pretraining steps first (also before profiling).
        loader_records: Synthetic records the loader benchmark converts and reads.
        loader_batch: DataLoader batch.
        rss_steps: Adam steps in the peak-RSS process.
        profile_steps: Steps under torch.profiler with ``--profile``.
    """

    encoder: str
    batch: int
    repeats: int
    warmup: int
    loader_records: int
    loader_batch: int
    rss_steps: int
    profile_steps: int = 3

    @classmethod
    def full(cls) -> 'Settings':
        """Seed size, batch 64, medians of 5: about 6.5 minutes on 2 cores."""
        return cls(encoder='ecg_vit_mae_moco', batch=64, repeats=5, warmup=1, loader_records=1000, loader_batch=64,
                   rss_steps=3)

    @classmethod
    def quick(cls) -> 'Settings':
        """Tiny encoder, batch 4, 1 repeat: a smoke test of every code path in well under a minute."""
        # infer_latency and peer_mtae are fixed at seed size (their references are built at it); they stay cheap at
        # batch 1 and batch 4 respectively.
        return cls(encoder='ecg_vit_tiny', batch=4, repeats=1, warmup=1, loader_records=64, loader_batch=16,
                   rss_steps=2)


def machine_info() -> Dict[str, Any]:
    """What ``ecgvit.train`` records of a machine, plus the instruction-set flags that decide which dtype is fast."""
    from ecgvit.train.runtime import cpu_flags
    from ecgvit.train.runtime import machine_info as ecgvit_machine_info

    flags = cpu_flags()
    present = {flag: flag in flags for flag in SPEED_FLAGS}
    present['amx'] = any(present[f] for f in ('amx_tile', 'amx_bf16', 'amx_int8'))
    info = ecgvit_machine_info(torch.device('cpu'))
    return dict(cpu=info['cpu'], logical_cores=info['logical_cores'], torch_threads=torch.get_num_threads(),
                flags=present, python=platform.python_version(), platform=platform.platform())


def _vm_hwm_kb() -> Optional[int]:
    """Peak RSS of this process's own address space (``VmHWM``), kB; None off Linux."""
    with contextlib.suppress(OSError), open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return None


def _train_steps(model: torch.nn.Module, batch: int, steps: int, dtype: torch.dtype) -> List[float]:
    """Adam steps of ``model`` on fresh random batches, as pretraining does them.

    Args:
        model: A pretrainer (``forward(x)['loss']``).
        batch: Records per batch; each step gets a new ``torch.randn(batch, 12, 3600)``.
        steps: Optimiser steps.
        dtype: ``torch.float32`` or ``torch.bfloat16`` (CPU autocast).

    Returns:
        Seconds per step.
    """
    from ecgvit.train.optim import create_adam

    opt = create_adam([p for p in model.parameters() if p.requires_grad], 2e-4)  # seed: Adam 2e-4, fused as train()
    model.train()
    times = []
    for _ in range(steps):
        x = torch.randn(batch, 12, 3600)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = model(x)['loss']
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return times


def rss_child(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Body of the fresh process that measures peak memory: MAE-MoCo pretraining steps, then its peak RSS.

    The figure is ``VmHWM`` (the peak of this process's own address space). ``ru_maxrss`` is reported too but is
    not used: Linux carries it over from the parent through fork/vfork + execve (checked: a child of a 1.5 GB
    parent reports ru_maxrss = 1.5 GB at start-up), so it would report the benchmark runner's peak, not ours.
    """
    from ecgvit.pretrain import create_pretrainer  # local: the parent process does not need it for this
    from ecgvit.train.cpu_memory import reuse_freed_memory

    if spec['malloc'] == 'reuse':  # as ecgvit pretrain does on a CPU
        reuse_freed_memory()
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    torch.set_flush_denormal(True)  # as pretrain_step.py: denormal Adam moments are slow on x86
    torch.manual_seed(0)
    model = create_pretrainer('mae_moco', spec['encoder'], shared_pass=spec['shared_pass'])
    if spec.get('grad_checkpointing'):
        model.encoder.set_grad_checkpointing(True)
    times = _train_steps(model, spec['batch'], spec['steps'], DTYPES[spec['dtype']])
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    hwm_kb = _vm_hwm_kb()
    return dict(encoder=spec['encoder'], batch=spec['batch'], steps=spec['steps'], dtype=spec['dtype'],
                shared_pass=spec['shared_pass'], grad_checkpointing=bool(spec.get('grad_checkpointing')),
                malloc=spec['malloc'], step_s=times, ru_maxrss_gb=maxrss_kb * 1024 / 1e9,
                vm_hwm_gb=None if hwm_kb is None else hwm_kb * 1024 / 1e9,
                peak_rss_gb=(maxrss_kb if hwm_kb is None else hwm_kb) * 1024 / 1e9)


def measure_rss(settings: Settings, dtype: str, threads: int, shared_pass: bool, malloc: str,
                grad_checkpointing: bool = False) -> Dict[str, Any]:
    """Run :func:`rss_child` in a fresh interpreter so no other benchmark's allocations count."""
    spec = dict(encoder=settings.encoder, batch=settings.batch, steps=settings.rss_steps, dtype=dtype,
                threads=threads, shared_pass=shared_pass, malloc=malloc, grad_checkpointing=grad_checkpointing)
    env = dict(os.environ)
    # The child must import ecgvit the way this process did, installed or not.
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO), env.get('PYTHONPATH', '')) if p)
    proc = subprocess.run([sys.executable, '-m', 'benchmarks.run_all', '--rss-child', json.dumps(spec)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f'peak-RSS subprocess failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def profile_steps(settings: Settings, dtype: str, shared_pass: bool) -> str:
    """torch.profiler over ``settings.profile_steps`` MAE-MoCo steps; returns the top-10 table by self CPU time."""
    from ecgvit.pretrain import create_pretrainer

    torch.manual_seed(0)
    model = create_pretrainer('mae_moco', settings.encoder, shared_pass=shared_pass)
    _train_steps(model, settings.batch, settings.warmup, DTYPES[dtype])  # one-time allocations stay out of it
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _train_steps(model, settings.batch, settings.profile_steps, DTYPES[dtype])
    return prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=10)


def _flush_denormal_on() -> bool:
    """Whether denormals are flushed to zero now (torch has a setter but no getter)."""
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@contextlib.contextmanager
def _restore_torch_state():
    """Put back the torch thread count and denormal flushing afterwards.

    pretrain_step.main turns flushing on for the process and --threads changes the thread count; when main() runs
    inside another program (the test suite), later code must not inherit either.
    """
    threads, flush = torch.get_num_threads(), _flush_denormal_on()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(flush)


def _finite(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become null (JSON has no NaN), tuples become lists, the rest stays."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _format(fig: Figure, value: Optional[float]) -> str:
    """A figure's value as the table shows it."""
    if value is None:
        return '-'
    if fig.name == 'loader_records_per_s':
        return f'{value:,.0f}{fig.unit}'
    return f'{value:.3f}{fig.unit}'


_INVALID = 'invalid: above 1, the measured matmul peak of this dtype is not its real peak here'


def _impossible(fig: Figure, value: Optional[float]) -> bool:
    """A utilisation above 1: the step outran the matmul peak measured for its dtype, so that peak is not the real one
    (bf16 emulated on a CPU without bf16 units: ``torch.mm`` at the small size the measurement falls back to is far
    slower than the kernels a training step reaches). Such a figure says nothing and must not pass."""
    return value is not None and 'mfu' in fig.name and value > 1.0


def _verdict(fig: Figure, value: Optional[float]) -> Optional[bool]:
    """True / False against the target, None when not measured or not measurable."""
    if value is None or _impossible(fig, value):
        return None
    return value >= fig.target if fig.op == '>=' else value <= fig.target


def print_table(figures: Dict[str, Optional[float]], notes: Dict[str, str]) -> None:
    """The figure | measured | target | result table."""
    rows = [('figure', 'measured', 'target', 'result')]
    for fig in FIGURES:
        value = figures.get(fig.name)
        ok = _verdict(fig, value)
        result = notes.get(fig.name, 'skipped') if ok is None else ('pass' if ok else 'FAIL')
        if _impossible(fig, value):
            result = _INVALID
        rows.append((fig.name, _format(fig, value), f'{fig.op} {_format(fig, fig.target)}', result))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, row in enumerate(rows):
        print('  '.join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + '  ' + row[3])
        if i == 0:
            print('  '.join('-' * w for w in widths) + '  ' + '-' * 6)


def _parse_skip(parser: argparse.ArgumentParser, text: str) -> set:
    """Figure names to skip; a group name (pretrain, peer, infer, loader, rss, gpu) stands for all its figures."""
    skip = set()
    for item in (s.strip() for s in text.split(',')):
        if not item:
            continue
        if item in GROUPS:
            skip.update(f.name for f in FIGURES if f.group == item)
        elif item in {f.name for f in FIGURES}:
            skip.add(item)
        else:
            parser.error(f'--skip: unknown figure or group {item!r}; figures: '
                         f'{", ".join(f.name for f in FIGURES)}; groups: {", ".join(GROUPS)}')
    return skip


def build_parser() -> argparse.ArgumentParser:
    """The command line of :func:`main`."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', default='', help='write every figure, the machine and the raw results here')
    parser.add_argument('--quick', action='store_true',
                        help='tiny encoder, small batches, 1 repeat: a smoke test (< 1 min), not comparable with '
                             'the targets')
    parser.add_argument('--skip', default='', help='comma-separated figures or groups to skip (groups: '
                                                   + ', '.join(GROUPS) + ')')
    parser.add_argument('--profile', action='store_true',
                        help='also profile MAE-MoCo steps with torch.profiler and store the top-10 table')
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed repeats (pretraining steps, peer steps, loader epochs; 4x for batch-1 inference) '
                             'per figure, median reported (default 5; quick 1)')
    parser.add_argument('--batch', type=int, default=None, help='pretraining batch (default 64; quick 4)')
    parser.add_argument('--encoder', default=None, help='pretraining encoder (default ecg_vit_mae_moco; quick '
                                                        'ecg_vit_tiny)')
    parser.add_argument('--dtypes', default='fp32,bf16',
                        help='dtypes pretrain_step compares; the faster one is used for every pretraining figure '
                             '(the first one when the pretraining group is skipped)')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default; quick: 1)')
    parser.add_argument('--workdir', default=None, help='where the loader benchmark writes its WFDB files and cache '
                                                        '(default: reused temp folder; quick: a fresh one)')
    parser.add_argument('--malloc', default='reuse', choices=['reuse', 'default'],
                        help="glibc allocator during pretraining figures: 'reuse' (freed tensors recycled, as "
                             "ecgvit pretrain does on CPU) or 'default'")
    parser.add_argument('--rss-child', default='', help=argparse.SUPPRESS)  # internal: the fresh RSS process
    return parser


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run the benchmarks, print the table, write ``--json``; returns what is written."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rss_child:
        result = rss_child(json.loads(args.rss_child))
        print(json.dumps(result))  # the last stdout line is the parent's answer
        return result
    with _restore_torch_state():
        return _run(parser, args, argv)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: List[str]) -> Dict[str, Any]:
    started = time.perf_counter()
    skip = _parse_skip(parser, args.skip)
    settings = Settings.quick() if args.quick else Settings.full()
    for field in ('repeats', 'batch', 'encoder'):
        if getattr(args, field) is not None:
            setattr(settings, field, getattr(args, field))
    dtypes = [d.strip() for d in args.dtypes.split(',') if d.strip()]
    if not dtypes or set(dtypes) - set(DTYPES):
        parser.error(f'--dtypes: choose from {", ".join(DTYPES)}')
    # A smoke test runs on whatever else the machine is doing; with 2 threads against a busy 2-core machine OpenMP
    # spin-waiting made the quick run 4x slower (104 s vs 25 s), so quick uses 1 thread unless told otherwise.
    threads = args.threads or (1 if args.quick else 0)
    if threads:
        torch.set_num_threads(threads)
    wanted = {f.group for f in FIGURES if f.name not in skip}

    figures: Dict[str, Optional[float]] = {f.name: None for f in FIGURES}
    notes = {name: 'skipped (--skip)' for name in skip}
    raw: Dict[str, Any] = {}
    errors: Dict[str, str] = {}
    elapsed: Dict[str, float] = {}
    best = dtypes[0]

    def run(group: str, fn) -> None:
        # One failing benchmark should not throw away the minutes the others took: record it and carry on.
        if group not in wanted:
            return
        print(f'\n=== {group} ===', flush=True)
        t0 = time.perf_counter()
        try:
            fn()
        except Exception:  # reported in the table and the JSON, and the exit status is non-zero
            errors[group] = traceback.format_exc()
            print(errors[group], file=sys.stderr)
            for f in FIGURES:
                if f.group == group and f.name not in skip:
                    notes[f.name] = 'ERROR'
        elapsed[group] = time.perf_counter() - t0

    def pretrain() -> None:
        nonlocal best
        from benchmarks import pretrain_step

        out = pretrain_step.main([
            '--batch', str(settings.batch), '--repeats', str(settings.repeats), '--warmup', str(settings.warmup),
            '--methods', PRETRAIN_METHODS, '--dtypes', ','.join(dtypes), '--encoder', settings.encoder,
            '--threads', str(threads), '--malloc', args.malloc])
        raw['pretrain_step'] = out
        best = out['best_dtype']
        res = out['results']

        def per_flop(method: str) -> float:  # time ratio over FLOP ratio: 1.0 means equally efficient kernels
            return out['ratios'][f'{method}/mae[{best}]'] / (res[method][best]['gflop_per_step']
                                                             / res['mae'][best]['gflop_per_step'])

        values = dict(mfu=res['mae_moco'][best]['mfu'],
                      mae_moco_over_mae_per_flop=per_flop('mae_moco'),
                      mae_nextclip_over_mae_per_flop=per_flop('mae_nextclip'),
                      mfu_shared=res['mae_moco_shared'][best]['mfu'],
                      mae_moco_shared_over_mae=out['ratios'][f'mae_moco_shared/mae[{best}]'],
                      mae_nextclip_shared_over_mae=out['ratios'][f'mae_nextclip_shared/mae[{best}]'])
        for d in DTYPES:  # every figure above is in the faster dtype; these two show both, where measured
            if d in res['mae_moco']:
                values[f'mfu_{d}'] = res['mae_moco'][d]['mfu']
            else:
                notes[f'mfu_{d}'] = f'skipped ({d} not in --dtypes)'
        figures.update({k: v for k, v in values.items() if k not in skip})

    def peer() -> None:
        if args.malloc == 'reuse':  # as pretrain_step set it, also when that group was skipped: same terms as ours
            from ecgvit.train.cpu_memory import reuse_freed_memory

            reuse_freed_memory()
        from benchmarks import peer_mtae

        # Both dtypes, the faster one first: the peer comparison must hold in each (a dtype can favour either side).
        for d in [best] + [d for d in dtypes if d != best]:
            out = peer_mtae.measure(settings.batch, settings.repeats, DTYPES[d])
            raw[f'peer_mtae_{d}'] = dict(out, dtype=d) if out else None
            if not out:
                for key in ('speedup_vs_mtae', 'speedup_vs_mtae_fp32', 'speedup_vs_mtae_bf16'):
                    notes[key] = 'skipped (no ST-MEM checkout)'
                print(f'peer MTAE skipped: no ST-MEM checkout at {peer_mtae.STMEM_DIR} (see benchmarks/peer_mtae.py '
                      f'to fetch it); speedup_vs_mtae is null.')
                return
            figures[f'speedup_vs_mtae_{d}'] = out['speedup_vs_mtae']
            if d == best:
                raw['peer_mtae'] = raw[f'peer_mtae_{d}']
                figures['speedup_vs_mtae'] = out['speedup_vs_mtae']
            print(f'MTAE {out["mtae_step_s"]:.3f} s/step, ours {out["ours_step_s"]:.3f} s/step ({d}): '
                  f'{out["speedup_vs_mtae"]:.2f}x')
        for d in DTYPES:
            if d not in dtypes:
                notes[f'speedup_vs_mtae_{d}'] = f'skipped ({d} not in --dtypes)'

    def infer() -> None:
        # Batch-1 forwards take milliseconds, so more of them cost little and steady the median (20 at the default).
        from benchmarks import infer_latency

        out = infer_latency.measure(4 * settings.repeats, 'ecg_vit_mae_moco', False, threads)
        raw['infer_latency'] = out
        figures['infer_ratio_vs_timm'] = out['infer_ratio_vs_timm']
        print(f'timm fp32 {out["timm_fp32_ms"]:.2f} ms, ecgvit {out["fast_mode"]} {out["ecgvit_fast_ms"]:.2f} ms '
              f'(cosine {out["cosine_vs_fp32"]:.5f})')

    def loader() -> None:
        from benchmarks import data_throughput

        load_workers = 2
        with contextlib.ExitStack() as stack:
            workdir = args.workdir
            if workdir is None and args.quick:  # a smoke test must not depend on or leave files behind
                workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix='ecgvit-bench-'))
            out = data_throughput.measure(settings.loader_records, settings.repeats, workdir,
                                          settings.loader_batch, 2, load_workers)
        raw['data_throughput'] = out
        figures['loader_records_per_s'] = out['cached_load_records_per_s'][f'workers={load_workers}']['median']
        print(f'cached DataLoader ({load_workers} workers): {figures["loader_records_per_s"]:,.0f} records/s')

    def rss() -> None:
        runs = (('peak_rss_gb', False, False), ('peak_rss_gb_grad_ckpt', False, True),
                ('peak_rss_gb_shared', True, False))
        for name, shared, grad_ckpt in runs:
            if name in skip:
                continue
            out = measure_rss(settings, best, threads, shared, args.malloc, grad_ckpt)
            raw[name] = out
            figures[name] = out['peak_rss_gb']
            print(f'MAE-MoCo ({"shared pass" if shared else "paper passes"}{", grad checkpointing" * grad_ckpt}) '
                  f'{settings.encoder} batch {settings.batch} {best}, {settings.rss_steps} Adam steps in a fresh '
                  f'process: peak RSS {out["peak_rss_gb"]:.2f} GB')

    # Inference and loading first: pretrain_step changes the process's allocator settings (--malloc reuse), which
    # must not touch their figures; the peer comparison runs after it, under the same settings as ours.
    run('infer', infer)
    run('loader', loader)
    run('pretrain', pretrain)
    run('peer', peer)  # after pretrain: it runs in the faster dtype
    run('rss', rss)

    def gpu() -> None:
        if args.quick or not torch.cuda.is_available():  # the quick run is a CPU smoke test
            reason = 'skipped (--quick)' if args.quick else 'skipped (no CUDA device)'
            notes.update(gpu_mfu=reason, gpu_epoch_s=reason)
            print(f'GPU figures {reason}; benchmarks/gpu_pretrain.py --device cpu smoke-tests the code path.')
            return
        from benchmarks import gpu_pretrain

        out = gpu_pretrain.main(['--encoder', settings.encoder, '--batch', str(settings.batch)]
                                + (['--workdir', args.workdir] if args.workdir else []))
        raw['gpu_pretrain'] = out
        figures.update({k: out[k] for k in ('gpu_mfu', 'gpu_epoch_s') if k not in skip})

    run('gpu', gpu)
    profile_tables: Dict[str, str] = {}
    if args.profile:
        def profile() -> None:
            for name, shared in (('shared_pass', True), ('paper_passes', False)):
                profile_tables[name] = profile_steps(settings, best, shared)
                print(f'MAE-MoCo ({name}), top 10 ops by self CPU time:\n{profile_tables[name]}')
        wanted.add('profile')
        run('profile', profile)

    print(f'\nfaster pretraining dtype: {best}'
          + ('' if 'pretrain_step' in raw else ' (assumed: the first of --dtypes, as pretrain_step did not run)'))
    if args.quick:
        print('quick settings: smoke values, not comparable with the targets')
    for fig in FIGURES:
        if _impossible(fig, figures.get(fig.name)):
            notes[fig.name] = _INVALID
    print_table(figures, notes)
    total = time.perf_counter() - started
    print(f'total {total:.0f} s')

    out: Dict[str, Any] = dict(figures)
    out.update(
        targets={f.name: {'op': f.op, 'value': f.target} for f in FIGURES},
        passed={f.name: _verdict(f, figures[f.name]) for f in FIGURES},
        notes=notes,
        machine=machine_info(),
        torch=torch.__version__,
        date=datetime.now(timezone.utc).isoformat(timespec='seconds'),
        command=shlex.join(['python', 'benchmarks/run_all.py', *argv]),
        quick=args.quick,
        dtype=best,
        settings=dataclasses.asdict(settings),
        elapsed_s=dict(elapsed, total=total),
        errors=errors,
        raw=raw,
    )
    if profile_tables:
        out['profile_top10'] = profile_tables
    out = _finite(out)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2)
        print(f'wrote {args.json}')
    return out


if __name__ == '__main__':
    if not __package__:  # `python benchmarks/run_all.py`: the scripts it runs import as the benchmarks package
        sys.path.insert(0, str(REPO))
    sys.exit(1 if main().get('errors') else 0)
