"""Benchmark harness: `ecgvit benchmark --quick` end to end (a method subset) and table formatting."""
import csv
import json
import math

import pytest

from ecgvit.benchmark import format_table, quick_config
from ecgvit.cli import main


def test_format_table_skips_metrics_that_never_apply():
    rows = [{'method': 'random', 'protocol': 'linear', 'auroc_macro': 0.71, 'auroc_macro_lo': 0.6,
             'auroc_macro_hi': 0.8, 'auc_ovo': '', 'f1_macro': math.nan},
            {'method': 'mae', 'protocol': 'linear', 'error': 'boom'}]
    table = format_table(rows)
    assert 'AUROC macro' in table and 'AUC OvO' not in table and 'F1 macro' not in table
    assert '0.710 [0.600, 0.800]' in table and 'failed: boom' in table


def test_quick_config_is_tiny():
    cfg = quick_config('x')
    assert cfg.model == 'ecg_vit_tiny' and cfg.data == 'synthetic' and cfg.num_samples <= 1000


def _rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_quick_benchmark_cli(tmp_path, capsys):
    import ecgvit
    from ecgvit.hub import save_pretrained

    out = tmp_path / 'quick'
    save_pretrained(ecgvit.create_model('ecg_vit_tiny', img_size=500), tmp_path / 'mine')
    # The --quick preset with its slowest parts cut further (options given on the command line win over it).
    rc = main(['benchmark', '--quick', '--methods', 'mae_moco,mae_moco_shared', '--protocols', 'linear,finetune',
               '--out', str(out),
               '--synthetic-records', '120', '--pretrain-epochs', '1', '--finetune-epochs', '1', '--probe-epochs', '20',
               '--n-boot', '50', '--no-progress', '--checkpoint', f'mine={tmp_path / "mine"}'])
    assert rc == 0
    rows = _rows(out / 'results.csv')
    # random and supervised are always included, first; a --checkpoint row is evaluated from its weights.
    assert [(r['method'], r['protocol']) for r in rows] == [
        (m, p) for m in ('random', 'supervised', 'mae_moco', 'mae_moco_shared', 'mine') for p in ('linear', 'finetune')]
    # The hybrid is the paper's method; _shared runs ecgvit's shared pass, side by side in one table.
    passes = {m: json.loads((out / 'pretrain' / m / 'config.json').read_text())['pretrainer']['shared_pass']
              for m in ('mae_moco', 'mae_moco_shared')}
    assert passes == {'mae_moco': False, 'mae_moco_shared': True}
    assert rows[-1]['checkpoint'].endswith('mine') and float(rows[-1]['pretrain_time_s']) == 0.0
    assert main(['benchmark', '--quick', '--checkpoint', 'mae_moco', '--out', str(tmp_path / 'x')]) == 2
    for r in rows:
        assert r['error'] == ''
        for k in ('auc_ovo', 'auroc_ovr', 'f1_macro', 'accuracy'):
            assert float(r[f'{k}_lo']) <= float(r[k]) + 1e-9 <= float(r[f'{k}_hi']) + 2e-9
    printed = capsys.readouterr().out
    assert '| mae_moco | finetune |' in printed
    assert (out / 'results.md').read_text().count('\n|') >= 7
    assert (out / 'results.png').stat().st_size > 1000 and (out / 'config.json').is_file()
    assert (out / 'pretrain' / 'mae_moco' / 'checkpoints' / 'best.safetensors').is_file()
    resolved = json.loads((out / 'config.json').read_text())
    assert resolved['synthetic_records'] == 120 and resolved['model'] == 'ecg_vit_tiny' and resolved['n_boot'] == 50


@pytest.mark.slow  # the README's main job, end to end: under a minute on 2 cores
def test_full_quick_benchmark_writes_every_row(tmp_path):
    assert main(['benchmark', '--quick', '--out', str(tmp_path), '--no-progress']) == 0
    rows = _rows(tmp_path / 'results.csv')
    assert len(rows) == 12 and not [r for r in rows if r.get('error')]


def _linear_args(out, methods: str, pretrain_epochs: int, probe_epochs: int) -> list:
    """A small linear-probe benchmark on 120 synthetic records, no bootstrap."""
    return ['benchmark', '--quick', '--methods', methods, '--protocols', 'linear', '--out', str(out),
            '--synthetic-records', '120', '--pretrain-epochs', str(pretrain_epochs), '--probe-epochs',
            str(probe_epochs), '--n-boot', '0', '--no-progress']


def test_rerun_into_the_same_folder_is_refused_up_front_and_resume_reuses_the_runs(tmp_path, capsys):
    out = tmp_path / 'b'
    args = _linear_args(out, 'mae', pretrain_epochs=1, probe_epochs=20)
    assert main(args) == 0
    before = (out / 'results.csv').read_text()
    steps = (out / 'pretrain' / 'mae' / 'metrics.csv').read_text()
    capsys.readouterr()
    # A fresh benchmark would fail on the earlier pretraining run: refused before any work, results kept.
    assert main(args) == 2
    err = capsys.readouterr().err
    assert 'earlier benchmark (mae)' in err and '--resume' in err
    assert (out / 'results.csv').read_text() == before
    # --resume reuses the finished run (no step is trained again) and gives the same table.
    assert main(args + ['--resume']) == 0
    assert (out / 'pretrain' / 'mae' / 'metrics.csv').read_text() == steps
    metrics = ('method', 'auc_ovo', 'auroc_ovr', 'accuracy')
    assert [[r[k] for k in metrics] for r in _rows(out / 'results.csv')] == \
        [[r[k] for k in metrics] for r in csv.DictReader(before.splitlines())]
    # Settings the runs depend on must be the earlier benchmark's.
    capsys.readouterr()
    assert main(args + ['--resume', '--seed', '1']) == 2
    assert 'seed 0 there, 1 here' in capsys.readouterr().err


def test_resume_reuses_the_supervised_baseline_only_if_made_the_same_way(tmp_path, caplog):
    from ecgvit.train.checkpoint import best_info

    out = tmp_path / 'b'
    args = _linear_args(out, 'random', pretrain_epochs=2, probe_epochs=10)
    assert main(args) == 0
    sup = out / 'pretrain' / 'supervised'
    first = best_info(sup)
    assert first['made_with']['finetune']['epochs'] == 2 and first['made_with']['n_train'] > 0
    weights = (sup / 'best.safetensors').read_bytes()
    rows = {r['method']: r for r in _rows(out / 'results.csv')}
    # Resumed: the seeded baseline is read back, not trained again, and scores the same.
    with caplog.at_level('INFO', logger='ecgvit.benchmark'):
        assert main(args + ['--resume']) == 0
    assert 'reusing the weights the earlier benchmark trained' in caplog.text
    assert (sup / 'best.safetensors').read_bytes() == weights
    again = {r['method']: r for r in _rows(out / 'results.csv')}
    assert again['supervised']['auc_ovo'] == rows['supervised']['auc_ovo']
    assert again['supervised']['pretrain_time_s'] == rows['supervised']['pretrain_time_s']
    # Another recipe for it (the fine-tuning lr it trains with): trained again, and the reason is named.
    caplog.clear()
    with caplog.at_level('INFO', logger='ecgvit.benchmark'):
        assert main(args + ['--resume', '--finetune-lr', '5e-4']) == 0
    assert 'training again: the earlier weights were made with other finetune' in caplog.text
    assert best_info(sup)['made_with']['finetune']['lr'] == 5e-4
    # Damaged weights are trained again with a warning, not a failed row.
    (sup / 'best.safetensors').write_bytes(b'not safetensors')
    caplog.clear()
    with caplog.at_level('INFO', logger='ecgvit.benchmark'):
        assert main(args + ['--resume', '--finetune-lr', '5e-4']) == 0
    assert 'the earlier weights cannot be used' in caplog.text
    assert not [r for r in _rows(out / 'results.csv') if r.get('error')]



def test_checkpoint_rows_set_the_architecture_of_every_row(tmp_path, capsys):
    import ecgvit
    from ecgvit.hub import checkpoint_architecture, save_pretrained

    save_pretrained(ecgvit.create_model('ecg_vit_small', img_size=500), tmp_path / 'small')
    save_pretrained(ecgvit.create_model('ecg_vit_tiny', img_size=500), tmp_path / 'tiny')
    assert checkpoint_architecture(tmp_path / 'small') == 'ecg_vit_small'
    out = tmp_path / 'b'
    common = ['benchmark', '--quick', '--methods', 'random', '--protocols', 'linear', '--synthetic-records', '120',
              '--pretrain-epochs', '1', '--probe-epochs', '5', '--n-boot', '0', '--no-progress']
    # Without --model, the floors are built as the checkpoint's architecture (the preset's tiny one failed to load it).
    assert main(common + ['--checkpoint', f'mine={tmp_path / "small"}', '--out', str(out)]) == 0
    assert 'note: --model ecg_vit_small' in capsys.readouterr().err
    assert json.loads((out / 'config.json').read_text())['model'] == 'ecg_vit_small'
    assert main(common + ['--checkpoint', f'a={tmp_path / "small"}', '--checkpoint', f'b={tmp_path / "tiny"}',
                          '--out', str(tmp_path / 'c')]) == 2
    assert 'different architectures (a: ecg_vit_small, b: ecg_vit_tiny)' in capsys.readouterr().err
