"""Where data meet a model on the command line: probe, finetune, embed and benchmark refuse data that are not what
the encoder's weights were trained on, with the fix, before building anything; an untrained encoder takes any rate."""
import json

import numpy as np
import pytest
import torch

from ecgvit.cli import main

pytestmark = pytest.mark.usefixtures('one_thread')

# The run below trains at 100 Hz x 500 samples; the mismatching data are 200 Hz x 1000 (also 5 s).
TINY = ['--data', 'synthetic', '--synthetic-records', '40', '--no-progress']
RUN_RATE = ['--sampling-rate', '100', '--num-samples', '500']
OTHER_RATE = ['--sampling-rate', '200', '--num-samples', '1000']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli_data')
    out = root / 'pt'
    threads = torch.get_num_threads()
    rc = main(['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', *TINY, *RUN_RATE, '--cache-dir',
               str(root / 'data'), '--epochs', '1', '-b', '8', '--warmup-epochs', '1', '--amp', 'fp32',
               '--threads', '1', '--output', str(out)])
    torch.set_num_threads(threads)
    assert rc == 0
    return root, out


def _fails_with(capsys, argv, *parts):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    for part in parts:
        assert part in err, err
    return err


def test_loaded_run_carries_its_recipe(run):
    from ecgvit.hub import load_encoder

    _, out = run
    enc, _ = load_encoder(out, None, 500)
    assert enc.pretrained_cfg['preprocessing']['sampling_rate'] == 100.0
    assert enc.pretrained_cfg['preprocessing']['num_samples'] == 500
    # The run's method (an ONNX export's metadata said 'unknown'), and no published weights' digest.
    assert enc.pretrained_cfg['pretrain_method'] == 'mae' and enc.pretrained_cfg['sha256'] is None


@pytest.mark.parametrize('command', ['probe', 'finetune'])
def test_eval_commands_refuse_data_the_weights_were_not_trained_on(command, run, capsys, tmp_path):
    root, out = run
    for checkpoint in (out, out / 'encoder'):  # a run folder and its save_pretrained export
        _fails_with(capsys, [command, '--checkpoint', str(checkpoint), *TINY, *OTHER_RATE, '--cache-dir',
                             str(tmp_path / 'cache'), '--output', str(tmp_path / 'o')],
                    f'--checkpoint {checkpoint}: ', 'sampling rate: data 200 Hz, model 100 Hz',
                    'length: data 1000 samples, model 500 samples', '--sampling-rate 100 --num-samples 500')
    assert not (tmp_path / 'cache').exists()  # refused before any data were generated or cached
    assert main([command, '--checkpoint', str(out), *TINY, *RUN_RATE, '--cache-dir', str(root / 'data'),
                 '--epochs', '1', '-b', '8', '--n-boot', '0', '--output', str(tmp_path / 'ok')]) == 0


def test_untrained_encoder_takes_any_rate(capsys, tmp_path):
    assert main(['probe', '--model', 'ecg_vit_tiny', *TINY, *OTHER_RATE, '--epochs', '1', '-b', '8', '--n-boot', '0',
                 '--output', str(tmp_path)]) == 0


def test_embed_uses_the_weights_recipe_and_refuses_other_data(run, capsys, tmp_path):
    root, out = run
    wfdb_dir = next((root / 'data').glob('synthetic-*'))
    # No --sampling-rate / --num-samples: the recipe comes from the weights' pretrained cfg.
    assert main(['embed', '--checkpoint', str(out / 'encoder'), '--input', str(wfdb_dir), '--no-progress',
                 '--output', str(tmp_path / 'e1')]) == 0
    manifest = json.loads((tmp_path / 'e1' / 'cache' / 'manifest.json').read_text())
    assert manifest['preprocessing']['sampling_rate'] == 100.0 and manifest['preprocessing']['num_samples'] == 500
    emb = np.load(tmp_path / 'e1' / 'embeddings.npy')
    assert emb.shape == (40, 64)
    # The same embeddings from the run folder (the recipe recorded in its config.json).
    assert main(['embed', '--checkpoint', str(out), '--input', str(wfdb_dir), '--no-progress',
                 '--output', str(tmp_path / 'e2')]) == 0
    np.testing.assert_allclose(np.load(tmp_path / 'e2' / 'embeddings.npy'), emb, atol=1e-5)
    _fails_with(capsys, ['embed', '--checkpoint', str(out), '--input', str(wfdb_dir), '--sampling-rate', '360',
                         '--output', str(tmp_path / 'e3')], 'sampling rate: data 360 Hz, model 100 Hz',
                '--sampling-rate 100 --num-samples 500')
    # A cache built for another rate.
    assert main(['probe', '--model', 'ecg_vit_tiny', *TINY, *OTHER_RATE, '--epochs', '1', '-b', '8', '--n-boot', '0',
                 '--cache-dir', str(tmp_path / 'other'), '--output', str(tmp_path / 'p')]) == 0
    other = next((tmp_path / 'other').glob('cache-*'))
    _fails_with(capsys, ['embed', '--checkpoint', str(out), '--input', str(other), '--output', str(tmp_path / 'e4')],
                '(a cache) for --checkpoint', 'sampling rate: data 200 Hz, model 100 Hz')


def test_benchmark_refuses_a_checkpoint_before_training_anything(run, capsys, tmp_path):
    _, out = run
    _fails_with(capsys, ['benchmark', '--quick', '--methods', 'mae', '--protocols', 'linear', '--checkpoint',
                         f'mae={out}', *OTHER_RATE, '--output', str(tmp_path)],
                f'checkpoint mae={out}', 'sampling rate: data 200 Hz, model 100 Hz',
                '--sampling-rate 100 --num-samples 500')
    assert not (tmp_path / 'pretrain').exists() and not (tmp_path / 'data').exists()


def test_pretrain_checks_an_encoder_that_comes_with_weights(monkeypatch, capsys, tmp_path):
    # No pretrain option gives trained weights today, so stand in for one: the encoder reports a 100 Hz x 500 recipe.
    import ecgvit.data.prepare as prepare
    from ecgvit.data import Preprocessing

    recipe = {'preprocessing': Preprocessing(sampling_rate=100.0, num_samples=500).to_dict()}
    calls = []

    def fake_model_data_cfg(encoder, source):
        calls.append(source)
        return recipe

    monkeypatch.setattr(prepare, 'model_data_cfg', fake_model_data_cfg)
    _fails_with(capsys, ['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', *TINY, *OTHER_RATE, '--epochs', '1',
                         '-b', '8', '--output', str(tmp_path / 'pt')],
                'sampling rate: data 200 Hz, model 100 Hz', '--sampling-rate 100 --num-samples 500')
    assert calls and not (tmp_path / 'pt' / 'checkpoints').exists()  # refused before training
