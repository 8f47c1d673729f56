"""ecgvit.layers.EcgAttention: timm's attention with the kernel picked per call, and the same numbers either way."""
import pytest
import torch
from timm.layers import Attention

import ecgvit
from ecgvit.layers import EcgAttention, adopt_ecg_attention, cpu_fused_attention_pays
from ecgvit.pretrain import create_pretrainer


def _attentions(module: torch.nn.Module):
    return [m for m in module.modules() if isinstance(m, Attention)]


def test_every_attention_of_models_and_pretrainers_is_adopted():
    model = create_pretrainer('mae_nextclip', encoder='ecg_vit_tiny')
    attns = _attentions(model)
    assert len(attns) >= 3  # encoder blocks, the MAE decoder and the clip decoder
    assert all(type(a) is EcgAttention for a in attns)
    assert all(type(a) is EcgAttention for a in _attentions(ecgvit.create_model('ecg_vit_small')))


def test_kernel_choice_follows_device_dtype_and_autocast():
    attn = _attentions(ecgvit.create_model('ecg_vit_tiny'))[0]
    assert attn.fused_attn is True  # fp32 on CPU: the fused kernel
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert attn.fused_attn is False  # bf16 autocast on CPU: explicit matmuls
    assert attn.fused_attn is True
    assert cpu_fused_attention_pays(torch.float32) and not cpu_fused_attention_pays(torch.bfloat16)
    attn.to(torch.bfloat16)
    assert attn.fused_attn is False  # bf16 weights
    attn.fused_attn = False
    attn.to(torch.float32)
    assert attn.fused_attn is False  # forcing the explicit path (timm's switch) still holds


def test_adopting_keeps_state_dict_and_timm_setting():
    from timm.models.vision_transformer import Block
    block = Block(32, num_heads=4)
    block.attn.fused_attn = False  # as TIMM_FUSED_ATTN=0 would build it
    before = {k: v.clone() for k, v in block.state_dict().items()}
    adopt_ecg_attention(block)
    assert type(block.attn) is EcgAttention and block.attn.fused_attn is False
    assert block.state_dict().keys() == before.keys()
    assert all(torch.equal(block.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize('dtype, tol', [(torch.float32, 1e-5), (torch.bfloat16, 0.05)])
def test_fused_and_explicit_paths_give_the_same_loss_and_gradients(dtype, tol):
    """A seeded MAE step computes the same loss and gradients through either kernel, within the dtype's tolerance."""
    torch.manual_seed(0)
    model = create_pretrainer('mae', encoder='ecg_vit_tiny', mask_ratio=0.75).train()
    x = torch.randn(4, 12, 3600)
    results = []
    for kernel in ('fused', 'explicit'):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            torch.manual_seed(1)  # the same mask both times
            loss = _loss_with_kernel(model, x, kernel)
        model.zero_grad()
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((loss.detach().float(), grad.float()))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert torch.allclose(loss_a, loss_b, rtol=tol, atol=tol)
    cos = torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=0)
    assert cos > (0.999999 if dtype == torch.float32 else 0.99)


def _loss_with_kernel(model: torch.nn.Module, x: torch.Tensor, kernel: str) -> torch.Tensor:
    """The model's loss with every attention on one kernel, whatever the dtype ('fused': the old path)."""
    original = EcgAttention.fused_attn
    try:
        EcgAttention.fused_attn = property(lambda self: kernel == 'fused', original.fset)
        return model(x)['loss']
    finally:
        EcgAttention.fused_attn = original


def test_scripting_and_fx_still_work_after_adoption():
    model = ecgvit.create_model('ecg_vit_tiny').eval()
    x = torch.randn(2, 12, 3600)
    scripted = torch.jit.script(model)
    assert torch.allclose(scripted(x), model(x), atol=1e-5)
    from timm.models._features_fx import GraphExtractNet
    features = GraphExtractNet(model, {'norm': 'out'})(x)
    assert torch.allclose(features, model.forward_features(x), atol=1e-5)


def test_quantised_attention_keeps_the_constructed_choice():
    model = ecgvit.create_model('ecg_vit_tiny').eval()
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    attn = _attentions(quantized)[0]
    assert attn.fused_attn is True  # qkv.weight is a method there: no device/dtype to read, timm's setting holds
    assert quantized(torch.randn(1, 12, 3600)).shape == (1, 64)
