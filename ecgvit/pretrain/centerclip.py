"""Centerclip: reconstruct a random hidden segment from the [CLS] token (the seed paper's proposed future work).

The same semi-cardiac-cycle clip as Nextclip (:mod:`ecgvit.pretrain.nextclip`: half the record's RR, resampled to
``clip_len``), but drawn in the middle of the record, with context on both sides: only the clip itself is zeroed in
the encoder input. The [CLS] output goes through the same kind of decoder and the loss is the MSE to the clip. Where
Nextclip asks for extrapolation of the rhythm, Centerclip asks for interpolation from both neighbouring beats, which
is better posed for irregular rhythms (AF) where the next beat's timing is not predictable.
"""
from typing import Any, Tuple

import numpy as np
import torch

from ecgvit.data.augment import span_mask
from ecgvit.pretrain.nextclip import NextclipBranch

__all__ = ['CenterclipBranch']


class CenterclipBranch(NextclipBranch):
    """Reconstruct a hidden half-cycle with ``min_context`` of the record visible on each side.

    Takes the same arguments as :class:`~ecgvit.pretrain.nextclip.NextclipBranch`, with ``min_context`` below 0.5
    (context on both sides). When a record's clip does not fit between the two contexts (a long cycle in a short
    record), it ends ``min_context`` before the record's end and the context before it is shorter.

    Args:
        *args: As for :class:`~ecgvit.pretrain.nextclip.NextclipBranch`.
        **kwargs: Likewise; ``min_context`` must be below 0.5.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.min_context < 0.5:
            raise ValueError(f'min_context must be below 0.5 for Centerclip (that much context on each side of the '
                             f'clip), got {self.min_context}.')

    def start_range(self, length: int, span: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``[min_context * L, L - min_context * L - span]``: context on both sides of the clip.

        Args:
            length: Samples per record.
            span: ``(B,)`` clip lengths.
        """
        ctx = int(np.ceil(self.min_context * length))
        return torch.full_like(span, ctx), (length - ctx - span).clamp(min=0)

    def hidden_samples(self, length: int, start: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        """Only the clip ``[start, start + span)`` is hidden.

        Args:
            length: Samples per record.
            start: ``(B,)`` clip starts.
            span: ``(B,)`` clip lengths.

        Returns:
            ``(B, length)`` bool, True where hidden.
        """
        return span_mask(start, span, length)
