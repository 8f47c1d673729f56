"""Data-path throughput: WFDB -> cache conversion, and cached loading through a torch DataLoader.

Records are synthetic 12-lead WFDB files (format 16, 500 Hz, 10 s, like PTB-XL's ``records500``), converted to the
model's input (360 Hz x 10 s = 3600 samples, z-scored). Loading uses ``DataLoader(CachedECGDataset, batch_size=64,
num_workers=2, shuffle=True)`` with persistent workers; the first epoch (worker start-up, cold page cache) is a warm-up
and the figure is the median over the following epochs. Conversion is timed with ``build_cache(..., force=True)``.

    python benchmarks/data_throughput.py --records 1000 --repeats 5
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ecgvit.data import CachedECGDataset, Preprocessing, build_cache, get_dataset


def _loader_rate(ds, batch_size: int, num_workers: int, epochs: int) -> list:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers, shuffle=True,
                                         persistent_workers=num_workers > 0)
    rates = []
    for epoch in range(epochs + 1):
        t0 = time.perf_counter()
        n = 0
        for x, _ in loader:
            n += x.shape[0]
        if epoch:  # epoch 0 is the warm-up
            rates.append(n / (time.perf_counter() - t0))
    return rates


def measure(records: int = 1000, repeats: int = 5, workdir: str | None = None, batch_size: int = 64,
            convert_workers: int = 2, load_workers: int = 2) -> dict:
    """Run both benchmarks; return a dict of median records/s (and the raw repeats)."""
    work = Path(workdir or Path(tempfile.gettempdir()) / 'ecgvit-bench')
    t0 = time.perf_counter()
    ds = get_dataset('synthetic', work / f'wfdb-{records}', n_records=records, seed=0, fs=500.0, duration_s=10.0)
    gen_s = time.perf_counter() - t0
    pp = Preprocessing(sampling_rate=360.0, num_samples=3600)

    convert = {}
    for nw in sorted({0, convert_workers}):
        rates = []
        for _ in range(max(1, repeats // 2)):
            t = time.perf_counter()
            build_cache(ds, pp, work / 'cache', num_workers=nw, force=True, progress=False)
            rates.append(len(ds) / (time.perf_counter() - t))
        convert[f'workers={nw}'] = {'median': statistics.median(rates), 'repeats': rates}
    t = time.perf_counter()
    build_cache(ds, pp, work / 'cache', num_workers=convert_workers, progress=False)
    noop_ms = (time.perf_counter() - t) * 1000

    cached = CachedECGDataset(work / 'cache')
    t = time.perf_counter()
    for i in range(len(cached)):
        cached[i]
    getitem_us = (time.perf_counter() - t) / len(cached) * 1e6
    load = {}
    for nw in sorted({0, load_workers}):
        rates = _loader_rate(cached, batch_size, nw, repeats)
        load[f'workers={nw}'] = {'median': statistics.median(rates), 'repeats': rates}
    return {
        'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}',
        'records': len(ds), 'item_shape': list(cached.signals.shape[1:]), 'batch_size': batch_size,
        'generate_wfdb_s': round(gen_s, 2), 'convert_records_per_s': convert, 'noop_rebuild_ms': round(noop_ms, 2),
        'getitem_us': round(getitem_us, 2), 'cached_load_records_per_s': load,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--records', type=int, default=1000)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--workdir', default=None, help='where WFDB files and the cache go (reused between runs)')
    parser.add_argument('--json', action='store_true', help='print the full result as JSON')
    args = parser.parse_args()
    res = measure(args.records, args.repeats, args.workdir, args.batch_size)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print(f"{res['machine']}; {res['records']} records of {res['item_shape']} float32, batch {res['batch_size']}")
    for k, v in res['convert_records_per_s'].items():
        print(f"WFDB -> cache ({k}): {v['median']:,.0f} records/s (median of {len(v['repeats'])})")
    print(f"re-run with the same settings (no-op): {res['noop_rebuild_ms']:.1f} ms")
    print(f"CachedECGDataset[i]: {res['getitem_us']:.1f} us per item (zero-copy)")
    for k, v in res['cached_load_records_per_s'].items():
        print(f"cached DataLoader ({k}): {v['median']:,.0f} records/s (median of {len(v['repeats'])} epochs)")


if __name__ == '__main__':
    main()
