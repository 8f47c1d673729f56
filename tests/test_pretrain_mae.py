"""MAE branch pieces: patchify, random masking, visible-only embedding and encoding, and the masked-patch loss."""
import pytest
import torch

import ecgvit
from ecgvit.layers import sincos_pos_embed_1d
from ecgvit.pretrain.mae import (
    MaeBranch,
    encode_masked,
    masking_ids,
    patchify,
    random_masking,
    unpatchify,
)

TINY = dict(embed_dim=32, depth=1, num_heads=2, img_size=250)


def test_patchify_layout_and_round_trip():
    x = torch.arange(2 * 12 * 50, dtype=torch.float32).reshape(2, 12, 50)
    p = patchify(x, 25)
    assert p.shape == (2, 2, 300)
    # Patch 1 of record 0 holds samples 25..49 of lead 0, then of lead 1, ...
    assert torch.equal(p[0, 1, :25], x[0, 0, 25:50]) and torch.equal(p[0, 1, 25:50], x[0, 1, 25:50])
    assert torch.equal(unpatchify(p, 12), x)
    with pytest.raises(ValueError, match='multiple of the patch length 25'):
        patchify(torch.zeros(1, 12, 60), 25)


def test_random_masking_keeps_the_right_tokens():
    x = torch.randn(3, 20, 8)
    kept, mask, ids_restore = random_masking(x, 0.75, torch.Generator().manual_seed(0))
    assert kept.shape == (3, 5, 8) and mask.shape == (3, 20)
    assert torch.all(mask.sum(1) == 15)
    for b in range(3):
        visible = x[b][mask[b] == 0]  # kept tokens, in original order
        # Every kept token is one of the visible ones, each exactly once.
        assert sorted(map(tuple, kept[b].tolist())) == sorted(map(tuple, visible.tolist()))
    # ids_restore undoes the shuffle: kept-then-masked, gathered by it, puts the kept tokens back in place.
    full = torch.cat([kept, torch.zeros(3, 15, 8)], 1)
    restored = torch.gather(full, 1, ids_restore[:, :, None].expand(-1, -1, 8))
    torch.testing.assert_close(restored * (1 - mask[:, :, None]), x * (1 - mask[:, :, None]))


def test_encoder_sees_only_visible_patches_without_cls():
    enc = ecgvit.create_model('ecg_vit_tiny', **TINY)
    branch = MaeBranch(enc, mask_ratio=0.8, decoder_embed_dim=16, decoder_num_heads=2)
    x = torch.randn(2, 12, 250)
    latent, mask, _ = branch.forward_encoder(enc, x, torch.Generator().manual_seed(0))
    assert latent.shape == (2, 2, 32)  # 10 patches, 2 kept, no [CLS]
    # Changing a masked patch's samples changes nothing in the latent; changing a kept one does.
    masked_idx = int(torch.nonzero(mask[0]).flatten()[0])
    kept_idx = int(torch.nonzero(mask[0] == 0).flatten()[0])
    for idx, same in ((masked_idx, True), (kept_idx, False)):
        x2 = x.clone()
        x2[0, :, idx * 25:(idx + 1) * 25] += 5.0
        latent2, _, _ = branch.forward_encoder(enc, x2, torch.Generator().manual_seed(0))
        assert torch.equal(latent2, latent) is same


def test_loss_is_mse_on_masked_patches_only():
    enc = ecgvit.create_model('ecg_vit_tiny', **TINY)
    branch = MaeBranch(enc, decoder_embed_dim=16, decoder_num_heads=2)
    x = torch.randn(2, 12, 250)
    target = patchify(x, 25)
    mask = torch.zeros(2, 10)
    mask[:, :3] = 1
    pred = target.clone()
    pred[:, 5:] += 100.0  # errors on visible patches are ignored
    pred[:, :3] += 2.0
    torch.testing.assert_close(branch.forward_loss(x, pred, mask), torch.tensor(4.0))


def test_decoder_pos_embed_is_resampled_for_other_lengths():
    enc = ecgvit.create_model('ecg_vit_tiny')  # stored length 3600: 144 decoder positions
    branch = MaeBranch(enc, decoder_embed_dim=16, decoder_num_heads=2)
    assert branch.decoder.decoder_pos_embed.shape == (1, 144, 16)
    loss, pred, mask = branch(enc, torch.randn(2, 12, 500))
    assert pred.shape == (2, 20, 300) and mask.shape == (2, 20) and torch.isfinite(loss)


def test_decoder_pos_init_sincos_changes_the_positions_only():
    def branch(pos_init):
        torch.manual_seed(0)
        return MaeBranch(ecgvit.create_model('ecg_vit_tiny', **TINY), decoder_embed_dim=16, decoder_num_heads=2,
                         decoder_pos_init=pos_init)

    normal, sincos = branch('normal').state_dict(), branch('sincos').state_dict()
    assert [k for k in normal if not torch.equal(normal[k], sincos[k])] == ['decoder.decoder_pos_embed']
    torch.testing.assert_close(sincos['decoder.decoder_pos_embed'][0], sincos_pos_embed_1d(10, 16))
    assert normal['decoder.decoder_pos_embed'].std() < 0.05  # the default stays the small normal start
    with pytest.raises(ValueError, match="pos_init must be one of"):
        branch('fourier')


def test_decoder_pos_init_reaches_the_pretrainer_and_its_config():
    model = ecgvit.create_pretrainer('mae', 'ecg_vit_tiny', decoder_pos_init='sincos', decoder_embed_dim=16,
                                     decoder_num_heads=2)
    assert model.config['decoder_pos_init'] == 'sincos'
    assert model.mae.decoder.decoder_pos_embed.requires_grad  # a start, not a fixed table
    assert ecgvit.create_pretrainer('mae_moco', 'ecg_vit_tiny').config['decoder_pos_init'] == 'normal'


def test_grad_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    enc = ecgvit.create_model('ecg_vit_tiny', **TINY)
    branch = MaeBranch(enc, decoder_embed_dim=16, decoder_num_heads=2)
    x = torch.randn(2, 12, 250)
    grads = []
    for flag in (False, True):
        enc.set_grad_checkpointing(flag)
        enc.zero_grad()
        loss, _, _ = branch(enc, x, torch.Generator().manual_seed(0))
        loss.backward()
        grads.append((loss.detach(), enc.blocks[0].attn.qkv.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def _reference_kept_tokens(enc, x, ids_keep):
    """The plain path: convolve every patch, add every position, then gather the kept tokens."""
    tokens = enc.embed_patches(x)
    return torch.gather(tokens, 1, ids_keep[:, :, None].expand(-1, -1, tokens.shape[-1]))


@pytest.mark.parametrize('length', [250, 300])  # 300: positions resampled from the model's 10 to 12 patches
def test_kept_patch_embedding_matches_embedding_everything(length):
    enc = ecgvit.create_model('ecg_vit_tiny', **TINY)
    x = torch.randn(3, 12, length)
    num = length // 25
    ids_keep, mask, _ = masking_ids(3, num, 0.7, x.device, torch.Generator().manual_seed(0))
    fast = enc.embed_patches(x, ids_keep)
    ref = _reference_kept_tokens(enc, x, ids_keep)
    assert fast.shape == (3, round(num * 0.3), 32)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc.embed_patches(x.unsqueeze(2), ids_keep), fast)  # (B, C, 1, L) input
    # The gradients reach the conv weights exactly as through the convolution.
    g_fast = torch.autograd.grad(fast.square().sum(), enc.patch_embed.proj.weight)[0]
    g_ref = torch.autograd.grad(ref.square().sum(), enc.patch_embed.proj.weight)[0]
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-5)
    # Every kept token comes from its own patch: the mask says which, masking_ids says in what order.
    assert torch.all(mask.gather(1, ids_keep) == 0)


def test_kept_patch_embedding_falls_back_for_other_patch_embeddings():
    enc = ecgvit.create_model('ecg_vit_tiny', **TINY)
    x = torch.randn(2, 12, 250)
    ids_keep = torch.tensor([[0, 3, 7], [9, 1, 2]])
    plain = enc.embed_patches(x, ids_keep)
    # Padded, the convolution is no longer one linear map per patch (still 10 tokens): the module itself must run.
    enc.patch_embed.proj.padding = (0, 1)
    padded = enc.embed_patches(x, ids_keep)
    torch.testing.assert_close(padded, _reference_kept_tokens(enc, x, ids_keep))
    assert not torch.allclose(padded, plain, atol=1e-3)


def test_encode_masked_rejects_a_length_that_is_not_whole_patches():
    enc = ecgvit.create_model('ecg_vit_tiny', **TINY)
    with pytest.raises(ValueError, match='multiple of the patch size 25'):
        encode_masked(enc, torch.randn(1, 12, 260), 0.75)


def test_hooks_on_the_patch_embedding_are_honoured():
    enc = ecgvit.create_model('ecg_vit_tiny', **TINY)
    x = torch.randn(2, 12, 250)
    calls = []
    enc.patch_embed.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    latent, mask, _ = encode_masked(enc, x, 0.7, torch.Generator().manual_seed(0))
    assert calls == [(2, 10, 32)]  # the module ran (on every patch), so its hook saw the tokens
    assert latent.shape == (2, 3, 32) and mask.shape == (2, 10) and mask.dtype == latent.dtype
