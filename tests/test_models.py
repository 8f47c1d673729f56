"""The encoder: seed geometry, ECG input handling, and the timm model contract on every registered name."""
import pytest
import timm
import torch

import ecgvit
from ecgvit import errors
from ecgvit.models.ecg_vit import resample_pos_embed_1d
from ecgvit.weights_sha256 import WEIGHTS_SHA256

# Tiny arguments where size is not the point; the registry names keep their own patch size and lead count.
TINY = dict(embed_dim=32, depth=2, num_heads=2)
MODELS = ecgvit.list_models()
SEED_PARAMS = 12_846_592  # Conv 12->512 k25, pos (145, 512), CLS, 6 x (512, 16 heads, MLP 2), final LayerNorm


def _tiny(name: str, **kwargs) -> torch.nn.Module:
    return ecgvit.create_model(name, **dict(TINY, **kwargs))


def test_registry_lists_both_seed_models_in_timm():
    assert {'ecg_vit_mae_moco', 'ecg_vit_mae_nextclip'} <= set(timm.list_models('ecg_vit*'))
    assert set(ecgvit.list_models('ecg_vit_mae*')) == {'ecg_vit_mae_moco', 'ecg_vit_mae_nextclip'}
    # the names with shipped weights, as timm's list_models(pretrained=True) lists those with published ones
    assert ecgvit.list_models(pretrained=True) == sorted(WEIGHTS_SHA256)
    # timm's own listings know them too (ecgvit finds the files itself, so no url / hf_hub_id is registered)
    assert timm.list_models('ecg_vit*', pretrained=True) == sorted(WEIGHTS_SHA256) == timm.list_pretrained('ecg*')
    assert ecgvit.list_models('*tiny', pretrained=True) == [] and 'ecg_vit_tiny' in ecgvit.list_models('*tiny')


@pytest.mark.parametrize('name', ['ecg_vit_mae_moco', 'ecg_vit_mae_nextclip'])
def test_seed_size_parameter_count_and_shapes(name):
    model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == SEED_PARAMS
    assert model.pos_embed.shape == (1, 145, 512)
    assert model.patch_embed.proj.weight.shape == (512, 12, 1, 25)
    assert len(model.blocks) == 6 and model.blocks[0].attn.num_heads == 16
    assert model.blocks[0].mlp.fc1.out_features == 1024
    cfg = model.pretrained_cfg
    assert cfg['input_size'] == (12, 1, 3600)
    assert cfg['sampling_rate'] == 360.0 and cfg['duration_s'] == 10.0
    assert tuple(cfg['lead_names']) == ecgvit.LEADS
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 12, 3600)).shape == (2, 512)


def test_readme_example_num_classes():
    model = ecgvit.create_model('ecg_vit_mae_moco', num_classes=5)
    with torch.no_grad():
        assert model(torch.randn(2, 12, 3600)).shape == (2, 5)


def test_3d_and_4d_input_agree():
    model = _tiny('ecg_vit_tiny').eval()
    x = torch.randn(3, 12, 500)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(2)))


@pytest.mark.parametrize('length', [3601, 30, 1])
def test_length_not_multiple_of_patch_raises(length):
    model = _tiny('ecg_vit_tiny')
    with pytest.raises(ValueError, match='multiple of the patch size 25'):
        model(torch.randn(1, 12, length))


def test_wrong_rank_and_constructor_errors():
    model = _tiny('ecg_vit_tiny')
    with pytest.raises(ValueError, match='dims'):
        model(torch.randn(12, 3600))
    with pytest.raises(ValueError, match='multiple of patch_size'):
        _tiny('ecg_vit_tiny', img_size=3610)
    with pytest.raises(TypeError, match='not_an_argument'):
        _tiny('ecg_vit_tiny', not_an_argument=1)
    with pytest.raises(TypeError, match='dynamic_img_size'):
        _tiny('ecg_vit_tiny', dynamic_img_size=True)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ecgvit.UnknownModelError, match='ecg_vit_mae_moco'):
        ecgvit.create_model('ecg_vit_mae_mocoo')


def test_other_lengths_resample_pos_embed_along_time_only():
    model = _tiny('ecg_vit_tiny').eval()
    with torch.no_grad():
        assert model(torch.randn(1, 12, 5000)).shape == (1, 32)
    pe = model.pos_embed.detach()
    assert resample_pos_embed_1d(pe, 144) is pe  # the stored length is untouched
    # a linear ramp along time stays a linear ramp after resampling (no square-image assumption)
    ramp = torch.linspace(0, 1, 144).view(1, 144, 1).expand(1, 144, 4)
    ramp = torch.cat([torch.full((1, 1, 4), 7.0), ramp], dim=1)
    out = resample_pos_embed_1d(ramp, 288)
    assert out.shape == (1, 289, 4) and torch.all(out[:, 0] == 7.0)
    assert torch.all(out[0, 2:, 0] >= out[0, 1:-1, 0])


def test_set_input_size_and_img_size_kwarg():
    model = _tiny('ecg_vit_tiny')
    model.set_input_size(5000)
    assert model.pos_embed.shape[1] == 201 and model.seq_len == 5000
    model2 = _tiny('ecg_vit_tiny', img_size=5000)
    assert model2.pos_embed.shape[1] == 201
    with pytest.raises(ValueError, match='multiple'):
        model.set_input_size(5010)


@pytest.mark.parametrize('pool,expected', [('token', (2, 32)), ('avg', (2, 32)), ('', (2, 21, 32))])
def test_global_pool(pool, expected):
    model = _tiny('ecg_vit_tiny', global_pool=pool).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 12, 500)).shape == expected


def test_token_and_avg_pooling_give_their_own_values():
    """'token' is the normed [CLS] output; 'avg' the mean of the patch tokens (not [CLS]), normed after pooling
    (timm's fc_norm): same weights, other values, each computed here by hand from the blocks' output."""
    torch.manual_seed(0)
    token = _tiny('ecg_vit_tiny', global_pool='token').eval()
    avg = _tiny('ecg_vit_tiny', global_pool='avg').eval()
    state = token.state_dict()
    state.update({f'fc_norm.{k}': state.pop(f'norm.{k}') for k in ('weight', 'bias')})  # avg norms after pooling
    avg.load_state_dict(state)
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        raw = token.blocks(token.norm_pre(token._pos_embed(token.patch_embed(x))))  # (B, 1 + 20, D), before norm
        torch.testing.assert_close(token(x), token.norm(raw)[:, 0])
        torch.testing.assert_close(avg(x), token.norm(raw[:, 1:].mean(dim=1)))
        assert not torch.allclose(avg(x), token.norm(raw.mean(dim=1)), atol=1e-4)  # [CLS] is not averaged in
        assert (token(x) - avg(x)).abs().max() > 1e-2


def test_avg_pooling_of_token_trained_weights_says_to_pass_fc_norm_false(tmp_path):
    """Weights trained with [CLS] pooling norm before pooling; timm's global_pool='avg' norms after it (fc_norm). The
    refusal names the one difference and the way out; fc_norm=False then loads them and averages the normed patch
    tokens, as reset_classifier(0, 'avg') on the loaded model does."""
    from safetensors.torch import save_file

    from ecgvit.errors import CheckpointError

    torch.manual_seed(0)
    token = _tiny('ecg_vit_tiny').eval()
    path = tmp_path / 'w.safetensors'
    save_file(token.state_dict(), str(path))
    with pytest.raises(CheckpointError, match=r"before the pooling \(norm\).*pass fc_norm=False"):
        _tiny('ecg_vit_tiny', global_pool='avg', pretrained=True,
                            pretrained_cfg_overlay={'file': str(path), 'hf_hub_id': None, 'sha256': None})
    avg = _tiny('ecg_vit_tiny', global_pool='avg', fc_norm=False, pretrained=True,
                              pretrained_cfg_overlay={'file': str(path), 'hf_hub_id': None, 'sha256': None}).eval()
    token.reset_classifier(0, 'avg')
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        torch.testing.assert_close(avg(x), token(x))
    after = _tiny('ecg_vit_tiny', global_pool='avg')
    save_file(after.state_dict(), str(path))
    with pytest.raises(CheckpointError, match=r"after the pooling \(fc_norm\).*global_pool they were trained with"):
        _tiny('ecg_vit_tiny', pretrained=True,
                            pretrained_cfg_overlay={'file': str(path), 'hf_hub_id': None, 'sha256': None})


def test_checkpoint_filter_fn_resamples_pos_embed_and_unwraps_prefixes():
    from ecgvit.models.ecg_vit import checkpoint_filter_fn

    torch.manual_seed(0)
    src = _tiny('ecg_vit_tiny', img_size=500)  # 20 patches
    dst = _tiny('ecg_vit_tiny', img_size=1000)  # 40 patches
    state = src.state_dict()
    out = checkpoint_filter_fn(dict(state), dst)
    assert out['pos_embed'].shape == (1, 41, 32)
    torch.testing.assert_close(out['pos_embed'], resample_pos_embed_1d(state['pos_embed'], 40))
    torch.testing.assert_close(out['pos_embed'][:, 0], state['pos_embed'][:, 0])  # [CLS] keeps its position
    # Resampling a linear ramp along time keeps it linear, end to end.
    ramp = state['pos_embed'].clone()
    ramp[0, 1:] = torch.linspace(0, 19, 20)[:, None]
    resampled = checkpoint_filter_fn(dict(state, pos_embed=ramp), dst)['pos_embed'][0, 1:, 0]
    # Patch i of 40 sits at i / 2 - 0.25 of the 20 old positions; the ends are clamped to the old ends.
    torch.testing.assert_close(resampled[1:-1], torch.arange(1, 39) / 2 - 0.25)
    assert resampled[0] == 0 and resampled[-1] == 19
    dst.load_state_dict(out)
    # Prefixed checkpoints: a pretraining wrapper ('encoder.'), DDP ('module.'), torch.compile ('_orig_mod.').
    wrapper = dict(state, **{f'encoder.{k}': v for k, v in state.items()}, **{'moco.queue': torch.zeros(4, 2)})
    wrapper = {k: v for k, v in wrapper.items() if k.startswith(('encoder.', 'moco.'))}
    for prefixed in (wrapper, {f'module.{k}': v for k, v in state.items()},
                     {f'module._orig_mod.{k}': v for k, v in state.items()},
                     {'state_dict': {f'module.{k}': v for k, v in state.items()}}):
        got = checkpoint_filter_fn(prefixed, src)
        assert sorted(got) == sorted(state)
        assert all(torch.equal(got[k], state[k]) for k in state)
    # An unknown prefix is not guessed at: every tensor is named as unexpected.
    with pytest.raises(errors.CheckpointError, match='unexpected model.encoder.pos_embed'):
        checkpoint_filter_fn({f'model.encoder.{k}': v for k, v in state.items()}, src)


def test_the_lead_order_in_the_lead_count_error_is_the_constants():
    from ecgvit.constants import LEADS

    with pytest.raises(ValueError, match=f"in the order {', '.join(LEADS)} "):
        _tiny('ecg_vit_tiny')(torch.randn(1, 8, 500))


def test_forward_head_reset_classifier_and_pre_logits():
    model = _tiny('ecg_vit_tiny', num_classes=4).eval()
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 21, 32)
        assert model.forward_head(feats, pre_logits=True).shape == (2, 32)
        assert model.forward_head(feats).shape == (2, 4)
        model.reset_classifier(7, global_pool='avg')
        assert model(x).shape == (2, 7) and model.global_pool == 'avg'
        model.reset_classifier(0)
        assert model(x).shape == (2, 32)
    assert model.num_features == model.head_hidden_size == 32
    assert 'pos_embed' in model.no_weight_decay()
    assert 'blocks' in model.group_matcher()


def test_backward_reaches_every_parameter_and_drop_path():
    model = _tiny('ecg_vit_tiny', num_classes=3, drop_path_rate=0.1).train()
    model(torch.randn(2, 12, 500)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_features_only_and_forward_intermediates():
    model = _tiny('ecg_vit_tiny', features_only=True, out_indices=(0, 1))
    feats = model(torch.randn(2, 12, 500))
    assert [f.shape for f in feats] == [(2, 32, 1, 20), (2, 32, 1, 20)]
    enc = _tiny('ecg_vit_tiny').eval()
    final, inter = enc.forward_intermediates(torch.randn(2, 12, 500))
    assert final.shape == (2, 21, 32) and inter[-1].shape == (2, 32, 1, 20)


def test_grad_checkpointing_same_output():
    model = _tiny('ecg_vit_tiny').eval()
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        ref = model(x)
        model.set_grad_checkpointing(True)
        torch.testing.assert_close(model(x), ref)


def test_torchscript_trace_export_and_compile():
    model = _tiny('ecg_vit_tiny', num_classes=3).eval()
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), ref)
        torch.testing.assert_close(torch.jit.trace(model, x)(x), ref)
        exported = torch.export.export(model, (x,)).module()
        torch.testing.assert_close(exported(x), ref)
        # Dynamo capture with no graph breaks; the eager backend keeps the test free of a C++ build.
        compiled = torch.compile(model, backend='eager', fullgraph=True)
        torch.testing.assert_close(compiled(x), ref)


def test_fx_feature_extraction():
    from timm.models import get_notrace_functions, get_notrace_modules
    from torchvision.models.feature_extraction import create_feature_extractor

    model = _tiny('ecg_vit_tiny', num_classes=3).eval()
    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())
    fx = create_feature_extractor(model, return_nodes=['head'], tracer_kwargs=tracer_kwargs)
    x = torch.randn(1, 12, 500)
    with torch.no_grad():
        torch.testing.assert_close(fx(x)['head'], model(x))


def test_meta_device_and_dtype():
    model = _tiny('ecg_vit_tiny', device='meta')
    assert model.pos_embed.device.type == 'meta'
    model = _tiny('ecg_vit_tiny', dtype=torch.bfloat16)
    assert model.pos_embed.dtype == torch.bfloat16


@pytest.mark.parametrize('name', MODELS)
def test_timm_contract_on_registry(name):
    """timm's model-test expectations for each registered name, at tiny width."""
    model = timm.create_model(name, num_classes=42, **TINY)
    cfg = model.pretrained_cfg
    assert cfg['architecture'] == name and not cfg.get('fixed_input_size')
    sd = model.state_dict()
    assert cfg['first_conv'] + '.weight' in sd and cfg['classifier'] + '.weight' in sd
    x = torch.randn(2, *cfg['min_input_size'])
    out = model(x)
    assert out.shape == (2, 42)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters()), 'a registered encoder holds only trainable parts'


def test_pretrained_without_weights_fails_fast_and_clearly(tmp_path, monkeypatch):
    import socket

    from ecgvit.hub import PretrainedWeightsError

    def no_network(*args, **kwargs):
        raise AssertionError(f'a network connection was attempted while offline: {args[1:]}')

    monkeypatch.setenv('ECGVIT_WEIGHTS_DIR', str(tmp_path))  # no weights there, whatever the checkout ships
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    # Fast because nothing is attempted, not because a timer says so: any connection fails the test.
    monkeypatch.setattr(socket.socket, 'connect', no_network)
    monkeypatch.setattr(socket, 'create_connection', no_network)
    with pytest.raises(PretrainedWeightsError, match='No weights are published'):
        ecgvit.create_model('ecg_vit_mae_nextclip', pretrained=True)


def test_numpy_integer_sizes_are_accepted_and_checked():
    import numpy as np

    model = _tiny('ecg_vit_tiny', img_size=np.int64(500), patch_size=np.int64(25))
    assert model.seq_len == 500 and model.patch_len == 25
    with pytest.raises(ValueError, match=r'embed_dim=(np.int64\()?100000\)? .*from 1 to 8192'):
        _tiny('ecg_vit_tiny', embed_dim=np.int64(100_000))


def test_encoders_and_decoders_share_one_size_check():
    from ecgvit.models.arch_bounds import transformer_size_problem
    from ecgvit.pretrain import create_pretrainer

    sizes = dict(embed_dim=32, depth=0, num_heads=3, mlp_ratio=2.0)
    # The encoder's rules, read under a prefix: depth 0 is only a decoder's, and a missing size only an encoder's.
    assert transformer_size_problem(sizes) == ('depth', 0, 'be an integer from 1 to 256')
    decoder = {f'decoder_{k}': v for k, v in sizes.items()}
    assert transformer_size_problem(decoder, 'decoder_', min_depth=0)[:2] == ('decoder_num_heads', 3)
    assert transformer_size_problem({'embed_dim': 32}) is None
    assert transformer_size_problem({'decoder_embed_dim': 32}, 'decoder_', required=True)[:2] == ('decoder_depth', None)
    with pytest.raises(ValueError, match=r"create_model\('ecg_vit_tiny'\): num_heads=3 is not a sane model size: it "
                                         r'must divide embed_dim=32 .*e\.g\. num_heads=2\)'):
        _tiny('ecg_vit_tiny', embed_dim=32, num_heads=3)
    with pytest.raises(ValueError, match=r'^decoder_num_heads must divide decoder_embed_dim=32 .*got 3\.$'):
        create_pretrainer('mae', 'ecg_vit_tiny', decoder_embed_dim=32, decoder_num_heads=3)
    model = create_pretrainer('mae', 'ecg_vit_tiny', {'embed_dim': 32, 'depth': 1, 'num_heads': 2},
                              decoder_embed_dim=32, decoder_depth=0, decoder_num_heads=2)
    assert len(model.mae.decoder.decoder_blocks) == 0  # a decoder without blocks is still a decoder


def test_a_cfg_dict_without_sizes_gets_ecg_defaults_not_image_ones():
    from ecgvit.data import Preprocessing
    from ecgvit.models.ecg_vit import to_ecg_pretrained_cfg

    for given, length in (({'sampling_rate': 100}, 3600), ({'sampling_rate': 100, 'duration_s': 10}, 1000)):
        cfg = to_ecg_pretrained_cfg(given)
        assert cfg.input_size == (12, 1, length) and cfg.mean == (0.,) * 12 and cfg.std == (1.,) * 12
        # the dataclass and the plain dict describe the same input
        from_cfg = Preprocessing.from_pretrained_cfg
        assert from_cfg(cfg).num_samples == from_cfg(given).num_samples == length
    assert to_ecg_pretrained_cfg({'input_size': [12, 1, 5000]}).input_size == (12, 1, 5000)  # given sizes win
