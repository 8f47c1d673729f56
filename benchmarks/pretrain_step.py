"""Throughput of one pretraining optimiser step per method, fp32 vs bf16 autocast, with model FLOP utilisation.

For each method (seed-size encoder, batch 64, 3600 samples by default) and each dtype, this times
``zero_grad -> forward (autocast for bf16) -> backward -> Adam step`` and reports samples/s, the cost ratios
MAE-MoCo / MAE and MAE-Nextclip / MAE (step time over MAE's step time), and model FLOP utilisation (MFU): the step's
FLOPs (counted with ``torch.utils.flop_counter``, attention included) per second over the peak of a large square matmul
of the same dtype measured in the same run. CPUs differ (bf16 is faster on some, slower on others), so the faster dtype
is measured, not assumed, and reported as the default.

The hybrids run as ``create_pretrainer`` builds them by default: the paper's separate full-token passes. A name with
``_shared`` (e.g. ``mae_moco_shared``) builds ecgvit's shared-pass variant (one masked encoder pass serves both tasks,
see ``ecgvit.pretrain.hybrid``); its ratio to MAE is reported beside the paper's.

Like ``ecgvit pretrain`` on a CPU, the steps run with glibc recycling freed tensors
(``ecgvit.train.cpu_memory.reuse_freed_memory``); ``--malloc default`` measures the allocator's defaults instead.

Nextclip / Centerclip get precomputed ``rr_samples`` (the recommended setup: R peaks detected once per record); the
cost of detecting them inside ``forward`` instead is timed separately.

Usage:
    python benchmarks/pretrain_step.py                      # full run (several minutes on 2 cores)
    python benchmarks/pretrain_step.py --batch 16 --repeats 1 --methods mae,mae_moco,mae_moco_shared   # quick look
"""
import argparse
import json
import os
import statistics
import time
from typing import Dict, List, Optional, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from ecgvit.data.rpeaks import median_rr_samples
from ecgvit.pretrain import PAPER_PASSES as PAPER
from ecgvit.pretrain import create_pretrainer, list_pretrainers, split_method
from ecgvit.train.cpu_memory import reuse_freed_memory
from ecgvit.train.optim import create_adam
from ecgvit.train.runtime import compile_blocks, machine_info

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def _sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    b, h, s_q, d = query
    s_k = key[-2]
    return 4 * b * h * s_q * s_k * d  # QK^T and AV


def _sdpa_bwd_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    b, h, s_q, d = query
    s_k = key[-2]
    return 8 * b * h * s_q * s_k * d  # dV, dP, dQ, dK (the recomputed QK^T is not model FLOPs)


# torch's counter has no formula for the CPU flash-attention kernels SDPA dispatches to.
_CUSTOM_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_bwd_flops,
}


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0, device: str = 'cpu') -> float:
    """Best achieved FLOP/s of an n x n matmul in ``dtype`` on ``device`` over about ``seconds``
    (:func:`matmul_peak_sized` says which n was used)."""
    return matmul_peak_sized(dtype, n, seconds, device)[0]


def matmul_peak_sized(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0,
                      device: str = 'cpu') -> Tuple[float, int]:
    """(Best achieved FLOP/s, n) of an n x n matmul in ``dtype`` on ``device`` over about ``seconds``.

    On CUDA each timing covers 10 matmuls between synchronisations, so the launches overlap as in a training step.
    On a CPU that only emulates ``dtype`` (bf16 without avx512_bf16 or AMX ran at 0.3 GFLOP/s on an AVX2-only AMD
    EPYC, a minute per 2048³ matmul) n is halved until one matmul fits in half of ``seconds``, so that measuring the
    peak does not take minutes; the n used is returned with it.
    """
    device = torch.device(device)
    if device.type == 'cpu':
        small = torch.randn(256, 256).to(dtype)
        torch.mm(small, small)
        t0 = time.perf_counter()
        torch.mm(small, small)
        rate = 2 * 256 ** 3 / max(time.perf_counter() - t0, 1e-9)
        while n > 256 and 2 * n ** 3 / rate > seconds / 2:
            n //= 2
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    reps = 10 if device.type == 'cuda' else 1

    def run() -> None:
        for _ in range(reps):
            torch.mm(a, b)

    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    run()
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        best = max(best, reps * 2 * n ** 3 / (time.perf_counter() - t0))
    return best, n


def build(method: str, encoder: str, length: int):
    """``method`` is a pretrainer name of ``list_pretrainers(variants=True)``, e.g. ``mae_moco_shared``."""
    base, kwargs = split_method(method)
    if base in ('mae_nextclip', 'mae_centerclip'):
        kwargs['sampling_rate'] = 360.0 * length / 3600
    return create_pretrainer(base, encoder, dict(img_size=length), **kwargs)


def step_flops(model, x, rr) -> int:
    model.train()
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
        model(x, rr_samples=rr)['loss'].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_steps(model, opt, x, rr, dtype: torch.dtype, repeats: int, warmup: int) -> List[float]:
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = model(x, rr_samples=rr)['loss']
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main(argv: Optional[List[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=64, help='batch size (seed: 64)')
    parser.add_argument('--repeats', type=int, default=3, help='timed steps per method and dtype (median reported)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    parser.add_argument('--methods', default=','.join(list_pretrainers()),
                        help="comma-separated methods; add _shared to a hybrid for ecgvit's shared pass")
    parser.add_argument('--dtypes', default='fp32,bf16', help='comma-separated: fp32, bf16')
    parser.add_argument('--encoder', default='ecg_vit_mae_moco', help='encoder name (seed size by default)')
    parser.add_argument('--length', type=int, default=3600, help='samples per record')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    parser.add_argument('--json', default='', help='also write the results to this JSON file')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the transformer blocks (ecgvit.train.runtime.compile_blocks) after '
                             'counting FLOPs; compilation happens in the warm-up steps')
    parser.add_argument('--malloc', default='reuse', choices=['reuse', 'default'],
                        help="'reuse': glibc recycles freed tensors, as ecgvit pretrain does on CPU; 'default': as is "
                             '(process-wide, so it only applies to the first call in a process)')
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    # Adam's second moments of small gradients start out denormal; x86 CPUs process denormals ~100x slower, which
    # made the first steps 10-20x slower here. Flushing them to zero changes nothing a float32 step can resolve.
    torch.set_flush_denormal(True)
    malloc_reuse = reuse_freed_memory() if args.malloc == 'reuse' else False
    methods = [m.strip() for m in args.methods.split(',') if m.strip()]
    bad = sorted(set(methods) - set(list_pretrainers(variants=True)))
    if bad:
        parser.error(f'unknown methods {bad}; valid: {", ".join(list_pretrainers(variants=True))}')
    dtypes = [d.strip() for d in args.dtypes.split(',') if d.strip()]
    if set(dtypes) - set(DTYPES):
        parser.error(f'unknown dtypes {sorted(set(dtypes) - set(DTYPES))}; valid: fp32, bf16')

    machine = machine_info(torch.device('cpu'))
    print(f'CPU: {machine["cpu"]} ({os.cpu_count()} logical cores) | torch {torch.__version__} | '
          f'threads {torch.get_num_threads()} | '
          f'batch {args.batch} x 12 x {args.length} | encoder {args.encoder} | repeats {args.repeats} | '
          f'malloc {"reuse" if malloc_reuse else "default"}{" | torch.compile" if args.compile else ""}')
    sized = {d: matmul_peak_sized(DTYPES[d]) for d in dtypes}
    peaks, peak_n = {d: v[0] for d, v in sized.items()}, {d: v[1] for d, v in sized.items()}
    for d in dtypes:
        print(f'matmul peak {d}: {peaks[d] / 1e9:.1f} GFLOP/s ({peak_n[d]}^3)')
    # Utilisation is reported against the best peak seen (start or end of the run), so a busy moment while the peak
    # was measured cannot inflate it; the peaks are printed again at the end.

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 12, args.length, generator=gen)
    rr = 250 + 100 * torch.rand(args.batch, generator=gen)  # 62-86 bpm at 360 Hz, in samples

    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    for method in methods:
        torch.manual_seed(0)
        model = build(method, args.encoder, args.length)
        opt = create_adam([p for p in model.parameters() if p.requires_grad], 2e-4)  # seed: Adam 2e-4, as train()
        flops = step_flops(model, x, rr)
        if args.compile:
            compile_blocks(model)
        results[method] = {}
        for d in dtypes:
            times = time_steps(model, opt, x, rr, DTYPES[d], args.repeats, args.warmup)
            t = statistics.median(times)
            results[method][d] = dict(step_s=t, samples_per_s=args.batch / t, gflop_per_step=flops / 1e9,
                                      mfu=flops / t / peaks[d])
            r = results[method][d]
            print(f'{method:21s} {d}: {t:7.3f} s/step  {r["samples_per_s"]:7.1f} samples/s  '
                  f'{r["gflop_per_step"]:8.1f} GFLOP/step  MFU {100 * r["mfu"]:5.1f}%', flush=True)
        del model, opt

    for d in dtypes:
        end_peak = matmul_peak(DTYPES[d])
        print(f'matmul peak {d} at the end: {end_peak / 1e9:.1f} GFLOP/s')
        if end_peak > peaks[d]:
            for m in methods:
                results[m][d]['mfu'] *= peaks[d] / end_peak
            peaks[d] = end_peak
    for m in methods:
        print(f'MFU {m:21s} ' + '  '.join(f'{d}: {100 * results[m][d]["mfu"]:5.1f}%' for d in dtypes))

    # The faster dtype over all measured methods is the default.
    best = min(dtypes, key=lambda d: sum(results[m][d]['step_s'] for m in methods))
    print(f'faster dtype on this CPU: {best}')
    ratios = {}
    if 'mae' in results:
        for m in results:
            if m != 'mae':
                for d in dtypes:
                    ratios[f'{m}/mae[{d}]'] = results[m][d]['step_s'] / results['mae'][d]['step_s']
        for m, target in (('mae_moco', 1.6), ('mae_nextclip', 1.4)):
            for variant in (m, m + PAPER):
                if variant in results:
                    print(f'{variant}/mae step-time ratio ({best}): {ratios[f"{variant}/mae[{best}]"]:.2f}x '
                          f'(target <= {target}x)')

    if any(m.removesuffix(PAPER) in ('mae_nextclip', 'mae_centerclip') for m in methods):
        t0 = time.perf_counter()
        median_rr_samples(x.numpy(), 360.0 * args.length / 3600, fallback=288.0)
        print(f'R-peak detection inside forward instead of precomputed rr_samples would add '
              f'{time.perf_counter() - t0:.3f} s per batch of {args.batch}')

    out = dict(cpu=machine['cpu'], torch=torch.__version__, threads=torch.get_num_threads(), batch=args.batch,
               length=args.length, encoder=args.encoder, peaks_gflops={d: peaks[d] / 1e9 for d in dtypes},
               peak_n=peak_n, results=results, ratios=ratios, best_dtype=best, malloc_reuse=malloc_reuse,
               compiled=args.compile)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == '__main__':
    main()
