"""Weights I/O: save/load round trips, weight resolution (weights/ -> HF cache -> Hub), bad files, push_to_hub."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
import torch

import ecgvit
from ecgvit import hub

TINY = dict(embed_dim=32, depth=2, num_heads=2)


@pytest.fixture()
def exported(tmp_path):
    torch.manual_seed(0)
    model = ecgvit.create_model('ecg_vit_tiny', num_classes=3, **TINY).eval()
    out = hub.save_pretrained(model, tmp_path / 'export', pretrained_cfg=dict(pretrain_method='mae_moco'))
    return model, out


def _hand_built_hf_cache(cache: Path, repo_id: str, files: dict) -> Path:
    """Lay files out exactly as huggingface_hub's cache does: blobs, a snapshot and refs/main."""
    repo_dir = cache / ('models--' + repo_id.replace('/', '--'))
    revision = 'a' * 40
    snapshot = repo_dir / 'snapshots' / revision
    snapshot.mkdir(parents=True)
    (repo_dir / 'blobs').mkdir()
    for name, src in files.items():
        blob = repo_dir / 'blobs' / hub.sha256_file(src)
        blob.write_bytes(Path(src).read_bytes())
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / 'refs').mkdir()
    (repo_dir / 'refs' / 'main').write_text(revision)
    return repo_dir


def test_save_pretrained_writes_weights_config_and_card(exported):
    model, out = exported
    assert sorted(p.name for p in out.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    assert not [p for p in out.parent.iterdir() if p.name.startswith('.')], 'no temp folder left behind'
    config = json.loads((out / 'config.json').read_text())
    assert config['architecture'] == 'ecg_vit_tiny'
    assert config['model_args']['embed_dim'] == 32 and config['num_classes'] == 3
    cfg = config['pretrained_cfg']
    assert cfg['sampling_rate'] == 360.0 and cfg['lead_names'][3] == 'aVR' and cfg['input_size'] == [12, 1, 3600]
    assert cfg['sha256'] == hub.sha256_file(out / 'model.safetensors')
    assert cfg['pretrain_method'] == 'mae_moco' and 'state_dict' not in cfg
    card = (out / 'README.md').read_text()
    assert 'Not for clinical use' in card and 'library_name: timm' in card and cfg['sha256'] in card


def test_local_dir_round_trip_is_exact(exported):
    model, out = exported
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(ecgvit.create_model(f'local-dir:{out}', pretrained=True).eval()(x), ref)
        assert torch.equal(hub.load_pretrained(out).eval()(x), ref)
        feats = hub.load_pretrained(out, num_classes=0).eval()(x)
        assert torch.equal(feats, model.forward_head(model.forward_features(x), pre_logits=True))


def test_save_overwrites_atomically(exported, tmp_path):
    model, out = exported
    torch.nn.init.zeros_(model.head.weight)
    hub.save_pretrained(model, out)
    loaded = hub.load_pretrained(out)
    assert torch.equal(loaded.head.weight, torch.zeros_like(loaded.head.weight))


def test_weights_dir_resolution_with_sha256(exported, tmp_path, monkeypatch):
    model, out = exported
    shipped = tmp_path / 'weights' / 'ecg_vit_tiny'
    shipped.mkdir(parents=True)
    (shipped / 'model.safetensors').write_bytes((out / 'model.safetensors').read_bytes())
    monkeypatch.setenv('ECGVIT_WEIGHTS_DIR', str(tmp_path / 'weights'))
    digest = hub.sha256_file(out / 'model.safetensors')
    loaded = ecgvit.create_model('ecg_vit_tiny', pretrained=True, num_classes=3,
                                 pretrained_cfg_overlay=dict(sha256=digest, num_classes=3), **TINY)
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)
    with pytest.raises(hub.CheckpointError, match='sha256 mismatch'):
        ecgvit.create_model('ecg_vit_tiny', pretrained=True, pretrained_cfg_overlay=dict(sha256='0' * 64), **TINY)


def test_corrupt_and_truncated_safetensors(exported, tmp_path):
    _, out = exported
    data = (out / 'model.safetensors').read_bytes()
    truncated = tmp_path / 'truncated.safetensors'
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / 'garbage.safetensors'
    garbage.write_bytes(os.urandom(4096))
    for bad in (truncated, garbage):
        with pytest.raises(hub.CheckpointError, match='not a valid safetensors file'):
            ecgvit.create_model('ecg_vit_tiny', pretrained=True, pretrained_cfg_overlay=dict(file=str(bad)), **TINY)


def test_wrong_shape_checkpoint(exported):
    _, out = exported
    with pytest.raises(hub.CheckpointError, match='does not fit ecg_vit_tiny'):
        ecgvit.create_model('ecg_vit_tiny', pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(out / 'model.safetensors')), embed_dim=64)


def test_pickled_checkpoints_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned',))

    path = tmp_path / 'evil.pth'
    torch.save({'x': Evil()}, path)
    with pytest.raises(hub.CheckpointError, match='never unpickles'):
        hub.load_weights_file(path)


def test_missing_file_errors(tmp_path):
    with pytest.raises(hub.CheckpointError, match='does not exist'):
        ecgvit.create_model('ecg_vit_tiny', pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(tmp_path / 'nope.safetensors')))
    with pytest.raises(hub.CheckpointError, match='No weight file'):
        hub.load_weights_file(tmp_path)


def test_hf_cache_round_trip_offline(exported, tmp_path):
    """hf-hub: ids and a registry name's Hub repo both load from a hand-built cache with HF_HUB_OFFLINE=1."""
    model, out = exported
    cache = tmp_path / 'hf-cache'
    files = {n: out / n for n in ('config.json', 'model.safetensors', 'README.md')}
    _hand_built_hf_cache(cache, 'ecgvit-test/tiny', files)
    _hand_built_hf_cache(cache, 'ecgvit-test/tiny-registry', {'model.safetensors': out / 'model.safetensors'})
    x = torch.randn(2, 12, 500)
    torch.save({'x': x, 'ref': model(x).detach()}, tmp_path / 'io.pt')
    script = textwrap.dedent(f"""
        import socket, torch, ecgvit
        from ecgvit.hub import PretrainedWeightsError

        def no_network(*args, **kwargs):  # offline means no connection is even attempted (not: a quick one)
            raise SystemExit('a network connection was attempted while HF_HUB_OFFLINE=1: ' + repr(args[1:]))

        socket.socket.connect = socket.socket.connect_ex = socket.create_connection = no_network
        io = torch.load({str(tmp_path / 'io.pt')!r}, weights_only=True)
        m = ecgvit.create_model('hf-hub:ecgvit-test/tiny', pretrained=True).eval()
        assert torch.equal(m(io['x']), io['ref'])
        m = ecgvit.create_model('ecg_vit_tiny', pretrained=True, num_classes=3, embed_dim=32, depth=2, num_heads=2,
                                pretrained_cfg_overlay=dict(hub_repo_id='ecgvit-test/tiny-registry',
                                                            num_classes=3)).eval()
        assert torch.equal(m(io['x']), io['ref'])
        for name, kw in (('hf-hub:ecgvit-test/missing', {{}}), ('ecg_vit_mae_moco', {{}})):
            try:
                ecgvit.create_model(name, pretrained=True, **kw)
            except PretrainedWeightsError as e:
                assert ('ecgvit-test/missing' in str(e)) or ('ecgvit/ecg_vit_mae_moco' in str(e)), str(e)
                assert 'download' in str(e) or 'pretrain' in str(e), str(e)
            else:
                raise SystemExit('offline miss did not raise')
        print('OK')
    """)
    # An empty weights folder, so the registry name's miss is tested whatever weights the checkout ships.
    (tmp_path / 'no-weights').mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / 'hf-home'),
               ECGVIT_WEIGHTS_DIR=str(tmp_path / 'no-weights'))
    res = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and 'OK' in res.stdout, res.stderr[-3000:]


def test_push_to_hub_with_mocked_api(exported):
    model, _ = exported
    seen = {}

    def fake_upload_folder(**kwargs):
        folder = Path(kwargs['folder_path'])
        seen['files'] = sorted(p.name for p in folder.iterdir())
        seen['card'] = (folder / 'README.md').read_text()
        seen['config'] = json.loads((folder / 'config.json').read_text())
        seen['kwargs'] = kwargs
        return mock.Mock(commit_url='https://huggingface.co/org/ecg/commit/123')

    api = mock.Mock()
    api.upload_folder.side_effect = fake_upload_folder
    url = hub.push_to_hub(model, 'org/ecg', api=api, private=True, card_extra='## Evaluation\nAUROC 0.9')
    assert url.endswith('/commit/123')
    api.create_repo.assert_called_once_with(repo_id='org/ecg', private=True, exist_ok=True, repo_type='model')
    assert seen['files'] == ['README.md', 'config.json', 'model.safetensors']
    assert '## Evaluation' in seen['card'] and seen['config']['architecture'] == 'ecg_vit_tiny'
    assert seen['kwargs']['repo_id'] == 'org/ecg'


def test_push_folder_requires_weights(tmp_path):
    with pytest.raises(hub.CheckpointError, match='save_pretrained'):
        hub.push_to_hub(tmp_path, 'org/ecg', api=mock.Mock())


def test_an_export_killed_half_way_is_swept_by_the_next(tmp_path):
    """Issue 18, item 10: a kill during the final export left a temporary folder beside it for good."""
    script = textwrap.dedent(f'''
        import os, signal, ecgvit
        from ecgvit import hub
        real = hub.save_file
        def die(*a, **k):
            real(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)  # killed after the weights, before the rename
        hub.save_file = die
        hub.save_pretrained(ecgvit.create_model('ecg_vit_tiny'), {str(tmp_path / 'export')!r})
    ''')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith('.export.tmp-')  # the dead process's staging folder
    hub.save_pretrained(ecgvit.create_model('ecg_vit_tiny'), tmp_path / 'export')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['export']
    assert hub.load_pretrained(tmp_path / 'export') is not None
