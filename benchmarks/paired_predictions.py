"""Paired comparison of two encoders from kept per-record predictions, when the encoders themselves are gone.

The evaluation suite writes every test score to ``predictions.csv`` (``cpu_ablation.py report`` keeps it as
``predictions.csv.gz``). Two encoders probed on the same test records, in one report or in two, can be compared from
those files alone: the difference of a metric with a paired bootstrap CI (the same records resampled for both). The
resamples are the suite's own (:func:`ecgvit.eval.suite.bootstrap_seed`), so two encoders of one report give exactly
the CI of its ``pairwise.csv``.

Usage:
    python benchmarks/paired_predictions.py --a results/ablation_x/predictions.csv.gz:small-mae_nextclip-alpha1 \\
        --b results/ablation_x/predictions.csv.gz:small-mae_nextclip [--task ptbxl_superdiagnostic --metric auroc] \\
        [--markdown results/x/paired.md --title 'MAE-Nextclip alpha 1 against alpha 2']

``--markdown`` keeps the answer as a row of a table (one row per pair, task and metric; a second call with the same
ones replaces its row), a report ``ship_weights.py cards --ablation`` can put into the model cards.
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/paired_predictions.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import csv
import gzip
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ['read_predictions', 'compare', 'markdown_row', 'write_markdown', 'main']

METRICS = ('auroc', 'auprc', 'auc_ovo', 'mae', 'r2')


def _open(path: Path):
    return gzip.open(path, 'rt', newline='') if path.suffix == '.gz' else open(path, newline='')


def read_predictions(path: Path, encoder: str, task: str, fraction: float = 1.0,
                     leads: Optional[str] = None) -> Tuple[List[str], List[str], np.ndarray, List[np.ndarray]]:
    """One encoder's test predictions of one task from a suite's ``predictions.csv[.gz]``.

    Returns:
        (record ids in the file's order, label names, targets (N, L), one (N, L) score array per probe seed).

    Raises:
        SystemExit: the file holds no such encoder / task / fraction / lead subset (the message lists what it holds).
    """
    records: Dict[str, int] = {}
    labels: Dict[str, int] = {}
    cells: Dict[Tuple[str, str, str], Tuple[float, float]] = {}
    seen: Dict[str, set] = {'encoder': set(), 'task': set(), 'leads': set()}
    with _open(path) as f:
        for row in csv.DictReader(f):
            for key in seen:
                seen[key].add(row.get(key) or '')
            if row['encoder'] != encoder or row['task'] != task or float(row['fraction']) != fraction:
                continue
            if leads is not None and (row.get('leads') or '') != leads:
                continue
            records.setdefault(row['record_id'], len(records))
            labels.setdefault(row['label'], len(labels))
            cells[(row['seed'], row['record_id'], row['label'])] = (float(row['y']), float(row['score']))
    if not cells:
        raise SystemExit(f'{path} holds no predictions of encoder {encoder!r} on task {task!r} at fraction {fraction}'
                         f'{"" if leads is None else f" with leads {leads!r}"}: it holds encoders '
                         f'{sorted(seen["encoder"])}, tasks {sorted(seen["task"])}, leads {sorted(seen["leads"])}.')
    subsets = {k for k in seen['leads'] if k} if leads is None else set()
    if len(subsets) > 1:
        raise SystemExit(f'{path} holds several lead subsets {sorted(subsets)}: name one with --leads.')
    seeds = sorted({s for s, _, _ in cells}, key=int)
    y = np.full((len(records), len(labels)), np.nan)
    scores = [np.full_like(y, np.nan) for _ in seeds]
    for (seed, rec, label), (truth, score) in cells.items():
        y[records[rec], labels[label]] = truth
        scores[seeds.index(seed)][records[rec], labels[label]] = score
    if np.isnan(y).any() or any(np.isnan(s).any() for s in scores):
        raise SystemExit(f'{path}: the predictions of {encoder!r} on {task!r} are incomplete (a record lacks a label '
                         f'or a seed): the file is damaged or was cut short.')
    return list(records), list(labels), y, scores


def _as_metric_input(metric: str, y: np.ndarray, scores: List[np.ndarray]) -> Tuple[np.ndarray, List[np.ndarray]]:
    """The suite's shapes: multi-label (N, L); one column (binary, regression) as (N,); classes as indices (N,)."""
    if metric == 'auc_ovo':
        return y.argmax(1), scores
    if y.shape[1] == 1:
        return y[:, 0], [s[:, 0] for s in scores]
    return y, scores


def compare(a: Tuple[Path, str], b: Tuple[Path, str], task: str, metric: str = 'auroc', fraction: float = 1.0,
            n_boot: int = 1000, leads: Optional[str] = None) -> Dict[str, Any]:
    """``metric`` of encoder A minus encoder B on the same test records, with the suite's paired bootstrap CI.

    Args:
        a, b: (predictions file, encoder name) of each side.

    Returns:
        The keys of ``ecgvit.eval.metrics.paired_bootstrap_diff`` (``diff``, ``diff_lo``, ``diff_hi``, ...).

    Raises:
        SystemExit: the two sides were not tested on the same records with the same targets (no pairing possible),
            or a metric this script does not compute.
    """
    from ecgvit.eval.metrics import bootstrap_weights, paired_bootstrap_diff
    from ecgvit.eval.suite import bootstrap_seed

    if metric not in METRICS:
        raise SystemExit(f'--metric {metric!r}: choose from {", ".join(METRICS)} (the "_within" metrics need each '
                         f'record\'s source, which predictions files do not hold).')
    rec_a, lab_a, y_a, s_a = read_predictions(Path(a[0]), a[1], task, fraction, leads)
    rec_b, lab_b, y_b, s_b = read_predictions(Path(b[0]), b[1], task, fraction, leads)
    if set(rec_a) != set(rec_b) or set(lab_a) != set(lab_b):
        raise SystemExit(f'{a[1]} and {b[1]} were not tested on the same records and labels ({len(rec_a)} and '
                         f'{len(rec_b)} records, {len(set(rec_a) & set(rec_b))} in common): a paired comparison needs '
                         f'the same test set.')
    order = [rec_b.index(r) for r in rec_a]  # B in A's order (the suite's own order when A comes from a report)
    cols = [lab_b.index(c) for c in lab_a]
    y_b, s_b = y_b[order][:, cols], [s[order][:, cols] for s in s_b]
    if not np.array_equal(y_a, y_b):
        raise SystemExit(f'{a[1]} and {b[1]} have different targets for the same records: not the same task split.')
    y, s_a = _as_metric_input(metric, y_a, s_a)
    _, s_b = _as_metric_input(metric, y_b, s_b)
    weights = bootstrap_weights(len(y), n_boot, bootstrap_seed(task, fraction))
    return paired_bootstrap_diff(metric, y, s_a, s_b, weights=weights)


_MD_HEAD = ('| A | B | task (metric) | n test | A [95% CI] | B [95% CI] | A - B [95% CI] | verdict | from |',
            '|---|---|---|---|---|---|---|---|---|')
_MD_NOTE = ('Each difference is A - B on the same test records, from the per-record predictions the reports kept (the '
            "suite's paired bootstrap, 95% CI); \"better\" / \"worse\" when the CI excludes 0, otherwise no difference "
            'is shown (which is not evidence of equality).')


def _file_name(path: Path) -> str:
    return Path(path).as_posix().split('benchmarks/', 1)[-1]


def markdown_row(a: Tuple[Path, str], b: Tuple[Path, str], task: str, metric: str, r: Dict[str, Any]) -> str:
    """One table row of :func:`compare`'s answer."""
    verdict = 'better' if r['diff_lo'] > 0 else 'worse' if r['diff_hi'] < 0 else 'no difference shown'
    files = sorted({_file_name(a[0]), _file_name(b[0])})
    return (f"| {a[1]} | {b[1]} | {task} ({metric}) | {r['n_test']} | {r['a']:.3f} [{r['a_lo']:.3f}, {r['a_hi']:.3f}] "
            f"| {r['b']:.3f} [{r['b_lo']:.3f}, {r['b_hi']:.3f}] | {r['diff']:+.3f} [{r['diff_lo']:+.3f}, "
            f"{r['diff_hi']:+.3f}] | {verdict} | {', '.join(f'`{f}`' for f in files)} |")


def write_markdown(path: Path, row: str, title: str) -> None:
    """Add ``row`` to the table in ``path`` (created with ``title``), replacing the row of the same pair, task and
    metric; the file is written atomically."""
    from ecgvit.files import atomic_write_text

    key = row.split(' | ')[:3]
    rows = []
    if path.is_file():
        lines = path.read_text().splitlines()
        title = lines[0][2:] if lines and lines[0].startswith('# ') else title
        rows = [ln for ln in lines if ln.startswith('| ') and ln not in _MD_HEAD and ln.split(' | ')[:3] != key]
    atomic_write_text(path, '\n'.join([f'# {title}', '', *_MD_HEAD, *rows, row, '', _MD_NOTE]) + '\n')


def _side(text: str) -> Tuple[Path, str]:
    path, sep, encoder = text.rpartition(':')
    if not sep or not path or not encoder:
        raise argparse.ArgumentTypeError(f'{text!r} is not PATH:ENCODER.')
    return Path(path), encoder


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--a', type=_side, required=True, metavar='PATH:ENCODER', help='predictions file and encoder A')
    p.add_argument('--b', type=_side, required=True, metavar='PATH:ENCODER', help='predictions file and encoder B')
    p.add_argument('--task', default='ptbxl_superdiagnostic')
    p.add_argument('--metric', default='auroc', help=f'one of {", ".join(METRICS)}')
    p.add_argument('--fraction', type=float, default=1.0, help='label fraction of the probe')
    p.add_argument('--leads', default=None, help="lead subset label, when a file holds several (e.g. '12')")
    p.add_argument('--n-boot', type=int, default=1000)
    p.add_argument('--markdown', type=Path, default=None, metavar='FILE',
                   help='also keep the answer as a row of the table in FILE (created if missing)')
    p.add_argument('--title', default='Paired comparisons from kept predictions',
                   help="the table's title when --markdown creates FILE")
    args = p.parse_args(argv)
    r = compare(args.a, args.b, args.task, args.metric, args.fraction, args.n_boot, args.leads)
    if args.markdown is not None:
        write_markdown(args.markdown, markdown_row(args.a, args.b, args.task, args.metric, r), args.title)
    print(f"{args.a[1]} minus {args.b[1]} on {args.task} ({args.metric}, {r['n_test']} records): "
          f"{r['a']:.3f} - {r['b']:.3f} = {r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}] (paired 95% CI)")
    print(json.dumps(r))
    return r


if __name__ == '__main__':
    main()
    sys.exit(0)
