"""What the record plausibility check (``ecgvit.data.plausibility.check_record``) flags on real records, and its cost.

The check runs once per record while a cache is built. This script reads every WFDB record of a folder (recursively),
runs the check with all leads and with lead subsets (the suite's reduced-lead tasks read records that way), and prints
per subset how many records were flagged (with their ids and problems) and the median milliseconds per record over
``--repeats`` timed passes, on the number of torch/numpy threads the environment gives (set ``OMP_NUM_THREADS=1`` for
one).

    OMP_NUM_THREADS=1 python benchmarks/plausibility_check.py --data-dir ../shared/data/ptbxl/records100
    OMP_NUM_THREADS=1 python benchmarks/plausibility_check.py --data-dir ../shared/data/ptbxl/records500 --limit 200
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
from ecgvit.data.plausibility import check_record
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data-dir', required=True, help='a folder of WFDB records (searched recursively)')
    ap.add_argument('--limit', type=int, default=None, help='read at most this many records (sorted by path)')
    ap.add_argument('--repeats', type=int, default=3, help='timed passes per subset (the median is printed)')
    args = ap.parse_args(argv)
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
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
