"""Hostile input on the model side: checkpoints, model configs, weights, model inputs, training options, numerics.

Every case ends in a correct result or a clear typed error that names the file or option and the fix. Each case is
one row of ``HOSTILE_CASES`` ({layer, kind, description, expected}), exercised by the check registered with it; the
docs table of hostile inputs is generated from these rows (together with tests/test_hostile_data.py's).
"""
import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
import torch
from torch.utils.data import TensorDataset

import ecgvit
from ecgvit import errors, hub, weights
from ecgvit.pretrain import create_pretrainer
from ecgvit.train import TrainConfig, seed_everything, train
from ecgvit.train.checkpoint import (
    checkpoint_problem,
    latest_checkpoint,
    list_checkpoints,
    load_best,
    load_checkpoint,
    prune_checkpoints,
    read_checkpoint_state,
)

HOSTILE_CASES: List[Dict[str, str]] = []
_CHECKS: List[Callable[[Path, pytest.MonkeyPatch], None]] = []
TINY = dict(embed_dim=32, depth=2, num_heads=2)
L = 100  # samples per record: 4 patches, the smallest input worth a mask


def case(layer: str, kind: str, description: str, expected: str):
    """Register the decorated check as one row of HOSTILE_CASES."""
    def register(check: Callable[[Path, pytest.MonkeyPatch], None]):
        HOSTILE_CASES.append({'layer': layer, 'kind': kind, 'description': description, 'expected': expected})
        _CHECKS.append(check)
        return check
    return register


def _pretrainer(method: str = 'mae_moco', **kwargs):
    return create_pretrainer(method, 'ecg_vit_tiny', encoder_kwargs=dict(TINY, img_size=L), queue_size=16, **kwargs)


def _run(out: Path, epochs: int = 2, before_forward: Optional[Callable] = None, **kwargs) -> tuple:
    """A real tiny MAE-MoCo pretraining run: 16 records, batch 4, 4 steps an epoch, a checkpoint every step (unless
    ``kwargs`` set other TrainConfig values); ``before_forward(module, args)`` runs before each forward."""
    seed_everything(0)
    model = _pretrainer()
    if before_forward is not None:
        model.register_forward_pre_hook(before_forward)
    data = TensorDataset(torch.randn(16, 12, L, generator=torch.Generator().manual_seed(0)))
    cfg = TrainConfig(**{**dict(output_dir=str(out), epochs=epochs, batch_size=4, lr=1e-3, warmup_epochs=1,
                                amp='fp32', progress=False, save_every=1, keep_last=0, seed=0), **kwargs})
    return model, train(model, data, None, cfg)


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[:len(data) // 2])


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------------------------------
# Training checkpoints


@case('checkpoint', 'truncated newest checkpoint, --resume',
      'the newest step-XXXXXXXX/model.safetensors is cut in half (a copy or disk that filled up)',
      'warning naming the damaged file; the run resumes from the newest intact checkpoint, exactly')
def _truncated_newest_resumes_from_the_older_one(tmp_path, monkeypatch):
    full, summary = _run(tmp_path / 'full')
    part = tmp_path / 'part'
    shutil.copytree(tmp_path / 'full', part)
    ckpts = list_checkpoints(part / 'checkpoints')
    for p in ckpts[5:]:  # the run "died" after step 5, whose weights file was damaged
        shutil.rmtree(p)
    damaged = ckpts[4] / 'model.safetensors'
    _truncate(damaged)
    with pytest.warns(UserWarning, match=f'{damaged}.*Resuming from the newest intact one, .*step-00000004'):
        resumed, summary2 = _run(part, resume=True)
    assert summary2['steps'] == summary['steps'] == 8
    assert _same_state(full, resumed), 'resuming from step 4 must give the uninterrupted run exactly'


@case('checkpoint', 'truncated optimizer state',
      "the newest checkpoint's optimizer.safetensors is truncated",
      'latest_checkpoint warns naming optimizer.safetensors and returns the older checkpoint')
def _truncated_optimizer_file(tmp_path, monkeypatch):
    _run(tmp_path, epochs=1)
    ckpts = list_checkpoints(tmp_path / 'checkpoints')
    _truncate(ckpts[-1] / 'optimizer.safetensors')
    with pytest.warns(UserWarning, match='optimizer.safetensors is damaged'):
        assert latest_checkpoint(tmp_path / 'checkpoints') == ckpts[-2]


@case('checkpoint', 'damaged state.json',
      "the newest checkpoint's state.json is not valid JSON",
      'warning naming state.json; the older checkpoint is used')
def _damaged_state_json(tmp_path, monkeypatch):
    _run(tmp_path, epochs=1)
    ckpts = list_checkpoints(tmp_path / 'checkpoints')
    (ckpts[-1] / 'state.json').write_text('{"step": 4, "rng"')
    with pytest.warns(UserWarning, match='state.json is damaged'):
        assert latest_checkpoint(tmp_path / 'checkpoints') == ckpts[-2]
    # The folder form of read_checkpoint_state (what the CLI reads first) falls back too.
    with pytest.warns(UserWarning, match='state.json is damaged'):
        assert read_checkpoint_state(tmp_path / 'checkpoints')['path'] == str(ckpts[-2])


@case('checkpoint', '--resume naming a damaged checkpoint',
      '--resume points at one step-XXXXXXXX folder whose model.safetensors is truncated',
      'CheckpointError naming the file and the newest intact checkpoint to resume from instead')
def _explicit_damaged_checkpoint(tmp_path, monkeypatch):
    _run(tmp_path, epochs=1)
    ckpts = list_checkpoints(tmp_path / 'checkpoints')
    _truncate(ckpts[-1] / 'model.safetensors')
    with pytest.raises(errors.CheckpointError, match=f'{ckpts[-1] / "model.safetensors"} is damaged.*'
                                                     f'--resume {ckpts[-2]}'):
        load_checkpoint(ckpts[-1], _pretrainer())


@case('checkpoint', 'every checkpoint damaged',
      'all checkpoints of the run folder are truncated and --resume is given',
      'CheckpointError naming each damaged file (never a silent fresh start over them)')
def _all_damaged(tmp_path, monkeypatch):
    _run(tmp_path, epochs=1)
    for p in list_checkpoints(tmp_path / 'checkpoints'):
        _truncate(p / 'model.safetensors')
    with pytest.raises(errors.CheckpointError, match='Every checkpoint .* is damaged: .*step-00000001'):
        latest_checkpoint(tmp_path / 'checkpoints')


@case('checkpoint', 'pruning beside a damaged checkpoint',
      'keep_last=1 while the newest checkpoint is damaged and the run saves a new, older step',
      'the damaged one does not count: the newest intact checkpoint is kept, none is pruned wrongly')
def _prune_keeps_intact(tmp_path, monkeypatch):
    _run(tmp_path, epochs=1)
    ckpts = list_checkpoints(tmp_path / 'checkpoints')
    _truncate(ckpts[-1] / 'model.safetensors')
    prune_checkpoints(tmp_path / 'checkpoints', keep_last=1)
    left = list_checkpoints(tmp_path / 'checkpoints')
    assert left == [ckpts[-2], ckpts[-1]] and checkpoint_problem(ckpts[-2]) is None


@case('checkpoint', 'truncated best weights',
      'checkpoints/best.safetensors is truncated',
      'CheckpointError naming best.safetensors (not a raw SafetensorError)')
def _truncated_best(tmp_path, monkeypatch):
    from ecgvit.train.checkpoint import save_best

    path = save_best(tmp_path, torch.nn.Linear(4, 4), {'step': 1})
    _truncate(path)
    with pytest.raises(errors.CheckpointError, match='best.safetensors is damaged'):
        load_best(tmp_path)


@case('checkpoint', 'best weights loaded into the wrong module',
      "a pretraining run's best weights loaded into its encoder alone (load_best / load_best_into)",
      'CheckpointError naming the file and the two ways out (the pretrainer, or hub.load_encoder), not a raw '
      'RuntimeError listing every key')
def _best_into_the_encoder(tmp_path, monkeypatch):
    from ecgvit.train.checkpoint import save_best

    pretrainer = _pretrainer('mae_moco')
    save_best(tmp_path, pretrainer, {'step': 1})
    assert load_best(tmp_path, pretrainer)[1]['step'] == 1
    with pytest.raises(errors.CheckpointError, match=r'best.safetensors does not fit EcgVisionTransformer: '
                                                     r'.*Missing key.{1,170} Pass the module the run trained.*'
                                                     r'load_encoder'):
        load_best(tmp_path, pretrainer.encoder)


# ---------------------------------------------------------------------------------------------------------------------
# Model configs (config.json from local-dir:, hf-hub:, load_pretrained)


def _export(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return hub.save_pretrained(ecgvit.create_model('ecg_vit_tiny', **TINY), tmp_path / 'export')


def _edit_config(folder: Path, edit: Callable[[dict], None]) -> Path:
    config = json.loads((folder / 'config.json').read_text())
    edit(config)
    (folder / 'config.json').write_text(json.dumps(config))
    return folder / 'config.json'


def _config_case(edit: Callable[[dict], None], match: str):
    def check(tmp_path, monkeypatch):
        out = _export(tmp_path)
        config = _edit_config(out, edit)
        for source in (out, f'local-dir:{out}'):
            with pytest.raises(errors.CheckpointError, match=f'{config}.*{match}'):
                hub.load_pretrained(source)
    return check


for _kind, _desc, _edit, _match in [
    ('huge embed_dim', 'model_args.embed_dim = 10,000,000 (would allocate terabytes)',
     lambda c: c['model_args'].update(embed_dim=10_000_000), r'embed_dim=10000000 .*from 1 to 8192'),
    ('negative depth', 'model_args.depth = -3', lambda c: c['model_args'].update(depth=-3), r'depth=-3'),
    ('fractional size', 'model_args.num_heads = 2.5', lambda c: c['model_args'].update(num_heads=2.5),
     r'num_heads=2.5 .*integer'),
    ('heads not dividing the width', 'model_args.num_heads = 3 with embed_dim 32',
     lambda c: c['model_args'].update(num_heads=3), r'num_heads=3 .*divide embed_dim=32'),
    ('parameter blow-up', 'every size within its bound, together 1e12 parameters',
     lambda c: c['model_args'].update(embed_dim=8192, depth=256, num_heads=8), r'parameters, over the limit'),
    ('huge input length', 'model_args.img_size = [1, 10**12]',
     lambda c: c['model_args'].update(img_size=[1, 10 ** 12]), r'img_size=\[1, 1000000000000\]'),
    ('NaN mlp_ratio', 'model_args.mlp_ratio = NaN', lambda c: c['model_args'].update(mlp_ratio=float('nan')),
     r'mlp_ratio=nan'),
    ('unregistered architecture', "architecture = 'ecg_vit_giant'", lambda c: c.update(architecture='ecg_vit_giant'),
     r"architecture='ecg_vit_giant' is not a registered model"),
    ('zero sampling rate', 'pretrained_cfg.sampling_rate = 0',
     lambda c: c['pretrained_cfg'].update(sampling_rate=0), r'sampling_rate=0 must be a positive'),
    ('model_args not an object', 'model_args = [1, 2]', lambda c: c.update(model_args=[1, 2]),
     r'model_args must be a JSON object'),
]:
    case('config', f'config.json: {_kind}', _desc,
         'CheckpointError (a ValueError) naming config.json and the key, before any tensor is allocated')(
        _config_case(_edit, _match))


@case('checkpoint', 'create_model(checkpoint_path=...) missing or corrupt',
      "create_model('ecg_vit_tiny', checkpoint_path=...) with a path that does not exist, a truncated .safetensors "
      'and a damaged .pth', "FileNotFoundError naming the path (timm's own has no text); CheckpointError saying "
      'truncated or corrupt')
def _checkpoint_path_missing_or_corrupt(tmp_path, monkeypatch):
    missing = tmp_path / 'nope.safetensors'
    with pytest.raises(FileNotFoundError, match=f"checkpoint_path '{missing}' is not a file"):
        ecgvit.create_model('ecg_vit_tiny', checkpoint_path=str(missing), **TINY)
    model = ecgvit.create_model('ecg_vit_tiny', **TINY)
    good = hub.save_pretrained(model, tmp_path / 'export') / 'model.safetensors'
    truncated = tmp_path / 'truncated.safetensors'
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(errors.CheckpointError, match='probably truncated or corrupt'):
        ecgvit.create_model('ecg_vit_tiny', checkpoint_path=str(truncated), **TINY)
    damaged = tmp_path / 'damaged.pth'
    torch.save(model.state_dict(), damaged)
    damaged.write_bytes(damaged.read_bytes()[:500])
    with pytest.raises(errors.CheckpointError, match='weights-only torch checkpoint'):
        ecgvit.create_model('ecg_vit_tiny', checkpoint_path=str(damaged), **TINY)
    # and a good file still loads through timm's own path
    loaded = ecgvit.create_model('ecg_vit_tiny', checkpoint_path=str(good), **TINY)
    assert torch.equal(loaded.pos_embed, model.pos_embed)


@case('checkpoint', 'a truncated run checkpoint given to load_encoder',
      'hub.load_encoder(<run folder whose best.safetensors is cut short>) (ecgvit embed/probe --checkpoint)',
      'CheckpointError saying truncated or corrupt, without the unrelated "pass the --model" hint')
def _truncated_run_weights(tmp_path, monkeypatch):
    model = ecgvit.create_model('ecg_vit_tiny', **TINY)
    run = tmp_path / 'run'
    good = hub.save_pretrained(model, tmp_path / 'export') / 'model.safetensors'
    (run / 'checkpoints').mkdir(parents=True)
    (run / 'checkpoints' / 'best.safetensors').write_bytes(good.read_bytes()[:1000])
    (run / 'config.json').write_text(json.dumps({'command': 'pretrain', 'model': 'ecg_vit_tiny'}))
    with pytest.raises(errors.CheckpointError, match='probably truncated or corrupt') as info:
        hub.load_encoder(run, **TINY)
    assert '--model' not in str(info.value)


@case('config', 'config.json: not JSON', 'config.json holds half a JSON document',
      'CheckpointError naming the file (not a raw JSONDecodeError)')
def _config_not_json(tmp_path, monkeypatch):
    out = _export(tmp_path)
    (out / 'config.json').write_text('{"architecture": "ecg_vit_tiny", ')
    with pytest.raises(errors.CheckpointError, match=f'{out / "config.json"} is not a readable JSON model config'):
        hub.load_pretrained(out)


@case('config', 'hf-hub config sizes a model arbitrarily',
      "create_model('hf-hub:org/huge') whose cached config.json asks for embed_dim 10,000,000",
      'CheckpointError naming the cached config.json and embed_dim')
def _hf_hub_config(tmp_path, monkeypatch):
    from huggingface_hub import constants as hf_constants

    out = _export(tmp_path)
    _edit_config(out, lambda c: c['model_args'].update(embed_dim=10_000_000))
    repo = tmp_path / 'hf-cache' / 'models--org--huge'
    (repo / 'snapshots' / ('c' * 40)).mkdir(parents=True)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text('c' * 40)
    for name in ('config.json', 'model.safetensors'):
        shutil.copy(out / name, repo / 'snapshots' / ('c' * 40) / name)
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(tmp_path / 'hf-cache'))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(errors.CheckpointError, match=r'models--org--huge.*config.json .*embed_dim=10000000'):
        ecgvit.create_model('hf-hub:org/huge', pretrained=True)


@case('config', 'create_model with absurd sizes', "create_model('ecg_vit_tiny', embed_dim=10**7, depth=0)",
      'ValueError naming the key and its range, before any allocation')
def _direct_kwargs(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"create_model\('ecg_vit_tiny'\): embed_dim=10000000"):
        ecgvit.create_model('ecg_vit_tiny', embed_dim=10 ** 7)
    with pytest.raises(ValueError, match=r'depth=0 .*from 1 to 256'):
        ecgvit.create_model('ecg_vit_tiny', depth=0)


# ---------------------------------------------------------------------------------------------------------------------
# Weights, cards, messages


@case('weights', 'pretrained=True after a plain pip install',
      'no weights/ folder beside the installed package, HF_HUB_OFFLINE=1',
      'PretrainedWeightsError that names the checkout, `pip install -e .` and $ECGVIT_WEIGHTS_DIR')
def _non_editable_install(tmp_path, monkeypatch):
    site = tmp_path / 'site-packages' / 'ecgvit'
    site.mkdir(parents=True)
    monkeypatch.setattr(weights, '__file__', str(site / 'weights.py'))  # as a non-editable install places it
    monkeypatch.delenv('ECGVIT_WEIGHTS_DIR', raising=False)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(errors.PretrainedWeightsError, match='ECGVIT_WEIGHTS_DIR') as info:
        ecgvit.create_model('ecg_vit_mae_moco', pretrained=True)
    message = str(info.value)
    assert 'installed without the weights/ folder of its git checkout' in message and 'pip install -e .' in message
    assert str(tmp_path / 'site-packages' / 'weights') in message and 'ECGVIT_WEIGHTS_DIR=/path/to' in message
    assert "create_model('local-dir:/path/to/dir', pretrained=True)" in message  # the hint loads weights
    assert 'lfs' not in message.lower()


@case('weights', 'local-dir: without pretrained=True', "create_model('local-dir:/export') with no pretrained flag",
      "a UserWarning that the folder's architecture gets random weights and pretrained=True loads them")
def _local_dir_without_pretrained(tmp_path, monkeypatch):
    out = _export(tmp_path)
    with pytest.warns(UserWarning, match='without pretrained=True builds .* random weights'):
        fresh = ecgvit.create_model(f'local-dir:{out}')
    trained = ecgvit.create_model(f'local-dir:{out}', pretrained=True)
    assert not torch.equal(fresh.pos_embed, trained.pos_embed)


@case('weights', 'model card links', 'the card of an export and the shipped weights/*/README.md',
      'no link to a PyPI page that does not exist; the card says how to install from the checkout')
def _cards_have_no_pypi_link(tmp_path, monkeypatch):
    cards = [(_export(tmp_path) / 'README.md').read_text()]
    shipped = Path(ecgvit.__file__).resolve().parent.parent / 'weights'
    cards += [(shipped / n / 'README.md').read_text() for n in ('ecg_vit_mae_moco', 'ecg_vit_mae_nextclip')]
    for card in cards:
        assert 'pypi.org' not in card and 'pip install -e .' in card


# ---------------------------------------------------------------------------------------------------------------------
# Model inputs


@case('model input', 'wrong lead count', 'a (2, 8, 500) batch reaches a 12-lead encoder (eager and TorchScript)',
      'ValueError naming the 12 expected leads in order and the fix (not a raw convolution error)')
def _wrong_lead_count(tmp_path, monkeypatch):
    model = ecgvit.create_model('ecg_vit_tiny', **TINY).eval()
    match = r'expects 12 leads in the order I, II, III, aVR, .*V6 .*got 8'
    with pytest.raises(ValueError, match=match):
        model(torch.randn(2, 8, 500))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.jit.script is deprecated in recent torch
        scripted = torch.jit.script(model)
    with pytest.raises(Exception, match=match):  # TorchScript re-raises it as torch.jit.Error
        scripted(torch.randn(2, 8, 500))


@case('model input', '(B, samples, leads) layout', 'a (2, 500, 12) batch: the layout wfdb.rdsamp and most arrays use',
      'ValueError saying to transpose it (not to rebuild the model with in_chans=500)')
def _samples_by_leads(tmp_path, monkeypatch):
    model = ecgvit.create_model('ecg_vit_tiny', **TINY).eval()
    with pytest.raises(ValueError, match=r'looks like \(B, samples, leads\): transpose it') as info:
        model(torch.randn(2, 500, 12))
    assert 'in_chans' not in str(info.value)
    model(torch.randn(2, 500, 12).transpose(1, 2))  # the fix it names works


@case('model input', 'empty or too short record',
      'a (1, 12, 0) or (1, 12, 10) batch (shorter than one 25-sample patch)',
      "ValueError naming the length and the patch size (not the convolution's raw kernel-size error)")
def _too_short(tmp_path, monkeypatch):
    model = ecgvit.create_model('ecg_vit_tiny', **TINY).eval()
    for length in (0, 10):
        with pytest.raises(ValueError, match=f'ECG length {length} is shorter than one patch'):
            model(torch.zeros(1, 12, length))


@case('model input', 'integer samples', 'an int64 batch (raw ADC counts) reaches the encoder',
      'ValueError naming the dtype and x.float() (not a raw type-mismatch RuntimeError)')
def _integer_input(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match='floating-point ECG batch, got dtype torch.int64'):
        ecgvit.create_model('ecg_vit_tiny', **TINY)(torch.zeros(1, 12, 500, dtype=torch.int64))


@case('model input', 'wrong lead count in pretraining', 'an 8-lead batch reaches the MAE-MoCo masked pass',
      'ValueError naming the expected leads')
def _wrong_lead_count_masked(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match='expects 12 leads'):
        _pretrainer()(torch.randn(2, 8, L))


def _method_arg_case(method: str, kwargs: dict, match: str):
    def check(tmp_path, monkeypatch):
        extra = {'cycle': 'fixed'} if 'clip' in method else {}
        with pytest.raises(ValueError, match=match):
            create_pretrainer(method, 'ecg_vit_tiny', encoder_kwargs=dict(TINY, img_size=L), **extra, **kwargs)
    return check


for _method, _kwargs, _match in [
    ('mae_nextclip', {'sampling_rate': math.nan}, 'sampling_rate must be positive'),
    ('mae_nextclip', {'fallback_rr_s': math.inf}, 'fallback_rr_s must be positive'),
    ('mae_moco', {'temperature': math.nan}, 'temperature must be > 0'),
    ('mae_moco', {'alpha': math.nan}, r'alpha \(the MAE loss weight\) must be a finite number'),
    ('mae_nextclip', {'decoder_pos_init': 'sincoss'}, r"decoder_pos_init must be one of \('normal', 'sincos'\)"),
]:
    _arg, _value = next(iter(_kwargs.items()))
    case('method options', f'{_method} {_arg} = {_value}', f'create_pretrainer({_method!r}, {_arg}={_value}) '
         f'(ecgvit pretrain --method-arg {_arg}=...)',
         'ValueError naming the setting (NaN used to pass a `<= 0` check: NaN loss, or the MAE branch silently off)')(
        _method_arg_case(_method, _kwargs, _match))


@case('model input', 'overflow inside the model (x 1e30)',
      'a finite batch scaled by 1e30 reaches MAE-MoCo (paper passes, shared pass, MoCo alone) in training mode',
      'loss NaN (the loop skips the step); queue, BatchNorm statistics and momentum weights unchanged and finite')
def _overflow_leaves_moco_state_alone(tmp_path, monkeypatch):
    for method in ('mae_moco', 'mae_moco_shared', 'moco'):
        torch.manual_seed(0)
        model = _pretrainer(method).train()
        x = torch.randn(4, 12, L)
        model(x)  # one good step first, so the state is not the initial one
        before = {k: v.clone() for k, v in model.state_dict().items()}
        out = model(x * 1e30)
        assert not torch.isfinite(out['loss'])
        after = model.state_dict()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert changed == [], f'{method}: {changed}'
        assert model.moco.skipped_steps == 1
        model(x)  # and the next good step trains as before
        assert all(torch.isfinite(v.float()).all() for v in model.state_dict().values())


# ---------------------------------------------------------------------------------------------------------------------
# Training options (API level: TrainConfig, Preprocessing) and resuming


def _option_case(field: str, value, match: str):
    def check(tmp_path, monkeypatch):
        from ecgvit.train.validate import validate_train_config

        with pytest.raises(ValueError, match=match):
            validate_train_config(TrainConfig(**{field: value}))
        validate_train_config(TrainConfig())  # the defaults pass
    return check


for _field, _value, _match in [
    ('warmup_epochs', math.nan, r'--warmup-epochs \(warmup_epochs\) must be a finite number.*got nan'),
    ('save_every', -1, r'--save-every \(save_every\) must be a step count.*got -1'),
    ('save_every_epochs', -1, r'--save-every-epochs \(save_every_epochs\) must be an epoch count.*got -1'),
    ('output_dir', '', r"-o/--output \(output_dir\) must be a folder.*got ''"),
    ('lr', math.inf, r'--lr \(lr\) must be a finite number above 0.*got inf'),
    ('clip_grad', -1.0, r'--clip-grad \(clip_grad\) must be .*reverse the update'),
    ('plateau_factor', 1.5, r'--plateau-factor \(plateau_factor\)'),
    ('epochs', 0, r'--epochs \(epochs\) must be at least one epoch'),
]:
    case('options', f'{_field} = {_value!r}', f'TrainConfig({_field}={_value!r}) (ecgvit pretrain option)',
         'ValueError from ecgvit.train.validate naming the option, its value and the allowed range (train() checks '
         'it first; ecgvit pretrain before any data are read)')(
        _option_case(_field, _value, _match))


@case('options', 'sampling_rate = 0', 'Preprocessing(sampling_rate=0) (ecgvit pretrain --sampling-rate 0)',
      'ValueError naming sampling_rate (no division by zero later); every command refuses --sampling-rate or '
      '--num-samples 0, negative or NaN (tests/test_cli.py) instead of reading 0 as "not given"')
def _sampling_rate_zero(tmp_path, monkeypatch):
    from ecgvit.data.preprocess import Preprocessing

    for rate in (0, -360, math.nan):
        with pytest.raises(ValueError, match='sampling_rate must be a positive number of Hz'):
            Preprocessing(sampling_rate=rate)


@case('resume', 'another method', 'a MAE-MoCo checkpoint resumed with --method mae_nextclip (or the shared pass)',
      'ValueError that says the method differs, naming both, before the list of changed settings')
def _resume_with_another_method(tmp_path, monkeypatch):
    from ecgvit.train.compat import check_resume_method

    moco, clip = _pretrainer('mae_moco'), create_pretrainer('mae_nextclip', 'ecg_vit_tiny', cycle='fixed')
    state = {'path': 'run/checkpoints/step-00000004', 'config': {'method': 'mae_moco', 'pretrainer': moco.config}}
    with pytest.raises(ValueError, match=r'step-00000004: the method differs: the checkpoint was trained with '
                                         r'mae_moco, this run asks for mae_nextclip'):
        check_resume_method(state, {'method': 'mae_nextclip', 'pretrainer': clip.config})
    with pytest.raises(ValueError, match='with mae_moco, this run asks for mae_moco_shared'):
        check_resume_method(state, {'method': 'mae_moco', 'pretrainer': dict(moco.config, shared_pass=True)})
    # API runs that record no method name are told apart by their branches.
    with pytest.raises(ValueError, match=r'with mae\+moco, this run asks for mae\+clip'):
        check_resume_method({'config': {'pretrainer': moco.config}}, {'pretrainer': clip.config})
    check_resume_method(state, {'method': 'mae_moco', 'pretrainer': dict(moco.config, queue_size=32)})  # same one
    check_resume_method(state, None)  # nothing recorded here: the settings check decides


@case('resume', 'run folder in use by another process',
      'a second process resumes a run while a live process trains into its folder; then the holder is killed',
      'RunInUseError naming the holder\'s pid, before anything in the folder is touched (its partial checkpoint '
      'files stay); once the holder is gone, even by SIGKILL, the resume runs')
def _run_folder_in_use(tmp_path, monkeypatch):
    import subprocess
    import sys

    out = tmp_path / 'run'
    _run(out, epochs=1)
    partial = out / 'checkpoints' / '.tmp-step-00000099'  # what a live run is writing this moment
    partial.mkdir()
    hold = ('import sys, time; from pathlib import Path; from ecgvit.train.run_lock import RunLock; '
            'lock = RunLock(Path(sys.argv[1])).acquire(); print("locked", flush=True); time.sleep(600)')
    holder = subprocess.Popen([sys.executable, '-c', hold, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        before = sorted(p.relative_to(out).as_posix() for p in out.rglob('*'))
        with pytest.raises(errors.RunInUseError, match=rf'in use by another training process \(pid {holder.pid} '
                                                       rf'on host .*Nothing was changed'):
            _run(out, epochs=2, resume=True)
        with pytest.raises(errors.RunExistsError, match='already holds a training run'):  # checked first, read-only
            _run(out, epochs=2)
        assert partial.is_dir() and sorted(p.relative_to(out).as_posix() for p in out.rglob('*')) == before
    finally:
        holder.kill()
        holder.wait()
    _, summary = _run(out, epochs=2, resume=True)  # the kernel dropped the dead holder's lock
    assert summary['epochs'] == 2 and not partial.exists()


@case('resume', 'a stop signal in the middle of a step',
      "a scheduler's SIGTERM (or Ctrl-C) arrives during a training step, hundreds of steps from the next checkpoint",
      'the step finishes, a checkpoint of it is written and RunStopped (a KeyboardInterrupt; the command line exits '
      '143 or 130) says to --resume, which continues from that step; a second signal stops at once')
def _stop_signal_mid_step(tmp_path, monkeypatch):
    import os
    import signal

    out = tmp_path / 'run'
    forwards = []

    def signal_in_third_step(module, args):
        forwards.append(module.training)
        if forwards.count(True) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(errors.RunStopped, match=r'stopped by SIGTERM after step 3; .*--resume'):
        _run(out, before_forward=signal_in_third_step, save_every=500)
    assert [p.name for p in list_checkpoints(out / 'checkpoints')] == ['step-00000003']
    _, summary = _run(out, epochs=2, resume=True)
    assert summary['steps'] == 8


# ---------------------------------------------------------------------------------------------------------------------
# Reduced leads


@case('leads', 'a subset the weights never saw',
      'a 12-lead model (no lead_sets in its cfg) asked to probe or embed on lead I alone',
      'UntrainedLeadsError naming the subset, what the weights were trained on, and the two ways out')
def _untrained_lead_subset(tmp_path, monkeypatch):
    from ecgvit.eval.leads import check_encoder_leads
    from ecgvit.lead_sets import UntrainedLeadsError
    model = ecgvit.create_model('ecg_vit_tiny', **TINY)
    with pytest.raises(UntrainedLeadsError, match=r'not trained to run on 1-lead \(I\) input \(it was trained on: '
                                                  r'12-lead\).*--lead-dropout.*--allow-untrained-leads'):
        check_encoder_leads(model, '1', model_name='ecg_vit_tiny')
    with pytest.warns(UserWarning, match='running anyway'):
        assert check_encoder_leads(model, '1', allow_untrained=True)[1] is False


@case('leads', 'NaN and noise in an absent lead',
      'a 6-lead input whose V1-V6 rows hold NaN, inf or large noise (a device that leaves them floating)',
      'the masked batch gives exactly the embedding of the clean input; nothing non-finite reaches the encoder')
def _garbage_in_absent_leads(tmp_path, monkeypatch):
    from ecgvit.eval.leads import apply_lead_mask, lead_mask_tensor
    model = ecgvit.create_model('ecg_vit_tiny', **TINY, img_size=L).eval()
    clean = torch.randn(3, 12, L, generator=torch.Generator().manual_seed(0))
    clean[:, 6:] = 0
    dirty = clean.clone()
    dirty[0, 6:] = float('nan')
    dirty[1, 6:] = float('inf')
    dirty[2, 6:] = 1e6
    mask = lead_mask_tensor('6')
    with torch.no_grad():
        assert torch.equal(model(apply_lead_mask(dirty, mask)), model(clean))


@case('leads', 'bad lead-set dropout settings',
      '--lead-dropout 1.5; --lead-sets naming all 12 leads; --lead-sets with no --lead-dropout; an unknown lead name',
      'ValueError naming the value and the valid range or syntax, before any model is built')
def _bad_lead_dropout_settings(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r'lead_dropout must be a probability in \[0, 1\].*1.5'):
        _pretrainer('mae_moco', lead_dropout=1.5)
    with pytest.raises(ValueError, match='all 12 leads, which every model trains on'):
        _pretrainer('mae_moco', lead_dropout=0.5, lead_sets=['12'])
    with pytest.raises(ValueError, match='no effect with lead_dropout=0'):
        _pretrainer('mae_moco', lead_sets=['limb'])
    with pytest.raises(ValueError, match="Unknown lead 'V7'"):
        _pretrainer('mae_moco', lead_dropout=0.5, lead_sets=['V7'])


@case('method options', 'decoder sizes no transformer can have',
      'decoder_num_heads=7 for a 256-wide decoder; decoder_embed_dim=0; clip_decoder_num_heads=7; '
      'decoder_mlp_ratio=nan; decoder_depth=-1; decoder_embed_dim=10,000,000 (would allocate terabytes)',
      'ValueError naming the setting and its bound (the encoder\'s, ecgvit.models.arch_bounds), or a head count that '
      'divides, before any model is built; it was an AssertionError or a ZeroDivisionError from inside the blocks, '
      'or an out-of-memory kill')
def _bad_decoder_sizes(tmp_path, monkeypatch):
    for method, kw, match in [
            ('mae', dict(decoder_num_heads=7), r'decoder_num_heads must divide decoder_embed_dim=256 \(each head '
                                               r'.*decoder_num_heads=4\), got 7'),
            ('mae', dict(decoder_embed_dim=0), r'decoder_embed_dim must be an integer from 1 to 8192, got 0'),
            ('mae', dict(decoder_embed_dim=10_000_000), r'decoder_embed_dim must be an integer from 1 to 8192'),
            ('mae', dict(decoder_num_heads=None), r'decoder_num_heads must be an integer from 1 to 512, got None'),
            ('mae_nextclip', dict(clip_decoder_num_heads=7), r'clip_decoder_num_heads must divide '
                                                             r'clip_decoder_embed_dim=256'),
            ('mae', dict(decoder_mlp_ratio=math.nan), r'decoder_mlp_ratio must be a finite number above 0 and at most '
                                                      r'64, got nan'),
            ('mae_moco', dict(decoder_depth=-1), r'decoder_depth must be an integer from 0 to 256, got -1')]:
        with pytest.raises(ValueError, match=match):
            create_pretrainer(method, 'ecg_vit_nonexistent', **kw)  # refused before the encoder name is even read


@case('method options', 'Centerclip context that cannot sit on both sides', "create_pretrainer('mae_centerclip', "
      'min_context=0.6)', 'ValueError naming min_context and its bound (0.5); the clip used to start inside the '
      'left context without a word')
def _centerclip_context(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r'min_context must be below 0.5 for Centerclip.*got 0.6'):
        create_pretrainer('mae_centerclip', 'ecg_vit_tiny', min_context=0.6)
    assert create_pretrainer('mae_nextclip', 'ecg_vit_tiny', min_context=0.6).clip.min_context == 0.6  # one side


@case('weights', 'a pretraining wrapper given to save_pretrained', 'hub.save_pretrained(create_pretrainer(...))',
      "TypeError that says to pass its .encoder, before anything is written (it was an AttributeError on "
      "'pretrained_cfg')")
def _save_a_wrapper(tmp_path, monkeypatch):
    from ecgvit.hub import save_pretrained

    with pytest.raises(TypeError, match=r'got HybridPretrainer \(a pretraining wrapper: pass its .encoder\)'):
        save_pretrained(_pretrainer('mae_moco'), tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('index', range(len(HOSTILE_CASES)),
                         ids=[f"{c['layer']}: {c['kind']}" for c in HOSTILE_CASES])
def test_hostile_case(index, tmp_path, monkeypatch):
    _CHECKS[index](tmp_path, monkeypatch)


def test_every_case_is_a_complete_row():
    assert len(HOSTILE_CASES) == len(_CHECKS) >= 30
    for row in HOSTILE_CASES:
        assert set(row) == {'layer', 'kind', 'description', 'expected'} and all(row.values())
    kinds = [(r['layer'], r['kind']) for r in HOSTILE_CASES]
    assert len(set(kinds)) == len(kinds), 'each (layer, kind) names one case'


def test_resume_from_a_checkpoint_folder_warns_once_about_a_damaged_newest(tmp_path):
    """--resume given the checkpoints folder resolves it once: one warning for the damaged newest, and the run goes
    on from the intact one."""
    _run(tmp_path / 'run', epochs=1)
    ckpts = list_checkpoints(tmp_path / 'run' / 'checkpoints')
    _truncate(ckpts[-1] / 'model.safetensors')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        _, summary = _run(tmp_path / 'run', epochs=2, resume=str(tmp_path / 'run' / 'checkpoints'))
    damaged = [w for w in caught if 'Skipping damaged checkpoint' in str(w.message)]
    assert len(damaged) == 1, [str(w.message) for w in damaged]
    assert summary['steps'] == 8
