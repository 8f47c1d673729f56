"""Nextclip / Centerclip targets: cycle length, hidden samples, resampled clip, R-peak path and fallback."""
import numpy as np
import pytest
import torch

from ecgvit.data.synthetic import synthesize_ecg
from ecgvit.pretrain import create_pretrainer

TINY = dict(embed_dim=32, depth=1, num_heads=2, img_size=1000)
CLIP = dict(clip_len=50, clip_decoder_embed_dim=16, clip_decoder_num_heads=2, decoder_embed_dim=16,
            decoder_num_heads=2, sampling_rate=100.0)


def _ramp(batch: int = 4, length: int = 1000) -> torch.Tensor:
    t = torch.arange(length, dtype=torch.float32) + 1.0  # no zeros in the input
    return (t[None, None] * (torch.arange(12, dtype=torch.float32) + 1)[None, :, None]).expand(batch, 12, length)


@pytest.mark.parametrize('method', ['mae_nextclip', 'mae_centerclip'])
def test_targets_are_the_half_cycle_resampled_and_hidden_from_the_encoder(method):
    model = create_pretrainer(method, 'ecg_vit_tiny', TINY, **CLIP)
    x = _ramp()
    rr = torch.tensor([80.0, 120.0, 60.0, 100.0])  # samples
    hidden, target, start, span = model.clip.make_targets(x, rr, torch.Generator().manual_seed(0))
    assert torch.equal(span, torch.tensor([40, 60, 30, 50]))  # half an RR
    assert target.shape == (4, 12, 50)
    for b in range(4):
        s, n = int(start[b]), int(span[b])
        assert s >= 100  # min_context 0.1 of 1000 samples
        # The target spans exactly samples s .. s+n-1 (a ramp stays a ramp under linear resampling).
        assert target[b, 0, 0] >= x[b, 0, s] and target[b, 0, -1] <= x[b, 0, s + n - 1]
        # Sample centres map to s - 0.5 + (j + 0.5) n / 50, clamped inside the window.
        assert target[b, 0, -1] - target[b, 0, 0] == pytest.approx(min(n - 1, n - n / 50), abs=1e-3)
        torch.testing.assert_close(target[b, 5], 6 * target[b, 0])  # every lead, same window
        zero = (hidden[b] == 0).all(0)
        if method == 'mae_nextclip':
            assert torch.equal(zero, torch.arange(1000) >= s)  # everything from the point on
        else:
            assert torch.equal(zero, (torch.arange(1000) >= s) & (torch.arange(1000) < s + n))
            assert s + n <= 900  # context after the clip too
        assert torch.equal(hidden[b][:, ~zero], x[b][:, ~zero])


def test_fixed_cycle_unknown_rr_and_detection_inside_forward():
    model = create_pretrainer('mae_nextclip', 'ecg_vit_tiny', TINY, **CLIP)
    x = torch.zeros(2, 12, 1000)
    # NaN / non-positive rr means unknown: fallback 0.8 s -> 80 samples at 100 Hz, half = 40.
    assert torch.equal(model.clip.clip_lengths(x, torch.tensor([float('nan'), -1.0])), torch.tensor([40, 40]))
    fixed = create_pretrainer('mae_nextclip', 'ecg_vit_tiny', TINY, cycle='fixed', fallback_rr_s=1.0, **CLIP)
    assert torch.equal(fixed.clip.clip_lengths(x, torch.tensor([60.0, 70.0])), torch.tensor([50, 50]))
    # No rr given: R peaks are detected in forward; flat records fall back.
    ecg = synthesize_ecg('ST', fs=100.0, duration_s=10.0, rng=0)
    sig = (ecg.signal - ecg.signal.mean(1, keepdims=True)) / ecg.signal.std(1, keepdims=True)
    batch = torch.tensor(np.stack([sig, np.zeros_like(sig)]), dtype=torch.float32)
    spans = model.clip.clip_lengths(batch)
    assert int(spans[0]) == pytest.approx(np.median(np.diff(ecg.r_peaks)) / 2, abs=2)
    assert int(spans[1]) == 40
    out = model(batch)
    assert set(out) == {'loss', 'loss_mae', 'loss_nextclip'} and torch.isfinite(out['loss'])
    with pytest.raises(ValueError, match='one RR interval'):
        model(batch, rr_samples=torch.tensor([80.0]))


def test_clip_decoder_reads_only_cls():
    model = create_pretrainer('mae_nextclip', 'ecg_vit_tiny', TINY, **CLIP)
    cls = torch.randn(3, 32)
    assert model.clip.decoder(cls).shape == (3, 12, 50)
    assert model.clip.decoder.num_tokens == 2  # 50 samples / 25-sample tokens
