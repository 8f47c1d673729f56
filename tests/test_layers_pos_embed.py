"""The sin-cos start for learnable positions: values, layout and bad widths."""
import math

import pytest
import torch

from ecgvit.layers import sincos_pos_embed_1d


def test_sincos_values_and_layout():
    pe = sincos_pos_embed_1d(3, 4)  # frequencies 1 and 1 / 100
    assert pe.shape == (3, 4) and pe.dtype == torch.float32
    expected = [[math.sin(p), math.sin(p / 100), math.cos(p), math.cos(p / 100)] for p in range(3)]
    torch.testing.assert_close(pe, torch.tensor(expected))


def test_sincos_rows_are_distinct_and_bounded():
    pe = sincos_pos_embed_1d(144, 256)
    assert pe.abs().max() <= 1.0
    dist = torch.cdist(pe, pe) + torch.eye(144) * 1e9
    assert dist.min() > 0.5  # every position tells itself from every other
    # Neighbours are closer than positions far apart: nearness in time is nearness in the embedding.
    assert torch.linalg.norm(pe[10] - pe[11]) < torch.linalg.norm(pe[10] - pe[60])


@pytest.mark.parametrize('num, dim', [(4, 3), (4, 0), (0, 8)])
def test_sincos_refuses_bad_sizes(num, dim):
    with pytest.raises(ValueError, match='even width|num_positions'):
        sincos_pos_embed_1d(num, dim)
