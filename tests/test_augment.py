"""Exact effects of the batched ECG augmentations (ecgvit.data.augment) under a fixed generator."""
import pytest
import torch

from ecgvit.data.augment import (
    Compose,
    Drop,
    Erase,
    PartialNoise,
    RandomResizedCrop,
    TimeOut,
    crop_resize,
    default_ecg_augment,
)

B, C, L = 16, 12, 400


def _batch(seed: int = 0) -> torch.Tensor:
    # No exact zeros in the input, so every zero in the output was put there by the transform.
    x = torch.randn(B, C, L, generator=torch.Generator().manual_seed(seed))
    return x + torch.sign(x) * 0.01


def _gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize('cls', [Erase, TimeOut, PartialNoise, Drop, RandomResizedCrop])
def test_probability_zero_is_identity_and_p_one_changes_every_record(cls):
    x = _batch()
    assert torch.equal(cls(p=0.0)(x, generator=_gen()), x)
    y = cls(p=1.0)(x, generator=_gen())
    assert y.shape == x.shape and y.dtype == x.dtype
    assert all(not torch.equal(y[b], x[b]) for b in range(B))


@pytest.mark.parametrize('cls', [Erase, TimeOut, PartialNoise, Drop, RandomResizedCrop])
def test_same_generator_state_reproduces_and_other_seed_differs(cls):
    x = _batch()
    t = cls(p=1.0)
    assert torch.equal(t(x, generator=_gen(3)), t(x, generator=_gen(3)))
    assert not torch.equal(t(x, generator=_gen(3)), t(x, generator=_gen(4)))


def test_erase_zeroes_k_whole_leads_as_drawn():
    x = _batch()
    y = Erase(p=0.7, max_leads=5)(x, generator=_gen())
    # The same draws, in the same order, by hand.
    g = _gen()
    apply = torch.rand(B, generator=g) < 0.7
    k = (torch.rand(B, generator=g) * 5).floor().long() + 1
    rank = torch.rand(B, C, generator=g).argsort(1).argsort(1)
    for b in range(B):
        erased = {int(c) for c in torch.nonzero(rank[b] < k[b]).flatten()} if apply[b] else set()
        assert len(erased) == (int(k[b]) if apply[b] else 0)
        for c in range(C):
            if c in erased:
                assert torch.all(y[b, c] == 0)
            else:
                assert torch.equal(y[b, c], x[b, c])


def test_timeout_zeroes_one_contiguous_span_in_all_leads():
    x = _batch()
    y = TimeOut(p=1.0, frac_range=(0.1, 0.3))(x, generator=_gen())
    g = _gen()
    torch.rand(B, generator=g)  # apply decisions (all true at p=1)
    u_len, u_start = torch.rand(2, B, generator=g)
    span = ((0.1 + 0.2 * u_len) * L).round().long()
    start = (u_start * (L - span + 1)).floor().long()
    for b in range(B):
        zero = (y[b] == 0).all(0)
        idx = torch.nonzero(zero).flatten()
        assert int(idx[0]) == int(start[b]) and len(idx) == int(span[b])
        assert int(idx[-1] - idx[0] + 1) == len(idx)  # contiguous
        assert 0.1 * L - 1 <= len(idx) <= 0.3 * L + 1
        assert torch.equal(y[b][:, ~zero], x[b][:, ~zero])


def test_partial_noise_adds_noise_of_the_given_std_on_one_span_only():
    x = _batch()
    y = PartialNoise(p=1.0, std=0.5, frac_range=(0.5, 0.5))(x, generator=_gen())
    diff = y - x
    changed = (diff != 0).any(1)  # (B, L)
    for b in range(B):
        idx = torch.nonzero(changed[b]).flatten()
        assert len(idx) == L // 2 and int(idx[-1] - idx[0] + 1) == L // 2
    noise = diff[changed[:, None, :].expand_as(diff)]
    assert abs(noise.std().item() - 0.5) < 0.02 and abs(noise.mean().item()) < 0.02


def test_drop_zeroes_individual_samples_at_the_rate():
    x = _batch()
    y = Drop(p=1.0, rate=0.2)(x, generator=_gen())
    zero = y == 0
    assert abs(zero.float().mean().item() - 0.2) < 0.01
    assert torch.equal(y[~zero], x[~zero])
    g = _gen()
    torch.rand(B, generator=g)
    assert torch.equal(zero, torch.rand(B, C, L, generator=g) < 0.2)


def test_crop_resize_is_exact_on_ramps_and_identity_on_full_windows():
    ramp = torch.arange(L, dtype=torch.float32).expand(2, C, L).contiguous()
    start, length = torch.tensor([0, 100]), torch.tensor([L, 200])
    out = crop_resize(ramp, start, length, L)
    assert torch.equal(out[0], ramp[0])  # full window, same length: bit-exact
    # A 200-sample window stretched 2x: linear interpolation of a ramp is the ramp at the mapped positions.
    pos = 100 + (torch.arange(L) + 0.5) * 0.5 - 0.5
    expected = pos.clamp(100, 299)
    assert torch.allclose(out[1, 0], expected, atol=1e-4)
    assert out[1].min() >= 100 and out[1].max() <= 299  # nothing outside the window leaks in


def test_rrc_stretches_a_window_back_to_full_length():
    x = torch.arange(L, dtype=torch.float32).expand(B, C, L).contiguous()
    y = RandomResizedCrop(p=1.0, scale=(0.5, 0.5))(x, generator=_gen())
    for b in range(B):
        lo, hi = y[b, 0, 0].item(), y[b, 0, -1].item()
        assert hi - lo == pytest.approx(L / 2 - 1, abs=1.0)  # a window of L/2 samples
        assert torch.allclose(y[b], y[b, :1].expand(C, L))  # the same crop in every lead
        assert torch.all(y[b, 0, 1:] >= y[b, 0, :-1])  # still a ramp (monotone)
    assert torch.equal(RandomResizedCrop(p=1.0, scale=(1.0, 1.0))(x, generator=_gen()), x)


def test_compose_and_default_augment():
    x = _batch()
    aug = default_ecg_augment(p=1.0)
    assert len(aug) == 5
    names = [type(t).__name__ for t in aug.transforms]
    assert sorted(names) == sorted(['Erase', 'TimeOut', 'PartialNoise', 'Drop', 'RandomResizedCrop'])
    assert torch.equal(aug(x, generator=_gen()), aug(x, generator=_gen()))
    # Compose threads one generator through its members in order.
    manual = x
    g = _gen()
    for t in aug.transforms:
        manual = t(manual, generator=g)
    assert torch.equal(aug(x, generator=_gen()), manual)
    # Also works with plain callables and in bf16.
    c = Compose([lambda v, generator=None: v * 2, Drop(p=1.0, rate=0.5)])
    assert c(x.bfloat16(), generator=_gen()).dtype == torch.bfloat16


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match='probability'):
        Erase(p=1.5)
    with pytest.raises(ValueError, match='max_leads'):
        Erase(max_leads=0)
    with pytest.raises(ValueError, match='frac_range'):
        TimeOut(frac_range=(0.5, 0.1))
    with pytest.raises(ValueError, match=r'\(B, leads, samples\)'):
        Drop()(torch.randn(12, 100))
