"""The CPU ablation driver (benchmarks/cpu_ablation.py) and the ablation's questions (benchmarks/campaign/pairs.py):
which encoders are paired, how a suite output becomes the ablation table, and a whole run -> stop -> resume -> report
on tiny encoders and synthetic WFDB files."""
import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_fixtures import sine_leads, write_suite_folders, write_wfdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.campaign.pairs import comparison_pairs  # noqa: E402
from benchmarks.cpu_ablation import (  # noqa: E402
    ablation_markdown,
    ablation_rows,
    curves_markdown,
    epoch_means,
    first_epoch_below,
    job_progress,
    main,
    plan_jobs,
)


def _specs(*methods):
    out = [('random', 'random', {}, 'small')]
    for m in methods:
        method, _, alpha = m.partition('@')
        kw = {'alpha': float(alpha)} if alpha else {}
        out.append((m, method, kw, 'small'))
    return out


def test_comparison_pairs_ask_the_issues_questions():
    specs = _specs('mae', 'moco', 'mae_moco', 'mae_moco_shared', 'mae_moco@20', 'mae_nextclip_shared')
    got = set(comparison_pairs(specs))
    want = {(m, 'random', 'random') for m in ('mae', 'moco', 'mae_moco', 'mae_moco_shared', 'mae_moco@20',
                                              'mae_nextclip_shared')}
    for hybrid in ('mae_moco', 'mae_moco_shared', 'mae_moco@20', 'mae_nextclip_shared'):
        want |= {(hybrid, 'mae', 'mae'), (hybrid, 'moco', 'moco')}
    want |= {('mae_moco_shared', 'mae_moco', 'paper'), ('mae_moco@20', 'mae_moco', 'alpha')}
    # mae_nextclip_shared has no paper-pass job here: that pair is left out, not paired with something else
    assert got == want


def test_comparison_pairs_put_another_setting_against_the_default():
    specs = _specs('mae', 'mae_moco', 'mae_moco@20') + [
        ('mae-sincos', 'mae', {'decoder_pos_init': 'sincos'}, 'small'),
        ('mae_moco@20-sincos', 'mae_moco', {'alpha': 20.0, 'decoder_pos_init': 'sincos'}, 'small')]
    got = comparison_pairs(specs)
    assert ('mae-sincos', 'mae', 'setting') in got and ('mae-sincos', 'random', 'random') in got
    # The setting is compared at the same alpha; the alpha at the same setting (no such job here: left out).
    assert ('mae_moco@20-sincos', 'mae_moco@20', 'setting') in got
    assert not [p for p in got if p[0] == 'mae_moco@20-sincos' and p[2] == 'alpha']
    assert not [p for p in got if p[0] in ('mae', 'mae_moco') and p[2] == 'setting']


def test_comparison_pairs_stay_within_an_architecture():
    specs = [('mae-s', 'mae', {}, 'small'), ('mae_moco-t', 'mae_moco', {}, 'tiny'), ('random-t', 'random', {}, 'tiny')]
    assert comparison_pairs(specs) == [('mae_moco-t', 'random-t', 'random')]


def test_plan_jobs_names_and_refuses_duplicates():
    assert plan_jobs('mae,mae_moco:alpha=20', 'ecg_vit_small') == [
        ('small-mae', 'mae', {}), ('small-mae_moco-alpha20', 'mae_moco', {'alpha': 20})]
    with pytest.raises(SystemExit, match='twice'):
        plan_jobs('mae,mae', 'ecg_vit_small')


def _suite_rows():
    results = [{'task': 't', 'metric': 'auroc', 'fraction': '1.0', 'encoder': e, 'mean': m, 'ci_lo': m - .05,
                'ci_hi': m + .05, 'n_test': 100} for e, m in (('random', .70), ('mae', .80), ('moco', .78),
                                                               ('mae_moco', .85))]
    results.append(dict(results[-1], task='other', mean=.1))  # another task must not leak in
    pw = [
        # the suite stores each pair once, in its own order: (random, mae) means random - mae
        {'task': 't', 'metric': 'auroc', 'fraction': 1, 'encoder_a': 'random', 'encoder_b': 'mae', 'diff': -.10,
         'diff_lo': -.15, 'diff_hi': -.05},
        {'task': 't', 'metric': 'auroc', 'fraction': 1, 'encoder_a': 'mae_moco', 'encoder_b': 'random', 'diff': .15,
         'diff_lo': .10, 'diff_hi': .20},
        {'task': 't', 'metric': 'auroc', 'fraction': 1, 'encoder_a': 'mae', 'encoder_b': 'mae_moco', 'diff': -.05,
         'diff_lo': -.08, 'diff_hi': -.01},
        {'task': 't', 'metric': 'auroc', 'fraction': 1, 'encoder_a': 'mae_moco', 'encoder_b': 'moco', 'diff': .07,
         'diff_lo': -.01, 'diff_hi': .12},
    ]
    return results, pw


def test_ablation_rows_orient_each_difference_as_a_minus_b():
    results, pw = _suite_rows()
    rows = ablation_rows(results, pw, _specs('mae', 'moco', 'mae_moco'), 't', 'auroc', 1.0)
    by = {r['encoder']: r for r in rows}
    assert list(by) == ['random', 'mae', 'moco', 'mae_moco']
    assert by['mae']['vs']['random'] == {'b': 'random', 'diff': .10, 'lo': .05, 'hi': .15, 'verdict': 'better'}
    hyb = by['mae_moco']['vs']
    assert hyb['mae']['diff'] == pytest.approx(.05) and hyb['mae']['verdict'] == 'better'
    assert hyb['moco']['verdict'] == 'no difference shown'
    assert 'random' not in by['moco']['vs']  # that pair is not in the suite output: no made-up cell
    assert by['mae_moco']['mean'] == .85
    md = ablation_markdown(rows, {'mae_moco': {'epochs': 7, 'finished': False, 'time_s': 420.0},
                                  'mae': {'epochs': 100, 'finished': True},
                                  'moco': {'epochs': 12, 'finished': False}}, '# T')
    assert ('| mae_moco | 7 (unfinished) | 7 min (60 s/epoch) | 0.850 [0.800, 0.900] | +0.150 [+0.100, +0.200] better '
            '| +0.050 ') in md
    # A comparison with an encoder that has not finished its budget says so in its cell.
    assert 'no difference shown (against 12 epochs of unfinished moco)' in md
    cells = md.split('| mae_moco |')[1].split('\n')[0].split('|')
    assert cells[4].strip() == '+0.050 [+0.010, +0.080] better'  # MAE-only finished its budget: no caveat
    assert '| mae | 100 | - | 0.800' in md and 'vs MoCo-only' in md


def _write_metrics(folder, rows):
    folder.mkdir(parents=True)
    with open(folder / 'metrics.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['kind', 'step', 'epoch', 'loss', 'val_loss', 'loss_mae'])
        w.writerows(rows)


def test_epoch_means_average_each_epochs_training_rows(tmp_path):
    # Epoch 0 of the file is the first epoch (1); validation rows and rows without the column are left out.
    _write_metrics(tmp_path / 'a', [['train', 5, 0, 2.0, '', 1.0], ['train', 10, 0, 2.0, '', 0.5],
                                    ['val', 10, 0, '', 9.0, ''], ['train', 15, 1, 2.0, '', ''],
                                    ['train', 20, 1, 2.0, '', 0.25], ['train', 25, 2, 2.0, '', 0.125]])
    means = epoch_means(tmp_path / 'a')
    assert means == {1: 0.75, 2: 0.25, 3: 0.125}
    assert epoch_means(tmp_path / 'a', 'loss') == {1: 2.0, 2: 2.0, 3: 2.0}
    assert epoch_means(tmp_path / 'a', 'loss_moco') == {} and epoch_means(tmp_path / 'none') == {}
    assert first_epoch_below(means, 0.3) == 2 and first_epoch_below(means, 0.1) is None
    md = curves_markdown({'a': means, 'b': {1: 0.9, 2: 0.8}}, 'loss_mae', every=2, below=0.3)
    lines = md.splitlines()
    # Epoch 1, every 2nd, and each run's last epoch are columns; a run without an epoch leaves its cell empty.
    assert lines[2] == '| run | 1 | 2 | 3 | first epoch below 0.3 |'
    assert lines[4] == '| a | 0.750 | 0.250 | 0.125 | 2 |'
    assert lines[5] == '| b | 0.900 | 0.800 |  | - |'


def _pool(folder, n=24):
    for i in range(n):
        write_wfdb(folder / 'mine', f'r{i:02d}', sine_leads(100.0, 1000, freq=1 + i / 10), 100.0)
    return folder


def test_run_stop_resume_and_report(tmp_path):
    data = _pool(tmp_path / 'data')
    root = tmp_path / 'abl'
    common = ['--root', str(root), '--jobs', 'mae,mae_moco_shared', '--model', 'ecg_vit_tiny', '--epochs', '2']
    run = ['run', *common, '--data-dir', str(data), '--cache-dir', str(tmp_path / 'cache'), '--sampling-rate', '100',
           '--num-samples', '1000', '--batch-size', '8', '--save-every', '2', '--amp', 'fp32', '--nice', '0',
           '--poll-s', '0.2']
    # A deadline already past: nothing starts, the call says it stopped (3), and a later call continues.
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(run + ['--hours', '0']) == 3
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # the caller's, back
    assert not (root / 'tiny-mae').exists()
    assert main(run) == 0
    for name in ('tiny-mae', 'tiny-mae_moco_shared'):
        p = job_progress(root / name)
        assert p['finished'] and p['epochs'] == 2 and p['best'], (name, p, (root / f'{name}.log').read_text()[-2000:])
    assert main(['status', *common]) == 0
    assert main(run) == 0  # all finished: nothing runs again
    # The comparison is at equal budget: another budget in the same root is refused.
    with pytest.raises(SystemExit, match='other settings'):
        main([*run, '--epochs', '3'])

    suite = write_suite_folders(tmp_path / 'suite')
    out = tmp_path / 'report'
    assert main(['report', *common, '--data-dir', str(suite), '--out', str(out), '--cache-dir',
                 str(tmp_path / 'suite_cache'), '--n-boot', '100']) == 0
    data = json.loads((out / 'ablation.json').read_text())
    rows = {r['encoder']: r for r in data['rows']}
    assert set(rows) == {'random', 'tiny-mae', 'tiny-mae_moco_shared'}
    assert set(rows['tiny-mae_moco_shared']['vs']) == {'random', 'mae'}  # no MoCo-only, no paper-pass job here
    assert data['progress']['tiny-mae']['epochs'] == 2 and data['progress']['tiny-mae']['amp'] == 'fp32'
    md = (out / 'ablation.md').read_text()
    # Beside the scores, when each job's MAE term fell: both jobs have one, two epochs each.
    curves_md = (out / 'curves.md').read_text()
    assert '| tiny-mae | ' in curves_md and '| tiny-mae_moco_shared | ' in curves_md and '| 1 | 2 |' in curves_md
    assert main(['curves', *common, '--every', '1']) == 0
    assert main(['curves', *common, '--column', 'loss_nextclip']) == 1  # no job logged it: said, not an empty table
    assert 'tiny-mae_moco_shared | 2 |' in md and '(PTB-XL fold 10 test' in md and 's/epoch, fp32)' in md
    assert md.startswith('# Ablation at `ecg_vit_tiny`, 2 epochs each')
    assert main(['report', *common, '--data-dir', str(suite), '--out', str(tmp_path / 'titled'), '--cache-dir',
                 str(tmp_path / 'suite_cache'), '--n-boot', '100', '--title', 'The question it answers']) == 0
    titled = (tmp_path / 'titled' / 'ablation.md').read_text()
    assert titled.startswith('# The question it answers\n') and titled.split('\n', 1)[1] == md.split('\n', 1)[1]
    # The per-record predictions stay, compressed: every encoder's score on every test record.
    assert not (out / 'predictions.csv').exists()
    with gzip.open(out / 'predictions.csv.gz', 'rt') as f:
        pred = list(csv.DictReader(f))
    assert {r['encoder'] for r in pred} == {'random', 'tiny-mae', 'tiny-mae_moco_shared'}
    assert len({r['record_id'] for r in pred}) == rows['tiny-mae']['n_test']
    # From the kept file alone, a later comparison gives exactly the suite's paired CI.
    from benchmarks.paired_predictions import compare

    with open(out / 'pairwise.csv', newline='') as f:
        suite_row = next(r for r in csv.DictReader(f) if r['task'] == 'ptbxl_superdiagnostic' and r['metric'] == 'auroc'
                         and {r['encoder_a'], r['encoder_b']} == {'tiny-mae', 'tiny-mae_moco_shared'})
    kept = out / 'predictions.csv.gz'
    r = compare((kept, suite_row['encoder_a']), (kept, suite_row['encoder_b']), 'ptbxl_superdiagnostic', 'auroc',
                n_boot=100)
    for key in ('diff', 'diff_lo', 'diff_hi'):
        assert r[key] == pytest.approx(float(suite_row[key]), abs=1e-5), key


def test_deadline_stops_a_running_job_even_when_sigint_is_ignored(tmp_path):
    """Started as `nohup cpu_ablation.py run ... &`, the driver inherits SIGINT ignored; its jobs must still stop at
    the deadline on SIGINT (the grace before SIGTERM is longer than the test's timeout), keeping their folders."""
    data = _pool(tmp_path / 'data')
    root = tmp_path / 'abl'
    cmd = [sys.executable, str(ROOT / 'benchmarks' / 'cpu_ablation.py'), 'run', '--root', str(root), '--jobs', 'mae',
           '--model', 'ecg_vit_tiny', '--epochs', '500', '--data-dir', str(data), '--cache-dir', str(tmp_path / 'c'),
           '--sampling-rate', '100', '--num-samples', '1000', '--batch-size', '8', '--amp', 'fp32', '--nice', '0',
           '--poll-s', '0.2', '--hours', str(10 / 3600), '--grace-s', '900']
    r = subprocess.run(cmd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN), capture_output=True,
                       text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 3, r.stdout + r.stderr  # stopped, resumable; not finished and not failed
    assert 'stopped at the deadline' in r.stdout
    assert not job_progress(root / 'tiny-mae')['finished']
    assert (root / 'tiny-mae.log').is_file() and json.loads((root / 'plan.json').read_text())['epochs'] == 500


def test_sigterm_to_the_driver_stops_its_jobs(tmp_path):
    """`kill DRIVER` must not leave the jobs running as orphans: they stop on SIGINT as at a deadline, resumable."""
    data = _pool(tmp_path / 'data')
    root = tmp_path / 'abl'
    cmd = [sys.executable, str(ROOT / 'benchmarks' / 'cpu_ablation.py'), 'run', '--root', str(root), '--jobs', 'mae',
           '--model', 'ecg_vit_tiny', '--epochs', '500', '--data-dir', str(data), '--cache-dir', str(tmp_path / 'c'),
           '--sampling-rate', '100', '--num-samples', '1000', '--batch-size', '8', '--amp', 'fp32', '--nice', '0',
           '--poll-s', '0.2', '--grace-s', '900']
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS='1'))
    log = root / 'tiny-mae' / 'metrics.csv'
    t0 = time.time()
    while not (log.is_file() and 'val' in log.read_text()) and time.time() - t0 < 180:  # an epoch is done
        time.sleep(0.5)
    driver.send_signal(signal.SIGTERM)
    out, _ = driver.communicate(timeout=240)
    assert driver.returncode == 3, out
    assert 'SIGTERM: stopping every job' in out and 'tiny-mae: stopped on SIGTERM after epoch' in out
    assert subprocess.run(['pgrep', '-f', str(root / 'tiny-mae')], capture_output=True).returncode == 1  # no orphan
    p = job_progress(root / 'tiny-mae')
    assert not p['finished'] and p['epochs'] >= 1
