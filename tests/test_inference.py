"""The inference fast path: every mode matches fp32 closely, and 'auto' only picks modes that pass the check."""
import pytest
import torch
import torch.nn.functional as F

import ecgvit
from ecgvit.inference import INFERENCE_MODES, optimize_for_inference


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return ecgvit.create_model('ecg_vit_tiny').eval()


@pytest.mark.parametrize('mode,min_cos', [('fp32', 0.99999), ('bf16', 0.999), ('int8', 0.98)])
def test_modes_match_fp32(model, mode, min_cos):
    x = torch.randn(3, 12, 500)
    with torch.no_grad():
        ref = model(x)
    fast = optimize_for_inference(model, mode)
    out = fast(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert F.cosine_similarity(out, ref).min() >= min_cos
    assert fast.mode == mode
    assert not any(p.dtype == torch.bfloat16 for p in model.parameters()), 'the original model is left untouched'


def test_auto_records_measurements_and_respects_threshold(model):
    x = torch.randn(1, 12, 500)
    fast = optimize_for_inference(model, 'auto', example=x, repeats=2, min_cosine=0.999)
    assert set(fast.timings_ms) == {'fp32', 'bf16', 'int8'}
    assert fast.cosine[fast.mode] >= 0.999
    strict = optimize_for_inference(model, 'auto', example=x, repeats=1, min_cosine=1.0 - 1e-6)
    assert strict.mode == 'fp32' or strict.cosine[strict.mode] >= 1.0 - 1e-6


def test_unknown_mode(model):
    with pytest.raises(ValueError, match='Unknown inference mode'):
        optimize_for_inference(model, 'fp8')
    assert 'compile' in INFERENCE_MODES
