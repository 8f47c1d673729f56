"""The ablation of issue 15 on a CPU: every method at equal budget, resumable across sessions, then one paired report.

Each job is a plain ``ecgvit pretrain --resume`` run (same data, seed, recipe and epochs for every method) in its own
folder under ``--root``, with a checkpoint every epoch, so a run stopped by ``--hours`` / ``--until`` (or by the end of
a session) continues where it stopped the next time ``run`` is called with the same root. ``report`` evaluates every
job's best weights with the evaluation suite (``ecgvit.eval.suite``: linear probe, PTB-XL fold 10, every encoder on
the same test records) and answers the ablation's questions with paired 95% bootstrap CIs
(:func:`benchmarks.campaign.pairs.comparison_pairs`: each hybrid vs MAE-only and MoCo-only, each shared pass vs the
paper's passes, each alpha vs the default, everything vs the random init).

Usage:
    python benchmarks/cpu_ablation.py run --root ~/.cache/ecgvit-runs/ablation --data-dir /work/shared/data \\
        --hours 2.5 --parallel 2 --threads 1
    python benchmarks/cpu_ablation.py status --root ~/.cache/ecgvit-runs/ablation
    python benchmarks/cpu_ablation.py report --root ~/.cache/ecgvit-runs/ablation --data-dir /work/shared/data \\
        --out benchmarks/results/ablation
    python benchmarks/cpu_ablation.py curves --root ~/.cache/ecgvit-runs/ablation --column loss_mae --below 0.95
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/cpu_ablation.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import csv
import gzip
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.campaign.pairs import QUESTIONS, Spec, comparison_pairs
from benchmarks.campaign.run import ABLATION, job_name, parse_jobs
from benchmarks.ship_weights import training_seconds

__all__ = ['Job', 'plan_jobs', 'job_progress', 'run', 'report', 'ablation_rows', 'ablation_markdown', 'epoch_means',
           'first_epoch_below', 'curves_markdown', 'main']

PLAN = 'plan.json'
# Settings that must not change between the calls of one ablation (equal budget, same data and recipe).
FIXED = ('model', 'epochs', 'data', 'data_dir', 'amp', 'seed', 'batch_size', 'sampling_rate', 'num_samples',
         'extra')
Job = Tuple[str, str, Dict[str, Any]]  # (name, method, method kwargs)


def plan_jobs(spec: str, model: str) -> List[Job]:
    """``'mae,mae_moco:alpha=20'`` -> jobs named ``<size>-<method>[-<setting>]`` (e.g. ``small-mae_moco-alpha20``)."""
    prefix = model.removeprefix('ecg_vit_')
    jobs = [(job_name(prefix, method, kw), method, kw) for method, kw in parse_jobs(spec)]
    names = [n for n, _, _ in jobs]
    if len(set(names)) != len(names):
        raise SystemExit(f'--jobs {spec!r} names a job twice.')
    if not jobs:
        raise SystemExit('--jobs is empty: name at least one method, e.g. --jobs mae,moco,mae_moco.')
    return jobs


def job_progress(folder: Path) -> Dict[str, Any]:
    """What a job's run folder holds: epochs finished (from ``summary.json``, else the newest validation row of
    ``metrics.csv``), whether best weights exist, training seconds so far."""
    best = (folder / 'checkpoints' / 'best.safetensors').is_file()
    out: Dict[str, Any] = {'epochs': 0, 'finished': False, 'best': best, 'time_s': None}
    summary = folder / 'summary.json'
    if summary.is_file():
        s = json.loads(summary.read_text())
        out.update(epochs=int(s['epochs']), finished=True, best_epoch=s.get('best_epoch'), steps=s.get('steps'))
    metrics = folder / 'metrics.csv'
    if metrics.is_file():
        with open(metrics, newline='') as f:
            rows = list(csv.DictReader(f))
        out['time_s'] = training_seconds(rows)
        val = [r for r in rows if r.get('kind') == 'val']
        if val and not out['finished']:  # a validation row closes an epoch (epochs count from 0 there)
            out.update(epochs=int(val[-1]['epoch']) + 1, steps=int(val[-1]['step']))
    config = folder / 'config.json'
    if config.is_file():  # the dtype a run keeps across resumes, and the CPU of its latest segment
        cfg = json.loads(config.read_text())
        out.update(amp=cfg.get('amp_resolved'), cpu=(cfg.get('machine') or {}).get('cpu'))
    return out


def seconds_per_epoch(progress: Dict[str, Any]) -> Optional[float]:
    """Training seconds per finished epoch of a job's progress (``job_progress``), or None before its first."""
    t, epochs = progress.get('time_s'), progress.get('epochs')
    return t / epochs if t and epochs else None


def _pretrain_command(args: argparse.Namespace, method: str, kwargs: Dict[str, Any], folder: Path) -> List[str]:
    cmd = [sys.executable, '-c', 'import sys; from ecgvit.cli import main; sys.exit(main())', 'pretrain',
           '--method', method, '--model', args.model, '--data', args.data, '--epochs', str(args.epochs),
           '--batch-size', str(args.batch_size), '--seed', str(args.seed), '--amp', args.amp,
           '--save-every', str(args.save_every), '--keep-last', '2', '--log-every', '5', '--no-progress',
           '--resume', '-o', str(folder)]
    for flag, value in (('--data-dir', args.data_dir), ('--cache-dir', args.cache_dir),
                        ('--threads', args.threads), ('--sampling-rate', args.sampling_rate),
                        ('--num-samples', args.num_samples)):
        if value is not None:
            cmd += [flag, str(value)]
    for key, value in kwargs.items():
        cmd += ['--method-arg', f'{key}={json.dumps(value)}']
    return cmd + list(args.extra)


def _read_plan(root: Path) -> Dict[str, Any]:
    """The settings the first ``run`` call of a root recorded, or ``{}`` before any."""
    path = root / PLAN
    return json.loads(path.read_text()) if path.is_file() else {}


def _check_plan(root: Path, args: argparse.Namespace) -> None:
    """Refuse a call whose budget, data or recipe differs from the first call's: the comparison is at equal budget."""
    plan = {k: getattr(args, k) for k in FIXED}
    path = root / PLAN
    if path.is_file():
        old = json.loads(path.read_text())
        changed = {k: (old.get(k), plan[k]) for k in FIXED if old.get(k) != plan[k]}
        if changed:
            raise SystemExit(f'{root} holds an ablation with other settings {changed} (old, new): continue it with '
                             f'the same settings, or give another --root.')
    else:
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix('.tmp')
        tmp.write_text(json.dumps(plan, indent=2))
        os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    """Start or continue every job, ``--parallel`` at a time, until all finished or the deadline; returns 0 when all
    finished, 3 when the deadline stopped it (call again to continue), 1 when a job failed."""
    root = Path(args.root).expanduser()
    _check_plan(root, args)
    jobs = plan_jobs(args.jobs, args.model)
    deadline = math.inf
    if args.hours is not None:
        deadline = time.time() + 3600 * args.hours
    if args.until is not None:
        deadline = min(deadline, time.mktime(time.strptime(args.until, '%Y-%m-%d %H:%M')))
    pending = [j for j in jobs if not job_progress(root / j[0])['finished']]
    running: List[Tuple[Job, subprocess.Popen, Any]] = []
    failed: List[str] = []
    print(f'ablation in {root}: {len(jobs)} jobs, {len(jobs) - len(pending)} finished, {len(pending)} to run '
          f'({args.parallel} at a time)', flush=True)

    def child_setup() -> None:
        # A driver started in the background by a shell (nohup ... &) inherits SIGINT ignored, and so would the
        # jobs: restore it, so the deadline's SIGINT stops them as Ctrl-C would.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if args.nice:
            os.nice(args.nice)

    def start(job: Job) -> None:
        name, method, kw = job
        log = open(root / f'{name}.log', 'a')  # noqa: SIM115 - owned by the child process until it ends
        proc = subprocess.Popen(_pretrain_command(args, method, kw, root / name), stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=child_setup)
        running.append((job, proc, log))
        print(f'{time.strftime("%H:%M:%S")} {name}: started at epoch {job_progress(root / name)["epochs"]} '
              f'of {args.epochs}', flush=True)

    # SIGTERM (kill PID) or SIGINT (Ctrl-C) to the driver stops as the deadline does: the jobs get SIGINT, finish the
    # step they are in and save it, instead of running on as orphans of a dead driver.
    asked = []

    def stop_on_signal(signum: int, frame: Any) -> None:
        asked.append(signal.Signals(signum).name)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}  # restored at the end
    signal.signal(signal.SIGTERM, stop_on_signal)
    if previous[signal.SIGINT] is not signal.SIG_IGN:  # `nohup ... &` ignores it: leave it so
        signal.signal(signal.SIGINT, stop_on_signal)
    stopped, escalate_at = False, math.inf
    try:
        while pending or running:
            now = time.time()
            if asked and not stopped:
                print(f'{time.strftime("%H:%M:%S")} {asked[0]}: stopping every job after the step it is in',
                      flush=True)
                deadline = now
            if now >= deadline and not stopped:
                stopped, escalate_at = True, now + args.grace_s
                pending.clear()
                for _, proc, _ in running:  # each saves the step it is in (RunStopped); --resume continues from it
                    proc.send_signal(signal.SIGINT)
            if now >= escalate_at:  # a job still in its step: a second signal stops it at once (checkpoints stay)
                for _, proc, _ in running:
                    if proc.poll() is None:
                        proc.terminate()
                escalate_at = now + args.grace_s
            for item in list(running):
                job, proc, log = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                log.close()
                p = job_progress(root / job[0])
                if p['finished']:
                    print(f'{time.strftime("%H:%M:%S")} {job[0]}: finished, {p["epochs"]} epochs', flush=True)
                elif stopped:
                    why = f'on {asked[0]}' if asked else 'at the deadline'
                    print(f'{time.strftime("%H:%M:%S")} {job[0]}: stopped {why} after epoch {p["epochs"]}',
                          flush=True)
                else:
                    failed.append(job[0])
                    print(f'{time.strftime("%H:%M:%S")} {job[0]}: failed (exit code {proc.returncode}); its log: '
                          f'{root / (job[0] + ".log")}', flush=True)
            while pending and len(running) < max(1, args.parallel) and not stopped:
                start(pending.pop(0))
            if running:
                time.sleep(args.poll_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed else 3 if stopped else 0


def status(args: argparse.Namespace) -> int:
    """Print each job's epochs, best weights and time; 0 when every job finished."""
    root = Path(args.root).expanduser()
    plan = _read_plan(root)
    epochs = plan.get('epochs', args.epochs)
    jobs = plan_jobs(args.jobs, plan.get('model', args.model))
    done = 0
    for name, _, _ in jobs:
        p = job_progress(root / name)
        done += p['finished']
        rate = seconds_per_epoch(p)
        t = f'{p["time_s"] / 60:.0f} min' if p['time_s'] is not None else '-'
        left = '' if p['finished'] or rate is None else f', about {rate * (epochs - p["epochs"]) / 60:.0f} min left'
        state = 'finished' if p['finished'] else 'started' if (root / name).is_dir() else 'not started'
        print(f'{name:32s} {state:12s} epoch {p["epochs"]:>4d} / {epochs}'
              f'  {t:>8s}' + (f' ({rate:.0f} s/epoch{left})' if rate else '')
              + (f"  [{p['amp']}]" if p.get('amp') else '') + ('' if p['best'] else '  (no best weights yet)'))
    return 0 if done == len(jobs) else 3


# ---------------------------------------------------------------------------------------------------------------------
# Report


def ablation_rows(results: List[Dict[str, Any]], pairwise: List[Dict[str, Any]], specs: List[Spec], task: str,
                  metric: str, fraction: float) -> List[Dict[str, Any]]:
    """One row per encoder of the suite's output: its score and the answer to each of its questions (A - B, CI)."""
    def match(r: Dict[str, Any]) -> bool:
        return r['task'] == task and r['metric'] == metric and float(r['fraction']) == float(fraction) and \
            str(r.get('leads', '12')) == '12'

    scores = {r['encoder']: r for r in results if match(r)}
    diffs: Dict[Tuple[str, str], Tuple[float, float, float]] = {}
    for r in pairwise:
        if match(r):
            a, b = r['encoder_a'], r['encoder_b']
            d, lo, hi = float(r['diff']), float(r['diff_lo']), float(r['diff_hi'])
            diffs[(a, b)], diffs[(b, a)] = (d, lo, hi), (-d, -hi, -lo)
    rows = []
    for name, method, kw, _ in specs:
        if name not in scores:
            continue
        s = scores[name]
        row = {'encoder': name, 'method': method, 'settings': kw, 'mean': float(s['mean']),
               'ci_lo': float(s['ci_lo']), 'ci_hi': float(s['ci_hi']), 'n_test': int(s['n_test']), 'vs': {}}
        for a, b, question in comparison_pairs(specs):
            if a == name and (a, b) in diffs:
                d, lo, hi = diffs[(a, b)]
                verdict = 'better' if lo > 0 else 'worse' if hi < 0 else 'no difference shown'
                row['vs'][question] = {'b': b, 'diff': d, 'lo': lo, 'hi': hi, 'verdict': verdict}
        rows.append(row)
    return rows


def ablation_markdown(rows: List[Dict[str, Any]], progress: Dict[str, Dict[str, Any]], header: str) -> str:
    """The ablation table: epochs, training time, score, and each question's paired difference with its verdict."""
    questions = [q for q in QUESTIONS if any(q in r['vs'] for r in rows)]
    lines = [header, '', '| encoder | epochs | training time | AUROC [95% CI] | '
             + ' | '.join(QUESTIONS[q] for q in questions) + ' |', '|---|---|---|---|' + '---|' * len(questions)]
    for r in rows:
        p = progress.get(r['encoder'], {})
        ep = '-' if r['method'] == 'random' else f"{p.get('epochs', '?')}{'' if p.get('finished') else ' (unfinished)'}"
        rate = seconds_per_epoch(p)
        took = '-' if rate is None else (f"{p['time_s'] / 60:.0f} min ({rate:.0f} s/epoch"
                                         + (f", {p['amp']}" if p.get('amp') else '') + ')')
        cells = []
        for q in questions:
            v = r['vs'].get(q)
            ref = progress.get(v['b'], {}) if v is not None else {}
            # A reference that has not finished its epochs is not the equal-budget encoder the question is about.
            caveat = f" (against {ref.get('epochs', '?')} epochs of unfinished {v['b']})" if ref and \
                not ref.get('finished') else ''
            cells.append('' if v is None else
                         f"{v['diff']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}] {v['verdict']}{caveat}")
        lines.append(f"| {r['encoder']} | {ep} | {took} | {r['mean']:.3f} [{r['ci_lo']:.3f}, {r['ci_hi']:.3f}] | "
                     + ' | '.join(cells) + ' |')
    lines += ['', 'Each difference is A - B on the same test records (paired bootstrap, 95% CI); "better" / "worse" '
                  'when the CI excludes 0, otherwise no difference is shown (which is not evidence of equality).']
    return '\n'.join(lines) + '\n'


def _compress(path: Path) -> None:
    """Replace the suite's per-record predictions by a gzip copy (byte-identical on every call): a fifth of the size,
    small enough to keep beside the report, so later comparisons can still be paired on the same test records when the
    runs themselves are gone."""
    if not path.is_file():
        return
    tmp = path.with_name(path.name + '.gz.tmp')
    with open(path, 'rb') as src, open(tmp, 'wb') as raw, gzip.GzipFile(filename='', fileobj=raw, mode='wb',
                                                                          mtime=0) as dst:
        shutil.copyfileobj(src, dst)
    os.replace(tmp, path.with_name(path.name + '.gz'))
    path.unlink()


def report(args: argparse.Namespace) -> int:
    """Evaluate every job with best weights (and the random init) with the suite; write ablation.md / .json."""
    from ecgvit.eval.suite import SuiteConfig, run_suite

    root = Path(args.root).expanduser()
    plan = _read_plan(root)
    model = plan.get('model', args.model)
    jobs = plan_jobs(args.jobs, model)
    progress = {name: job_progress(root / name) for name, _, _ in jobs}
    encoders = {name: str(root / name) for name, _, _ in jobs if progress[name]['best']}
    if not encoders:
        raise SystemExit(f'No job in {root} has best weights yet: run `cpu_ablation.py run` first.')
    out = Path(args.out)
    cfg = SuiteConfig(data_dir=args.data_dir, out=str(out), encoders=encoders, seeds=(0,), fractions=(1.0,),
                      tasks=(args.task,), n_boot=args.n_boot, cache_dir=args.cache_dir, device='cpu')
    summary = run_suite(cfg)
    _compress(out / 'predictions.csv')
    specs = [('random', 'random', {}, model)] + [(n, m, kw, model) for n, m, kw in jobs if n in encoders]
    rows = ablation_rows(summary['results'], summary['pairwise'], specs, args.task, 'auroc', 1.0)
    n_test = rows[0]['n_test'] if rows else 0
    title = args.title or f'Ablation at `{model}`, {plan.get("epochs", "?")} epochs each (same data, seed and recipe)'
    header = (f'# {title}\n\n'
              f'Linear probe on `{args.task}` (PTB-XL fold 10 test, {n_test} records; folds 1-8 train, 9 '
              f'validation), macro AUROC. Runs: `{root}`; settings: `{json.dumps(plan)}`.')
    (out / 'ablation.md').write_text(ablation_markdown(rows, progress, header))
    (out / 'ablation.json').write_text(json.dumps({'plan': plan, 'progress': progress, 'rows': rows}, indent=2))
    mae_curves = _job_curves(root, jobs, 'loss_mae', [])
    if mae_curves:  # when each MAE term left its plateau, kept beside the scores it explains
        (out / 'curves.md').write_text(curves_markdown(mae_curves, 'loss_mae', 10, 0.95))
    print((out / 'ablation.md').read_text())
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# Training curves


def epoch_means(folder: Path, column: str = 'loss_mae') -> Dict[int, float]:
    """Mean of a training column of a run's ``metrics.csv`` per epoch, numbered as finished epochs (1 = the first).

    The logged rows are every ``--log-every`` steps, so this is the mean of the logged batches of each epoch, not of
    every batch. A run without the column (e.g. ``loss_mae`` of MoCo-only) gives ``{}``.
    """
    path = Path(folder) / 'metrics.csv'
    if not path.is_file():
        return {}
    sums: Dict[int, List[float]] = {}
    with open(path, newline='') as f:
        for r in csv.DictReader(f):
            value = r.get(column)
            if r.get('kind') == 'train' and value not in (None, ''):
                sums.setdefault(int(r['epoch']) + 1, []).append(float(value))
    return {e: sum(v) / len(v) for e, v in sorted(sums.items())}


def first_epoch_below(means: Dict[int, float], level: float) -> Optional[int]:
    """The first epoch whose mean is below ``level`` (e.g. when the MAE term leaves its plateau), or None."""
    return next((e for e, v in sorted(means.items()) if v < level), None)


def curves_markdown(curves: Dict[str, Dict[int, float]], column: str, every: int, below: Optional[float]) -> str:
    """One row per run: its epoch means at epoch 1, every ``every`` epochs and its last, and the first epoch below
    ``below``."""
    last = max((max(c) for c in curves.values() if c), default=0)
    epochs = sorted({1, *range(every, last + 1, every)} | {max(c) for c in curves.values() if c})
    head = '| run | ' + ' | '.join(str(e) for e in epochs) + ' |' + (f' first epoch below {below} |' if below else '')
    lines = [f'Mean training `{column}` per epoch (epochs from 1; the mean of the logged batches).', '', head,
             '|---|' + '---|' * (len(epochs) + bool(below))]
    for name, c in curves.items():
        cells = [f'{c[e]:.3f}' if e in c else '' for e in epochs]
        if below:
            first = first_epoch_below(c, below)
            cells.append('-' if first is None else str(first))
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def _job_curves(root: Path, jobs: List[Job], column: str, also: List[str]) -> Dict[str, Dict[int, float]]:
    folders = [(name, root / name) for name, _, _ in jobs] + [(Path(p).name, Path(p).expanduser()) for p in also]
    curves = {name: epoch_means(folder, column) for name, folder in folders}
    return {name: c for name, c in curves.items() if c}


def curves(args: argparse.Namespace) -> int:
    """Print each job's mean training ``--column`` per epoch as a markdown table (1 when no job logged it)."""
    root = Path(args.root).expanduser()
    plan = _read_plan(root)
    table = _job_curves(root, plan_jobs(args.jobs, plan.get('model', args.model)), args.column, args.also)
    if not table:
        print(f'No job in {root} (or --also) has logged `{args.column}` yet.', file=sys.stderr)
        return 1
    print(curves_markdown(table, args.column, args.every, args.below))
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='step', required=True)
    for step in ('run', 'status', 'report', 'curves'):
        s = sub.add_parser(step)
        s.add_argument('--root', required=True, help='folder of the job folders (outside the repository)')
        s.add_argument('--jobs', default=ABLATION, help='method[:key=value...], comma-separated; default: the '
                                                        "campaign's ablation list")
        s.add_argument('--model', default='ecg_vit_small', help='encoder of every job')
        s.add_argument('--epochs', type=int, default=100, help='epochs of every job (the equal budget)')
        if step == 'run':
            s.add_argument('--data', default='pool', help='pretraining data (ecgvit pretrain --data)')
            s.add_argument('--data-dir', default=None)
            s.add_argument('--cache-dir', default=None, help='shared preprocessed cache (built once)')
            s.add_argument('--amp', default='auto', help="bf16, fp32 or auto (the faster on this CPU; recorded)")
            s.add_argument('--seed', type=int, default=0)
            s.add_argument('--batch-size', type=int, default=64)
            s.add_argument('--sampling-rate', type=float, default=None)
            s.add_argument('--num-samples', type=int, default=None)
            s.add_argument('--save-every', type=int, default=0,
                           help='steps between extra mid-epoch checkpoints (0: none; every job saves at the end of '
                                'each epoch, ecgvit pretrain\'s default)')
            s.add_argument('--parallel', type=int, default=2, help='jobs at once')
            s.add_argument('--threads', type=int, default=1, help='torch threads per job')
            s.add_argument('--nice', type=int, default=10, help='niceness of the job processes (0: none)')
            s.add_argument('--hours', type=float, default=None, help='stop after this long (resumable)')
            s.add_argument('--until', default=None, metavar='"YYYY-MM-DD HH:MM"', help='stop at this local time')
            s.add_argument('--poll-s', type=float, default=5.0, help=argparse.SUPPRESS)
            s.add_argument('--grace-s', type=float, default=30.0,
                           help='at the deadline: seconds a job gets to stop on SIGINT before SIGTERM')
            s.add_argument('extra', nargs='*', help='more `ecgvit pretrain` options, after --')
        if step == 'report':
            s.add_argument('--data-dir', required=True, help='the suite data (ptbxl/ ...)')
            s.add_argument('--cache-dir', default=None, help="the suite's cache (embeddings are reused)")
            s.add_argument('--out', required=True)
            s.add_argument('--task', default='ptbxl_superdiagnostic')
            s.add_argument('--n-boot', type=int, default=1000)
            s.add_argument('--title', default=None,
                           help="the report's title, the question it answers (it heads its section in the cards)")
        if step == 'curves':
            s.add_argument('--column', default='loss_mae', help="a column of the runs' metrics.csv")
            s.add_argument('--every', type=int, default=10, help='a column of the table every this many epochs')
            s.add_argument('--below', type=float, default=None,
                           help='also give the first epoch whose mean is below this (e.g. 0.95: off the MAE plateau)')
            s.add_argument('--also', action='append', default=[], metavar='FOLDER',
                           help='another run folder to show beside the jobs (e.g. a control in another root)')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return {'run': run, 'status': status, 'report': report, 'curves': curves}[args.step](args)


if __name__ == '__main__':
    sys.exit(main())
