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
    # fp32 is the reference and always qualifies, even at a cosine of exactly 1 (rounding put it at 0.99999994)
    exact = optimize_for_inference(model, 'auto', example=x, repeats=1, min_cosine=1.0, candidates=('fp32',))
    assert exact.mode == 'fp32' and exact.cosine == {'fp32': 1.0}
    for bad in (0.0, 1.5, float('nan')):
        with pytest.raises(ValueError, match='min_cosine must be in'):
            optimize_for_inference(model, 'auto', example=x, min_cosine=bad)


def test_unknown_mode(model):
    with pytest.raises(ValueError, match='Unknown inference mode'):
        optimize_for_inference(model, 'fp8')
    assert 'compile' in INFERENCE_MODES


def _eager_int8(model):
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def test_int8_runs_frozen_graphs_per_shape_with_the_eager_results(model):
    fast = optimize_for_inference(model, 'int8')
    eager = _eager_int8(model)
    with torch.inference_mode():
        for shape in [(1, 12, 500), (4, 12, 500), (2, 12, 250), (1, 12, 500)]:  # a new length or batch: a new trace
            x = torch.randn(*shape)
            torch.testing.assert_close(fast(x), eager(x), rtol=1e-5, atol=1e-6)
    graphs = fast.model._graphs
    assert not fast.model._eager and len(graphs) == 3, 'one frozen graph per input shape, reused for a repeat'
    assert all(isinstance(g, torch.jit.ScriptModule) for g in graphs.values())


def test_int8_falls_back_to_eager_where_tracing_fails(model, monkeypatch):
    def no_tracing(*args, **kwargs):
        raise RuntimeError('TorchScript is gone')

    monkeypatch.setattr(torch.jit, 'trace', no_tracing)
    fast = optimize_for_inference(model, 'int8')
    x = torch.randn(2, 12, 500)
    torch.testing.assert_close(fast(x), _eager_int8(model)(x), rtol=1e-5, atol=1e-6)
    assert fast.model._eager and not fast.model._graphs


def test_int8_keeps_its_graphs_after_a_bad_input(model):
    fast = optimize_for_inference(model, 'int8')
    with pytest.raises(ValueError, match='multiple of the patch'):
        fast(torch.randn(1, 12, 510))  # the encoder's own error, not swallowed
    fast(torch.randn(1, 12, 500))
    assert not fast.model._eager and len(fast.model._graphs) == 1
