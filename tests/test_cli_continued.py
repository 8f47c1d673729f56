"""`ecgvit pretrain --pretrained / --checkpoint`: continued pretraining from existing encoder weights."""
import json
import warnings

import pytest
import torch
from continued_runs import COMMON, TINY_DATA, capture_pretrainer

import ecgvit
from ecgvit.cli import main
from ecgvit.hub import encoder_weights_file, sha256_file
from ecgvit.weights import load_weights_file
from ecgvit.weights_sha256 import WEIGHTS_SHA256

pytestmark = pytest.mark.usefixtures('one_thread')


def test_checkpoint_starts_the_encoder_and_the_momentum_encoder(source_run, tmp_path, monkeypatch):
    root, source = source_run
    seen = capture_pretrainer(monkeypatch)
    # No --model: the architecture is the checkpoint's (ecg_vit_tiny), not the method's default (seed size).
    rc = main(['pretrain', '--method', 'mae_moco', '--checkpoint', str(source), *COMMON, '--queue-size', '16',
               '--cache-dir', str(root / 'data'), '--epochs', '1', '--output', str(tmp_path / 'run')])
    assert rc == 0
    pretrainer, run_config = seen['pretrainer'], seen['run_config']
    assert run_config['model'] == 'ecg_vit_tiny'
    weights = encoder_weights_file(source)
    assert run_config['init'] == {'checkpoint': str(source.resolve()), 'weights_sha256': sha256_file(weights)}
    # The run's best weights hold its whole pretrainer; the encoder's tensors are those under 'encoder.'.
    stored = {k.removeprefix('encoder.'): v for k, v in load_weights_file(weights).items() if k.startswith('encoder.')}
    encoder = pretrainer.encoder.state_dict()
    momentum = pretrainer.moco.momentum_encoder.state_dict()
    assert set(stored) == set(encoder) - {k for k in encoder if k.startswith('head.')}
    for key, value in stored.items():
        torch.testing.assert_close(encoder[key], value.to(encoder[key].dtype), rtol=0, atol=0, msg=key)
        torch.testing.assert_close(momentum[key], value.to(momentum[key].dtype), rtol=0, atol=0, msg=key)


def test_a_continued_run_records_its_start_and_keeps_it_on_resume(source_run, tmp_path, capsys):
    root, source = source_run
    out = tmp_path / 'run'
    base = ['pretrain', '--method', 'mae', *COMMON, '--cache-dir', str(root / 'data'), '--output', str(out)]
    assert main([*base, '--checkpoint', str(source), '--epochs', '1']) == 0
    init = json.loads((out / 'config.json').read_text())['init']
    assert init['weights_sha256'] == sha256_file(encoder_weights_file(source))
    # Resumed without the flag: the run still says where it started.
    assert main([*base, '--resume', '--epochs', '2']) == 0
    assert json.loads((out / 'config.json').read_text())['init'] == init
    # The exported encoder says where its pretraining started.
    assert json.loads((out / 'encoder' / 'config.json').read_text())['pretrained_cfg']['pretrain_init'] == init
    capsys.readouterr()
    # Resumed with other starting weights: refused in one line, nothing overwritten.
    before = (out / 'config.json').read_bytes()
    rc = main([*base, '--resume', '--epochs', '3', '--checkpoint', str(out / 'encoder')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and 'cannot change where it started' in err
    assert (out / 'config.json').read_bytes() == before
    # A run that started from a random init cannot be resumed as if it had started from weights.
    rc = main(['pretrain', '--method', 'mae', *COMMON, '--cache-dir', str(root / 'data'), '--output', str(source),
               '--resume', '--epochs', '2', '--checkpoint', str(out / 'encoder')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and 'started from a random init' in err
    # Nor with --pretrained for an architecture without published weights: the resume is what is wrong, not the
    # weights (it said "ecg_vit_tiny has no published weights").
    rc = main(['pretrain', '--method', 'mae', *COMMON, '--cache-dir', str(root / 'data'), '--output', str(source),
               '--resume', '--epochs', '2', '--pretrained'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and 'started from a random init' in err and 'no published weights' not in err


@pytest.mark.parametrize('argv, expected', [
    (['--model', 'ecg_vit_tiny', '--pretrained'], 'ecg_vit_tiny has no published weights'),
    (['--pretrained', '--checkpoint', 'x'], 'give one'),
    (['--model', 'ecg_vit_tiny', '--checkpoint', '/nonexistent/run'], '--checkpoint /nonexistent/run'),
])
def test_bad_starting_weights_give_one_line(argv, expected, tmp_path, capsys):
    rc = main(['pretrain', '--method', 'mae', *argv, *TINY_DATA, '--output', str(tmp_path / 'run')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / 'run').exists()


def test_a_checkpoint_of_another_architecture_is_refused(source_run, tmp_path, capsys):
    root, source = source_run  # its exported encoder/ is a save_pretrained folder of ecg_vit_tiny
    rc = main(['pretrain', '--method', 'mae', '--model', 'ecg_vit_small', '--checkpoint', str(source / 'encoder'),
               *COMMON, '--cache-dir', str(root / 'data'), '--epochs', '1', '--output', str(tmp_path / 'run')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and 'holds ecg_vit_tiny weights, not ecg_vit_small' in err


def test_pretrained_starts_from_the_published_weights(tmp_path, monkeypatch, capsys):
    """--pretrained: the shipped, sha256-checked weights of the named model; data made otherwise are refused."""
    seen = capture_pretrainer(monkeypatch)
    data = ['--data', 'synthetic', '--synthetic-records', '8', '--no-progress', '--cache-dir', str(tmp_path / 'data')]
    rc = main(['pretrain', '--method', 'mae', '--pretrained', *data, '--sampling-rate', '100', '--num-samples', '500',
               '--output', str(tmp_path / 'wrong')])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and '360' in err and len(err.splitlines()) == 1  # the weights were trained at 360 Hz, 3600 samples
    rc = main(['pretrain', '--method', 'mae', '--pretrained', *data, '-b', '4', '--amp', 'fp32', '--threads', '1',
               '--epochs', '1', '--output', str(tmp_path / 'run')])
    assert rc == 0
    run_config = seen['run_config']
    assert run_config['model'] == 'ecg_vit_mae_moco'  # the method's registered name
    sha = WEIGHTS_SHA256['ecg_vit_mae_moco']
    assert run_config['init'] == {'pretrained': 'ecg_vit_mae_moco', 'weights_sha256': sha}
    assert run_config['preprocessing']['num_samples'] == 3600  # the weights' input length, not given on the line
    published = ecgvit.create_model('ecg_vit_mae_moco', pretrained=True).state_dict()
    started = seen['pretrainer'].encoder.state_dict()
    assert all(torch.equal(started[k], v) for k, v in published.items())


def test_a_checkpoint_continued_on_other_data_says_so(source_run, tmp_path, monkeypatch):
    """--data defaults to generated records: continuing a run's weights without --data warns, naming the run's data."""
    root, source = source_run
    capture_pretrainer(monkeypatch)
    base = ['pretrain', '--method', 'mae', '--checkpoint', str(source), '-b', '8', '--warmup-epochs', '1', '--amp',
            'fp32', '--threads', '1', '--epochs', '1', '--no-progress', '--sampling-rate', '100', '--num-samples',
            '500', '--cache-dir', str(root / 'data')]
    with pytest.warns(UserWarning, match=r'was pretrained on --data synthetic; this run reads --data folder'):
        main([*base, '--data', 'folder', '--data-dir', str(_folder(tmp_path / 'ecgs')), '--output',
              str(tmp_path / 'other')])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        assert main([*base, *TINY_DATA[:4], '--output', str(tmp_path / 'same')]) == 0
    assert not [w for w in seen if 'was pretrained on' in str(w.message)]  # the run's own data: no word about it


def _folder(path):
    from data_fixtures import write_wfdb

    from ecgvit.data import synthesize_ecg

    for i in range(24):
        write_wfdb(path, f'r{i:02d}', synthesize_ecg('NSR', fs=100.0, duration_s=5.0, rng=i).signal, 100.0)
    return path
