"""benchmarks/pooling_probe.py: one encoder's weights probed through [CLS] and through the mean of its patch tokens."""
import csv

import pytest
import torch
from data_fixtures import write_suite_folders

import ecgvit
from benchmarks.pooling_probe import main, pooled_encoders
from ecgvit.hub import save_pretrained

pytestmark = pytest.mark.usefixtures('one_thread')

FS, N = 100.0, 500  # 5 s at 100 Hz, as the suite's own tests


def _tiny(seed):
    torch.manual_seed(seed)
    model = ecgvit.create_model('ecg_vit_tiny', img_size=N)
    cfg = {'sampling_rate': FS, 'duration_s': N / FS, 'input_size': (12, 1, N)}
    model.pretrained_cfg = dict(model.pretrained_cfg, **cfg)
    return model, cfg


def test_pooled_encoders_share_weights_and_differ_in_pooling():
    model, _ = _tiny(1)
    out = pooled_encoders({'a': model}, ('token', 'avg'))
    assert list(out) == ['a@token', 'a@avg', 'random@avg']
    assert list(pooled_encoders({'a': model}, ('avg', 'token'))) == ['a@token', 'a@avg', 'random@avg']
    assert out['a@token'].global_pool == 'token' and out['a@avg'].global_pool == 'avg'
    assert model.global_pool == 'token', 'the caller keeps its encoder as it was'
    for k, v in model.state_dict().items():
        assert torch.equal(out['a@avg'].state_dict()[k], v)
    x = torch.randn(2, 12, N)
    with torch.no_grad():
        tokens = model.forward_features(x)
        assert torch.allclose(out['a@avg'].forward_head(tokens, pre_logits=True), tokens[:, 1:].mean(1))
        assert torch.allclose(out['a@token'].forward_head(tokens, pre_logits=True), tokens[:, 0])
    torch.manual_seed(0)
    floor = ecgvit.create_model('ecg_vit_tiny', img_size=N)
    for k, v in floor.state_dict().items():  # the suite's seed-0 floor, read through the other pooling
        assert torch.equal(out['random@avg'].state_dict()[k], v)


def test_main_compares_each_encoder_with_itself_pooled(tmp_path, capsys):
    root = write_suite_folders(tmp_path / 'data')
    model, cfg = _tiny(1)
    enc = save_pretrained(model, tmp_path / 'enc', pretrained_cfg=cfg)
    out = tmp_path / 'out'
    assert main(['--encoder', f'tiny={enc}', '--data-dir', str(root), '--out', str(out), '--cache-dir',
                 str(tmp_path / 'cache'), '--tasks', 'ptbxl_superdiagnostic,sex', '--n-boot', '100']) == 0
    text = capsys.readouterr().out
    assert (out / 'pooling.md').read_text().strip() == text.strip()
    with open(out / 'results.csv', newline='') as f:
        encoders = {r['encoder'] for r in csv.DictReader(f)}
    assert encoders == {'random', 'tiny@token', 'tiny@avg', 'random@avg'}
    table = [line for line in text.splitlines() if line.startswith('| ptbxl_superdiagnostic') or
             line.startswith('| sex')]
    assert len(table) == 4  # (tiny, random) x 2 tasks, avg minus token
    assert all('| avg |' in line for line in table)


@pytest.mark.parametrize('argv, message', [
    (['--encoder', 'not_a_model'], 'not a registered model'),
    (['--encoder', 'x=', '--pools', 'token,avg'], 'expected NAME=PATH'),
    (['--encoder', 'ecg_vit_tiny', '--pools', 'token'], 'two or more distinct'),
    (['--encoder', 'ecg_vit_tiny', '--pools', 'token,max'], 'two or more distinct'),
])
def test_bad_arguments_say_what_to_give(argv, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        main([*argv, '--data-dir', str(tmp_path), '--out', str(tmp_path / 'o')])
