"""Weight lookup below the models: import direction, one error hierarchy, hf-hub sources, a silent Hub, exports."""
import ast
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

import ecgvit
from ecgvit import errors, hub, weights
from ecgvit.data.preprocess import Preprocessing

ROOT = Path(ecgvit.__file__).resolve().parent
TINY = dict(embed_dim=32, depth=2, num_heads=2)
# Modules below hub.py: they may import timm, torch, huggingface_hub and each other, never the publishing or
# training layers, and never hide an import inside a function.
LOWER = ['errors.py', 'weights.py', 'weights_sha256.py', 'constants.py', 'factory.py', 'models/__init__.py',
         'models/ecg_vit.py']
UPPER = ('ecgvit.hub', 'ecgvit.train', 'ecgvit.pretrain', 'ecgvit.eval', 'ecgvit.cli', 'ecgvit.benchmark')


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield node, '.' * node.level + (node.module or '')
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name


@pytest.mark.parametrize('rel', LOWER)
def test_lower_layers_never_import_the_publishing_or_training_code(rel):
    tree = ast.parse((ROOT / rel).read_text())
    top_level = set(map(id, tree.body))
    for node, name in _imports(tree):
        assert not name.startswith(UPPER), f'{rel} imports {name}: models and weights sit below hub/train/pretrain'
        assert id(node) in top_level, f'{rel} line {node.lineno}: an import inside a function hides a cycle'


def test_importing_the_models_loads_no_upper_layer():
    code = ('import sys, ecgvit, ecgvit.models, ecgvit.weights; '
            'print(sorted(m for m in sys.modules if m.startswith("ecgvit")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out)  # a printed list of module names
    assert not [m for m in loaded if m.startswith(UPPER)], loaded


def test_one_checkpoint_error_class_everywhere():
    from ecgvit.train import CheckpointError as from_train
    from ecgvit.train.checkpoint import CheckpointError as from_checkpoint

    assert from_train is from_checkpoint is hub.CheckpointError is weights.CheckpointError is errors.CheckpointError
    assert hub.PretrainedWeightsError is weights.PretrainedWeightsError is errors.PretrainedWeightsError
    # The bases the two former classes had, so existing except clauses still catch it.
    assert issubclass(errors.CheckpointError, (ValueError,)) and issubclass(errors.CheckpointError, RuntimeError)
    assert issubclass(errors.PretrainedWeightsError, RuntimeError)
    assert issubclass(errors.CheckpointError, errors.EcgvitError)
    assert issubclass(errors.PretrainedWeightsError, errors.EcgvitError)


def test_a_bad_training_checkpoint_and_a_bad_weight_file_raise_the_same_class(tmp_path):
    from ecgvit.train.checkpoint import read_checkpoint_state

    with pytest.raises(errors.CheckpointError, match='No complete checkpoint'):
        read_checkpoint_state(tmp_path)
    with pytest.raises(errors.CheckpointError, match='does not exist'):
        weights.load_weights_file(tmp_path / 'missing.safetensors')


def test_wrong_shapes_name_the_tensors_that_do_not_fit(tmp_path):
    model = ecgvit.create_model('ecg_vit_tiny', **TINY)
    out = hub.save_pretrained(model, tmp_path / 'export')
    with pytest.raises(errors.CheckpointError, match='does not fit ecg_vit_tiny') as info:
        ecgvit.create_model('ecg_vit_tiny', pretrained=True, embed_dim=32, depth=3, num_heads=2,
                            pretrained_cfg_overlay=dict(file=str(out / 'model.safetensors')))
    assert 'missing blocks.2.norm1.weight' in str(info.value)
    wider = r'blocks.0.attn.proj.bias is \(32,\), the model has \(64,\).*more'
    with pytest.raises(errors.CheckpointError, match=wider):
        ecgvit.create_model('ecg_vit_tiny', pretrained=True, embed_dim=64, depth=2, num_heads=2,
                            pretrained_cfg_overlay=dict(file=str(out / 'model.safetensors')))


def test_load_encoder_names_the_file_for_a_checkpoint_that_does_not_fit(tmp_path):
    model = ecgvit.create_model('ecg_vit_tiny', **TINY)
    path = tmp_path / 'best.safetensors'
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with pytest.raises(errors.CheckpointError, match=f'{path}.*does not fit ecg_vit_tiny'):
        hub.load_encoder(path, 'ecg_vit_tiny')  # the registered 64-wide tiny, not the 32-wide one saved


# ---------------------------------------------------------------------------------------------------------------------
# Exported cfgs carry the model's own input


def test_save_pretrained_writes_the_models_own_rate_and_length(tmp_path):
    model = ecgvit.create_model('ecg_vit_tiny', img_size=1000, pretrained_cfg_overlay=dict(sampling_rate=100.0),
                                **TINY)
    out = hub.save_pretrained(model, tmp_path / 'export')
    cfg = json.loads((out / 'config.json').read_text())['pretrained_cfg']
    assert cfg['sampling_rate'] == 100.0 and cfg['input_size'] == [12, 1, 1000] and cfg['duration_s'] == 10.0
    assert 'torch.randn(1, 12, 1000)' in (out / 'README.md').read_text()
    loaded = hub.load_pretrained(out)
    Preprocessing(sampling_rate=100.0, num_samples=1000).check_compatible(loaded.pretrained_cfg)


def test_save_pretrained_takes_rate_and_length_from_the_recorded_preprocessing(tmp_path):
    """What `ecgvit pretrain --sampling-rate 100 --num-samples 1000` exports: the data's rate, not 360 Hz."""
    model = ecgvit.create_model('ecg_vit_tiny', img_size=1000, **TINY)
    pp = Preprocessing(sampling_rate=100.0, num_samples=1000)
    out = hub.save_pretrained(model, tmp_path / 'export', pretrained_cfg={'preprocessing': pp.to_dict()})
    cfg = json.loads((out / 'config.json').read_text())['pretrained_cfg']
    assert cfg['sampling_rate'] == 100.0 and cfg['input_size'] == [12, 1, 1000] and cfg['duration_s'] == 10.0
    pp.check_compatible(hub.load_pretrained(out).pretrained_cfg)


# ---------------------------------------------------------------------------------------------------------------------
# hf-hub: sources load that repository's file (subprocesses: huggingface_hub reads its settings at import)


def _hand_built_hf_cache(cache: Path, repo_id: str, files: dict) -> None:
    """Lay files out as huggingface_hub's cache does: blobs, a snapshot and refs/main."""
    repo_dir = cache / ('models--' + repo_id.replace('/', '--'))
    snapshot = repo_dir / 'snapshots' / ('b' * 40)
    snapshot.mkdir(parents=True)
    (repo_dir / 'blobs').mkdir()
    for name, data in files.items():
        blob = repo_dir / 'blobs' / f'{name}.blob'
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / 'refs').mkdir()
    (repo_dir / 'refs' / 'main').write_text('b' * 40)


def _run(script: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT.parent), **env)
    return subprocess.run([sys.executable, '-c', textwrap.dedent(script)], env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture()
def hub_and_shipped(tmp_path):
    """A Hub repo `org/tiny` (architecture ecg_vit_tiny) in the HF cache, and different shipped weights/ecg_vit_tiny."""
    torch.manual_seed(0)
    repo_model = ecgvit.create_model('ecg_vit_tiny').eval()
    export = hub.save_pretrained(repo_model, tmp_path / 'repo-export')
    torch.manual_seed(1)
    hub.save_pretrained(ecgvit.create_model('ecg_vit_tiny'), tmp_path / 'weights' / 'ecg_vit_tiny')
    cache = tmp_path / 'hf-cache'
    files = {n: (export / n).read_bytes() for n in ('config.json', 'model.safetensors')}
    _hand_built_hf_cache(cache, 'org/tiny', files)
    bad = dict(files, **{'config.json': files['config.json'].replace(
        json.loads(files['config.json'])['pretrained_cfg']['sha256'].encode(), b'0' * 64)})
    _hand_built_hf_cache(cache, 'org/tiny-bad-sha', bad)
    x = torch.randn(1, 12, 500)
    torch.save({'x': x, 'ref': repo_model(x).detach()}, tmp_path / 'io.pt')
    env = dict(HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / 'hf-home'),
               ECGVIT_WEIGHTS_DIR=str(tmp_path / 'weights'))
    return tmp_path, env


def test_hf_hub_source_loads_the_repositorys_file_not_the_shipped_one(hub_and_shipped):
    tmp_path, env = hub_and_shipped
    res = _run(f"""
        import torch, ecgvit
        io = torch.load({str(tmp_path / 'io.pt')!r}, weights_only=True)
        m = ecgvit.create_model('hf-hub:org/tiny', pretrained=True).eval()
        assert torch.equal(m(io['x']), io['ref']), 'loaded the shipped weights/ecg_vit_tiny instead of org/tiny'
        print('OK')
    """, env)
    assert res.returncode == 0 and 'OK' in res.stdout, res.stderr[-3000:]


def test_hf_hub_sha_mismatch_names_the_repositorys_file(hub_and_shipped):
    tmp_path, env = hub_and_shipped
    res = _run("""
        import ecgvit
        from ecgvit.errors import CheckpointError
        try:
            ecgvit.create_model('hf-hub:org/tiny-bad-sha', pretrained=True)
        except CheckpointError as e:
            print('ERROR', e)
    """, env)
    assert 'ERROR sha256 mismatch' in res.stdout, res.stderr[-3000:]
    message = res.stdout
    assert 'models--org--tiny-bad-sha' in message and 'org/tiny-bad-sha' in message
    assert str(tmp_path / 'weights') not in message and 'shipped' not in message


@pytest.fixture()
def silent_endpoint():
    """A server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(64)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.getsockname()[1]}'
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize('name, kwargs', [
    ('hf-hub:org/never-answers', {}),
    ('ecg_vit_tiny', {'pretrained_cfg_overlay': {'hf_hub_id': 'org/never-answers'}}),
])
def test_a_hub_that_never_answers_fails_fast_with_a_clear_error(silent_endpoint, tmp_path, name, kwargs):
    (tmp_path / 'no-weights').mkdir()
    env = dict(HF_ENDPOINT=silent_endpoint, HF_HUB_ETAG_TIMEOUT='1', HF_HUB_CACHE=str(tmp_path / 'hf-cache'),
               HF_HOME=str(tmp_path / 'hf-home'), ECGVIT_WEIGHTS_DIR=str(tmp_path / 'no-weights'))
    env_without_offline = {k: v for k, v in os.environ.items() if k != 'HF_HUB_OFFLINE'}
    script = f"""
        import ecgvit
        from ecgvit.errors import PretrainedWeightsError
        try:
            ecgvit.create_model({name!r}, pretrained=True, **{kwargs!r})
        except PretrainedWeightsError as e:
            print('ERROR', e)
    """
    # huggingface_hub alone retries such an endpoint for minutes; the bound here only keeps a regression from hanging.
    full_env = dict(env_without_offline, PYTHONPATH=str(ROOT.parent), **env)
    res = subprocess.run([sys.executable, '-c', textwrap.dedent(script)], env=full_env, capture_output=True,
                         text=True, timeout=60)
    assert res.stdout.startswith('ERROR'), res.stderr[-3000:]
    assert 'org/never-answers' in res.stdout and 'HF_HUB_OFFLINE=1' in res.stdout and 'local-dir:' in res.stdout


def test_lookup_order_is_explicit_file_then_weights_dir_then_cache_then_hub(tmp_path, monkeypatch):
    """Every source present with its own weights; removing them one by one must hand the load to the next one."""
    import shutil

    from huggingface_hub import constants as hf_constants

    sources = {}
    for seed, name in enumerate(('file', 'weights', 'cache', 'hub')):
        torch.manual_seed(100 + seed)
        sources[name] = hub.save_pretrained(ecgvit.create_model('ecg_vit_tiny', **TINY), tmp_path / name)
    shutil.copytree(sources['weights'], tmp_path / 'weights-dir' / 'ecg_vit_tiny')
    monkeypatch.setenv('ECGVIT_WEIGHTS_DIR', str(tmp_path / 'weights-dir'))
    cache = tmp_path / 'hf-cache'
    _hand_built_hf_cache(cache, 'org/tiny-cached', {'model.safetensors': (sources['cache'] / 'model.safetensors')
                                                    .read_bytes()})
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(cache))
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setattr(hf_constants, 'HF_HUB_OFFLINE', False)
    downloads = []

    def fake_hub_download(repo_id, filename='model.safetensors'):  # the Hub: a folder, and a record of each call
        downloads.append(repo_id)
        return sources['hub'] / filename

    monkeypatch.setattr(weights, 'hub_download', fake_hub_download)
    fingerprints = {name: hub.load_weights_file(path)['pos_embed'] for name, path in sources.items()}

    def loaded_from(**overlay):
        overlay = dict(hf_hub_id='org/tiny-hub', hub_repo_id='org/tiny-cached', **overlay)
        model = ecgvit.create_model('ecg_vit_tiny', pretrained=True, pretrained_cfg_overlay=overlay, **TINY)
        found = [name for name, pe in fingerprints.items() if torch.equal(model.pos_embed.detach(), pe)]
        assert len(found) == 1, found
        return found[0]

    assert loaded_from(file=str(sources['file'] / 'model.safetensors')) == 'file'
    assert loaded_from() == 'weights'
    shutil.rmtree(tmp_path / 'weights-dir' / 'ecg_vit_tiny')
    assert loaded_from() == 'cache'
    assert downloads == []  # nothing was downloaded while a local source had the weights
    shutil.rmtree(cache / 'models--org--tiny-cached')
    assert loaded_from() == 'hub' and downloads == ['org/tiny-hub']
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')  # offline: the Hub is skipped, and the miss says what was tried
    with pytest.raises(errors.PretrainedWeightsError, match=r'HF cache for org/tiny-hub.*HF_HUB_OFFLINE is set'):
        loaded_from()
    assert downloads == ['org/tiny-hub']
