"""Which embedding a linear probe should read: each encoder's [CLS] token against the mean of its patch tokens.

The paper probes the [CLS] token (the registered models' default, ``global_pool='token'``). A method whose loss trains
[CLS] (MoCo's contrastive term) should probe best there; one whose [CLS] takes no part in its strongest loss (the
paper's MAE pass drops [CLS]; MAE-Nextclip's [CLS] learns only the clip term) may keep more in its patch tokens. This
script runs the evaluation suite (``ecgvit.eval.suite``) on every encoder once per pooling, with the same weights,
and compares the poolings of each encoder on the same test records (paired bootstrap CIs):

    python benchmarks/pooling_probe.py --encoder ecg_vit_mae_moco --encoder ecg_vit_mae_nextclip \\
        --data-dir ../shared/data --cache-dir ~/.cache/ecgvit-runs/suite_cache --out /tmp/pooling

An ``--encoder`` is a registered name (its published weights), or ``NAME=PATH`` for a run folder or checkpoint
(anything ``ecgvit.hub.load_encoder`` reads). Every pooling also gets its own random floor (seed-0 init of the first
encoder's architecture). The suite's outputs land in ``--out`` (``pairwise.csv`` holds every pair); the script prints
the pooling-against-pooling differences of each encoder on each task's headline metric, and writes them to
``pooling.md``. Embeddings go to the suite's cache, keyed by weights and pooling, so a second run reuses them.
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/pooling_probe.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import copy
import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ecgvit.constants import GLOBAL_POOLS as POOLS
from ecgvit.files import atomic_write_text

__all__ = ['POOLS', 'pooled_encoders', 'pooling_differences', 'main']


def _load(spec: str) -> Tuple[str, nn.Module]:
    from ecgvit import create_model, list_models
    from ecgvit.hub import load_encoder

    name, sep, path = spec.partition('=')
    if not sep:
        if spec not in list_models():
            raise SystemExit(f'--encoder {spec!r} is not a registered model; give a registered name or NAME=PATH '
                             f'for a run folder or checkpoint.')
        return spec, create_model(spec, pretrained=True)
    if not name or not path:
        raise SystemExit(f'--encoder {spec!r}: expected NAME=PATH.')
    return name, load_encoder(path, None, None)[0]


def pooled_encoders(encoders: Dict[str, nn.Module], pools: Sequence[str]) -> Dict[str, nn.Module]:
    """Every encoder once per pooling, as ``'name@pool'``; a random floor per pooling other than the [CLS] token.

    Args:
        encoders: name -> encoder with a ``pretrained_cfg`` (the first one's architecture makes the floors).
        pools: ``global_pool`` values (``'token'``, ``'avg'``).

    Returns:
        ``{'name@pool': encoder}`` in eval mode, copies that share nothing with the inputs; ``'random@pool'`` for
        each pooling but ``'token'`` (the suite adds the token floor itself, as ``'random'``).
    """
    from ecgvit.eval.suite import resolve_encoders

    out: Dict[str, nn.Module] = {}
    for name, model in encoders.items():
        # [CLS] first: the suite's own floor ('random') pools as its first encoder does, and stands for 'token' here
        for pool in sorted(pools, key=lambda p: p != 'token'):
            m = copy.deepcopy(model).eval()
            m.reset_classifier(0, pool)
            out[f'{name}@{pool}'] = m
    first = next(iter(encoders))
    for pool in pools:
        if pool != 'token':  # the suite's own floor, built for the first encoder read through this pooling
            out[f'random@{pool}'] = resolve_encoders({first: out[f'{first}@{pool}']})['random'][0]
    return out


def pooling_differences(out_dir: Path, names: Sequence[str], pools: Sequence[str]) -> List[Dict[str, str]]:
    """Each encoder's other poolings minus its first one, per task, on the task's headline metric (fraction 1.0).

    Args:
        out_dir: A suite output folder (``results.csv``, ``pairwise.csv``).
        names: Encoder names without the pooling (``'random'`` for the floors).
        pools: The poolings; the first is the reference.

    Returns:
        Rows with task, metric, encoder, the two poolings, their scores and the difference with its 95% CI.
    """
    with open(out_dir / 'results.csv', newline='') as f:
        headline = {(r['task'], r['metric']) for r in csv.DictReader(f) if r['headline'] == 'True'}
    with open(out_dir / 'pairwise.csv', newline='') as f:
        pairs = [r for r in csv.DictReader(f) if float(r['fraction']) == 1.0 and (r['task'], r['metric']) in headline]

    def label(name: str, pool: str) -> str:
        return 'random' if (name, pool) == ('random', 'token') else f'{name}@{pool}'

    rows = []
    for name in names:
        ref = label(name, pools[0])
        for pool in pools[1:]:
            other = label(name, pool)
            for r in pairs:
                if {r['encoder_a'], r['encoder_b']} != {ref, other}:
                    continue
                sign = 1.0 if r['encoder_a'] == other else -1.0  # other minus the reference
                lo, hi = sorted((sign * float(r['diff_lo']), sign * float(r['diff_hi'])))
                a, b = (r['a'], r['b']) if sign > 0 else (r['b'], r['a'])
                rows.append({'task': r['task'], 'metric': r['metric'], 'encoder': name, 'reference': pools[0],
                             'pooling': pool, 'reference_score': f'{float(b):.3f}', 'score': f'{float(a):.3f}',
                             'diff': f'{sign * float(r["diff"]):+.3f}', 'ci': f'[{lo:+.3f}, {hi:+.3f}]',
                             'excludes_0': str(lo > 0 or hi < 0)})
    return rows


def _table(rows: List[Dict[str, str]]) -> str:
    ref = rows[0]['reference'] if rows else 'token'
    lines = [f'| task | metric | encoder | {ref} | pooling | score | minus {ref} [95% CI] |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        cell = f"{r['diff']} {r['ci']}"
        cell = f'**{cell}**' if r['excludes_0'] == 'True' else cell
        lines.append(f"| {r['task']} | {r['metric']} | {r['encoder']} | {r['reference_score']} | {r['pooling']} | "
                     f"{r['score']} | {cell} |")
    return '\n'.join(lines) + '\n'


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--encoder', action='append', required=True, metavar='NAME|NAME=PATH',
                   help='a registered model (its published weights) or NAME=PATH (run folder or checkpoint); '
                        'repeatable')
    p.add_argument('--pools', default='token,avg', help=f'global_pool values, the first the reference ({POOLS})')
    p.add_argument('--data-dir', required=True, help='the suite data (ptbxl/, ludb/, ...)')
    p.add_argument('--out', required=True, help='suite outputs and pooling.md')
    p.add_argument('--cache-dir', default=None, help="the suite's cache (signals and embeddings; reused)")
    p.add_argument('--tasks', default='ptbxl_superdiagnostic', help="suite tasks, comma-separated, or 'all'")
    p.add_argument('--n-boot', type=int, default=1000)
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (1 beside a running job)')
    args = p.parse_args(argv)
    pools = tuple(s.strip() for s in args.pools.split(',') if s.strip())
    bad = [s for s in pools if s not in POOLS]
    if bad or len(pools) < 2 or len(set(pools)) != len(pools):
        raise SystemExit(f'--pools {args.pools!r}: give two or more distinct poolings of {POOLS}.')
    if args.threads:
        torch.set_num_threads(args.threads)

    from ecgvit.eval.suite import SuiteConfig, run_suite

    loaded = dict(_load(s) for s in args.encoder)
    if 'random' in loaded:
        raise SystemExit("'random' names the suite's floor; give your encoder another name.")
    tasks = None if args.tasks == 'all' else tuple(t.strip() for t in args.tasks.split(',') if t.strip())
    out = Path(args.out)
    cfg = SuiteConfig(data_dir=args.data_dir, out=str(out), encoders=pooled_encoders(loaded, pools), seeds=(0,),
                      fractions=(1.0,), tasks=tasks, n_boot=args.n_boot, cache_dir=args.cache_dir, amp='fp32',
                      device='cpu', progress=False)
    run_suite(cfg)
    rows = pooling_differences(out, [*loaded, 'random'], pools)
    text = ('# Pooling of the probed embedding\n\nLinear probes at 100 % of the training labels (the suite, '
            f'`{out}`); each row compares one encoder\'s weights read with two poolings on the same test records '
            '(paired bootstrap; ** where the 95 % CI excludes 0).\n\n' + _table(rows))
    atomic_write_text(out / 'pooling.md', text)
    print(text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
