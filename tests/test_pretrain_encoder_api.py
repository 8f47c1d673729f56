"""What the pretraining branches ask of the encoder: its masked forward, the encoder check, MoCo's two entry points,
and the one decoder body the MAE and clip decoders share."""
import pytest
import torch
from torch import nn

import ecgvit
from ecgvit.models.ecg_vit import EcgVisionTransformer
from ecgvit.pretrain import create_pretrainer
from ecgvit.pretrain.decoder import LightDecoder
from ecgvit.pretrain.mae import MaeDecoder, masking_ids
from ecgvit.pretrain.moco import MocoBranch
from ecgvit.pretrain.nextclip import ClipDecoder

TINY = dict(embed_dim=32, depth=2, num_heads=2, img_size=250)

pytestmark = pytest.mark.usefixtures('one_thread')


def test_forward_masked_encodes_only_the_kept_patches_and_adds_no_parameters():
    enc = ecgvit.create_model('ecg_vit_tiny', **TINY).eval()
    names = [n for n, _ in enc.named_parameters()]
    x = torch.randn(2, 12, 250)
    ids_keep, _, _ = masking_ids(2, 10, 0.7, x.device, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = enc.forward_masked(x, ids_keep, with_prefix=True)
        assert out.shape == (2, 1 + 3, 32)
        # The same tokens as running the blocks on [CLS] plus the kept tokens of the full embedding by hand.
        full = enc.patch_embed(x) + enc.pos_embed[:, 1:]
        kept = torch.gather(full, 1, ids_keep[:, :, None].expand(-1, -1, 32))
        cls = enc.cls_token.expand(2, -1, -1) + enc.pos_embed[:, :1]
        torch.testing.assert_close(out, enc.norm(enc.blocks(torch.cat([cls, kept], 1))), rtol=1e-5, atol=1e-5)
        assert enc.forward_masked(x, ids_keep).shape == (2, 3, 32)  # MAE's own pass: no [CLS]
    assert [n for n, _ in enc.named_parameters()] == names
    # TorchScript still compiles the model: the masked methods stay out of the scripted path.
    torch.jit.script(enc)


def test_create_pretrainer_checks_the_encoder_type_and_its_cls_token():
    class NotAnEcgEncoder(nn.Module):
        embed_dim = 32

    with pytest.raises(TypeError, match='not an ecgvit encoder.*forward_masked'):
        create_pretrainer('mae', NotAnEcgEncoder())
    with pytest.raises(ValueError, match='class_token=False'):
        create_pretrainer('mae_moco', 'ecg_vit_tiny', dict(class_token=False, global_pool='avg'))
    assert isinstance(create_pretrainer('mae', 'ecg_vit_tiny').encoder, EcgVisionTransformer)


def test_moco_from_cls_is_the_full_view_step_with_the_query_already_encoded():
    torch.manual_seed(0)
    enc = ecgvit.create_model('ecg_vit_tiny', **TINY)
    moco = MocoBranch(enc, dim=16, hidden_dim=16, queue_size=32).eval()
    x_q, x_k = torch.randn(4, 12, 250), torch.randn(4, 12, 250)
    with torch.no_grad():
        loss, q, k = moco(enc, x_q, x_k)
        loss2, q2, k2 = moco.forward_from_cls(enc, enc.forward_features(x_q)[:, 0], x_k)
    torch.testing.assert_close((loss2, q2, k2), (loss, q, k))


def test_mae_and_clip_decoders_share_one_body():
    mae = MaeDecoder(embed_dim=32, num_patches=10, patch_values=300, decoder_embed_dim=16, decoder_num_heads=2)
    clip = ClipDecoder(32, clip_len=50, in_chans=12, token_len=25, decoder_embed_dim=16, decoder_num_heads=2)
    assert isinstance(mae, LightDecoder) and isinstance(clip, LightDecoder)
    assert [n for n, _ in mae.named_parameters()][:3] == ['mask_token', 'decoder_pos_embed', 'decoder_embed.weight']
    assert not hasattr(clip, 'mask_token') and clip.decoder_pos_embed.shape == (1, 2, 16)
    assert clip(torch.randn(3, 32)).shape == (3, 12, 50)
