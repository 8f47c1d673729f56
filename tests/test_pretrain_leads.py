"""Pretraining for reduced leads: lead-set dropout in every method, the MAE loss over present leads only, and the
trained subsets recorded in the run, the exported weights and the resume check."""
import copy
import json

import pytest
import torch
from data_fixtures import write_wfdb
from torch.utils.data import DataLoader, TensorDataset

import ecgvit
from ecgvit.cli import main
from ecgvit.constants import LEADS
from ecgvit.data import synthesize_ecg
from ecgvit.data.lead_mask_dataset import WithLeadMask
from ecgvit.hub import load_encoder, save_pretrained
from ecgvit.pretrain import create_pretrainer
from ecgvit.pretrain.hybrid import HybridPretrainer
from ecgvit.pretrain.mae import patchify
from ecgvit.train import MethodSettingsError, TrainConfig, train
from ecgvit.train.batch import batch_kwargs
from ecgvit.train.compat import check_same_method
from ecgvit.train.loop import seed_everything

pytestmark = pytest.mark.usefixtures('one_thread')

LIMB = LEADS[:6]
TINY = dict(embed_dim=32, depth=1, num_heads=2, img_size=250)
DEC = dict(decoder_embed_dim=32, decoder_num_heads=2)
CLIP = dict(sampling_rate=50.0, clip_len=25, cycle='fixed', clip_decoder_embed_dim=32, clip_decoder_num_heads=2)
KW = {
    'mae': DEC,
    'moco': dict(queue_size=16),
    'mae_moco': dict(queue_size=16, **DEC),
    'mae_moco_shared': dict(queue_size=16, **DEC),
    'mae_nextclip': dict(**DEC, **CLIP),
    'mae_nextclip_shared': dict(**DEC, **CLIP),
    'mae_centerclip': dict(**DEC, **CLIP),
}


def _model(method: str, **kw):
    torch.manual_seed(0)
    return create_pretrainer(method, 'ecg_vit_tiny', TINY, **dict(KW[method], **kw))


def _x(b: int = 4, seed: int = 0) -> torch.Tensor:
    x = torch.randn(b, 12, 250, generator=torch.Generator().manual_seed(seed))
    return x + torch.sign(x) * 0.01  # no exact zeros: every zero in an encoder input was put there


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------------------
# The MAE loss and the data's lead mask


def test_mae_loss_scores_present_leads_only():
    mae = _model('mae').mae
    x = _x(3)
    pred = torch.randn(3, 10, 300, generator=_gen(1), requires_grad=True)
    mask = (torch.rand(3, 10, generator=_gen(2)) < 0.6).float()
    present = torch.ones(3, 12, dtype=torch.bool)
    present[1, [3, 7]] = False
    present[2, :6] = False
    loss = mae.forward_loss(x, pred, mask, present)
    # By hand: the mean squared error over the present leads' values in masked patches.
    err = (pred - patchify(x, 25)).pow(2).reshape(3, 10, 12, 25)
    weight = (mask[:, :, None, None] * present[:, None, :, None].float()).expand(err.shape)
    assert loss.detach().item() == pytest.approx(float((err * weight).sum().detach() / weight.sum()), rel=1e-6)
    # What a missing lead holds changes nothing, and it gets no gradient.
    other = x.clone()
    other[1, 3] = 100.0
    other[2, :6] = -7.0
    assert torch.equal(mae.forward_loss(other, pred, mask, present), loss)
    assert mae.forward_loss(other, pred, mask) != mae.forward_loss(x, pred, mask)  # without the mask it would
    loss.backward()
    grad = pred.grad.reshape(3, 10, 12, 25)
    assert torch.all(grad[1, :, [3, 7]] == 0) and torch.all(grad[2, :, :6] == 0)
    assert torch.all(grad[0][mask[0] > 0].abs().sum(dim=(1, 2)) > 0)


def test_mae_loss_with_every_lead_present_is_exactly_the_plain_loss():
    mae = _model('mae').mae
    x = _x(3)
    pred = torch.randn(3, 10, 300, generator=_gen(1))
    mask = (torch.rand(3, 10, generator=_gen(2)) < 0.6).float()
    assert torch.equal(mae.forward_loss(x, pred, mask, torch.ones(3, 12, dtype=torch.bool)),
                       mae.forward_loss(x, pred, mask))


def test_clip_loss_scores_present_leads_only():
    clip = _model('mae_nextclip').clip
    cls = torch.randn(3, 32, generator=_gen(1))
    target = torch.randn(3, 12, 25, generator=_gen(2))
    present = torch.ones(3, 12, dtype=torch.bool)
    assert torch.equal(clip.loss_from_cls(cls, target, present)[0], clip.loss_from_cls(cls, target)[0])
    present[0, 4:] = False
    loss, pred = clip.loss_from_cls(cls, target, present)
    weight = present[:, :, None].float().expand(3, 12, 25)
    expected = ((pred - target).pow(2) * weight).sum() / weight.sum()
    assert loss.detach().item() == pytest.approx(expected.detach().item(), rel=1e-6)
    other = target.clone()
    other[0, 4:] = 50.0  # what a missing lead holds is no target
    assert torch.equal(clip.loss_from_cls(cls, other, present)[0], loss)
    assert clip.loss_from_cls(cls, other)[0] != clip.loss_from_cls(cls, target)[0]


@pytest.mark.parametrize('method', ['mae', 'mae_moco', 'mae_nextclip', 'mae_nextclip_shared'])
def test_full_lead_mask_gives_bit_identical_steps_and_a_partial_one_changes_the_losses(method):
    base = _model(method).train()
    x = _x()
    runs = {}
    for name, lead_mask in [('none', None), ('all', torch.ones(4, 12, dtype=torch.bool)),
                            ('partial', torch.ones(4, 12, dtype=torch.bool).index_fill_(1, torch.tensor([0, 9]), 0))]:
        model = copy.deepcopy(base)
        out = model(x, generator=_gen(), lead_mask=lead_mask)
        out['loss'].backward()
        runs[name] = (out, [p.grad.clone() for p in model.parameters() if p.grad is not None])
    (out_none, grads_none), (out_all, grads_all) = runs['none'], runs['all']
    assert all(torch.equal(out_none[k], out_all[k]) for k in out_none)
    assert len(grads_none) == len(grads_all) and all(torch.equal(a, b) for a, b in zip(grads_none, grads_all))
    for key in [k for k in out_none if k in ('loss_mae', 'loss_nextclip')]:  # MoCo's has no per-lead target
        assert not torch.equal(runs['partial'][0][key], out_none[key]), key


def test_lead_mask_shape_is_checked():
    with pytest.raises(ValueError, match=r'lead_mask must be \(batch, leads\) = \(4, 12\)'):
        _model('mae')(_x(), lead_mask=torch.ones(4, 6, dtype=torch.bool))


def test_with_lead_mask_puts_the_mask_in_every_batch_and_the_loop_passes_it(tmp_path):
    signals = _x(16)
    present = torch.ones(16, 12, dtype=torch.bool)
    present[::3, 6:] = False
    signals[~present] = 0.0  # as the cache zero-fills a missing lead
    data = WithLeadMask(TensorDataset(signals, torch.zeros(16)), lead_mask=present.numpy())
    assert data.missing_fraction() == pytest.approx(6 / 16)
    batch = next(iter(DataLoader(data, batch_size=8)))
    assert set(batch) == {'x', 'y', 'lead_mask'} and batch['lead_mask'].dtype == torch.bool
    assert torch.equal(batch_kwargs(batch, torch.device('cpu'))['lead_mask'], present[:8])
    # Dict items (WithRR's) keep their keys.
    rr = WithLeadMask([{'x': signals[i], 'rr_samples': torch.tensor(40.0)} for i in range(16)], lead_mask=present)
    assert set(rr[0]) == {'x', 'rr_samples', 'lead_mask'}
    with pytest.raises(ValueError, match='has no lead_mask'):
        WithLeadMask(TensorDataset(signals))
    with pytest.raises(ValueError, match=r'\(16, leads\)'):
        WithLeadMask(TensorDataset(signals), lead_mask=present[:4])
    # Through the training loop, the model gets each batch's mask.
    seed_everything(0)
    model = _model('mae')
    seen = []
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs.get('lead_mask')), with_kwargs=True)
    train(model, data, None, TrainConfig(output_dir=str(tmp_path), epochs=1, batch_size=8, amp='fp32',
                                         progress=False, warmup_epochs=0, save_every=0))
    assert len(seen) == 2 and all(m is not None and m.shape == (8, 12) for m in seen)


# ---------------------------------------------------------------------------------------------------------------------
# Lead-set dropout in every branch


def _spy(obj, name, calls, pick):
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        calls.append(pick(*args, **kwargs))
        return original(*args, **kwargs)
    setattr(obj, name, wrapper)


@pytest.mark.parametrize('method', list(KW))
def test_every_encoder_pass_sees_the_subset_and_targets_stay_full(method):
    model = _model(method, lead_dropout=1.0, lead_sets=['I']).train()
    x = _x()
    inputs, targets = [], []
    for enc in [model.encoder] + ([model.moco.momentum_encoder] if model.moco is not None else []):
        _spy(enc, 'forward_features', inputs, lambda x, *a, **k: x)
        _spy(enc, 'forward_masked', inputs, lambda x, *a, **k: x)
    if model.mae is not None:
        _spy(model.mae, 'forward_loss', targets, lambda x, *a, **k: x)
    if model.clip is not None:
        _spy(model.clip, 'loss_from_cls', targets, lambda cls, target, *a: target)
    out = model(x, generator=_gen())
    assert torch.isfinite(out['loss'])
    passes = {'mae': 1, 'moco': 2, 'mae_moco': 3, 'mae_moco_shared': 2, 'mae_nextclip': 2, 'mae_nextclip_shared': 1,
              'mae_centerclip': 2}[method]
    assert len(inputs) == passes
    for seen in inputs:  # lead I only: every other lead is zero in every encoder input
        assert torch.all(seen[:, 1:] == 0) and bool((seen[:, 0] != 0).any())
    assert len(targets) == (model.mae is not None) + (model.clip is not None)
    for target in targets:  # the MAE record and the clip: every lead, as the data had it
        assert bool((target[:, 1:] != 0).any(dim=-1).all())
    if model.mae is not None and not model.shared_pass:
        assert torch.equal(targets[0], x)


def test_lead_dropout_off_is_the_plain_method():
    off = _model('mae_moco')
    assert off.lead_dropout is None and off.lead_sets is None
    assert off.config['lead_dropout'] == 0.0 and off.config['lead_sets'] is None
    assert 'lead_sets' not in off.encoder.pretrained_cfg
    on = _model('mae_moco', lead_dropout=0.5, lead_sets='limb,I')
    # No new parameters or buffers: checkpoints and shipped weights keep their layout.
    assert {k: v.shape for k, v in on.state_dict().items()} == {k: v.shape for k, v in off.state_dict().items()}
    x = _x()
    out_off = copy.deepcopy(off).train()(x, generator=_gen())
    out_on = copy.deepcopy(on).train()(x, generator=_gen())
    assert not torch.equal(out_off['loss'], out_on['loss'])  # same weights, same draws: only the dropout differs


def test_factory_records_the_subsets_and_round_trips():
    model = _model('mae_nextclip', lead_dropout=0.25, lead_sets=['limb', 'I+II'])
    assert model.config['lead_dropout'] == 0.25
    assert model.config['lead_sets'] == [list(LIMB), ['I', 'II']]
    assert model.lead_sets == (LIMB, ('I', 'II')) and model.encoder.pretrained_cfg['lead_sets'] == model.lead_sets
    rebuilt = create_pretrainer('mae_nextclip', 'ecg_vit_tiny', TINY, **json.loads(json.dumps(model.config)))
    assert rebuilt.config == model.config and rebuilt.lead_sets == model.lead_sets
    assert _model('mae').config['lead_sets'] is None


@pytest.mark.parametrize('kw, match', [
    (dict(lead_sets='limb'), 'no effect with lead_dropout=0'),
    (dict(lead_dropout=1.5), r'lead_dropout must be a probability'),
    (dict(lead_dropout=True), r'lead_dropout must be a probability'),
    (dict(lead_dropout=0.5, lead_sets='limb,X1'), "Unknown lead 'X1'"),
    (dict(lead_dropout=0.5, lead_sets='12'), 'all 12 leads'),
])
def test_factory_refuses_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        _model('mae', **kw)


def test_exported_weights_say_which_subsets_they_were_trained_on(tmp_path):
    model = _model('mae', lead_dropout=0.5)
    save_pretrained(model.encoder, tmp_path / 'on')
    cfg = json.loads((tmp_path / 'on' / 'config.json').read_text())['pretrained_cfg']
    assert cfg['lead_sets'] == [list(LIMB), ['I']]
    loaded = ecgvit.create_model(f'local-dir:{tmp_path / "on"}', pretrained=True)
    assert tuple(map(tuple, loaded.pretrained_cfg['lead_sets'])) == (LIMB, ('I',))
    save_pretrained(_model('mae').encoder, tmp_path / 'off')  # trained without it: 12 leads only, nothing recorded
    assert 'lead_sets' not in json.loads((tmp_path / 'off' / 'config.json').read_text())['pretrained_cfg']


# ---------------------------------------------------------------------------------------------------------------------
# Resume


def test_resume_refuses_other_lead_dropout_settings(tmp_path):
    data = TensorDataset(_x(16))

    def run(epochs, resume, **kw):
        seed_everything(0)
        model = _model('mae', **kw)
        cfg = TrainConfig(output_dir=str(tmp_path), epochs=epochs, batch_size=8, amp='fp32', progress=False,
                          warmup_epochs=0, save_every=0, resume=resume)
        return train(model, data, None, cfg, run_config={'pretrainer': model.config})

    run(1, False, lead_dropout=0.5)
    assert run(2, True, lead_dropout=0.5)['epochs'] == 2  # the same settings continue
    with pytest.raises(MethodSettingsError, match=r'lead_dropout=0.5 there, lead_dropout=0.0 here'):
        run(3, True)
    with pytest.raises(MethodSettingsError, match=r'lead_sets=.*there'):
        run(3, True, lead_dropout=0.5, lead_sets='limb')


def test_a_checkpoint_from_before_lead_dropout_counts_as_off():
    old = {'config': {'pretrainer': {'mask_ratio': 0.75}}, 'path': 'old'}
    check_same_method(old, {'mask_ratio': 0.75, 'lead_dropout': 0.0, 'lead_sets': None})
    with pytest.raises(MethodSettingsError) as err:
        check_same_method(old, {'mask_ratio': 0.75, 'lead_dropout': 0.5, 'lead_sets': [['I']]})
    assert err.value.diffs == [('lead_dropout', 0.0, 0.5), ('lead_sets', None, [['I']])]


# ---------------------------------------------------------------------------------------------------------------------
# The command line


TINY_DATA = ['--data', 'synthetic', '--synthetic-records', '40', '--sampling-rate', '100', '--num-samples', '500',
             '--no-progress', '--model', 'ecg_vit_tiny', '-b', '8', '--warmup-epochs', '1', '--amp', 'fp32',
             '--threads', '1']


def test_cli_pretrain_with_lead_dropout_exports_the_subsets_and_resumes_with_them(tmp_path, capsys):
    threads = torch.get_num_threads()
    common = ['pretrain', '--method', 'mae', *TINY_DATA, '--cache-dir', str(tmp_path / 'data')]
    out = tmp_path / 'run'
    try:
        assert main([*common, '--epochs', '1', '--lead-dropout', '0.5', '--lead-sets', 'limb,I',
                     '--output', str(out)]) == 0
        run_cfg = json.loads((out / 'config.json').read_text())
        assert run_cfg['pretrainer']['lead_dropout'] == 0.5
        assert run_cfg['pretrainer']['lead_sets'] == [list(LIMB), ['I']]
        assert run_cfg['data']['train_records_missing_leads'] == 0.0  # the data's lead mask rode along
        exported = json.loads((out / 'encoder' / 'config.json').read_text())['pretrained_cfg']
        assert exported['lead_sets'] == [list(LIMB), ['I']]
        model = ecgvit.create_model(f'local-dir:{out / "encoder"}', pretrained=True)
        assert tuple(map(tuple, model.pretrained_cfg['lead_sets'])) == (LIMB, ('I',))
        encoder, _ = load_encoder(str(out))  # the run folder itself says it too
        assert encoder.pretrained_cfg['lead_sets'] == (LIMB, ('I',))
        # A resume without the flags continues with them; one that changes them is refused in one line.
        assert main([*common, '--epochs', '2', '--resume', '--output', str(out)]) == 0
        assert json.loads((out / 'config.json').read_text())['pretrainer']['lead_sets'] == [list(LIMB), ['I']]
        capsys.readouterr()
        assert main([*common, '--epochs', '3', '--resume', '--lead-sets', 'limb', '--output', str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert 'lead_sets=' in err and '--lead-sets' in err and len(err.splitlines()) == 1
        assert main([*common, '--epochs', '3', '--resume', '--lead-dropout', '0', '--output', str(out)]) == 2
        assert 'lead_dropout=0.5 there, lead_dropout=0.0 here' in capsys.readouterr().err
        assert main([*common, '--epochs', '1', '--lead-sets', 'limb', '--output', str(tmp_path / 'x')]) == 2
        assert 'no effect with lead_dropout=0' in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


def test_cli_pretrain_carries_the_caches_lead_mask_into_the_batches(tmp_path, monkeypatch):
    """Records lacking leads (limb-lead-only files) reach the model with their mask, through the real cache."""
    for i in range(24):
        n_leads = 6 if i % 3 == 0 else 12
        signal = synthesize_ecg('NSR', fs=100.0, duration_s=5.0, rng=i).signal[:n_leads]
        write_wfdb(tmp_path / 'records', f'r{i:02d}', signal, 100.0, lead_names=LEADS[:n_leads])
    seen = []
    forward = HybridPretrainer.forward

    def spy(self, x, *args, lead_mask=None, **kwargs):
        seen.append(None if lead_mask is None else lead_mask.clone())
        return forward(self, x, *args, lead_mask=lead_mask, **kwargs)
    monkeypatch.setattr(HybridPretrainer, 'forward', spy)
    threads = torch.get_num_threads()
    try:
        with pytest.warns(UserWarning, match='8 of 24 cached items lack leads'):
            rc = main(['pretrain', '--method', 'mae', '--data', 'folder', '--data-dir', str(tmp_path / 'records'),
                       *TINY_DATA[8:], '--sampling-rate', '100', '--num-samples', '500', '--epochs', '1',
                       '--output', str(tmp_path / 'run')])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    missing = json.loads((tmp_path / 'run' / 'config.json').read_text())['data']['train_records_missing_leads']
    assert 0 < missing < 1
    assert seen and all(m is not None for m in seen)  # every batch, training and validation, carried it
    masks = torch.cat(seen)
    # Each record has all 12 leads or exactly the 6 limb leads, and both kinds reached the model.
    assert set(map(tuple, masks.tolist())) == {(True,) * 12, (True,) * 6 + (False,) * 6}
