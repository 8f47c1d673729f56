"""Fixed-frequency sinusoidal positions along time, as starting values for a learnable positional embedding."""
import math

import torch

__all__ = ['sincos_pos_embed_1d']


def sincos_pos_embed_1d(num_positions: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoids for positions ``0 .. num_positions - 1``: ``(num_positions, dim)`` float32.

    The first half of the channels holds ``sin(p * w_k)``, the second half ``cos(p * w_k)``, with frequencies
    ``w_k = temperature ** (-k / (dim / 2))`` from 1 down to about ``1 / temperature`` (the layout of
    facebookresearch/mae's 1-D helper). Every entry lies in [-1, 1], so the positions are as large as the tokens they
    are added to from the first step; a ``trunc_normal(std=0.02)`` start is 50 times smaller and has to grow first.

    Args:
        num_positions: Positions (tokens).
        dim: Channels; even.
        temperature: Longest period, in positions, of the slowest pair.

    Returns:
        ``(num_positions, dim)`` float32.
    """
    if dim <= 0 or dim % 2:
        raise ValueError(f'A sin-cos positional embedding needs an even width, got {dim}.')
    if num_positions <= 0:
        raise ValueError(f'num_positions must be positive, got {num_positions}.')
    half = dim // 2
    omega = torch.exp(-math.log(temperature) * torch.arange(half, dtype=torch.float64) / half)  # (D/2,)
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * omega[None, :]  # (N, D/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()
