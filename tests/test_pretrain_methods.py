"""create_pretrainer: every method's outputs, gradients, state dict and errors (tiny sizes; seed size once)."""
import json

import pytest
import torch

import ecgvit
from ecgvit.pretrain import HybridPretrainer, create_pretrainer, list_pretrainers, split_method

TINY = dict(embed_dim=64, depth=2, num_heads=4, img_size=500)
DEC = dict(decoder_embed_dim=32, decoder_num_heads=4)
CLIP = dict(clip_len=50, clip_decoder_embed_dim=32, clip_decoder_num_heads=4, cycle='fixed')
SMALL_KW = {
    'mae_moco': dict(queue_size=64, **DEC),
    'mae_nextclip': dict(**DEC, **CLIP),
    'mae_centerclip': dict(**DEC, **CLIP),
    'mae': dict(**DEC),
    'moco': dict(queue_size=64),
}
PARTS = {
    'mae_moco': {'loss_mae', 'loss_moco'},
    'mae_nextclip': {'loss_mae', 'loss_nextclip'},
    'mae_centerclip': {'loss_mae', 'loss_centerclip'},
    'mae': {'loss_mae'},
    'moco': {'loss_moco'},
}


pytestmark = pytest.mark.usefixtures('one_thread')


def _tiny(method: str, **kw) -> HybridPretrainer:
    torch.manual_seed(0)
    return create_pretrainer(method, 'ecg_vit_tiny', TINY, **dict(SMALL_KW[method], **kw))


def test_list_pretrainers():
    assert list_pretrainers() == ['mae_moco', 'mae_nextclip', 'mae_centerclip', 'mae', 'moco']


@pytest.mark.parametrize('method', list_pretrainers())
def test_outputs_gradients_and_state_dict_tiny(method):
    model = _tiny(method)
    assert model.method == method
    json.dumps(model.config)  # JSON-serialisable
    x = torch.randn(4, 12, 500)
    out = model(x)
    assert set(out) == PARTS[method] | {'loss'}
    for v in out.values():
        assert v.shape == () and torch.isfinite(v)
    alpha = model.config.get('alpha', 1.0)
    if method in ('mae', 'moco'):
        assert torch.allclose(out['loss'], out[next(iter(PARTS[method]))])
    else:
        other = (PARTS[method] - {'loss_mae'}).pop()
        assert torch.allclose(out['loss'], out[other] + alpha * out['loss_mae'])
    out['loss'].backward()

    # Every trainable parameter gets a non-zero gradient, except the [CLS] token in MAE alone (the seed's MAE branch
    # runs without [CLS]); nothing reaches the momentum side.
    unused = {'encoder.cls_token'} if method == 'mae' else set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert name.startswith(('moco.momentum_encoder.', 'moco.momentum_head.')), name
            assert p.grad is None, name
        elif name in unused:
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    if model.moco is not None:
        assert all(not p.requires_grad for p in model.moco.momentum_encoder.parameters())
        assert all(not p.requires_grad for p in model.moco.momentum_head.parameters())
        # No Parameter object or storage is shared between the query and key sides.
        q_ids = {id(p) for p in model.encoder.parameters()} | {id(p) for p in model.moco.head.parameters()}
        k_side = list(model.moco.momentum_encoder.parameters()) + list(model.moco.momentum_head.parameters())
        assert not q_ids & {id(p) for p in k_side}
        q_ptrs = {p.data_ptr() for p in model.encoder.parameters()}
        assert not q_ptrs & {p.data_ptr() for p in k_side}
        sd = model.state_dict()
        assert 'moco.queue' in sd and 'moco.queue_ptr' in sd
        assert any(k.startswith('moco.momentum_encoder.') for k in sd)

    # The encoder alone loads into a plain create_model with no extra or missing keys.
    plain = ecgvit.create_model('ecg_vit_tiny', **TINY)
    plain.load_state_dict(model.encoder.state_dict(), strict=True)
    assert set(plain.state_dict()) == set(model.encoder.state_dict())


@pytest.mark.parametrize('method', list_pretrainers())
def test_eval_mode_is_deterministic_and_leaves_state_alone(method):
    model = _tiny(method).eval()
    x = torch.randn(4, 12, 500)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = model(x, generator=torch.Generator().manual_seed(0))
    b = model(x, generator=torch.Generator().manual_seed(0))
    for k in a:
        assert torch.equal(a[k], b[k])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize('method', list_pretrainers())
def test_seed_size_shapes_and_finite_loss(method):
    torch.manual_seed(0)
    model = create_pretrainer(method)
    assert sum(p.numel() for p in model.encoder.parameters()) == 12_846_592
    if model.mae is not None:
        dec = model.mae.decoder
        assert tuple(dec.decoder_embed.weight.shape) == (256, 512)
        assert tuple(dec.mask_token.shape) == (1, 1, 256)
        assert tuple(dec.decoder_pos_embed.shape) == (1, 144, 256)
        assert len(dec.decoder_blocks) == 1 and dec.decoder_blocks[0].attn.num_heads == 8
        assert dec.decoder_blocks[0].mlp.fc1.out_features == 512  # MLP ratio 2
        assert tuple(dec.decoder_pred.weight.shape) == (300, 256)  # 25 samples x 12 leads
    if model.moco is not None:
        assert tuple(model.moco.queue.shape) == (65536, 128)
        linears = [m for m in model.moco.head if isinstance(m, torch.nn.Linear)]
        bns = [m for m in model.moco.head if isinstance(m, torch.nn.BatchNorm1d)]
        assert [tuple(m.weight.shape) for m in linears] == [(128, 512), (128, 128), (128, 128)]
        assert len(bns) == 3
    out = model(torch.randn(2, 12, 3600), rr_samples=torch.tensor([300.0, float('nan')]))
    assert set(out) == PARTS[method] | {'loss'}
    assert all(torch.isfinite(v) for v in out.values())


def test_defaults_follow_the_seed():
    cfg = create_pretrainer('mae_moco', 'ecg_vit_tiny').config
    assert (cfg['alpha'], cfg['momentum'], cfg['temperature'], cfg['queue_size']) == (40.0, 0.99, 0.2, 65536)
    assert (cfg['moco_dim'], cfg['moco_hidden_dim'], cfg['moco_num_layers'], cfg['mask_ratio']) == (128, 128, 3, 0.75)
    assert create_pretrainer('mae_nextclip', 'ecg_vit_tiny').config['alpha'] == 2.0


def test_shared_variants_are_named_for_the_hybrids_only():
    assert split_method('mae_moco') == ('mae_moco', {})
    assert split_method('mae_nextclip_shared') == ('mae_nextclip', {'shared_pass': True})
    assert set(list_pretrainers(variants=True)) - set(list_pretrainers()) == {
        'mae_moco_shared', 'mae_nextclip_shared', 'mae_centerclip_shared'}
    for bad in ('mae_shared', 'moco_shared', 'mae+paper', 'simclr'):
        with pytest.raises(ValueError, match='Unknown pretraining method'):
            split_method(bad)
    # 0.1's '+paper' names still run, as the paper's passes (now the plain name), with a warning
    with pytest.warns(FutureWarning, match="'mae_moco' is the paper's method"):
        assert split_method('mae_moco+paper') == ('mae_moco', {'shared_pass': False})


@pytest.mark.parametrize('method', ['mae_moco', 'mae_nextclip', 'mae_centerclip'])
def test_hybrids_default_to_the_papers_passes(method):
    kw = dict(queue_size=8) if method == 'mae_moco' else {}
    model = create_pretrainer(method, 'ecg_vit_tiny', **kw)
    assert not model.shared_pass and model.config['shared_pass'] is False
    shared = create_pretrainer(f'{method}_shared', 'ecg_vit_tiny', **kw)
    assert shared.shared_pass and shared.method == method and shared.config['shared_pass'] is True
    assert create_pretrainer(method, 'ecg_vit_tiny', **dict(shared.config)).shared_pass  # the config round-trips
    if method == 'mae_moco':  # the key view is masked like the MAE input only in the shared pass
        assert shared.moco.key_mask_ratio == 0.75 and model.moco.key_mask_ratio == 0.0
    with pytest.raises(ValueError, match=f"name '{method}_shared' implies {{'shared_pass': True}} but "
                                         f"{{'shared_pass': False}} was passed"):
        create_pretrainer(f'{method}_shared', 'ecg_vit_tiny', shared_pass=False, **kw)


def test_paper_passes_follow_the_paper():
    """MAE-MoCo by default: MAE without [CLS] on the un-augmented record, MoCo query and key from two augmented,
    unmasked views (all 145 tokens), as the paper describes."""
    model = create_pretrainer('mae_moco', 'ecg_vit_tiny', queue_size=8).train()
    seen = []
    model.encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    model(torch.randn(2, 12, 3600))
    # the MAE pass: 36 visible patches, no [CLS]; the query pass: 144 patches + [CLS]
    d = model.encoder.embed_dim
    assert sorted(seen) == [(2, 36, d), (2, 145, d)]


@pytest.mark.parametrize('method', list_pretrainers())
def test_config_round_trips_through_create_pretrainer(method):
    model = _tiny(method)
    rebuilt = create_pretrainer(method, 'ecg_vit_tiny', TINY, **json.loads(json.dumps(model.config)))
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_alpha_zero_skips_the_mae_branch():
    model = _tiny('mae_moco', alpha=0.0)
    out = model(torch.randn(4, 12, 500))
    assert set(out) == {'loss', 'loss_moco'}
    # Without MAE there is no masked pass to share: MoCo runs on full views, as the paper's ablation does.
    assert not model.shared_pass and model.moco.key_mask_ratio == 0.0 and model.config['shared_pass'] is False
    assert _tiny('mae_moco', alpha=0.0, shared_pass=True).shared_pass  # unless asked for


@pytest.mark.parametrize('method, kw', [(m, {}) for m in list_pretrainers()] + [
    ('mae_moco', dict(shared_pass=True)), ('mae_nextclip', dict(shared_pass=True)), ('mae_moco', dict(alpha=0.0)),
    ('mae_moco', dict(alpha=0.0, shared_pass=True)), ('mae_nextclip', dict(alpha=0.0)), ('mae', dict(reg_tokens=2))])
def test_skips_parameters_says_whether_a_step_leaves_any_without_a_gradient(method, kw):
    # DDP's find_unused_parameters follows it (train/loop.py): saying False wrongly would fail the run under
    # torchrun, saying True needlessly costs a graph traversal per step.
    enc_kw = {'reg_tokens': kw.pop('reg_tokens')} if 'reg_tokens' in kw else {}
    torch.manual_seed(0)
    model = create_pretrainer(method, 'ecg_vit_tiny', dict(TINY, **enc_kw), **dict(SMALL_KW[method], **kw))
    model(torch.randn(4, 12, 500))['loss'].backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert model.skips_parameters == bool(unused), unused


def test_other_lengths_and_4d_input():
    model = _tiny('mae_nextclip')
    assert model(torch.randn(2, 12, 1, 500))['loss'].isfinite()
    assert model(torch.randn(2, 12, 750))['loss'].isfinite()  # pos-embeds resampled along time


def test_encoder_module_is_used_as_is():
    enc = ecgvit.create_model('ecg_vit_tiny', **TINY)
    model = create_pretrainer('mae', enc, **DEC)
    assert model.encoder is enc
    with pytest.raises(TypeError, match='encoder_kwargs'):
        create_pretrainer('mae', enc, dict(depth=1))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="mae_moco, mae_nextclip, mae_centerclip, mae, moco"):
        create_pretrainer('simclr', 'ecg_vit_tiny')
    with pytest.raises(TypeError, match='queue_size'):
        create_pretrainer('mae', 'ecg_vit_tiny', queue_size=10)
    with pytest.raises(TypeError, match='bogus') as caught:
        create_pretrainer('mae_moco', 'ecg_vit_tiny', bogus=1)
    # Structured, so a caller (the command line) can name the setting its own way.
    from ecgvit.errors import UnknownMethodSettingError
    from ecgvit.pretrain import method_settings
    assert isinstance(caught.value, UnknownMethodSettingError)
    assert (caught.value.method, caught.value.unknown) == ('mae_moco', ['bogus'])
    assert caught.value.allowed == method_settings('mae_moco')
    import pickle
    again = pickle.loads(pickle.dumps(caught.value))  # e.g. raised in a worker process
    assert (again.unknown, str(again)) == (['bogus'], str(caught.value))
    with pytest.raises(ValueError, match='mask_ratio'):
        create_pretrainer('mae', 'ecg_vit_tiny', mask_ratio=1.0)
    with pytest.raises(ValueError, match='clip_len'):
        create_pretrainer('mae_nextclip', 'ecg_vit_tiny', clip_len=60)
    with pytest.raises(ValueError, match='alpha'):
        create_pretrainer('mae_moco', 'ecg_vit_tiny', alpha=-1.0, queue_size=8)


def test_state_dict_round_trip_resumes_queue_and_momentum_encoder():
    model = _tiny('mae_moco').train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 12, 500))['loss'].backward()
        opt.step()
    sd = model.state_dict()
    other = _tiny('mae_moco')
    other.load_state_dict(sd)
    assert int(other.moco.queue_ptr) == 8
    for k, v in other.state_dict().items():
        assert torch.equal(v, sd[k]), k
