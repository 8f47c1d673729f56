"""Nextclip: predict the next semi-cardiac cycle from the [CLS] token (the seed's MAE-Nextclip generative task).

A random point is drawn in each record; every sample from it on is zeroed in the encoder input, and the target is the
clip that follows it: half an RR interval (a "semi-cardiac cycle"), resampled to a fixed ``clip_len`` so records at
any heart rate give targets of one size. The zeroed record goes through the shared encoder *with* [CLS]; the [CLS]
output goes through the Nextclip decoder (projection, transformer block(s), LayerNorm, linear to the clip) and the loss
is the MSE to the target.

The paper leaves two things open; our choices (both parameters):

- **Cycle length.** The median RR interval of the record from R peaks (:mod:`ecgvit.data.rpeaks`), halved. Pass it
  per record as ``rr_samples`` (precompute it once per record for speed); when absent it is detected on the CPU in
  ``forward``. Records without a plausible RR (flat, too noisy) fall back to ``fallback_rr_s`` (0.8 s = 75 bpm).
  ``cycle='fixed'`` always uses the fallback (the paper's "fixed window" option).
- **Decoder.** A single [CLS] vector through a transformer block is just an MLP, so the projection maps [CLS] to
  ``clip_len / patch_len`` tokens (one per 25-sample piece of the clip) with learnable positions; the block(s) then
  attend across the clip, like the MAE decoder across patches. Width, depth, heads and MLP ratio default to the MAE
  decoder's (256, 1, 8, 2). ``clip_len=150`` (6 tokens) is half an RR at 72 bpm at 360 Hz, so a typical resting
  half-cycle (108-180 samples for 60-100 bpm) is resampled by less than 1.4x either way.

:class:`NextclipBranch` also hosts what :mod:`ecgvit.pretrain.centerclip` changes: where the clip is drawn and which
samples are hidden.
"""
import math
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ecgvit.data.augment import crop_resize
from ecgvit.data.rpeaks import median_rr_samples
from ecgvit.pretrain.decoder import LightDecoder

__all__ = ['ClipDecoder', 'NextclipBranch']


class ClipDecoder(LightDecoder):
    """[CLS] ``(B, D)`` -> clip ``(B, C, clip_len)``: projection to clip tokens, block(s), LayerNorm, linear.

    Args:
        embed_dim: Encoder width.
        clip_len: Output samples per lead; a multiple of ``token_len``.
        in_chans: Leads.
        token_len: Samples per decoder token (the encoder's patch length).
        decoder_embed_dim: Decoder width.
        decoder_depth: Transformer blocks.
        decoder_num_heads: Attention heads.
        decoder_mlp_ratio: MLP ratio.
    """

    def __init__(
            self,
            embed_dim: int,
            clip_len: int,
            in_chans: int,
            token_len: int,
            decoder_embed_dim: int = 256,
            decoder_depth: int = 1,
            decoder_num_heads: int = 8,
            decoder_mlp_ratio: float = 2.0,
    ) -> None:
        if clip_len < token_len or clip_len % token_len != 0:
            raise ValueError(f'clip_len {clip_len} must be a positive multiple of the patch length {token_len} '
                             f'(e.g. {max(1, round(clip_len / token_len)) * token_len}).')
        num_tokens = clip_len // token_len
        # One [CLS] vector is projected to all the clip's tokens at once.
        super().__init__(embed_dim, num_tokens * decoder_embed_dim, num_tokens, in_chans * token_len,
                         decoder_embed_dim, decoder_depth, decoder_num_heads, decoder_mlp_ratio)
        self.clip_len = clip_len
        self.in_chans = in_chans
        self.num_tokens = num_tokens
        self.decoder_embed_dim = decoder_embed_dim

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        """Decode the clip.

        Args:
            cls: ``(B, embed_dim)`` [CLS] embeddings.

        Returns:
            ``(B, in_chans, clip_len)`` predicted clips.
        """
        batch = cls.shape[0]
        x = self.decoder_embed(cls).reshape(batch, self.num_tokens, self.decoder_embed_dim)  # (B, T, Dd)
        x = self.decode(x)  # (B, T, C*P), lead-major inside a token as mae.patchify
        x = x.reshape(batch, self.num_tokens, self.in_chans, -1).permute(0, 2, 1, 3)  # (B, C, T, P)
        return x.reshape(batch, self.in_chans, self.clip_len)


class NextclipBranch(nn.Module):
    """Predict the half-cycle after a random point from the [CLS] token of the record zeroed from that point on.

    Args:
        encoder: The shared encoder (for its sizes; passed to ``forward``, not owned).
        clip_len: Fixed target length in samples, a multiple of the patch length (default 150, see module doc).
        sampling_rate: Hz of the input, to turn the fallback and the detector's limits into samples (default 360).
        cycle: ``'rpeak'`` (half the record's median RR) or ``'fixed'`` (always ``fallback_rr_s``).
        cycle_fraction: Fraction of the RR interval predicted (seed: a semi-cardiac cycle, 0.5).
        fallback_rr_s: RR interval assumed without usable R peaks, in seconds (0.8 s = 75 bpm).
        min_context: Fraction of the record always left visible before the clip (default 0.1: 1 s of 10 s, at least
            one beat of context).
        decoder_embed_dim: Decoder width (default: the MAE decoder's 256).
        decoder_depth: Decoder blocks (default 1).
        decoder_num_heads: Decoder heads (default 8).
        decoder_mlp_ratio: Decoder MLP ratio (default 2).
    """

    def __init__(
            self,
            encoder: nn.Module,
            clip_len: int = 150,
            sampling_rate: float = 360.0,
            cycle: str = 'rpeak',
            cycle_fraction: float = 0.5,
            fallback_rr_s: float = 0.8,
            min_context: float = 0.1,
            decoder_embed_dim: int = 256,
            decoder_depth: int = 1,
            decoder_num_heads: int = 8,
            decoder_mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        if cycle not in ('rpeak', 'fixed'):
            raise ValueError(f"cycle must be 'rpeak' or 'fixed', got {cycle!r}.")
        if not math.isfinite(sampling_rate) or sampling_rate <= 0:  # NaN passed `<= 0` and drew NaN clip spans
            raise ValueError(f'sampling_rate must be positive (Hz), got {sampling_rate}.')
        if not 0.0 < cycle_fraction <= 1.0:
            raise ValueError(f'cycle_fraction must be in (0, 1], got {cycle_fraction} (seed: 0.5).')
        if not math.isfinite(fallback_rr_s) or fallback_rr_s <= 0:
            raise ValueError(f'fallback_rr_s must be positive (seconds), got {fallback_rr_s}.')
        if not 0.0 <= min_context < 1.0:
            raise ValueError(f'min_context must be a fraction in [0, 1), got {min_context}.')
        self.clip_len = int(clip_len)
        self.sampling_rate = float(sampling_rate)
        self.cycle = cycle
        self.cycle_fraction = float(cycle_fraction)
        self.fallback_rr_s = float(fallback_rr_s)
        self.min_context = float(min_context)
        self.decoder = ClipDecoder(
            embed_dim=encoder.embed_dim,
            clip_len=self.clip_len,
            in_chans=int(encoder.patch_embed.proj.in_channels),
            token_len=int(encoder.patch_len),
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            decoder_mlp_ratio=decoder_mlp_ratio,
        )

    def rr_intervals(self, x: torch.Tensor, rr_samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        """RR interval in samples per record ``(B,)`` float32 on ``x``'s device.

        ``rr_samples`` (if given) wins; NaN or non-positive entries in it mean "unknown" and take the fallback. With
        ``cycle='rpeak'`` and no ``rr_samples``, R peaks are detected on a CPU copy of the batch.

        Args:
            x: ``(B, C, L)`` batch.
            rr_samples: ``(B,)`` known RR intervals in samples, or None (ignored with ``cycle='fixed'``).

        Raises:
            ValueError: ``rr_samples`` does not hold one entry per record.
        """
        batch = x.shape[0]
        fallback = self.fallback_rr_s * self.sampling_rate
        if self.cycle == 'fixed':
            return torch.full((batch,), fallback, device=x.device)
        if rr_samples is None:
            rr = median_rr_samples(x.detach().float().cpu().numpy(), self.sampling_rate, fallback=fallback)
            return torch.as_tensor(rr, dtype=torch.float32, device=x.device)
        rr_samples = torch.as_tensor(rr_samples, dtype=torch.float32, device=x.device).reshape(-1)
        if rr_samples.shape[0] != batch:
            raise ValueError(f'rr_samples has {rr_samples.shape[0]} entries for a batch of {batch}: pass one RR '
                             f'interval (in samples) per record, NaN where unknown.')
        return torch.where(torch.isfinite(rr_samples) & (rr_samples > 0), rr_samples,
                           torch.full_like(rr_samples, fallback))

    def clip_lengths(self, x: torch.Tensor, rr_samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Target window per record in samples ``(B,)`` int64: ``cycle_fraction`` of the RR, within the record.

        Args:
            x: ``(B, C, L)`` batch.
            rr_samples: ``(B,)`` known RR intervals in samples, or None (see :meth:`rr_intervals`).
        """
        length = x.shape[-1]
        span = (self.rr_intervals(x, rr_samples) * self.cycle_fraction).round().long()
        return span.clamp(2, max(2, length - int(np.ceil(self.min_context * length))))

    def sample_starts(
            self,
            x: torch.Tensor,
            span: torch.Tensor,
            generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Random clip start per record, uniform in :meth:`start_range` (``[min_context * L, L - span]`` here).

        Args:
            x: ``(B, C, L)`` batch (its length and device are read).
            span: ``(B,)`` clip lengths.
            generator: Random generator on ``x``'s device.
        """
        lo, hi = self.start_range(x.shape[-1], span)
        lo = torch.minimum(lo, hi)
        u = torch.rand(span.shape[0], device=x.device, generator=generator)
        return (lo + (u * (hi - lo + 1).float()).floor().long()).clamp(max=hi)

    def start_range(self, length: int, span: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """First and last allowed clip start per record: context before the clip, the clip inside the record.

        Args:
            length: Samples per record.
            span: ``(B,)`` clip lengths.
        """
        lo = torch.full_like(span, int(np.ceil(self.min_context * length)))
        return lo, (length - span).clamp(min=0)

    def hidden_samples(self, length: int, start: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        """Which samples the encoder must not see: every sample from ``start`` on.

        Args:
            length: Samples per record.
            start: ``(B,)`` clip starts.
            span: ``(B,)`` clip lengths (unused here; Centerclip hides only the clip).

        Returns:
            ``(B, length)`` bool, True where hidden.
        """
        t = torch.arange(length, device=start.device)
        return t[None] >= start[:, None]

    def hide(self, x: torch.Tensor, start: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        """Zero the samples :meth:`hidden_samples` marks (the future the encoder must not see).

        Args:
            x: ``(B, C, L)`` batch.
            start: ``(B,)`` clip starts.
            span: ``(B,)`` clip lengths.
        """
        return x.masked_fill(self.hidden_samples(x.shape[-1], start, span)[:, None, :], 0.0)

    def masking_noise(
            self,
            start: torch.Tensor,
            span: torch.Tensor,
            length: int,
            patch_len: int,
            generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """How the shared-pass hybrid masks the hidden record: MAE's uniform masking, with the clip's start kept.

        The patch holding ``start`` is always kept: it is where the zeros begin, so [CLS] knows where the clip it must
        predict starts (the seed's full-token pass gets that from the zero patches' positions). Every other patch is
        ranked uniformly, as plain MAE masking, zero patches included: the intact part is then masked at the MAE's
        ratio, at the price of visible tokens spent on zeros (about half of them for Nextclip).

        Args:
            start: ``(B,)`` clip starts in samples.
            span: ``(B,)`` clip lengths in samples.
            length: Samples per record, a multiple of ``patch_len``.
            patch_len: Samples per encoder patch.
            generator: Random generator on ``start``'s device.

        Returns:
            ``noise`` ``(B, N)`` for :func:`~ecgvit.pretrain.mae.random_masking`, and ``intact`` ``(B, N)`` float, 1
            for patches with no hidden sample: the only ones the MAE loss may score (the rest are zeros, or the
            clip's target).
        """
        batch, num = start.shape[0], length // patch_len
        hidden = self.hidden_samples(length, start, span).reshape(batch, num, patch_len).any(dim=-1)  # (B, N)
        noise = torch.rand(batch, num, device=start.device, generator=generator)
        at_start = (start // patch_len).clamp(max=num - 1)
        noise.scatter_(1, at_start[:, None], -1.0)
        return noise, (~hidden).float()

    def loss_from_cls(
            self,
            cls: torch.Tensor,
            target: torch.Tensor,
            lead_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode an encoded [CLS] into the clip and score it.

        Args:
            cls: ``(B, D)`` [CLS] output of the encoder on the hidden record.
            target: ``(B, C, clip_len)`` clips from :meth:`make_targets`.
            lead_mask: Optional ``(B, C)`` bool, False for leads the data lacks (zero-filled): their clip is no
                target. None, or every lead present, gives exactly the plain MSE.

        Returns:
            ``(loss, pred)``: the MSE and the ``(B, C, clip_len)`` prediction.
        """
        pred = self.decoder(cls)
        if lead_mask is not None and not bool(lead_mask.all()):  # one host sync per step, as the MAE's
            weight = lead_mask.to(torch.float32)[:, :, None].expand(target.shape)  # (B, C, clip_len)
            err = (pred.float() - target.float()).pow(2)
            return (err * weight).sum() / weight.sum().clamp(min=1.0), pred
        return F.mse_loss(pred.float(), target.float()), pred

    def make_targets(
            self,
            x: torch.Tensor,
            rr_samples: Optional[torch.Tensor] = None,
            generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw clips and build the encoder input.

        Args:
            x: ``(B, C, L)`` batch.
            rr_samples: ``(B,)`` known RR intervals in samples, or None (see :meth:`rr_intervals`).
            generator: Random generator on ``x``'s device.

        Returns:
            ``x_hidden`` ``(B, C, L)``, ``target`` ``(B, C, clip_len)``, ``start`` ``(B,)``, ``span`` ``(B,)``.
        """
        span = self.clip_lengths(x, rr_samples)
        start = self.sample_starts(x, span, generator)
        target = crop_resize(x, start, span, self.clip_len)  # (B, C, clip_len)
        return self.hide(x, start, span), target, start, span

    def forward(
            self,
            encoder: nn.Module,
            x: torch.Tensor,
            rr_samples: Optional[torch.Tensor] = None,
            generator: Optional[torch.Generator] = None,
            lead_mask: Optional[torch.Tensor] = None,
            input_transform: Optional[Callable[..., torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One clip-prediction step on ``x`` ``(B, C, L)``.

        Args:
            encoder: The shared encoder.
            x: ``(B, C, L)`` ECGs.
            rr_samples: Optional ``(B,)`` RR intervals in samples (see :meth:`rr_intervals`).
            generator: Random generator for the clip draws (and ``input_transform``).
            lead_mask: Optional ``(B, C)`` bool, False for leads the data lacks (see :meth:`loss_from_cls`).
            input_transform: Optional ``(x, generator=None) -> x`` applied to the hidden record before the encoder
                (lead-set dropout); the target stays the clip of ``x``.

        Returns:
            ``(loss, pred, target)``, the last two ``(B, C, clip_len)``.
        """
        if x.dim() == 4:
            x = x.squeeze(2)
        x_hidden, target, _, _ = self.make_targets(x, rr_samples, generator)
        if input_transform is not None:
            x_hidden = input_transform(x_hidden, generator=generator)
        loss, pred = self.loss_from_cls(encoder.forward_features(x_hidden)[:, 0], target, lead_mask)
        return loss, pred, target
