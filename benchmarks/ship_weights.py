"""New pretrained weights for the shipped names, only when they are better: the release gate, then the release.

``gate`` evaluates candidate runs with the evaluation suite (``ecgvit.eval.suite``: linear probes on frozen
embeddings, every encoder on the same test records, paired bootstrap CIs) beside the weights shipped now and the
seed-0 random init. Each candidate is evaluated exactly as it would ship: its best-validation weights rounded to bf16.
A candidate passes when, on PTB-XL superdiagnostic (fold 10 test, linear probe at 100% of the labels, macro AUROC),
it beats both the random init and the current weights with a paired 95% CI that excludes 0 (issue 15). The issue's
target (macro AUROC >= 0.88 and >= +0.05 over random init) is reported beside, not required.

With ``--supervised RUN`` (a ``benchmarks/supervised_floor.py`` run) the gate also probes the supervised floor, the
same architecture trained from scratch on the gate task's training labels, and reports each candidate minus it with a
paired CI (in ``gate.json``, the card and the README table); it does not decide the release.

``ship`` writes the candidates that passed into ``weights/<name>/`` (bf16 safetensors, config, a card generated from
the run and the gate's outputs: data, epochs, steps, training time, hardware, relative L2 distance from init, the
suite table, the comparison with the previous weights, the ablation tables when given, limitations), the
sha256 registry and the README's "Pretrained models" table. It refuses a candidate that did not pass.

Usage:
    python benchmarks/ship_weights.py gate --run ecg_vit_mae_moco=~/.cache/ecgvit-runs/weights-bf16/mae_moco \\
        --run ecg_vit_mae_nextclip=~/.cache/ecgvit-runs/weights-bf16/mae_nextclip --data-dir /work/shared/data \\
        --out benchmarks/results/release_YYYY-MM-DD --cache-dir ~/.cache/ecgvit-runs/suite_shipped/cache \\
        [--supervised ~/.cache/ecgvit-runs/supervised/ecg_vit_mae_moco]
    python benchmarks/ship_weights.py ship --gate benchmarks/results/release_YYYY-MM-DD \\
        [--ablation benchmarks/results/ablation_YYYY-MM-DD/ablation.md ...]   # repeatable: one per ablation report

Without new weights, ``cards`` rewrites the shipped cards' ablation sections from the reports given (the whole list,
in card order), and brings a first-release card up to the suite (its unpaired evaluation removed, its distance from
init added); the Hub metadata is regenerated from the cards' own tables:

    python benchmarks/ship_weights.py cards --ablation benchmarks/results/ablation_YYYY-MM-DD/ablation.md ...

A run that is still training replaces its best weights whenever the validation loss improves, so gate a frozen copy
of it (``snapshot``): ``ship`` refuses weights whose sha256 is not the one the gate evaluated.

    python benchmarks/ship_weights.py snapshot --run ~/.cache/ecgvit-runs/weights-bf16/mae_moco \\
        --out ~/.cache/ecgvit-runs/weights-bf16/mae_moco-snapshot-e57 [--weights last]

``--weights last`` freezes the last epoch's weights instead (the newest epoch-end checkpoint, its info marked
``selected: last``), so that the end of an annealed schedule can be gated like any candidate; the card says which.
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/ship_weights.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from benchmarks.init_distance import distance_from_init
from benchmarks.release_weights import (
    LICENCES,
    REPO,
    SHIPPED,
    SUITE_START,
    TABLE_END,
    TABLE_START,
    _hardware,
    _pool_counts,
    _queue_note,
    _registry,
    card_eval_rows,
    parse_suite_table,
    plot_loss_history,
    refresh_cards,
    suite_table,
)
from ecgvit.pretrain.factory import method_settings
from ecgvit.train.checkpoint import atomic_write_text

__all__ = ['training_seconds', 'run_facts', 'weights_epochs', 'snapshot', 'gate_decision', 'gate',
           'ship', 'main', 'GATE_TASK', 'TARGET_AUROC', 'TARGET_OVER_RANDOM']

GATE_TASK, GATE_METRIC = 'ptbxl_superdiagnostic', 'auroc'
TARGET_AUROC, TARGET_OVER_RANDOM = 0.88, 0.05  # issue 15's target for both names
CANDIDATE = 'new_{}'  # a candidate's encoder name in the suite output
SUPERVISED = 'supervised'  # the supervised floor's encoder name in the suite output (benchmarks/supervised_floor.py)
GATE_FILE = 'gate.json'
ABLATION_TITLE = '### Ablation (MAE-only, MoCo-only, the hybrids, the shared pass, at equal budget)'
BEST_FILE = 'checkpoints/best.safetensors'
SNAPSHOT_FILES = ('config.json', 'metrics.csv', 'summary.json', BEST_FILE)


def _read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def training_seconds(rows: List[Dict[str, str]]) -> float:
    """Training wall time of a run from its ``metrics.csv`` rows, summed over resumed segments.

    ``time_s`` counts the whole run (a resume continues from the time its checkpoint recorded); in runs written
    before it did, it restarts at 0 in each segment, and the segments are added. Either way, work lost to an
    interruption after the last checkpoint is not counted (a resume drops the rows past its checkpoint).
    """
    total, last = 0.0, 0.0
    for r in rows:
        t = float(r['time_s']) if r.get('time_s') else last
        if t < last:  # a resumed segment starts again from 0
            total += last
        last = t
    return total + last


def _campaign_facts(folder: Path) -> Dict[str, Any]:
    """:func:`run_facts` of an encoder the GPU campaign trained (a folder ``gpu_campaign.py unpack`` wrote, with its
    run record in ``campaign.json``)."""
    c = json.loads((folder / 'campaign.json').read_text())
    job, enc, run = c['job'], c['encoder'], c.get('run') or {}
    cfg = json.loads((folder / 'config.json').read_text())
    counts = (run.get('pack') or {}).get('counts') or {}
    step = (run.get('pack') or {}).get('quant_step') or 0.02  # packs before it was recorded: the default, 0.02
    start = job.get('init') or {}  # `run --init`: a continuation, described as `ecgvit pretrain --pretrained` runs are
    init = {'pretrained': start.get('pretrained'), 'checkpoint': None if start.get('pretrained') else start['folder'],
            'weights_sha256': start['weights_sha256']} if start else None
    return {'run': str(folder), 'method': enc['method'], 'model': cfg['architecture'],
            'seed': job.get('seed', (run.get('settings') or {}).get('seed', 0)), 'epochs_done': job.get('epochs'),
            'epochs_planned': job.get('planned_epochs'), 'finished': job.get('status') == 'done',
            'steps': job.get('steps'), 'train_hours': float(job.get('train_s') or 0) / 3600,
            'best_epoch': job.get('best_epoch'), 'best_step': None, 'best_val_loss': job.get('best_val_loss'),
            'amp': job.get('amp'), 'machine': run.get('machine'), 'train': job.get('train') or {},
            'pretrainer': job.get('pretrainer') or {},
            'data': {'n_train': job.get('n_train', counts.get('pool_train')),
                     'n_val': job.get('n_val', counts.get('pool_val'))},
            'preprocessing': (cfg.get('pretrained_cfg') or {}).get('preprocessing'),
            'command': f"python benchmarks/gpu_campaign.py run (job {enc['job']})",
            'loss_history': job.get('loss_history') or {'train': [], 'val': []},
            'init': init, 'heads': {'sha256': start['heads_sha256'], 'flag': 'gpu_campaign.py run --init'}
            if start.get('heads_sha256') else None,
            'data_note': f'Trained on the GPU campaign\'s pack of this pool: the same windows, quantised to {step:g} '
                         'standard deviations for the trip (`benchmarks/campaign/codec.py`).'}


def run_facts(run: Path) -> Dict[str, Any]:
    """What a pretraining run folder says about itself, also mid-schedule (no ``summary.json`` yet); for an encoder
    of the GPU campaign, what its ``campaign.json`` says.

    Epochs are the validation passes in ``metrics.csv`` (one per finished epoch); training time is
    :func:`training_seconds`.
    """
    from benchmarks.campaign.worker import loss_history
    from ecgvit.hub import encoder_weights_file, sha256_file
    from ecgvit.train.checkpoint import load_best

    if (run / 'campaign.json').is_file():
        return dict(_campaign_facts(run), weights_sha256=sha256_file(encoder_weights_file(run)))
    missing = [f for f in ('config.json', 'metrics.csv', 'checkpoints/best.safetensors') if not (run / f).is_file()]
    if missing:
        raise FileNotFoundError(f'{run} is not an `ecgvit pretrain` run folder with best weights (missing '
                                f'{", ".join(missing)}), nor a folder `gpu_campaign.py unpack` wrote: pass the '
                                f'run\'s -o folder after at least one epoch.')
    cfg = json.loads((run / 'config.json').read_text())
    rows = _read_csv(run / 'metrics.csv')
    val_epochs = {int(r['epoch']) for r in rows if r['kind'] == 'val'}
    total = training_seconds(rows)
    _, best = load_best(run / 'checkpoints')
    summary = json.loads((run / 'summary.json').read_text()) if (run / 'summary.json').is_file() else {}
    return {'run': str(run), 'method': cfg['method'], 'model': cfg['model'], 'seed': cfg['train']['seed'],
            'epochs_done': max(val_epochs) + 1 if val_epochs else 0, 'epochs_planned': cfg['train']['epochs'],
            'finished': bool(summary), 'steps': max(int(r['step']) for r in rows) if rows else 0,
            'train_hours': total / 3600, 'best_epoch': best.get('epoch'), 'best_step': best.get('step'),
            'best_val_loss': best.get('val_loss'), 'weights_rule': best.get('selected', 'best'),
            'amp': cfg.get('amp_resolved') or cfg['train'].get('amp'),
            'machine': cfg.get('machine'), 'train': cfg['train'], 'pretrainer': cfg.get('pretrainer', {}),
            'data': cfg.get('data', {}), 'preprocessing': cfg.get('preprocessing'),
            'command': _command_line(cfg.get('args') or {}), 'loss_history': loss_history(run / 'metrics.csv'),
            'init': cfg.get('init'), 'heads': cfg.get('heads'),
            'weights_sha256': sha256_file(encoder_weights_file(run))}


def _last_epoch_checkpoint(run: Path) -> Tuple[Path, Dict[str, Any]]:
    """The newest intact checkpoint of ``run`` written at an epoch boundary, and its state.

    A run stopped mid-epoch leaves a mid-epoch checkpoint last; its weights saw part of an epoch that no validation
    pass measured, so the epoch-boundary checkpoint before it is the last one a card can describe.
    """
    from ecgvit.train.checkpoint import checkpoint_problem, list_checkpoints, read_checkpoint_state

    for path in reversed(list_checkpoints(run / 'checkpoints')):
        if checkpoint_problem(path) is None:
            state = read_checkpoint_state(path)
            if state.get('batch_in_epoch', 0) == 0 and state.get('epoch', 0) > 0:
                return path, state
    raise SystemExit(f'{run} holds no intact checkpoint written at the end of an epoch: --weights last needs one '
                     f'(a run checkpoints at every epoch end by default; --save-every-epochs 1).')


def _write_last_as_best(ckpt: Path, state: Dict[str, Any], rows: List[Dict[str, str]], out: Path) -> None:
    """Write the weights of the epoch-end checkpoint ``ckpt`` into ``out`` as ``best.safetensors``, their info marked
    ``selected: last`` so that the gate, the card and ``ship`` say which weights these are."""
    from safetensors.torch import load_file, save_file

    epoch = state['epoch'] - 1  # epochs finished -> the 0-based epoch just ended, as best.safetensors counts
    val = [float(r['val_loss']) for r in rows if r['kind'] == 'val' and int(r['epoch']) == epoch and r['val_loss']]
    info = {'step': state['step'], 'epoch': epoch, 'val_loss': val[-1] if val else None, 'selected': 'last',
            'checkpoint': ckpt.name}
    save_file(load_file(str(ckpt / 'model.safetensors')), str(out),
              metadata={'format': 'pt', 'ecgvit': json.dumps(info)})


def snapshot(args: argparse.Namespace) -> int:
    """Copy what the gate and ``ship`` read of a run (config, metrics, best weights) into a new folder, so that the
    weights a live run goes on replacing stay the ones evaluated. With ``--weights last``, the weights copied are the
    last epoch's (the newest epoch-boundary checkpoint), not the best validation loss's."""
    run, out = Path(args.run), Path(args.out)
    run_facts(run)  # a folder that is not a run fails here
    if out.exists():
        raise SystemExit(f'{out} exists: a snapshot is written once; name a new folder.')
    tmp = out.with_name(out.name + '.partial')
    shutil.rmtree(tmp, ignore_errors=True)
    last = _last_epoch_checkpoint(run) if getattr(args, 'weights', 'best') == 'last' else None
    for name in SNAPSHOT_FILES:
        if (run / name).is_file() and not (last and name == BEST_FILE):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            # One open() per file: a run replaces best.safetensors by rename, so the copy is one whole version.
            shutil.copyfile(run / name, tmp / name)
    if last:
        (tmp / BEST_FILE).parent.mkdir(parents=True, exist_ok=True)
        _write_last_as_best(*last, _read_csv(tmp / 'metrics.csv'), tmp / BEST_FILE)
    os.replace(tmp, out)
    facts = run_facts(out)
    loss = 'no validation loss' if facts['best_val_loss'] is None else f"validation loss {facts['best_val_loss']:.4f}"
    print(f"{out}: {facts['epochs_done']} epochs, {_weights_rule(facts)} weights after epoch "
          f"{weights_epochs(facts)} ({loss}), sha256 {facts['weights_sha256']}")
    return 0


def _weights_rule(facts: Dict[str, Any]) -> str:
    """'best' (the best validation loss; every run's default) or 'last' (a ``snapshot --weights last``)."""
    return facts.get('weights_rule') or 'best'


def _command_line(args: Dict[str, Any]) -> str:
    """The ``ecgvit pretrain`` options a run was given (those set), as a command line."""
    skip = {'command', 'config', 'verbose', 'progress', 'output', 'resume', 'data_dir', 'cache_dir', 'threads'}
    if args.get('data') != 'synthetic':
        skip.add('synthetic_records')
    parts = ['ecgvit', str(args.get('command', 'pretrain'))]
    for key, value in args.items():
        if key in skip or value in (None, False, [], ''):
            continue
        flag = '--' + key.replace('_', '-')
        if value is True:
            parts.append(flag)
        else:  # a repeatable option (--method-arg) once per value, each quoted as a shell would need it
            for item in (value if isinstance(value, list) else [value]):
                parts += [flag, shlex.quote(str(item))]
    return ' '.join(parts)


def weights_epochs(facts: Dict[str, Any]) -> int:
    """Epochs the shipped weights saw: the best-validation epoch (0-based in the run) plus one; a run may have gone
    on past it."""
    return facts['best_epoch'] + 1 if facts.get('best_epoch') is not None else facts['epochs_done']


def _check_unchanged(run: Path, sha256: Optional[str], when: str) -> None:
    """Refuse weights that are not the version the gate evaluated (a live run replaced its best weights)."""
    from ecgvit.hub import encoder_weights_file, sha256_file

    now = sha256_file(encoder_weights_file(run))
    if now != sha256:
        raise SystemExit(f'{encoder_weights_file(run)} changed {when} (sha256 {now[:12]}..., gated '
                         f'{(sha256 or "unrecorded")[:12]}...): the run is still training. Gate a frozen copy: '
                         f'`python benchmarks/ship_weights.py snapshot --run {run} --out NEW_FOLDER`, then '
                         f'`gate --run NAME=NEW_FOLDER`.')


def _bf16_encoder(run: Path) -> torch.nn.Module:
    """The run's best weights, rounded to bf16 and back: the encoder exactly as ``ship`` stores it."""
    from ecgvit.hub import load_encoder

    encoder, _ = load_encoder(str(run))
    with torch.no_grad():
        for t in encoder.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.to(torch.bfloat16).float())
    return encoder.eval()


def _heads_source(run: Path) -> Optional[Path]:
    """Where a candidate's heads come from: its run's best checkpoint (the whole pretrainer), or the
    ``heads.safetensors`` that ``gpu_campaign.py unpack`` wrote beside a campaign encoder; None without either."""
    from ecgvit.constants import HEADS_NAME

    for path in (run / 'checkpoints' / 'best.safetensors', run / HEADS_NAME):
        if path.is_file():
            return path
    return None


def _write_heads(run: Path, out: Path, facts: Dict[str, Any], encoder: torch.nn.Module,
                 extra: Optional[Dict[str, Any]] = None) -> Optional[Path]:
    """The run's best-validation decoders and heads beside the weights (bf16, as the encoder), fingerprinted with
    the shipped encoder (a GPU campaign folder: the ones ``unpack`` wrote); without any, the previous weights' heads
    go with them. ``extra``: more facts for the file's metadata, beside the epochs."""
    from safetensors.torch import load_file

    from ecgvit.constants import HEADS_NAME
    from ecgvit.files import atomic_copy
    from ecgvit.pretrain.heads import save_heads

    source = _heads_source(run)
    if source is None:
        (out / HEADS_NAME).unlink(missing_ok=True)
        return None
    if source.name == HEADS_NAME:  # a GPU campaign folder: `unpack` wrote them, fingerprinted, in bf16
        atomic_copy(source, out / HEADS_NAME)
        return out / HEADS_NAME
    return save_heads(load_file(str(source)), out / HEADS_NAME, method=facts['method'], model=facts['model'],
                      encoder=encoder, dtype=torch.bfloat16, extra={'epochs': weights_epochs(facts), **(extra or {})})


def _oriented(pairwise: List[Dict[str, Any]], a: str, b: str) -> Optional[Tuple[float, float, float]]:
    """(A - B, lo, hi) of the gate task's headline metric at 100% of the labels, whichever order the suite stored."""
    for r in pairwise:
        if r['task'] != GATE_TASK or r['metric'] != GATE_METRIC or float(r['fraction']) != 1.0 or \
                str(r.get('leads') or '12') != '12':
            continue
        d, lo, hi = float(r['diff']), float(r['diff_lo']), float(r['diff_hi'])
        if (r['encoder_a'], r['encoder_b']) == (a, b):
            return d, lo, hi
        if (r['encoder_a'], r['encoder_b']) == (b, a):
            return -d, -hi, -lo
    return None


def gate_decision(results: List[Dict[str, Any]], pairwise: List[Dict[str, Any]], candidate: str,
                  current: Optional[str]) -> Dict[str, Any]:
    """Whether ``candidate`` may replace ``current`` (see the module doc): its score, both paired differences, the
    verdict and whether the issue's target is met. When the suite also measured the supervised floor (encoder
    ``supervised``), its score and the paired difference to it are reported too (``vs_supervised``); they do not
    decide anything."""
    scores = {r['encoder']: r for r in results if r['task'] == GATE_TASK and r['metric'] == GATE_METRIC and
              float(r['fraction']) == 1.0 and str(r.get('leads') or '12') == '12'}
    if candidate not in scores or 'random' not in scores:
        raise ValueError(f'The suite output has no {GATE_TASK} {GATE_METRIC} rows for {candidate!r} and the random '
                         f'init: run the gate with that task.')
    mine = scores[candidate]
    out: Dict[str, Any] = {'task': GATE_TASK, 'metric': GATE_METRIC, 'n_test': int(mine['n_test']),
                           'score': float(mine['mean']), 'ci': [float(mine['ci_lo']), float(mine['ci_hi'])],
                           'random': float(scores['random']['mean'])}
    reasons = []
    for other, key in (('random', 'vs_random'), (current, 'vs_current')):
        if other is None:
            continue
        d = _oriented(pairwise, candidate, other)
        if d is None:
            raise ValueError(f'The suite output does not pair {candidate!r} with {other!r}.')
        out[key] = {'other': other, 'diff': d[0], 'lo': d[1], 'hi': d[2]}
        if d[1] <= 0:
            verdict = 'worse: the CI lies below 0' if d[2] < 0 else 'the CI does not exclude 0'
            reasons.append(f'vs {other}: {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}], {verdict}')
    if current is not None and current in scores:
        out['current'] = float(scores[current]['mean'])
    if SUPERVISED in scores:
        d = _oriented(pairwise, candidate, SUPERVISED)
        if d is not None:
            out[SUPERVISED] = float(scores[SUPERVISED]['mean'])
            out['supervised_ci'] = [float(scores[SUPERVISED]['ci_lo']), float(scores[SUPERVISED]['ci_hi'])]
            out['vs_supervised'] = {'other': SUPERVISED, 'diff': d[0], 'lo': d[1], 'hi': d[2]}
    out['passed'] = not reasons
    out['reasons'] = reasons
    over = out['vs_random']['diff']
    out['target_met'] = out['score'] >= TARGET_AUROC and over >= TARGET_OVER_RANDOM
    return out


def fixed_c_differences(rows: List[Dict[str, Any]], candidate: str,
                        others: Sequence[str]) -> Dict[str, List[Dict[str, Any]]]:
    """The candidate minus each of ``others`` on the gate task with both probes at the same C, for every C of the
    grid (the suite's ``c_sensitivity`` rows). A diagnostic beside the decision, which keeps each probe's own C.

    Returns:
        other -> [{'C', 'diff', 'lo', 'hi', 'chosen': [candidate's choice, other's choice]}], C ascending.
    """
    pairs_at: Dict[float, List[Dict[str, Any]]] = {}
    chosen: Dict[Tuple[str, float], bool] = {}
    for r in rows:
        if r.get('encoder_b'):
            pairs_at.setdefault(float(r['C']), []).append(r)
        else:
            chosen[(r['encoder_a'], float(r['C']))] = bool(r['chosen_a'])
    out: Dict[str, List[Dict[str, Any]]] = {}
    for other in others:
        for c in sorted(pairs_at):
            d = _oriented(pairs_at[c], candidate, other)
            if d is not None:
                out.setdefault(other, []).append({'C': c, 'diff': d[0], 'lo': d[1], 'hi': d[2], 'chosen': [
                    chosen.get((candidate, c), False), chosen.get((other, c), False)]})
    return out


def _fixed_c_text(rows: List[Dict[str, Any]]) -> str:
    """One line: the difference to the current weights at each C ('*' marks the candidate's choice, '+' the
    current weights')."""
    if not rows:
        return '  at a fixed C: no current weights to pair with'
    parts = [f"C={r['C']:g}{'*' if r['chosen'][0] else ''}{'+' if r['chosen'][1] else ''} {r['diff']:+.3f} "
             f"[{r['lo']:+.3f}, {r['hi']:+.3f}]" for r in rows]
    return '  vs current at a fixed C (* candidate\'s choice, + current\'s): ' + '; '.join(parts)


def _supervised_facts(run: Path) -> Dict[str, Any]:
    """What the gate records of the supervised floor (a ``benchmarks/supervised_floor.py`` run folder)."""
    f = run_facts(run)
    if f['method'] != SUPERVISED:
        raise SystemExit(f'--supervised {run}: a run of method {f["method"]!r}; give a folder '
                         f'`benchmarks/supervised_floor.py` wrote.')
    data = f['data']
    return {'run': f['run'], 'model': f['model'], 'task': data.get('task'), 'records': data.get('records'),
            'epochs': weights_epochs(f), 'epochs_done': f['epochs_done'], 'epochs_planned': f['epochs_planned'],
            'finished': f['finished'], 'train_hours': f['train_hours'], 'amp': f['amp'],
            'weights_sha256': f['weights_sha256']}


def _vs_supervised_text(decision: Dict[str, Any]) -> str:
    """'; minus the supervised floor (0.xxx): +d [lo, hi]', or '' when the gate did not measure it."""
    vs = decision.get('vs_supervised')
    if not vs:
        return ''
    return (f"; minus the supervised floor ({decision[SUPERVISED]:.3f}): {vs['diff']:+.3f} [{vs['lo']:+.3f}, "
            f"{vs['hi']:+.3f}]")


def _supervised_paragraph(decision: Dict[str, Any]) -> List[str]:
    """The card's lines on the supervised floor ([] when the gate did not measure it)."""
    vs, sf = decision.get('vs_supervised'), decision.get('supervised_facts') or {}
    if not vs:
        return []
    n_train = (sf.get('records') or {}).get('train', '?')
    verdict = ('better than' if vs['lo'] > 0 else 'worse than' if vs['hi'] < 0 else 'not shown to differ from')
    return [f"**Supervised floor.** The same architecture trained from scratch, end to end, on the gate task's "
            f"{n_train} training records and their labels ({sf.get('epochs', '?')} epochs, best weights on the "
            f"validation fold; `benchmarks/supervised_floor.py`), then probed like every encoder here: "
            f"{decision[SUPERVISED]:.3f} [{decision['supervised_ci'][0]:.3f}, {decision['supervised_ci'][1]:.3f}]. "
            f"This encoder minus it: {vs['diff']:+.3f} [{vs['lo']:+.3f}, {vs['hi']:+.3f}], {verdict} it.", '']


def gate(args: argparse.Namespace) -> int:
    """Run the suite on the candidates, the current weights and the random init; write gate.json; 0 if all pass."""
    from ecgvit.eval.suite import SuiteConfig, run_suite

    runs = _pairs(args.run, '--run', 'NAME=FOLDER (NAME: the model name the weights ship as, e.g. '
                                     f'{", ".join(SHIPPED.values())})')
    facts = {n: run_facts(r) for n, r in runs.items()}  # a folder that is not a run fails here, before the suite
    current = {n: n for n in runs}  # the weights shipped now under that name (weights/, the Hub)
    current.update(_pairs(args.current, '--current', 'NAME=FOLDER'))
    candidates = {n: _bf16_encoder(r) for n, r in runs.items()}
    for name, run in runs.items():
        _check_unchanged(run, facts[name]['weights_sha256'], 'while the gate read them')
    encoders: Dict[str, Any] = {CANDIDATE.format(n): e for n, e in candidates.items()}
    encoders.update({n: str(c) for n, c in current.items() if n in runs})
    if set(runs) <= set(SHIPPED.values()):
        # The README table lists every shipped name: the names not released now are measured beside, as they are.
        encoders.update({n: n for n in SHIPPED.values() if n not in encoders})
    floor = _supervised_facts(Path(args.supervised).expanduser()) if args.supervised else None
    if floor is not None:
        encoders[SUPERVISED] = floor['run']
    out = Path(args.out)
    tasks = tuple(t for t in args.tasks.split(',') if t) if args.tasks else None
    if tasks is not None and GATE_TASK not in tasks:
        tasks = (GATE_TASK, *tasks)
    cfg = SuiteConfig(data_dir=args.data_dir, out=str(out), encoders=encoders, seeds=(0,), fractions=(1.0,),
                      tasks=tasks, n_boot=args.n_boot, cache_dir=args.cache_dir, amp='fp32', device='cpu',
                      c_sensitivity=(GATE_TASK,))
    summary = run_suite(cfg)
    if floor is not None:
        _check_unchanged(Path(floor['run']), floor['weights_sha256'], 'while the gate read them')
    decisions = {}
    for name in runs:
        f = facts[name]
        f['rel_l2_from_init'] = distance_from_init(candidates[name], f['model'], f['seed'])
        d = gate_decision(summary['results'], summary['pairwise'], CANDIDATE.format(name), name)
        decisions[name] = dict(d, name=name, current_source=str(current[name]), facts=f,
                               at_fixed_c=fixed_c_differences(summary['c_sensitivity'], CANDIDATE.format(name),
                                                              [name, 'random']))
        if floor is not None:
            decisions[name]['supervised_facts'] = floor
        cur = d.get('vs_current', {})
        print(f"{name}: {d['score']:.3f} [{d['ci'][0]:.3f}, {d['ci'][1]:.3f}] after "
              f"{f['epochs_done']} epochs; vs random {d['vs_random']['diff']:+.3f} [{d['vs_random']['lo']:+.3f}, "
              f"{d['vs_random']['hi']:+.3f}]; vs current {cur.get('diff', float('nan')):+.3f} "
              f"[{cur.get('lo', float('nan')):+.3f}, {cur.get('hi', float('nan')):+.3f}] -> "
              f"{'PASS' if d['passed'] else 'no: ' + '; '.join(d['reasons'])}; target "
              f"{'met' if d['target_met'] else 'not met'}" + _vs_supervised_text(d))
        print(_fixed_c_text(decisions[name]['at_fixed_c'].get(name, [])))
    atomic_write_text(out / GATE_FILE, json.dumps({'decisions': decisions, 'suite': str(out)}, indent=2))
    return 0 if all(d['passed'] for d in decisions.values()) else 3


# ---------------------------------------------------------------------------------------------------------------------
# Release


def _pairs(items: Optional[List[str]], flag: str, form: str) -> Dict[str, Path]:
    out = {}
    for item in items or []:
        name, sep, folder = item.partition('=')
        if not sep or not name or not folder:
            raise SystemExit(f'{flag} {item!r}: give {form}.')
        out[name] = Path(folder).expanduser()
    return out


def _relpath(path: Path) -> str:
    path = Path(path).resolve()
    return os.path.relpath(path, REPO) if path.is_relative_to(REPO) else str(path)


def _init_rows(facts: Dict[str, Any]) -> List[str]:
    """The card's row on where a continued run (``ecgvit pretrain --pretrained / --checkpoint``) started, whose
    epochs and steps above count this run only."""
    init = facts.get('init')
    if not init:
        return []
    where = (f"the published `{init['pretrained']}` weights" if init.get('pretrained')
             else f"the encoder weights of `{init.get('checkpoint')}`")
    heads = facts.get('heads')  # `--heads`: the decoders went on from saved ones instead of starting over
    start = (f"with the pretraining heads saved beside them (`{heads.get('flag', '--heads')}`, sha256 "
             f"`{heads['sha256'][:12]}...`), a fresh "
             "optimiser and schedule" if heads else "with a fresh decoder, heads, optimiser and schedule")
    return [f"| started from | {where} (sha256 `{init['weights_sha256'][:12]}...`), {start}; the epochs and steps "
            f"above are this run's only |"]


def _ablation_lines(ablations: Sequence[Path]) -> List[str]:
    """The card's ablation section: each report (``cpu_ablation.py report``'s ``ablation.md``, or any markdown with a
    ``# title``) under its own title, in the order given."""
    lines = [ABLATION_TITLE, '']
    for ablation in ablations:  # each report's own title names its question, so it stays (one level down)
        text = Path(ablation).read_text().strip()
        title, body = text.split('\n', 1) if text.startswith('# ') else ('', text)
        lines += [f'#### {title[2:].strip()}' if title else '', '', f'From `{_relpath(ablation)}`:', '',
                  body.strip(), '']
    if not ablations:
        lines.append('Not run to the end yet (`benchmarks/cpu_ablation.py`): whether the hybrid beats MAE-only and '
                     "MoCo-only, or the shared pass matches the paper's passes, is not answered for these weights.")
    return lines


def continued_epochs(facts: Dict[str, Any], previous: Dict[str, Any]) -> Optional[int]:
    """Epochs of the weights a continued run started from, when they are the weights shipped now (``previous``, as
    :func:`_previous` reads them): the shipped encoder has seen those plus this run's. None for a run from a random
    init, or from weights other than the shipped ones (whose epochs the card cannot know)."""
    init = facts.get('init') or {}
    if not init or not previous.get('sha256') or init.get('weights_sha256') != previous['sha256']:
        return None
    try:
        return int(previous.get('epochs'))
    except (TypeError, ValueError):
        return None


def _head_kinds(method: str) -> str:
    """What a method's heads file holds, in words."""
    heads = {'mae': 'the MAE decoder', 'moco': 'the MoCo projection head', 'clip': 'the clip decoder'}
    return ' and '.join(text for key, text in heads.items() if key in method)


def _heads_rows(facts: Dict[str, Any]) -> List[str]:
    """The card's row on ``heads.safetensors`` (:func:`_write_heads`), when the run has its pretrainer's weights."""
    if _heads_source(Path(facts['run'])) is None:
        return []
    return [f"| pretraining heads | `heads.safetensors`: {_head_kinds(facts['method'])} of the same checkpoint (bf16). "
            f"`ecgvit pretrain --method {facts['method']} --pretrained --heads pretrained` continues pretraining "
            f"without starting them over |"]


def _off_default_rows(method: str, pretrainer: Dict[str, Any]) -> List[str]:
    """The card's row naming each pretraining setting the run changed from the method's (paper's) default, so that a
    reader never has to find it in the command; none when the run kept them all. Alpha and the passes have their own
    row."""
    try:
        defaults = method_settings(method)
    except ValueError:  # not a pretraining method (the supervised floor's run): no method defaults to depart from
        return []
    changed = [f'`{k}={pretrainer[k]!r}` (default `{v!r}`)' for k, v in defaults.items()
               if k not in ('alpha', 'shared_pass') and k in pretrainer and pretrainer[k] != v]
    return [f"| settings off the method's defaults | {'; '.join(changed)} |"] if changed else []


def _weights_row(f: Dict[str, Any], n: int) -> str:
    """Which of the run's weights these are, for the card: the best validation loss's, or the last epoch's."""
    step = f", step {f['best_step']}" if f.get('best_step') is not None else ''
    loss = f"{f['best_val_loss']:.4f}" if f.get('best_val_loss') is not None else 'not measured'
    if _weights_rule(f) == 'last':
        return f'the last epoch\'s (after epoch {n}{step}; validation loss {loss}), not the best validation loss\'s'
    return f'best validation loss {loss} (after epoch {n}{step})'


def _card(decision: Dict[str, Any], gate_dir: Path, ablations: Sequence[Path], previous: Dict[str, Any]) -> str:
    """The card's body after Input/Usage/Preprocessing (which ``save_pretrained`` writes): pretraining, data,
    evaluation, ablation, limitations; every number from the run and the gate's outputs."""
    f = decision['facts']
    tc, pre, data = f['train'], f['pretrainer'], f['data']
    passes = ('one shared masked encoder pass, shared_pass=True' if pre.get('shared_pass')
              else "the paper's separate encoder passes, shared_pass=False")
    n = weights_epochs(f)
    run_so_far = (f"the whole {f['epochs_planned']}-epoch schedule" if f['finished'] else
                  f"the {f['epochs_done']} run so far of a {f['epochs_planned']}-epoch schedule")
    last = _weights_rule(f) == 'last'
    schedule = (f'{n} (the whole schedule)' if f['finished'] and n == f['epochs_done'] else
                f'{n} (the newest epoch-end checkpoint of {run_so_far})' if last else
                f'{n} (the best validation loss among {run_so_far})')
    before = continued_epochs(f, previous)
    if before is not None:  # `_previous` reads "N in all" back, so a later release counts from the total
        schedule += f', after the {before} of the weights it started from: {before + n} in all'
    pool_note = _pool_counts(Path(data['cache_dir'])) if data.get('cache_dir') else ''
    vr, vc = decision['vs_random'], decision.get('vs_current')
    prev_note = ', '.join(([f"{previous['epochs']} epochs"] if previous.get('epochs') else []) +
                          ([f"sha256 `{previous['sha256'][:12]}...`"] if previous.get('sha256') else []) +
                          [f"{decision.get('current', float('nan')):.3f}"])
    lines = [
        '## Pretraining', '', '| field | value |', '|---|---|',
        f"| method | {f['method']} (alpha = {pre.get('alpha')}; {passes}) |",
        f'| MoCo queue | {_queue_note({"pretrainer": pre, "data": data})} |',
        *_off_default_rows(f['method'], pre),
        f"| data | pretraining pool: {data.get('n_train')} training + {data.get('n_val')} validation windows of "
        f"10 s |",
        f"| epochs | {schedule}; the seed paper: 710 |",
        f"| optimiser steps | {f['best_step'] if f.get('best_step') is not None else f['steps']} |",
        f"| optimiser | Adam lr {tc.get('lr')}, batch {tc.get('batch_size')}, {tc.get('warmup_epochs')} warm-up "
        f"epochs, then ReduceLROnPlateau (factor {tc.get('plateau_factor')}, patience "
        f"{tc.get('plateau_patience')}) on the validation loss |",
        f"| weights | {_weights_row(f, n)} |",
        f"| precision | {f['amp']} |",
        f"| hardware | {_hardware(f['machine'])} |",
        f"| training time | {f['train_hours']:.2f} h (summed over resumed segments) |",
        *_init_rows(f),
        f"| distance from init | {100 * f['rel_l2_from_init']:.1f} % (relative L2 over all parameters, from the "
        f"seed-{f['seed']} random init {'of the architecture' if f.get('init') else 'it started from'}; "
        f"`benchmarks/init_distance.py`) |",
        '| stored as | bfloat16 (evaluated as stored: every number below is of these bf16 weights) |',
        *_heads_rows(f),
        f"| run | `{f['command']}` |", '',
        '![loss curve](loss_curve.png)', '',
        f"**Pretraining data.** The pool built by `ecgvit pretrain --data pool --data-dir shared/data`: every "
        f"record of the shared data folder (PTB-XL, LUDB, PhysioNet/CinC Challenge samples, CODE-15% samples) "
        f"except PTB-XL folds 9 and 10, which evaluation holds out; records cut into 10-s windows (shorter ones "
        f"zero-padded), resampled to 360 Hz, z-scored per lead; exact duplicate windows removed, including challenge "
        f"copies of held-out PTB-XL records. {pool_note} {f.get('data_note', '')}".rstrip(), '',
        LICENCES.rstrip('\n'), '',
        '## Evaluation', '',
        f"Generated by `benchmarks/ship_weights.py gate` (outputs in `{_relpath(gate_dir)}`): the evaluation suite "
        f"(`docs/suite.md`), linear probes on frozen embeddings, every encoder on the same test records.", '',
        f"**Release gate** ({GATE_TASK}, PTB-XL fold 10 test, {decision['n_test']} records, macro AUROC, 95% paired "
        f"bootstrap CIs): this encoder {decision['score']:.3f} [{decision['ci'][0]:.3f}, {decision['ci'][1]:.3f}]; "
        f"minus the seed-0 random init ({decision['random']:.3f}): {vr['diff']:+.3f} [{vr['lo']:+.3f}, "
        f"{vr['hi']:+.3f}]" + (f"; minus the previous weights ({prev_note}): {vc['diff']:+.3f} [{vc['lo']:+.3f}, "
                               f"{vc['hi']:+.3f}]" if vc else '') +
        f". Both CIs exclude 0, so these weights replaced the previous ones. The issue's target (>= {TARGET_AUROC} "
        f"and >= +{TARGET_OVER_RANDOM} over random init) is {'met' if decision['target_met'] else 'not met'}.", '',
        *_supervised_paragraph(decision),
        suite_table(_read_csv(gate_dir / 'results.csv'), CANDIDATE.format(decision['name']),
                    _relpath(gate_dir / 'results.csv'))
        .replace('`benchmarks/release_weights.py cards --suite`', '`benchmarks/ship_weights.py gate`'), '',
        *_ablation_lines(ablations),
        '', '## Limitations', '',
        f"- Pretrained for {n} epochs{' after the weights it started from (above)' if f.get('init') else ''} on "
        f"{data.get('n_train')} 10-s windows "
        f"({_hardware(f['machine'])}): a fraction of the seed paper's 710 epochs on tens of thousands of records. "
        f"Treat these weights as a reproducible starting point, not as the paper's model.",
        f"- The test sets are small ({decision['n_test']} PTB-XL records in the gate), so the CIs are wide; a "
        f"difference inside a CI is not evidence of equality.",
        '- Inputs must be 12-lead, 10 s at 360 Hz, z-scored per lead, in the lead order above.',
        '- **Not for clinical use.**',
    ]
    return '\n'.join(lines) + '\n'


# The first release's evaluation (benchmarks/release_weights.py ship): 64 PTB-XL records of an older split, read by
# whether unpaired CIs overlap, which says nothing either way. The suite block below it replaced it.
_FIRST_EVAL_TABLE = '| task | method | protocol | macro AUROC [95% CI] |'
_FIRST_EVAL_LIMIT = ('- The evaluation test sets are small (tens of records), so the CIs are wide; differences inside '
                     'them are not evidence.')
_SUITE_INTRO = ('The evaluation suite (`docs/suite.md`): linear probes on frozen embeddings, every encoder on the '
                'same test records, each difference paired. The first release\'s evaluation (64 PTB-XL records of an '
                'older split, compared by whether unpaired CIs overlap) is no longer shown: it could not tell these '
                'encoders apart either way.')


def refresh_card_body(body: str, ablations: Sequence[Path], distance: Optional[float] = None) -> str:
    """A shipped card's body with its ablation section rewritten from ``ablations`` (as :func:`_card` writes it), a
    distance-from-init row added when the card has none (``distance``: :func:`distance_from_init` of its weights),
    and a first-release card's unpaired evaluation replaced by its suite block. Nothing else changes, so a card
    :func:`_card` wrote comes back byte for byte with the same reports.

    Raises:
        ValueError: the card lacks a section this needs (Limitations; Evaluation and a suite block for a first-release
            card; the Pretraining table's ``stored as`` row when a distance is to be added).
    """
    if '\n## Limitations\n' not in body:
        raise ValueError('The card has no "## Limitations" section: is it one of ours?')
    head, limits = body.split('\n## Limitations\n', 1)
    if _FIRST_EVAL_TABLE in head:
        if '\n## Evaluation\n' not in head or SUITE_START not in head:
            raise ValueError('A first-release card needs its suite block before its evaluation table can go '
                             '(`benchmarks/release_weights.py cards --suite RESULTS`).')
        before, evaluation = head.split('\n## Evaluation\n', 1)
        head = f"{before}\n## Evaluation\n\n{_SUITE_INTRO}\n\n{evaluation[evaluation.index(SUITE_START):]}"
        n = [int(r['n_test']) for r in parse_suite_table(head)]
        limits = limits.replace(_FIRST_EVAL_LIMIT, f'- The test sets are small ({min(n)}-{max(n)} records per task in '
                                                   'the suite table), so the CIs are wide; a difference inside a CI '
                                                   'is not evidence of equality.')
    if ABLATION_TITLE in head:
        head = head[:head.index(ABLATION_TITLE)]
    head = head.rstrip('\n') + '\n\n' + '\n'.join(_ablation_lines(ablations))
    if distance is not None and '| distance from init |' not in head:
        if '\n| stored as |' not in head:
            raise ValueError('The card\'s Pretraining table has no "stored as" row to put the distance before.')
        row = (f'| distance from init | {100 * distance:.1f} % (relative L2 over all parameters, from the seed-0 '
               'random init of the architecture; `benchmarks/init_distance.py`) |')
        head = head.replace('\n| stored as |', f'\n{row}\n| stored as |', 1)
    return f'{head}\n## Limitations\n{limits}'


def cards(args: argparse.Namespace) -> int:
    """Rewrite the shipped cards' ablation sections (and bring a first-release card up to the suite, with its
    distance from init) without new weights; the Hub metadata is regenerated from the rewritten tables."""
    from ecgvit.cards import split_front_matter
    from ecgvit.hub import load_pretrained

    weights_root = Path(args.weights)
    shipped = dict(SHIPPED) if not args.name else {n.removeprefix('ecg_vit_'): n for n in args.name}
    for name in shipped.values():
        folder = weights_root / name
        front, body = split_front_matter((folder / 'README.md').read_text())
        distance = None
        if '| distance from init |' not in body:
            distance = distance_from_init(load_pretrained(folder).float(), name, seed=0)
        body = refresh_card_body(body, [Path(a) for a in args.ablation], distance)
        atomic_write_text(folder / 'README.md', f'---\n{front}\n---\n{body}' if front else body)
    for path in refresh_cards(weights_root, shipped=shipped):
        print(f'{path}: ablation section rewritten, metadata regenerated')
    return 0


def _previous(weights_root: Path, name: str) -> Dict[str, Any]:
    """Epochs and sha256 of the weights shipped now (what the card compares against)."""
    from ecgvit.hub import sha256_file

    card, weights = weights_root / name / 'README.md', weights_root / name / 'model.safetensors'
    epochs, windows = None, None
    for line in card.read_text().splitlines() if card.is_file() else []:
        if line.startswith('| epochs') and epochs is None:
            cell = line.split('|')[2].strip()
            in_all = re.search(r'(\d+) in all', cell)  # a continued run's card: the epochs the encoder has seen
            epochs = in_all.group(1) if in_all else cell.split()[0]
        m = re.match(r'\| data \| pretraining pool: (\d+) training \+ (\d+) validation', line)
        if m and windows is None:
            windows = int(m.group(1)) + int(m.group(2))
    return {'sha256': sha256_file(weights) if weights.is_file() else '', 'epochs': epochs, 'windows': windows}


def _readme_table(decisions: Dict[str, Dict[str, Any]], gate_dir: Path, weights_root: Path,
                  shipped_now: Optional[Dict[str, Dict[str, Any]]] = None) -> str:
    """Every shipped name, from one suite run: the names released now as their decision says, the others as the gate
    measured their current weights beside (same test records, same random init). ``shipped_now``: :func:`_previous`
    of each name, when the caller has read it already (it hashes the weights)."""
    import ecgvit

    shipped_now = shipped_now or {name: _previous(weights_root, name) for name in SHIPPED.values()}

    results = {r['encoder']: r for r in _read_csv(gate_dir / 'results.csv')
               if r['task'] == GATE_TASK and r['metric'] == GATE_METRIC and float(r['fraction']) == 1.0}
    pairs = _read_csv(gate_dir / 'pairwise.csv') if (gate_dir / 'pairwise.csv').is_file() else []
    floor = results.get(SUPERVISED)  # the supervised floor, when the gate measured it (gate --supervised)
    lines = ['| model | pretraining data | epochs | params | PTB-XL superdiagnostic linear AUROC [95% CI] | '
             'minus random init [95% CI] | minus previous weights [95% CI] |' +
             (f" minus supervised floor ({float(floor['mean']):.3f}) [95% CI] |" if floor else ''),
             '|---|---|---|---|---|---|---|' + ('---|' if floor else '')]
    for name in SHIPPED.values():
        n_params = sum(p.numel() for p in ecgvit.create_model(name).parameters())
        if name in decisions:
            d = decisions[name]
            data, vr, vc = d['facts']['data'], d['vs_random'], d.get('vs_current')
            windows, epochs = data.get('n_train', 0) + data.get('n_val', 0), weights_epochs(d['facts'])
            before = continued_epochs(d['facts'], shipped_now[name])
            epochs = f'{before} + {epochs}' if before is not None else epochs
            score, lo, hi = d['score'], d['ci'][0], d['ci'][1]
            diff = (vr['diff'], vr['lo'], vr['hi'])
            previous = f"{vc['diff']:+.3f} [{vc['lo']:+.3f}, {vc['hi']:+.3f}]" if vc else '-'
        elif name in results:
            r, prev = results[name], shipped_now[name]
            windows, epochs = prev['windows'], prev['epochs']
            score, lo, hi = float(r['mean']), float(r['ci_lo']), float(r['ci_hi'])
            diff = (float(r['diff_vs_random']), float(r['diff_lo']), float(r['diff_hi']))
            previous = '- (unchanged in this release)'
        else:
            raise SystemExit(f'{gate_dir} has no {GATE_TASK} row for {name}: rerun the gate with this version '
                             f'(it measures every shipped name) before shipping.')
        row = (f"| `{name}` | pool of {windows} 10-s windows | {epochs} | {n_params / 1e6:.1f}M | {score:.3f} "
               f"[{lo:.3f}, {hi:.3f}] | {diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}] | {previous} |")
        if floor:
            vs = _oriented(pairs, CANDIDATE.format(name) if name in decisions else name, SUPERVISED)
            row += f' {vs[0]:+.3f} [{vs[1]:+.3f}, {vs[2]:+.3f}] |' if vs else ' - |'
        lines.append(row)
    return '\n'.join(lines)


def ship(args: argparse.Namespace) -> int:
    """Write every candidate that passed the gate into ``weights/``; refuse the others."""
    from ecgvit.hub import save_pretrained, sha256_file
    from ecgvit.weights import WEIGHTS_SHA256

    gate_dir = Path(args.gate)
    decisions = json.loads((gate_dir / GATE_FILE).read_text())['decisions']
    failed = {m: d['reasons'] for m, d in decisions.items() if not d['passed']}
    if failed:
        raise SystemExit(f'Not shipped: {failed}. Only weights that beat the random init and the current weights '
                         f'(paired 95% CI excluding 0) replace them.')
    shas = dict(WEIGHTS_SHA256)
    for d in decisions.values():  # every check before the first write
        _check_unchanged(Path(d['facts']['run']), d['facts'].get('weights_sha256'), 'since the gate')
    weights_root = Path(args.weights)
    previous = {name: _previous(weights_root, name) for name in {*SHIPPED.values(), *decisions}}  # before any write
    table = (_readme_table(decisions, gate_dir, weights_root, previous) if set(decisions) <= set(SHIPPED.values())
             else None)
    for name, d in decisions.items():
        run, method = Path(d['facts']['run']), d['facts']['method']
        card = _card(d, gate_dir, [Path(a) for a in args.ablation], previous[name])
        rounded = _bf16_encoder(run)
        out = weights_root / name
        # The metadata from the card's own tables, so `release_weights.py cards` regenerates it byte for byte.
        save_pretrained(rounded.to(torch.bfloat16), out, pretrained_cfg={
            'pretrain_method': method, 'preprocessing': d['facts']['preprocessing'], 'license': 'apache-2.0',
            'weights_dtype': 'bfloat16'}, card_extra=card, card_metadata=card_eval_rows(card, method))
        plot_loss_history(d['facts']['loss_history'], out / 'loss_curve.png', f'{name}: pretraining loss')
        _write_heads(run, out, d['facts'], rounded)  # bf16 now: its fingerprint reads it back as float32
        shas[name] = sha256_file(out / 'model.safetensors')
        print(f'{out}: bfloat16, sha256 {shas[name]}')
    atomic_write_text(Path(args.registry), _registry(shas))
    readme = Path(args.readme)
    text = readme.read_text()
    if table is not None and TABLE_START in text and TABLE_END in text:
        head, rest = text.split(TABLE_START, 1)
        _, tail = rest.split(TABLE_END, 1)
        atomic_write_text(readme, f'{head}{TABLE_START}\n{table}\n{TABLE_END}{tail}')
    return 0


_HEADS_ROW = '| pretraining heads |'


def heads(args: argparse.Namespace) -> int:
    """Publish heads for the weights shipped now, from a ``--freeze-encoder`` run that started from them: the encoder
    is unchanged (checked), so neither the weights, their sha256 nor their evaluation change; the card gains a row."""
    from ecgvit.hub import load_encoder
    from ecgvit.pretrain.heads import encoder_fingerprint

    run, folder = Path(args.run), Path(args.weights) / args.name
    facts = run_facts(run)
    config = json.loads((run / 'config.json').read_text())
    if not config.get('freeze_encoder'):
        raise SystemExit(f'{run} trained its encoder: publish its weights through gate and ship, or make heads for '
                         f'the shipped weights with `ecgvit pretrain --pretrained --freeze-encoder`.')
    length = (config.get('args') or {}).get('num_samples')
    shipped, _ = load_encoder(str(folder), None, length)  # both at the run's input length, as the run saw them
    trained, _ = load_encoder(str(run), None, length)
    if encoder_fingerprint(trained) != encoder_fingerprint(shipped):
        raise SystemExit(f'The encoder of {run} is not the one in {folder} (another start, or the weights were '
                         f'replaced since): its heads were fitted to other weights.')
    epochs = weights_epochs(facts)
    path = _write_heads(run, folder, facts, shipped, extra={'frozen_encoder': True})
    row = (f"{_HEADS_ROW} `heads.safetensors`: {_head_kinds(facts['method'])}, trained afterwards for {epochs} "
           f"epochs on the same pool with these weights frozen (`ecgvit pretrain --freeze-encoder`; best "
           f"validation loss {facts['best_val_loss']:.4f}; bf16). `ecgvit pretrain --method {facts['method']} "
           f"--pretrained --heads pretrained` continues pretraining without starting them over |")
    card = folder / 'README.md'
    lines = [ln for ln in card.read_text().splitlines() if not ln.startswith(_HEADS_ROW)]
    at = next(i for i, ln in enumerate(lines) if ln.startswith('| stored as |')) + 1
    atomic_write_text(card, '\n'.join(lines[:at] + [row] + lines[at:]) + '\n')
    print(f'{path}: heads for {args.name} ({epochs} epochs, encoder frozen, fingerprint checked); card row written')
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='step', required=True)
    g = sub.add_parser('gate', help='evaluate candidate runs against the random init and the current weights')
    g.add_argument('--run', action='append', required=True, metavar='NAME=FOLDER',
                   help='a candidate for model NAME (ecg_vit_mae_moco, ecg_vit_mae_nextclip): an `ecgvit pretrain` '
                        'run folder (its best weights; repeatable)')
    g.add_argument('--current', action='append', default=[], metavar='NAME=PATH',
                   help="the weights NAME has now, if not its published ones (a save_pretrained folder)")
    g.add_argument('--data-dir', required=True, help='the suite data (ptbxl/, ludb/, ...)')
    g.add_argument('--out', required=True, help='suite outputs and gate.json')
    g.add_argument('--cache-dir', default=None, help="the suite's cache (embeddings of unchanged encoders reused)")
    g.add_argument('--tasks', default=None, help='suite tasks, comma-separated (default: all present; the gate '
                                                 f'task {GATE_TASK} is always run)')
    g.add_argument('--supervised', default=None, metavar='FOLDER',
                   help='a `benchmarks/supervised_floor.py` run: the same architecture trained from scratch on the '
                        "gate task's training labels, measured beside (reported, not required to pass)")
    g.add_argument('--n-boot', type=int, default=1000)
    n = sub.add_parser('snapshot', help="freeze a run's config, metrics and best weights (for a run still training)")
    n.add_argument('--run', required=True, help='an `ecgvit pretrain` run folder')
    n.add_argument('--out', required=True, help='a new folder (gate it with --run NAME=OUT)')
    n.add_argument('--weights', choices=('best', 'last'), default='best',
                   help="which weights: the best validation loss's (default, what a release ships), or the last "
                        "epoch's (the newest epoch-end checkpoint; for questions about the end of a schedule)")
    s = sub.add_parser('ship', help='write the candidates that passed into weights/')
    s.add_argument('--gate', required=True, help='the gate output folder')
    s.add_argument('--ablation', action='append', default=[],
                   help="an ablation's ablation.md (benchmarks/cpu_ablation.py report); repeatable, in card order")
    s.add_argument('--weights', default=str(REPO / 'weights'), help=argparse.SUPPRESS)
    s.add_argument('--registry', default=str(REPO / 'ecgvit' / 'weights_sha256.py'), help=argparse.SUPPRESS)
    s.add_argument('--readme', default=str(REPO / 'README.md'), help=argparse.SUPPRESS)
    h = sub.add_parser('heads', help='publish heads for the weights shipped now, from a --freeze-encoder run')
    h.add_argument('--name', required=True, help='the shipped name (ecg_vit_mae_moco, ecg_vit_mae_nextclip)')
    h.add_argument('--run', required=True, help='an `ecgvit pretrain --pretrained --freeze-encoder` run folder')
    h.add_argument('--weights', default=str(REPO / 'weights'), help=argparse.SUPPRESS)
    c = sub.add_parser('cards', help="rewrite the shipped cards' ablation sections, without new weights")
    c.add_argument('--ablation', action='append', required=True,
                   help="an ablation's ablation.md (benchmarks/cpu_ablation.py report); repeatable, in card order")
    c.add_argument('--weights', default=str(REPO / 'weights'), help=argparse.SUPPRESS)
    c.add_argument('--name', action='append', default=[], help=argparse.SUPPRESS)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return {'snapshot': snapshot, 'gate': gate, 'ship': ship, 'cards': cards, 'heads': heads}[args.step](args)


if __name__ == '__main__':
    sys.exit(main())
