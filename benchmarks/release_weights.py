"""Evaluate pretrained encoders against their floors, then ship the hybrids' weights into ``weights/``.

Step 1 pretrains each method on the pretraining pool (every real record of ``shared/data`` except PTB-XL folds 9-10),
with the CLI, resumable in chunks (``runs/weights/chain.sh`` is one way to chain them)::

    ecgvit pretrain --method mae_moco --data pool --data-dir ../shared/data --cache-dir .cache \\
        --epochs 8 --warmup-epochs 2 --queue-size 1024 --resume -o runs/weights/mae_moco

(the paper's separate encoder passes, the default; ``--method mae_moco_shared`` would pretrain ecgvit's shared-pass
variant, see ``ecgvit/pretrain/hybrid.py``.)

Step 2 (this script, ``evaluate``) runs the benchmark harness on PTB-XL superdiagnostic (folds 1-8 / 9 / 10) and LUDB
rhythm with the pretrained encoders passed as ``--checkpoint`` rows beside the random and supervised floors, and
checks whether bf16 storage changes the linear-probe AUROC by more than 0.002.

Step 3 (``ship``) writes ``weights/<model>/{model.safetensors, config.json, README.md, loss_curve.png}``, the
registry's sha256 table ``ecgvit/weights_sha256.py`` and the README's "Pretrained models" table, all generated from
the run and evaluation outputs (nothing typed by hand). The cards' Hugging Face metadata (``datasets:``, ``metrics:``,
``model-index``) comes from the same outputs (``ecgvit.cards``).

``cards`` rewrites only the YAML metadata of the shipped cards from what those cards already hold (the evaluation
table and the pool's sources that ``ship`` wrote into them), for when the run outputs are not at hand; it touches
neither the weights nor ``config.json``.

Usage:
    python benchmarks/release_weights.py evaluate --runs runs/weights --out runs/eval --data-root ../shared/data
    python benchmarks/release_weights.py ship --runs runs/weights --eval runs/eval
    python benchmarks/release_weights.py cards  # refresh the shipped cards' YAML from their own tables
    # other runs on the same footing, e.g. the shared-pass hybrids (run folders runs/shared/<name>):
    python benchmarks/release_weights.py evaluate --runs runs/shared --methods mae_moco_shared,mae_nextclip_shared \
        --tasks ptbxl_superdiagnostic --protocols linear --out runs/eval_shared
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/release_weights.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List

import torch

from ecgvit.train.checkpoint import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {'mae_moco': 'ecg_vit_mae_moco', 'mae_nextclip': 'ecg_vit_mae_nextclip'}
METHODS = ('mae', 'moco', 'mae_moco', 'mae_nextclip')  # the floors MAE-only and MoCo-only, then the hybrids
TASKS = {  # task -> (data spec, folder under the data root)
    'ptbxl_superdiagnostic': ('ptbxl:superdiagnostic', 'ptbxl'),
    'ludb_rhythm': ('ludb:rhythm', 'ludb'),
}
BF16_TOLERANCE = 0.002  # linear-probe AUROC change allowed for half-size storage
SAMPLING_RATE, NUM_SAMPLES = 360.0, 3600  # the seed's input: 10 s at 360 Hz
TABLE_START, TABLE_END = '<!-- pretrained-table:start -->', '<!-- pretrained-table:end -->'

# The pretraining pool's sources, their licences and the citations they require (every card that ships weights).
LICENCES = """\
**Licences and attributions.** The weights are derived from these data sets; their licences require citing:
- PTB-XL v1.0.1 (CC BY 4.0): Wagner, P., Strodthoff, N., Bousseljot, R.-D., Kreiseler, D., Lunze, F. I., Samek, W.,
  Schaeffter, T. (2020). PTB-XL, a large publicly available electrocardiography dataset. Scientific Data 7, 154,
  https://doi.org/10.1038/s41597-020-0495-6; and the PhysioNet release, https://doi.org/10.13026/x4td-x982.
- LUDB v1.0.1 (ODC-By 1.0): Kalyakulina, A. I. et al. (2020). LUDB: A New Open-Access Validation Tool for
  Electrocardiogram Delineation Algorithms. IEEE Access 8: 186181-186190,
  https://doi.org/10.1109/ACCESS.2020.3029211; Kalyakulina, A. et al., Lobachevsky University Electrocardiography
  Database (version 1.0.1), PhysioNet.
- PhysioNet/CinC Challenge 2020/2021 training data (CC BY 4.0): Perez Alday, E. A. et al. (2020). Classification of
  12-lead ECGs: the PhysioNet/Computing in Cardiology Challenge 2020. Physiological Measurement 41: 124003; Reyna,
  M. A. et al. (2021). Will Two Do? Varying Dimensions in Electrocardiography: The PhysioNet/Computing in Cardiology
  Challenge 2021. Computing in Cardiology 48. Source databases: CPSC (Liu, F. et al. (2018), J. Med. Imaging Health
  Inform. 8: 1368-1373), PTB-XL (above), Chapman-Shaoxing (Zheng, J. et al. (2020), Sci. Data 7: 48), Ningbo
  (Zheng, J. et al. (2020), Sci. Rep. 10: 2898), PTB (Bousseljot, R. et al. (1995), Biomed. Tech. 40(S1): 317),
  Georgia (the Challenge 2020 paper).
- CODE-15% (CC BY 4.0): Ribeiro, A. H. et al. (2021). CODE-15%: a large scale annotated dataset of 12-lead ECGs.
  Zenodo, https://doi.org/10.5281/zenodo.4916206; Ribeiro, A. H. et al. (2020). Automatic diagnosis of the 12-lead
  ECG using a deep neural network. Nature Communications 11: 1760; Reyna, M. A. et al. (2025). Detection of Chagas
  Disease from the ECG: The George B. Moody PhysioNet Challenge 2025.
- PhysioNet: Goldberger, A. L. et al. (2000). PhysioBank, PhysioToolkit, and PhysioNet. Circulation 101(23):
  e215-e220.
"""


def _read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def evaluate(args: argparse.Namespace) -> None:
    from ecgvit.benchmark import BenchmarkConfig, run_benchmark
    from ecgvit.data.prepare import prepare_data
    from ecgvit.eval import FinetuneConfig, ProbeConfig, linear_probe
    from ecgvit.hub import load_encoder
    from ecgvit.train import TrainConfig

    runs, out = Path(args.runs), Path(args.out)
    methods = [m.strip() for m in args.methods.split(',') if m.strip()]
    tasks = [t.strip() for t in args.tasks.split(',') if t.strip()]
    protocols = [p.strip() for p in args.protocols.split(',') if p.strip()]
    if set(tasks) - set(TASKS):
        raise SystemExit(f'--tasks: choose from {", ".join(TASKS)}')
    checkpoints = {m: str(runs / m) for m in methods if (runs / m / 'checkpoints' / 'best.safetensors').is_file()}
    missing = sorted(set(methods) - set(checkpoints))
    if missing:
        print(f'no finished pretraining run for {missing} under {runs}: those rows are left out')
    for task in tasks:
        spec, folder = TASKS[task]
        cfg = BenchmarkConfig(
            methods=list(checkpoints), protocols=protocols, data=spec,
            data_dir=str(Path(args.data_root) / folder), out=str(out / task), cache_dir=args.cache_dir,
            model='ecg_vit_mae_moco', sampling_rate=SAMPLING_RATE, num_samples=NUM_SAMPLES, n_boot=args.n_boot,
            pretrain=TrainConfig(epochs=args.finetune_epochs, warmup_epochs=1.0),
            probe=ProbeConfig(epochs=200, early_stop_patience=args.patience),
            finetune=FinetuneConfig(epochs=args.finetune_epochs, batch_size=32, warmup_epochs=1.0,
                                    early_stop_patience=args.patience),
            seed=0, amp='auto', checkpoints=checkpoints, progress=False)
        print(f'== {task}: {spec}', flush=True)
        run_benchmark(cfg)

    # bf16 storage check on the primary task: probe the bf16-rounded encoder exactly like the fp32 one.
    task, (spec, folder) = next(iter(TASKS.items()))
    if task not in tasks or 'linear' not in protocols or not set(SHIPPED) & set(checkpoints):
        return
    splits = prepare_data(spec, str(Path(args.data_root) / folder), args.cache_dir or str(out / task / 'data'),
                          SAMPLING_RATE, NUM_SAMPLES)
    rows = {r['method']: r for r in _read_csv(out / task / 'results.csv') if r['protocol'] == 'linear'}
    check = {}
    for method in SHIPPED:
        if method not in checkpoints:
            continue
        enc, _ = load_encoder(checkpoints[method], 'ecg_vit_mae_moco', NUM_SAMPLES)
        with torch.no_grad():
            for p in enc.state_dict().values():
                if p.is_floating_point():
                    p.copy_(p.to(torch.bfloat16).float())
        res = linear_probe(enc, splits['train'], splits['val'], splits['test'], epochs=200, lr=1e-3, batch_size=128,
                           early_stop_patience=args.patience, n_boot=0, seed=0, amp='auto', progress=False)
        metric = rows[method]['primary_metric']
        fp32, bf16 = float(rows[method][metric]), float(res[metric])
        check[method] = {'metric': metric, 'fp32': fp32, 'bf16': bf16, 'abs_diff': abs(fp32 - bf16),
                         'dtype': 'bfloat16' if abs(fp32 - bf16) <= BF16_TOLERANCE else 'float32'}
        print(f'{method}: linear-probe {metric} fp32 {fp32:.4f} vs bf16 weights {bf16:.4f} -> '
              f'store {check[method]["dtype"]}')
    (out / 'bf16_check.json').write_text(json.dumps(check, indent=2))


def _fmt_ci(row: Dict[str, str], key: str) -> str:
    try:
        v, lo, hi = float(row[key]), float(row[key + '_lo']), float(row[key + '_hi'])
    except (KeyError, ValueError):
        return '-'
    return '-' if math.isnan(v) else f'{v:.3f} [{lo:.3f}, {hi:.3f}]'


def eval_table(eval_dir: Path) -> str:
    """Markdown table of every task x method x protocol (macro AUROC and OvO AUC with 95% CIs)."""
    lines = ['| task | method | protocol | macro AUROC [95% CI] | OvO macro AUC [95% CI] | macro F1 | n test |',
             '|---|---|---|---|---|---|---|']
    for task in TASKS:
        path = eval_dir / task / 'results.csv'
        if not path.is_file():
            continue
        for r in _read_csv(path):
            if r.get('error'):
                continue
            auroc = 'auroc_macro' if r.get('auroc_macro') not in (None, '') else 'auroc_ovr'
            lines.append(f"| {task} | {r['method']} | {r['protocol']} | {_fmt_ci(r, auroc)} | {_fmt_ci(r, 'auc_ovo')} "
                         f"| {_fmt_ci(r, 'f1_macro')} | {r['n_test']} |")
    return '\n'.join(lines)


def verdict(method: str, eval_dir: Path) -> str:
    """One line per task x protocol: the hybrid against MAE-only, MoCo-only and the floors, and whether CIs overlap."""
    lines = []
    for task in TASKS:
        path = eval_dir / task / 'results.csv'
        if not path.is_file():
            continue
        rows = {(r['method'], r['protocol']): r for r in _read_csv(path) if not r.get('error')}
        for proto in ('linear', 'finetune'):
            ours = rows.get((method, proto))
            if ours is None:
                continue
            key = 'auroc_macro' if ours.get('auroc_macro') else 'auroc_ovr'
            others = {m: rows[(m, proto)] for m in ('mae', 'moco', 'random', 'supervised') if (m, proto) in rows}
            best = max(others, key=lambda m: float(others[m][key])) if others else None
            lo, hi = float(ours[key + '_lo']), float(ours[key + '_hi'])
            overlap = all(float(r[key + '_lo']) <= hi and lo <= float(r[key + '_hi']) for r in others.values())
            parts = ', '.join(f'{m} {float(r[key]):.3f}' for m, r in others.items())
            beats = best is not None and float(ours[key]) > float(others[best][key])
            lines.append(f'- {task}, {proto}: {method} {float(ours[key]):.3f} vs {parts}: '
                         + ('highest point estimate' if beats else f'below {best}')
                         + ('; every 95% CI overlaps, so no difference is shown.' if overlap else
                            '; some CIs do not overlap.'))
    return '\n'.join(lines)


def plot_loss_history(history: Dict[str, List[List[float]]], out_png: Path, title: str) -> None:
    """Plot ``{'train': [[step, loss], ...], 'val': [...]}`` (``benchmarks.campaign.worker.loss_history``) atomically
    into ``out_png``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if history.get('train'):
        ax.plot(*zip(*history['train']), label='train loss')
    if history.get('val'):
        ax.plot(*zip(*history['val']), 'o-', label='validation loss')
    ax.set_xlabel('optimiser step')
    ax.set_ylabel('loss')
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = out_png.with_name(f'.{out_png.name}.tmp.png')
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_png)


def _loss_curve(metrics_csv: Path, out_png: Path, title: str) -> None:
    from benchmarks.campaign.worker import loss_history

    plot_loss_history(loss_history(metrics_csv), out_png, title)


def _hardware(machine: Any) -> str:
    """The machine the pretraining run recorded in its config.json."""
    if not machine:
        raise ValueError('The pretraining run records no machine in its config.json (runs made before ecgvit '
                         'recorded it): add {"machine": {"cpu": ..., "logical_cores": ..., "gpu": ...}} by hand.')
    gpu = machine.get('gpu') or 'no GPU'
    return f"{machine['cpu']}, {machine['logical_cores']} logical cores, {gpu}"


def _pool_counts(cache_dir: Path) -> str:
    """'N records -> M windows (source: records/windows, ...)' from the pool cache's index."""
    index = cache_dir / 'index.csv'
    if not index.is_file():
        return ''
    windows: Dict[str, int] = {}
    records: Dict[str, set] = {}
    for row in _read_csv(index):
        src = row['record_id'].split('/', 1)[0]
        windows[src] = windows.get(src, 0) + 1
        records.setdefault(src, set()).add(row['record_id'].split('@', 1)[0])
    per = ', '.join(f'{s} {len(records[s])}/{windows[s]}' for s in sorted(windows))
    return (f'Exact counts: {sum(len(r) for r in records.values())} records, {sum(windows.values())} windows '
            f'(records/windows per source: {per}).')


def _pool_sources(cache_dir: Path) -> List[str]:
    """The source folders of the pool cache's records (the first part of each record id), sorted."""
    index = cache_dir / 'index.csv'
    return sorted({r['record_id'].split('/', 1)[0] for r in _read_csv(index)}) if index.is_file() else []


def card_metadata(method: str, results: Dict[str, List[Dict[str, Any]]], sources: List[str]) -> Dict[str, Any]:
    """The card's Hub metadata (``ecgvit.hub.save_pretrained(card_metadata=...)``): the pretraining sources and the
    evaluated tasks as ``datasets``, and ``method``'s rows of every task's results as ``eval_rows``.

    Args:
        method: The shipped method's row name in the results (e.g. 'mae_moco').
        results: task -> benchmark ``results.csv`` rows (or :func:`parse_eval_table` rows).
        sources: Pretraining pool source folders (``cinc2021_samples``, ``ptbxl``, ...).
    """
    from ecgvit.cards import benchmark_rows

    rows = [row for task in TASKS if task in results for row in benchmark_rows(results[task], method, task)]
    return {'datasets': list(sources) + [TASKS[t][1] for t in TASKS if t in results], 'eval_rows': rows}


def _eval_results(eval_dir: Path) -> Dict[str, List[Dict[str, str]]]:
    return {t: _read_csv(eval_dir / t / 'results.csv') for t in TASKS if (eval_dir / t / 'results.csv').is_file()}


_TABLE_METRICS = ('auroc', 'auc_ovo', 'f1_macro')  # the columns of eval_table after task, method, protocol


def parse_eval_table(card: str) -> Dict[str, List[Dict[str, str]]]:
    """The rows of the evaluation table :func:`eval_table` wrote into a card, back as task -> results rows (value,
    ``_lo``, ``_hi`` per metric, as in ``results.csv``, to the table's 3 decimals).

    For refreshing a card's metadata when the evaluation outputs are not at hand; the macro AUROC column holds
    ``auroc_macro`` for multi-label tasks and ``auroc_ovr`` for single-label ones (the OvO column is filled exactly
    for the latter), as :func:`eval_table` chose.
    """
    head = '| task | method | protocol | macro AUROC [95% CI] | OvO macro AUC [95% CI] | macro F1 | n test |'
    if head not in card:
        raise ValueError('The card has no evaluation table written by release_weights.eval_table (its header '
                         f'{head!r} is missing): regenerate the card with `ship` from the evaluation outputs.')
    out: Dict[str, List[Dict[str, str]]] = {}
    for line in card.split(head, 1)[1].splitlines()[2:]:
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        task, method, protocol, *metrics, n_test = cells
        row = {'method': method, 'protocol': protocol, 'n_test': n_test, 'error': ''}
        for name, cell in zip(_TABLE_METRICS, metrics):
            if cell == '-':
                continue
            value, _, ci = cell.partition(' [')
            lo, _, hi = ci.rstrip(']').partition(', ')
            row.update({name: value, f'{name}_lo': lo, f'{name}_hi': hi})
        if 'auroc' in row:  # see the docstring: multi-label tasks have no OvO AUC
            key = 'auroc_ovr' if 'auc_ovo' in row else 'auroc_macro'
            for suffix in ('', '_lo', '_hi'):
                row[key + suffix] = row.pop('auroc' + suffix)
        out.setdefault(task, []).append(row)
    return out


def parse_pool_sources(card: str) -> List[str]:
    """The pool's source folders from the 'records/windows per source: a 1/2, b 3/4' note :func:`_pool_counts`
    wrote into a card."""
    marker = 'records/windows per source:'
    if marker not in card:
        return []
    text = card.split(marker, 1)[1].split(')', 1)[0]
    return sorted(part.split()[0] for part in text.split(',') if part.strip())


SUITE_START, SUITE_END = '<!-- suite-table:start -->', '<!-- suite-table:end -->'


def suite_table(rows: List[Dict[str, str]], encoder: str, source: str) -> str:
    """The card's block of evaluation-suite results (``ecgvit benchmark --suite real``'s ``results.csv`` rows): the
    headline metric of every task at 100% of the training labels, against the random-init floor with the paired CI."""
    rows = [r for r in rows if str(r.get('leads') or '12') == '12']  # the 12-lead rows (the suite's --leads)
    mine = {r['task']: r for r in rows if r['encoder'] == encoder and float(r['fraction']) == 1.0
            and r.get('headline') in ('True', True)}
    if not mine:
        raise ValueError(f'{source} has no 100%-label headline rows for encoder {encoder!r}.')
    floor = {r['task']: r for r in rows if r['encoder'] == 'random' and float(r['fraction']) == 1.0
             and r.get('headline') in ('True', True)}
    lines = [SUITE_START, '### Evaluation suite (linear probe on frozen embeddings, 100% of the training labels)', '',
             f'Generated from `{source}` by `benchmarks/release_weights.py cards --suite` (`docs/suite.md` says how '
             'the suite works). Difference to a seed-0 random initialisation of the same architecture, paired '
             'bootstrap 95% CI over the same test records; "better" only when the CI excludes 0 (per comparison, '
             'no multiplicity correction).', '',
             '| task | metric | this encoder [95% CI] | random init | difference [95% CI] | verdict | n test |',
             '|---|---|---|---|---|---|---|']
    for task, r in mine.items():
        f = floor.get(task, {})
        lines.append(f"| {task} | {r['metric']} | {float(r['mean']):.3f} [{float(r['ci_lo']):.3f}, "
                     f"{float(r['ci_hi']):.3f}] | {float(f['mean']):.3f} | {float(r['diff_vs_random']):+.3f} "
                     f"[{float(r['diff_lo']):+.3f}, {float(r['diff_hi']):+.3f}] | {r['verdict_vs_random']} | "
                     f"{r['n_test']} |" if f else f"| {task} | {r['metric']} | {float(r['mean']):.3f} | - | - | - | "
                     f"{r['n_test']} |")
    return '\n'.join(lines + [SUITE_END])


def parse_suite_table(card: str, encoder: str = 'this') -> List[Dict[str, str]]:
    """The rows of the suite block :func:`suite_table` wrote into a card, back as suite ``results.csv`` rows of
    ``encoder`` at 100% of the labels (headline metrics, to the table's 3 decimals); [] when the card has none."""
    if SUITE_START not in card:
        return []
    block = card[card.index(SUITE_START):card.index(SUITE_END)]
    head = '| task | metric | this encoder [95% CI] |'
    rows = []
    for line in block.split(head, 1)[1].splitlines()[2:] if head in block else []:
        if not line.startswith('|'):
            break
        task, metric, cell, *_, n_test = [c.strip() for c in line.strip().strip('|').split('|')]
        mean, _, ci = cell.partition(' [')
        lo, _, hi = ci.rstrip(']').partition(', ')
        rows.append({'task': task, 'metric': metric, 'encoder': encoder, 'fraction': '1.0', 'headline': 'True',
                     'mean': mean, 'ci_lo': lo or mean, 'ci_hi': hi or mean, 'n_test': n_test})
    return rows


def put_suite_table(body: str, block: str) -> str:
    """``body`` with its suite block replaced by ``block`` (or added at the end of the Evaluation section)."""
    if SUITE_START in body:
        start, end = body.index(SUITE_START), body.index(SUITE_END) + len(SUITE_END)
        return body[:start] + block + body[end:]
    at = body.index('\n## Limitations')
    return body[:at] + '\n' + block + '\n' + body[at:]


def card_eval_rows(body: str, method: str) -> Dict[str, Any]:
    """The Hub metadata a card's own tables give: the first evaluation table (:func:`eval_table`, cards written by
    ``ship`` here) when it has one, else its suite block (cards written by ``benchmarks/ship_weights.py``)."""
    from ecgvit.cards import suite_rows

    if '| task | method | protocol | macro AUROC [95% CI] |' in body:
        return card_metadata(method, parse_eval_table(body), parse_pool_sources(body))
    return {'datasets': parse_pool_sources(body), 'eval_rows': suite_rows(parse_suite_table(body), 'this')}


def refresh_cards(weights_root: Path = REPO / 'weights', suite: Path = None,
                  shipped: Dict[str, str] = SHIPPED) -> List[Path]:
    """Rewrite the YAML metadata of each shipped card from the card's own tables, and with ``suite`` (an evaluation
    suite's ``results.csv``) its suite block; the rest of the body, the weights and ``config.json`` stay as they are."""
    from ecgvit.cards import encoder_card_data, front_matter, split_front_matter

    suite_rows = _read_csv(suite) if suite is not None else None
    written = []
    for method, name in shipped.items():
        folder = weights_root / name
        card = (folder / 'README.md').read_text()
        _, body = split_front_matter(card)
        if suite_rows is not None:
            source = os.path.relpath(suite, REPO) if Path(suite).resolve().is_relative_to(REPO) else str(suite)
            body = put_suite_table(body, suite_table(suite_rows, name, source))
        meta = card_eval_rows(body, method)
        config = json.loads((folder / 'config.json').read_text())
        atomic_write_text(folder / 'README.md', front_matter(encoder_card_data(config, **meta)) + body)
        written.append(folder / 'README.md')
    return written


def _queue_note(cfg: Dict[str, Any]) -> str:
    """The MoCo queue a run used and how many keys of each training record it held (issue 13: in every card)."""
    queue = cfg.get('pretrainer', {}).get('queue_size')
    if queue is None:
        return 'none (no MoCo branch)'
    n_train = cfg.get('data', {}).get('n_train')
    copies = cfg.get('data', {}).get('queue_copies_per_record') or (queue / n_train if n_train else None)
    return f'{queue} keys' + (f', {copies:.2f} per training record once full' if copies is not None else '')


def _card(method: str, model_name: str, run: Path, eval_dir: Path, dtype: str, check: Dict[str, Any]) -> str:
    cfg = json.loads((run / 'config.json').read_text())
    summary = json.loads((run / 'summary.json').read_text()) if (run / 'summary.json').is_file() else {}
    data = cfg.get('data', {})
    alpha = cfg.get('pretrainer', {}).get('alpha', cfg.get('method_kwargs', {}).get('alpha'))
    passes = ('one shared masked encoder pass, shared_pass=True' if cfg.get('pretrainer', {}).get('shared_pass')
              else "the paper's separate encoder passes, shared_pass=False")
    tc = cfg.get('train', {})  # the run's resolved TrainConfig
    pool_note = _pool_counts(Path(data['cache_dir'])) if data.get('cache_dir') else ''
    hours = float(summary.get('time_s', 0)) / 3600
    return f"""## Pretraining

| field | value |
|---|---|
| method | {method} (alpha = {alpha}; {passes}) |
| MoCo queue | {_queue_note(cfg)} |
| data | pretraining pool: {data.get('n_train')} training + {data.get('n_val')} validation windows of 10 s |
| epochs / optimiser steps | {summary.get('epochs')} / {summary.get('steps')} (the seed paper: 710 epochs) |
| optimiser | Adam lr {tc.get('lr')}, batch {tc.get('batch_size')}, {tc.get('warmup_epochs')} warm-up epochs, \
then ReduceLROnPlateau (factor {tc.get('plateau_factor')}, patience {tc.get('plateau_patience')}) on validation loss |
| precision | {summary.get('amp')} (chosen by measurement on the machine) |
| hardware | {_hardware(cfg.get('machine'))} |
| wall time | {hours:.2f} h |
| best validation loss | {summary.get('best_val_loss')} (epoch {summary.get('best_epoch')}) |
| stored as | {dtype} (bf16 is kept only when the linear-probe AUROC moves by at most {BF16_TOLERANCE}: \
{json.dumps(check) if check else 'not checked'}) |

![loss curve](loss_curve.png)

**Pretraining data.** The pool built by `ecgvit pretrain --data pool --data-dir shared/data`: PTB-XL v1.0.1 records
1-500 at 500 Hz without the evaluation folds 9 and 10, LUDB v1.0.1 (all 200 records), 141 PhysioNet/CinC Challenge
2020/2021 training records and 307 CODE-15% exams (PhysioNet Challenge 2025 format); records cut into 10-s windows
(shorter records zero-padded), resampled to 360 Hz, z-scored per lead; exact duplicate windows removed, including
challenge copies of held-out PTB-XL records. {pool_note}

{LICENCES}
## Evaluation

Test-set point estimates with 95% bootstrap CIs over test records (1000 resamples). PTB-XL superdiagnostic: folds 1-8
train, 9 validation, 10 test (this subset's records only); LUDB rhythm: the data layer's patient-wise split. Every
row uses the same splits and budget; `random` is an untrained encoder, `supervised` one trained from scratch on the
labels, `mae` and `moco` the single-task floors pretrained exactly like the hybrids.

{eval_table(eval_dir)}

**What the numbers say** (macro AUROC; generated from the table):

{verdict(method, eval_dir)}

## Limitations

- Pretrained for {summary.get('epochs')} epochs on about a thousand 10-s windows on a 2-core CPU: a tiny fraction of
  the seed paper's 710 epochs on tens of thousands of records. Treat these weights as a reproducible starting point,
  not as the paper's model.
- The evaluation test sets are small (tens of records), so the CIs are wide; differences inside them are not evidence.
- Inputs must be 12-lead, 10 s at 360 Hz, z-scored per lead, in the lead order above.
- **Not for clinical use.**
"""


def _registry(shas: Dict[str, str]) -> str:
    body = '\n'.join(f"    '{k}': '{v}'," for k, v in sorted(shas.items()))
    return ('"""sha256 of the weight files shipped in ``weights/``; generated by benchmarks/release_weights.py."""\n'
            f'WEIGHTS_SHA256 = {{\n{body}\n}}\n')


def _readme_table(eval_dir: Path, runs: Path) -> str:
    import ecgvit

    lines = ['| model | pretraining data | epochs | params | PTB-XL linear AUROC | PTB-XL fine-tune AUROC | '
             'LUDB rhythm linear AUROC |', '|---|---|---|---|---|---|---|']
    results = {t: {(r['method'], r['protocol']): r for r in _read_csv(eval_dir / t / 'results.csv')}
               for t in TASKS if (eval_dir / t / 'results.csv').is_file()}
    def cell(method: str, task: str, proto: str) -> str:
        row = results.get(task, {}).get((method, proto))
        if not row:
            return '-'
        return _fmt_ci(row, 'auroc_macro' if row.get('auroc_macro') else 'auroc_ovr')

    for method, name in SHIPPED.items():
        summary = json.loads((runs / method / 'summary.json').read_text())
        data = json.loads((runs / method / 'config.json').read_text()).get('data', {})
        n_params = sum(p.numel() for p in ecgvit.create_model(name).parameters())
        lines.append(f"| `{name}` | pool of {data.get('n_train', 0) + data.get('n_val', 0)} 10-s windows | "
                     f"{summary['epochs']} | {n_params / 1e6:.1f}M | "
                     f"{cell(method, 'ptbxl_superdiagnostic', 'linear')} | "
                     f"{cell(method, 'ptbxl_superdiagnostic', 'finetune')} | {cell(method, 'ludb_rhythm', 'linear')} |")
    return '\n'.join(lines)


def ship(args: argparse.Namespace) -> None:
    from ecgvit.hub import load_encoder, save_pretrained, sha256_file

    runs, eval_dir = Path(args.runs), Path(args.eval)
    check = json.loads((eval_dir / 'bf16_check.json').read_text()) if (eval_dir / 'bf16_check.json').is_file() else {}
    shas = {}
    for method, name in SHIPPED.items():
        run = runs / method
        enc, _ = load_encoder(run, name, NUM_SAMPLES)
        dtype = check.get(method, {}).get('dtype', 'float32')
        if dtype == 'bfloat16':
            enc = enc.to(torch.bfloat16)
        run_cfg = json.loads((run / 'config.json').read_text())
        out = REPO / 'weights' / name
        cache = run_cfg.get('data', {}).get('cache_dir')
        save_pretrained(enc, out, pretrained_cfg={
            'pretrain_method': method, 'preprocessing': run_cfg.get('preprocessing'),
            'license': 'apache-2.0', 'weights_dtype': dtype},
            card_extra=_card(method, name, run, eval_dir, dtype, check.get(method, {})),
            card_metadata=card_metadata(method, _eval_results(eval_dir), _pool_sources(Path(cache)) if cache else []))
        _loss_curve(run / 'metrics.csv', out / 'loss_curve.png', f'{name}: pretraining loss')
        shas[name] = sha256_file(out / 'model.safetensors')
        print(f'{out}: {dtype}, sha256 {shas[name]}')
    atomic_write_text(REPO / 'ecgvit' / 'weights_sha256.py', _registry(shas))
    readme = REPO / 'README.md'
    text = readme.read_text()
    if TABLE_START in text and TABLE_END in text:
        head, rest = text.split(TABLE_START, 1)
        _, tail = rest.split(TABLE_END, 1)
        atomic_write_text(readme, f'{head}{TABLE_START}\n{_readme_table(eval_dir, runs)}\n{TABLE_END}{tail}')
    (eval_dir / 'evaluation.md').write_text(eval_table(eval_dir) + '\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('evaluate', help='benchmark the pretrained encoders against their floors')
    p.add_argument('--runs', default='runs/weights', help='folder of `ecgvit pretrain` outputs, one per method')
    p.add_argument('--out', default='runs/eval')
    p.add_argument('--data-root', default=str(REPO.parent / 'shared' / 'data'))
    p.add_argument('--cache-dir', default='.cache')
    p.add_argument('--finetune-epochs', type=int, default=4, help='fine-tune (and supervised floor) epochs')
    p.add_argument('--patience', type=int, default=10)
    p.add_argument('--n-boot', type=int, default=1000)
    p.add_argument('--methods', default=','.join(METHODS), help='run folders under --runs to evaluate')
    p.add_argument('--tasks', default=','.join(TASKS), help='comma-separated tasks')
    p.add_argument('--protocols', default='linear,finetune', help='comma-separated protocols')
    p = sub.add_parser('ship', help='write weights/, the sha256 registry and the README table')
    p.add_argument('--runs', default='runs/weights')
    p.add_argument('--eval', default='runs/eval')
    p = sub.add_parser('cards', help="refresh the shipped cards' Hugging Face metadata from their own tables")
    p.add_argument('--weights', default=str(REPO / 'weights'), help='folder of the shipped model folders')
    p.add_argument('--suite', default=None, help="an evaluation suite's results.csv: (re)write each card's suite table")
    args = parser.parse_args()
    if args.command == 'cards':
        for path in refresh_cards(Path(args.weights), Path(args.suite) if args.suite else None):
            print(f'{path}: metadata refreshed')
        return
    {'evaluate': evaluate, 'ship': ship}[args.command](args)


if __name__ == '__main__':
    main()
