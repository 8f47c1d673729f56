"""The GPU row of the speed targets: MAE-MoCo pretraining FLOP utilisation in bf16 and one PTB-XL-size epoch.

On a CUDA device this measures, in one process:

- ``gpu_mfu``: the default MAE-MoCo pretraining step (seed size, batch 64, bf16 autocast, fused Adam, as
  ``ecgvit.train`` runs it) as model FLOP/s over the best bf16 matmul throughput of the same device measured in the
  same run (target >= 0.40). FLOPs are counted once on the CPU with ``pretrain_step.step_flops``, the same count as
  the CPU figures.
- ``gpu_epoch_s``: wall time of :func:`ecgvit.train.train` for one epoch over ``--records`` in-memory records
  (default 17,440, PTB-XL's training folds 1-8), batch 64, bf16, no validation: the real loop with its loader,
  logging and final checkpoint (target <= 30 s). Synthetic records stand in for the data, whose loading is measured
  separately (``data_throughput.py``), so the figure is the model's and the loop's.

Without a CUDA device it says so and reports nothing (``run_all.py`` shows the two figures as skipped).
``--device cpu`` runs every code path on the CPU with whatever sizes are given, as a smoke test; its numbers are not
the GPU figures.

Usage:
    python benchmarks/gpu_pretrain.py                     # on a GPU machine: a few minutes at most
    python benchmarks/gpu_pretrain.py --compile           # the same with compiled blocks, to report the speedup
    python benchmarks/gpu_pretrain.py --device cpu --encoder ecg_vit_tiny --batch 4 --records 16 --repeats 1
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from torch.utils.data import TensorDataset

from ecgvit.pretrain import create_pretrainer
from ecgvit.train import TrainConfig, train
from ecgvit.train.optim import create_adam
from ecgvit.train.runtime import compile_blocks, machine_info

PTBXL_TRAIN_RECORDS = 17440  # PTB-XL v1.0.3's folds 1-8: about 80% of 21,799 records


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def step_utilisation(encoder: str, batch: int, device: torch.device, repeats: int, warmup: int,
                     peak_n: int, compile: bool = False) -> Dict[str, Any]:
    """Median bf16 step time of the default MAE-MoCo pretrainer and its FLOP utilisation on ``device``."""
    from benchmarks import pretrain_step

    torch.manual_seed(0)
    model = create_pretrainer('mae_moco', encoder)
    x = torch.randn(batch, 12, 3600)
    flops = pretrain_step.step_flops(model, x, None)  # on the CPU: the count the CPU figures use
    if compile:
        compile_blocks(model)  # the warm-up steps compile
    model.to(device).train()
    x = x.to(device)
    opt = create_adam([p for p in model.parameters() if p.requires_grad], 2e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(x)['loss']
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    times = [_timed(step, device) for _ in range(repeats)]
    peak = pretrain_step.matmul_peak(torch.bfloat16, peak_n, device=str(device))
    t = statistics.median(times)
    return dict(step_s=t, step_times_s=times, gflop_per_step=flops / 1e9, peak_gflops=peak / 1e9,
                gpu_mfu=flops / t / peak, samples_per_s=batch / t)


def epoch_time(encoder: str, batch: int, device: torch.device, records: int, workdir: Optional[str],
               compile: bool = False) -> Dict[str, Any]:
    """Wall time of one epoch of :func:`ecgvit.train.train` over ``records`` random records, bf16, no validation.

    With ``compile`` the blocks compile inside the timed epoch, as they would in a real run.
    """
    data = TensorDataset(torch.randn(records, 12, 3600, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    model = create_pretrainer('mae_moco', encoder)
    with tempfile.TemporaryDirectory(prefix='ecgvit-gpu-epoch-', dir=workdir) as out:
        cfg = TrainConfig(output_dir=out, epochs=1, batch_size=batch, warmup_epochs=0.5, amp='bf16', save_every=0,
                          save_every_epochs=0, keep_last=1, device=str(device), progress=False, log_every=50,
                          compile=compile)
        _sync(device)
        start = time.perf_counter()
        summary = train(model, data, None, cfg)
        _sync(device)
        wall = time.perf_counter() - start
    return dict(gpu_epoch_s=wall, records=records, steps=summary['steps'], train_loop_time_s=summary['time_s'])


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default=None, help='cuda (default when available) or cpu (a smoke test)')
    parser.add_argument('--encoder', default='ecg_vit_mae_moco', help='encoder name (seed size by default)')
    parser.add_argument('--batch', type=int, default=64, help='batch size (seed: 64)')
    parser.add_argument('--repeats', type=int, default=20, help='timed steps (median reported)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    parser.add_argument('--records', type=int, default=PTBXL_TRAIN_RECORDS, help='records in the timed epoch')
    parser.add_argument('--peak-n', type=int, default=None, help='matmul size of the bf16 peak (8192; cpu: 1024)')
    parser.add_argument('--workdir', default=None, help='where the epoch run writes its (deleted) outputs')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the transformer blocks (ecgvit.train.runtime.compile_blocks), as '
                             'ecgvit pretrain --compile; on a GPU, where fusing the element-wise ops saves memory '
                             'traffic and launches, this is where it may pay')
    parser.add_argument('--json', default='', help='also write the results to this JSON file')
    args = parser.parse_args(argv)

    if args.device is None and not torch.cuda.is_available():
        print('gpu_pretrain: no CUDA device here, nothing measured (pass --device cpu for a smoke test of the code).')
        return {}
    device = torch.device(args.device or 'cuda')
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda but torch sees no CUDA device')
    info = machine_info(device)
    print(f'device: {info["gpu"] or info["cpu"]} | torch {torch.__version__} | encoder {args.encoder} | '
          f'batch {args.batch} | bf16')
    out: Dict[str, Any] = dict(device=device.type, machine=info, encoder=args.encoder, batch=args.batch,
                               compiled=args.compile)
    peak_n = args.peak_n or (8192 if device.type == 'cuda' else 1024)
    out.update(step_utilisation(args.encoder, args.batch, device, args.repeats, args.warmup, peak_n, args.compile))
    print(f'MAE-MoCo step {out["step_s"] * 1e3:.1f} ms, {out["gflop_per_step"]:.1f} GFLOP, bf16 matmul peak '
          f'{out["peak_gflops"] / 1e3:.1f} TFLOP/s: utilisation {100 * out["gpu_mfu"]:.1f}% (target >= 40%)')
    out.update(epoch_time(args.encoder, args.batch, device, args.records, args.workdir, args.compile))
    print(f'one epoch of {out["records"]} records ({out["steps"]} steps): {out["gpu_epoch_s"]:.1f} s '
          f'(target <= 30 s)')
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == '__main__':
    if not __package__:  # `python benchmarks/gpu_pretrain.py`: pretrain_step imports as part of the benchmarks package
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
