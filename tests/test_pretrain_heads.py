"""Pretraining heads saved beside an encoder (``heads.safetensors``) and ``ecgvit pretrain --heads``."""
import json

import pytest
import torch
from continued_runs import COMMON, TINY_DATA, capture_pretrainer

import ecgvit.train
from ecgvit.cli import main
from ecgvit.errors import CheckpointError
from ecgvit.hub import load_encoder, sha256_file
from ecgvit.pretrain import create_pretrainer
from ecgvit.pretrain.heads import HEADS_NAME, encoder_fingerprint, head_state, load_heads, read_heads, save_heads

pytestmark = pytest.mark.usefixtures('one_thread')

TINY = {'encoder_kwargs': {'img_size': 500}}


def _pretrainer(method, seed, **kwargs):
    torch.manual_seed(seed)
    extra = {'queue_size': 16} if 'moco' in method else {}
    if 'clip' in method:
        extra['sampling_rate'] = 100.0
    return create_pretrainer(method, 'ecg_vit_tiny', **TINY, **extra, **kwargs)


@pytest.mark.parametrize('method', ['mae_moco', 'mae_nextclip'])
def test_heads_round_trip_into_another_pretrainer(method, tmp_path):
    trained, fresh = _pretrainer(method, 0), _pretrainer(method, 1)
    encoder_before = {k: v.clone() for k, v in fresh.encoder.state_dict().items()}
    path = save_heads(trained.state_dict(), tmp_path, method=method, model='ecg_vit_tiny', extra={'epochs': 3})
    assert path == tmp_path / HEADS_NAME
    saved = read_heads(tmp_path)['tensors']
    # Neither the encoder nor what a run derives from it at its start (momentum side, queue) is stored.
    assert saved and not any(k.startswith('encoder.') or 'momentum_' in k or k.endswith('queue') for k in saved)
    assert any(k.startswith('mae.decoder.') for k in saved)
    assert any(k.startswith('moco.head.' if method == 'mae_moco' else 'clip.decoder.') for k in saved)
    info = load_heads(fresh, path, method=method, model='ecg_vit_tiny')
    assert info['extra'] == {'epochs': 3} and info['keys'] == len(saved)
    assert info['same_encoder'] is None  # saved without naming its encoder
    save_heads(trained.state_dict(), path, method=method, model='ecg_vit_tiny', encoder=trained.encoder)
    assert load_heads(fresh, path)['same_encoder'] is False  # fitted to another encoder than fresh's
    assert load_heads(trained, path)['same_encoder'] is True
    for key, value in head_state(trained.state_dict()).items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0, msg=key)
    for key, value in fresh.encoder.state_dict().items():  # the encoder is left as it was
        torch.testing.assert_close(value, encoder_before[key], rtol=0, atol=0, msg=key)
    if method == 'mae_moco':  # the key side starts as a copy of the loaded query head, as at any start
        for key, value in fresh.moco.head.state_dict().items():
            torch.testing.assert_close(fresh.moco.momentum_head.state_dict()[key], value, rtol=0, atol=0, msg=key)
    # A loaded pretrainer trains: one forward/backward with finite loss.
    out = fresh(torch.randn(2, 12, 500))
    out['loss'].backward()
    assert torch.isfinite(out['loss'])


def test_bf16_heads_keep_integer_buffers(tmp_path):
    trained = _pretrainer('mae_moco', 0)
    save_heads(trained.state_dict(), tmp_path / 'h.safetensors', method='mae_moco', model='ecg_vit_tiny',
               dtype=torch.bfloat16)
    tensors = read_heads(tmp_path / 'h.safetensors')['tensors']
    assert tensors['mae.decoder.decoder_pos_embed'].dtype == torch.bfloat16
    assert tensors['moco.head.1.num_batches_tracked'].dtype == torch.long
    fresh = _pretrainer('mae_moco', 1)
    load_heads(fresh, tmp_path / 'h.safetensors')
    assert fresh.mae.decoder.decoder_pos_embed.dtype == torch.float32  # cast to the module's dtype
    torch.testing.assert_close(fresh.mae.decoder.decoder_pos_embed,
                               trained.mae.decoder.decoder_pos_embed.to(torch.bfloat16).float(), rtol=0, atol=0)


def _unchanged(module, before):
    return all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


@pytest.mark.parametrize('case, expected', [
    ('method', 'holds heads of mae_nextclip, not mae_moco'),
    ('model', 'trained with ecg_vit_small, not ecg_vit_tiny'),
    ('settings', 'does not fit this mae_moco pretrainer'),
    ('truncated', 'not a readable safetensors file'),
    ('encoder_file', 'not an ecgvit pretraining-heads file'),
    ('missing', 'No pretraining heads at'),
])
def test_bad_heads_are_refused_before_anything_changes(case, expected, tmp_path):
    target = _pretrainer('mae_moco', 1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    path = tmp_path / HEADS_NAME
    if case == 'method':
        save_heads(_pretrainer('mae_nextclip', 0).state_dict(), path, method='mae_nextclip', model='ecg_vit_tiny')
    elif case == 'model':
        save_heads(_pretrainer('mae_moco', 0).state_dict(), path, method='mae_moco', model='ecg_vit_small')
    elif case == 'settings':  # a deeper MAE decoder: other keys
        torch.manual_seed(0)
        other = create_pretrainer('mae_moco', 'ecg_vit_tiny', **TINY, queue_size=16, decoder_depth=2)
        save_heads(other.state_dict(), path, method='mae_moco', model='ecg_vit_tiny')
    elif case == 'truncated':
        save_heads(_pretrainer('mae_moco', 0).state_dict(), path, method='mae_moco', model='ecg_vit_tiny')
        path.write_bytes(path.read_bytes()[:200])
    elif case == 'encoder_file':
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in target.encoder.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match=expected):
        load_heads(target, path, method='mae_moco', model='ecg_vit_tiny')
    assert _unchanged(target, before)


def test_save_refuses_a_state_without_heads(tmp_path):
    encoder_only = {f'encoder.{k}': v for k, v in _pretrainer('mae', 0).encoder.state_dict().items()}
    with pytest.raises(ValueError, match='no pretraining heads'):
        save_heads(encoder_only, tmp_path, method='mae', model='ecg_vit_tiny')


def test_a_run_writes_its_best_heads_beside_its_encoder(source_run):
    _, source = source_run
    read = read_heads(source / 'encoder')
    assert read['method'] == 'mae' and read['model'] == 'ecg_vit_tiny'
    assert read['extra'] == {'epochs': 1}
    assert read['encoder_fingerprint'] == encoder_fingerprint(load_encoder(str(source / 'encoder'))[0])
    best = ecgvit.train.load_best(source / 'checkpoints')[0]
    for key, value in read['tensors'].items():
        torch.testing.assert_close(value, best[key], rtol=0, atol=0, msg=key)


def test_heads_start_a_continued_run(source_run, tmp_path, monkeypatch):
    root, source = source_run
    seen = capture_pretrainer(monkeypatch)
    rc = main(['pretrain', '--method', 'mae', '--checkpoint', str(source), '--heads', str(source / 'encoder'),
               *COMMON, '--cache-dir', str(root / 'data'), '--epochs', '1', '--output', str(tmp_path / 'run')])
    assert rc == 0
    heads = seen['run_config']['heads']
    file = source / 'encoder' / HEADS_NAME
    assert heads['sha256'] == sha256_file(file) and heads['method'] == 'mae' and heads['saved_at_epoch'] == 1
    assert heads['same_encoder'] is True  # the run folder's fp32 checkpoint is the weights the heads were saved with
    state = seen['pretrainer'].state_dict()
    for key, value in read_heads(file)['tensors'].items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


def test_heads_on_resume_and_misuse(source_run, tmp_path, capsys):
    root, source = source_run
    out = tmp_path / 'run'
    base = ['pretrain', '--method', 'mae', *COMMON, '--cache-dir', str(root / 'data'), '--output', str(out)]
    assert main([*base, '--checkpoint', str(source), '--heads', str(source / 'encoder'), '--epochs', '1']) == 0
    recorded = json.loads((out / 'config.json').read_text())['heads']
    # Resumed with or without the same file: the checkpoint's heads continue, and the record stays.
    assert main([*base, '--resume', '--epochs', '2']) == 0
    assert main([*base, '--resume', '--epochs', '3', '--heads', str(source / 'encoder')]) == 0
    assert json.loads((out / 'config.json').read_text())['heads'] == recorded
    capsys.readouterr()
    # Resumed with other heads: refused in one line.
    rc = main([*base, '--resume', '--epochs', '4', '--heads', str(out / 'encoder')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and 'cannot change them' in err
    # Heads without the encoder weights they go with; heads of another method.
    rc = main(['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', '--heads', str(source / 'encoder'),
               *TINY_DATA, '--output', str(tmp_path / 'random')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and 'give those with --pretrained or --checkpoint' in err
    rc = main(['pretrain', '--method', 'mae_moco', '--checkpoint', str(source), '--heads', str(source / 'encoder'),
               *COMMON, '--queue-size', '16', '--cache-dir', str(root / 'data'), '--output', str(tmp_path / 'moco')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and 'holds heads of mae, not mae_moco' in err


def test_heads_pretrained_reads_the_published_folder(source_run, tmp_path, monkeypatch, capsys):
    root, source = source_run
    published = tmp_path / 'weights'
    (published / 'ecg_vit_tiny').mkdir(parents=True)
    monkeypatch.setenv('ECGVIT_WEIGHTS_DIR', str(published))
    base = ['pretrain', '--method', 'mae', '--checkpoint', str(source), '--heads', 'pretrained', *COMMON,
            '--cache-dir', str(root / 'data'), '--epochs', '1']
    rc = main([*base, '--output', str(tmp_path / 'none')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f'No pretraining heads at {published / "ecg_vit_tiny" / HEADS_NAME}' in err
    (published / 'ecg_vit_tiny' / HEADS_NAME).write_bytes((source / 'encoder' / HEADS_NAME).read_bytes())
    assert main([*base, '--output', str(tmp_path / 'run')]) == 0
    heads = json.loads((tmp_path / 'run' / 'config.json').read_text())['heads']
    assert heads['path'] == str(published / 'ecg_vit_tiny' / HEADS_NAME) and heads['same_encoder'] is True


def test_freeze_encoder_trains_heads_for_given_weights(source_run, tmp_path, capsys):
    root, source = source_run
    out = tmp_path / 'heads-only'
    base = ['pretrain', '--method', 'mae_moco', *COMMON, '--queue-size', '16', '--cache-dir', str(root / 'data'),
            '--output', str(out)]
    assert main([*base, '--checkpoint', str(source), '--freeze-encoder', '--epochs', '2']) == 0
    start = load_encoder(str(source), None, 500)[0].state_dict()
    kept = load_encoder(str(out / 'encoder'), None, 500)[0].state_dict()
    for key, value in start.items():
        if not key.startswith('head.'):
            torch.testing.assert_close(kept[key], value, rtol=0, atol=0, msg=key)  # the encoder did not move
    config = json.loads((out / 'config.json').read_text())
    assert config['freeze_encoder'] is True
    # The heads it made fit the weights it started from, and they trained (the decoder moved from its init).
    fresh = create_pretrainer('mae_moco', load_encoder(str(source), None, 500)[0], queue_size=16)
    info = load_heads(fresh, out / 'encoder', method='mae_moco', model='ecg_vit_tiny')
    assert info['same_encoder'] is True
    init_decoder = _pretrainer('mae_moco', 0).mae.decoder.decoder_pred.weight
    assert not torch.equal(fresh.mae.decoder.decoder_pred.weight, init_decoder)
    capsys.readouterr()
    # Resumed, it stays frozen; a run that trains its encoder cannot be resumed frozen; a random init cannot freeze.
    assert main([*base, '--resume', '--epochs', '3']) == 0
    for key, value in start.items():
        if not key.startswith('head.'):
            torch.testing.assert_close(load_encoder(str(out / 'encoder'), None, 500)[0].state_dict()[key], value,
                                       rtol=0, atol=0, msg=key)
    rc = main(['pretrain', '--method', 'mae', *COMMON, '--cache-dir', str(root / 'data'), '--output', str(source),
               '--resume', '--epochs', '2', '--freeze-encoder'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and 'trains its encoder' in err
    rc = main(['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', '--freeze-encoder', *TINY_DATA,
               '--output', str(tmp_path / 'random')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and 'needs trained weights' in err
