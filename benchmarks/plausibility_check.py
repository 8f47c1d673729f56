"""What the record plausibility check (``ecgvit.data.plausibility.check_record``) flags on real records, and its cost.

The check runs once per record while a cache is built. This script reads every WFDB record of a folder (recursively),
runs the check with all leads and with lead subsets (the suite's reduced-lead tasks read records that way), and prints
per subset how many records were flagged (with their ids and problems) and the median milliseconds per record over
``--repeats`` timed passes, on the number of torch/numpy threads the environment gives (set ``OMP_NUM_THREADS=1`` for
one). With ``--misdate 2,3,4`` it also reads every record as if its header gave the rate divided by each factor (a
folder misdated that way) and prints, per factor, the records flagged alone and what :func:`summarize` says of the
folder (its medians of the detected and the autocorrelation heart rates, and its dataset problem, if any).

    OMP_NUM_THREADS=1 python benchmarks/plausibility_check.py --data-dir ../shared/data/ptbxl/records100
    OMP_NUM_THREADS=1 python benchmarks/plausibility_check.py --data-dir ../shared/data/ptbxl/records500 --limit 200
    OMP_NUM_THREADS=1 python benchmarks/plausibility_check.py --data-dir ../shared/data/ludb --misdate 2,3,4
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/plausibility_check.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import dataclasses
import statistics
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ecgvit.constants import LEADS
from ecgvit.data.plausibility import check_record, summarize
from ecgvit.data.records import Record, read_record

SUBSETS: Dict[str, Optional[Sequence[str]]] = {'12': None, 'limb 6': LEADS[:6], 'lead I': LEADS[:1]}


def masked(record: Record, leads: Optional[Sequence[str]]) -> Record:
    """The record as a reader of only ``leads`` sees it (the others marked absent)."""
    if leads is None:
        return record
    return dataclasses.replace(record, lead_mask=np.array([n in leads for n in record.lead_names]))


def run(records: List[Record], repeats: int) -> List[Dict]:
    rows = []
    for name, leads in SUBSETS.items():
        view = [masked(r, leads) for r in records]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            results = [check_record(r) for r in view]
            times.append((time.perf_counter() - t0) / len(view) * 1000.0)
        flagged = [(r['record_id'], p) for r in results for p in r['problems']]
        rows.append({'subset': name, 'records': len(view), 'flagged': flagged,
                     'ms_per_record': statistics.median(times)})
    return rows


def misdated(records: List[Record], factors: Sequence[float]) -> List[Dict]:
    """The check on the 12 leads of every record read at its rate divided by each factor (a misdated folder)."""
    rows = []
    for factor in factors:
        results = [check_record(dataclasses.replace(r, fs=r.fs / factor)) for r in records]
        summary = summarize(results, name=f'rate / {factor:g}')
        rows.append({'factor': factor, 'records': len(results), 'flagged': len(summary['flagged']),
                     'median_hr': summary['median_heart_rate_bpm'],
                     'median_autocorr_hr': summary['median_autocorr_heart_rate_bpm'],
                     'dataset_problems': summary['dataset_problems']})
    return rows


def _bpm(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.0f}'


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data-dir', required=True, help='a folder of WFDB records (searched recursively)')
    ap.add_argument('--limit', type=int, default=None, help='read at most this many records (sorted by path)')
    ap.add_argument('--repeats', type=int, default=3, help='timed passes per subset (the median is printed)')
    ap.add_argument('--misdate', default='', help='comma-separated factors: also read the records at their rate '
                    'divided by each (e.g. 2,3,4) and print what the folder check says')
    args = ap.parse_args(argv)
    factors = [float(f) for f in args.misdate.split(',') if f.strip()]
    headers = sorted(Path(args.data_dir).rglob('*.hea'))[:args.limit]
    if not headers:
        raise SystemExit(f'No WFDB header (*.hea) under {args.data_dir}.')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the reader's notes on quirks are not what is measured here
        records = [read_record(h.with_suffix('')) for h in headers]
    print(f'{len(records)} records from {args.data_dir}, {records[0].fs:g} Hz (first record)')
    print(f'| leads | records | flagged | ms per record (median of {args.repeats}) |')
    print('|---|---|---|---|')
    rows = run(records, args.repeats)
    for row in rows:
        print(f"| {row['subset']} | {row['records']} | {len(row['flagged'])} | {row['ms_per_record']:.1f} |")
    for row in rows:
        for rid, problem in row['flagged']:
            print(f"{row['subset']}: {rid}: {problem}")
    if factors:
        print('\n| declared rate | records | flagged alone | median heart rate, R peaks | median heart rate, '
              'autocorrelation | folder flagged |')
        print('|---|---|---|---|---|---|')
        for row in misdated(records, factors):
            print(f"| true / {row['factor']:g} | {row['records']} | {row['flagged']} | {_bpm(row['median_hr'])} | "
                  f"{_bpm(row['median_autocorr_hr'])} | {'yes' if row['dataset_problems'] else 'no'} |")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
