"""The release gate's supervised floor (benchmarks/supervised_floor.py): the gate task's own splits, a resumable run
that load_encoder reads, and the gate measuring it beside the candidate (suite fixture folders, real WFDB files)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import write_suite_folders

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ecgvit  # noqa: E402
from benchmarks.supervised_floor import SupervisedClassifier, main, task_datasets  # noqa: E402
from ecgvit.hub import load_encoder  # noqa: E402

TASK = 'ptbxl_superdiagnostic'


@pytest.fixture(scope='module')
def suite_data(tmp_path_factory):
    return write_suite_folders(tmp_path_factory.mktemp('supervised') / 'suite')


def _train(suite, out, cache, epochs):
    return main(['--data-dir', str(suite), '--out', str(out), '--cache-dir', str(cache), '--model', 'ecg_vit_tiny',
                 '--epochs', str(epochs), '--batch-size', '8', '--amp', 'fp32', '--threads', '1', '--no-progress',
                 '--resume'])


@pytest.fixture(scope='module')
def floor_run(suite_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('floor')
    assert _train(suite_data, tmp / 'run', tmp / 'cache', 1) == 0
    assert _train(suite_data, tmp / 'run', tmp / 'cache', 2) == 0  # a resumed second segment
    return tmp / 'run'


def test_datasets_are_the_suites_splits_of_the_task(suite_data, tmp_path):
    import pandas as pd

    task, data, facts = task_datasets(str(suite_data), TASK, ecgvit.create_model('ecg_vit_tiny'), tmp_path)
    assert facts['records'] == task.counts() == {s: len(data[s]) for s in ('train', 'val', 'test')}
    assert facts['labels'] == task.label_names and facts['kind'] == 'multilabel'
    folds = pd.read_csv(suite_data / 'ptbxl' / 'ptbxl_database.csv').set_index('ecg_id')['strat_fold']
    for split, allowed in (('train', set(range(1, 9))), ('val', {9}), ('test', {10})):
        ids = [int(task.keys[i].split('/')[1]) for i in task.indices(split)]
        assert ids and {int(folds[i]) for i in ids} <= allowed, split
    item = data['train'][0]
    assert item['x'].shape == (12, 3600) and torch.isfinite(item['x']).all()
    np.testing.assert_array_equal(item['target'].numpy(), task.y[task.indices('train')[0]])


def test_floor_run_resumes_and_loads_as_an_encoder(floor_run):
    cfg = json.loads((floor_run / 'config.json').read_text())
    assert cfg['method'] == 'supervised' and cfg['model'] == 'ecg_vit_tiny' and cfg['data']['task'] == TASK
    val_epochs = [r.split(',')[2] for r in (floor_run / 'metrics.csv').read_text().splitlines() if r.startswith('val')]
    assert val_epochs == ['0', '1']
    encoder, info = load_encoder(str(floor_run))
    assert encoder.num_classes == 0 and info['checkpoint'].endswith('best.safetensors')
    torch.manual_seed(0)
    init = ecgvit.create_model('ecg_vit_tiny')
    moved = [k for k, v in encoder.state_dict().items() if not torch.equal(v, init.state_dict()[k])]
    assert moved, 'the supervised floor did not train'


def test_classifier_losses_and_refusals():
    torch.manual_seed(0)
    x = torch.randn(3, 12, 3600)
    multi = SupervisedClassifier(ecgvit.create_model('ecg_vit_tiny', num_classes=4), 'multilabel')
    out = multi(x, torch.tensor([[1., 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]))
    assert out['loss'].ndim == 0 and out['loss'] > 0
    single = SupervisedClassifier(ecgvit.create_model('ecg_vit_tiny', num_classes=3), 'multiclass')
    assert single(x, torch.tensor([0, 2, 1]))['loss'] > 0
    with pytest.raises(ValueError, match='classification task'):
        SupervisedClassifier(ecgvit.create_model('ecg_vit_tiny', num_classes=1), 'regression')


def test_unknown_pooled_or_regression_tasks_are_clear_errors(suite_data, tmp_path):
    model = ecgvit.create_model('ecg_vit_tiny')
    with pytest.raises(ValueError, match='Unknown suite tasks'):
        task_datasets(str(suite_data), 'no_such_task', model, tmp_path)
    for task, what in (('sex', 'binary task over'), ('age', 'regression task')):
        with pytest.raises(ValueError, match=f'{what}.*classification task of one source'):
            task_datasets(str(suite_data), task, model, tmp_path)
    assert not (tmp_path / 'signals').exists()  # refused before any cache was built


def test_gate_refuses_a_floor_that_is_not_a_supervised_run(floor_run, tmp_path):
    import shutil

    from benchmarks.ship_weights import _supervised_facts

    fake = tmp_path / 'not_floor'
    shutil.copytree(floor_run, fake)
    cfg = json.loads((fake / 'config.json').read_text())
    (fake / 'config.json').write_text(json.dumps(dict(cfg, method='mae')))
    with pytest.raises(SystemExit, match="method 'mae'.*supervised_floor.py"):
        _supervised_facts(fake)


def test_gate_measures_the_floor_beside_the_candidate(floor_run, suite_data, tmp_path):
    from benchmarks.ship_weights import _card
    from benchmarks.ship_weights import main as ship_main
    from ecgvit.hub import save_pretrained

    torch.manual_seed(5)  # the "current" weights of the name: another init
    save_pretrained(ecgvit.create_model('ecg_vit_tiny'), tmp_path / 'current')
    gate_dir = tmp_path / 'gate'
    # The floor's own run stands in for the candidate: any run folder is one.
    rc = ship_main(['gate', '--run', f'ecg_vit_tiny={floor_run}', '--current', f'ecg_vit_tiny={tmp_path / "current"}',
                    '--supervised', str(floor_run), '--data-dir', str(suite_data), '--out', str(gate_dir),
                    '--cache-dir', str(tmp_path / 'cache'), '--tasks', TASK, '--n-boot', '50'])
    assert rc in (0, 3)
    d = json.loads((gate_dir / 'gate.json').read_text())['decisions']['ecg_vit_tiny']
    # the candidate is the floor's weights rounded to bf16: the paired difference is about 0
    assert d['vs_supervised']['other'] == 'supervised' and abs(d['vs_supervised']['diff']) < 0.05
    assert d['supervised_ci'][0] <= d['supervised'] <= d['supervised_ci'][1]
    assert d['supervised_facts']['epochs_done'] == 2 and d['supervised_facts']['task'] == TASK
    assert any(r.split(',')[:1] == [TASK] and ',supervised,' in r
               for r in (gate_dir / 'results.csv').read_text().splitlines())
    card = _card(d, gate_dir, [], {})
    assert '**Supervised floor.**' in card and f"{d['supervised']:.3f} [" in card


def test_a_stopped_floor_run_says_how_to_continue(monkeypatch, capsys, tmp_path):
    import signal

    import benchmarks.supervised_floor as floor
    from ecgvit.errors import RunStopped

    def stopped(args):
        raise RunStopped(signal.SIGTERM, 140, str(tmp_path / 'checkpoints'))

    monkeypatch.setattr(floor, 'train_floor', stopped)
    rc = main(['--data-dir', str(tmp_path), '--out', str(tmp_path / 'run'), '--cache-dir', str(tmp_path / 'cache'),
               '--threads', '1'])
    assert rc == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert 'stopped by SIGTERM after step 140' in err and '--resume' in err and 'Traceback' not in err
