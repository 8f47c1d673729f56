"""Batched ECG augmentations for the contrastive views of MAE-MoCo.

The seed paper augments the MoCo query and key views with five transforms: Erase (zero whole leads), time out (zero a
time span), partial noise (Gaussian noise on a time span), drop (zero individual samples) and RRC (random resized
crop along time). The paper gives no probabilities or strengths; the defaults below are ours and each is a parameter.
:class:`LeadSetDropout` is not the seed's: it trains an encoder to run on reduced-lead input (``ecgvit pretrain
--lead-dropout``), zeroing every lead outside one named subset, as a 6-lead or 1-lead device's record arrives.

Every transform works on a whole ``(B, leads, samples)`` float tensor on any device with vectorised masks (no Python
loop over records, leads or samples), draws its randomness per record, and takes an optional ``torch.Generator`` so a
draw can be reproduced. The generator must live on the same device as the batch (``torch.Generator(device=x.device)``).

Example:
    >>> import torch
    >>> from ecgvit.data.augment import default_ecg_augment
    >>> aug = default_ecg_augment()
    >>> aug(torch.randn(4, 12, 3600), generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 12, 3600])
"""
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ecgvit.constants import LEADS
from ecgvit.lead_sets import LeadSpec, describe_leads, lead_mask_for, resolve_lead_sets

__all__ = [
    'Erase', 'TimeOut', 'PartialNoise', 'Drop', 'RandomResizedCrop', 'LeadSetDropout', 'Compose',
    'default_ecg_augment', 'crop_resize', 'random_spans', 'span_mask',
]


def _check_prob(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f'{name} must be a probability in [0, 1], got {value}.')
    return float(value)


def _check_frac_range(name: str, value: Tuple[float, float]) -> Tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f'{name} must be (min, max) fractions with 0 < min <= max <= 1, got {value}.')
    return lo, hi


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f'ECG augmentations take a (B, leads, samples) batch, got shape {tuple(x.shape)}; '
                         f'add a batch dimension with x.unsqueeze(0) or squeeze a (B, leads, 1, samples) input.')
    if not x.is_floating_point():
        raise TypeError(f'ECG augmentations need a floating point batch, got {x.dtype}.')


def _rand(shape: Sequence[int], x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    # Draw in float32 so the same generator state gives the same decisions for fp16/bf16/fp32 batches.
    return torch.rand(tuple(shape), generator=generator, device=x.device, dtype=torch.float32)


def _apply_mask(x: torch.Tensor, p: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Per-record Bernoulli(p) decisions, shape (B,)."""
    return _rand((x.shape[0],), x, generator) < p


def random_spans(
        batch_size: int,
        length: int,
        frac_range: Tuple[float, float],
        x: torch.Tensor,
        generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw one contiguous span per record: its length uniform in ``frac_range * length``, its start uniform.

    Args:
        batch_size: Number of records B.
        length: Samples per record L.
        frac_range: (min, max) span length as a fraction of L.
        x: Any tensor on the target device (only its device is used).
        generator: Random generator on that device.

    Returns:
        ``start`` and ``span`` as int64 tensors of shape (B,), with ``1 <= span`` and ``start + span <= L``.
    """
    lo, hi = frac_range
    u_len, u_start = _rand((2, batch_size), x, generator)
    span = (lo + (hi - lo) * u_len) * length
    span = span.round().long().clamp(1, length)  # (B,)
    start = (u_start * (length - span + 1)).floor().long().clamp(max=length - span)  # (B,)
    return start, span


def span_mask(start: torch.Tensor, span: torch.Tensor, length: int) -> torch.Tensor:
    """Which samples fall inside each record's span ``[start, start + span)``.

    Args:
        start: ``(B,)`` first sample of each span.
        span: ``(B,)`` span lengths.
        length: Samples per record L.

    Returns:
        ``(B, L)`` bool, on ``start``'s device.
    """
    t = torch.arange(length, device=start.device)  # (L,)
    return (t >= start[:, None]) & (t < (start + span)[:, None])  # (B, L)


def _draw_spans(
        x: torch.Tensor,
        p: float,
        frac_range: Tuple[float, float],
        generator: Optional[torch.Generator],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the span transforms draw, in this order: which records change ``(B,)``, then ``start, span``."""
    _check_batch(x)
    apply = _apply_mask(x, p, generator)
    start, span = random_spans(x.shape[0], x.shape[-1], frac_range, x, generator)
    return apply, start, span


def crop_resize(x: torch.Tensor, start: torch.Tensor, length: torch.Tensor, out_len: int) -> torch.Tensor:
    """Resample the per-record window ``x[b, :, start[b]:start[b] + length[b]]`` to ``out_len`` samples.

    Linear interpolation at sample centres (``align_corners=False`` semantics), clamped inside the window so no
    sample outside it leaks in; done for the whole batch with one ``gather``. A window of ``out_len`` samples is
    returned unchanged (bit-exact).

    Args:
        x: ``(B, C, L)`` batch.
        start: ``(B,)`` window starts (any real or integer dtype), ``0 <= start``.
        length: ``(B,)`` window lengths in samples, ``start + length <= L``.
        out_len: Output samples per record.

    Returns:
        ``(B, C, out_len)`` tensor.
    """
    batch, chans, total = x.shape
    start = start.to(torch.float32)
    length = length.to(torch.float32)
    j = torch.arange(out_len, device=x.device, dtype=torch.float32)  # (out_len,)
    pos = start[:, None] + (j[None] + 0.5) * (length[:, None] / out_len) - 0.5  # (B, out_len)
    lo = start[:, None]
    hi = (start + length - 1.0)[:, None]
    pos = torch.maximum(torch.minimum(pos, hi), lo).clamp(0, total - 1)
    i0 = pos.floor()
    w = (pos - i0).to(x.dtype)[:, None, :]  # (B, 1, out_len)
    i0 = i0.long()
    i1 = (i0 + 1).clamp(max=total - 1)
    x0 = torch.gather(x, 2, i0[:, None, :].expand(batch, chans, out_len))  # (B, C, out_len)
    x1 = torch.gather(x, 2, i1[:, None, :].expand(batch, chans, out_len))
    return x0 + w * (x1 - x0)


class Erase(nn.Module):
    """Zero one or more randomly chosen leads (the seed's "Erase").

    With probability ``p`` per record, ``k`` leads are zeroed, ``k`` uniform in ``[1, max_leads]``, the leads drawn
    without replacement.

    Args:
        p: Probability of erasing in each record.
        max_leads: Most leads zeroed in one record (default 6: half the leads, so the view keeps both limb and
            precordial information).
    """

    def __init__(self, p: float = 0.5, max_leads: int = 6) -> None:
        super().__init__()
        self.p = _check_prob('p', p)
        if max_leads < 1:
            raise ValueError(f'max_leads must be >= 1, got {max_leads}.')
        self.max_leads = int(max_leads)

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Zero 1 to ``max_leads`` random leads in each record drawn with probability ``p``.

        Args:
            x: ``(B, leads, L)`` batch.
            generator: Random generator on ``x``'s device (None: torch's global one).

        Returns:
            The transformed batch (a new tensor).
        """
        _check_batch(x)
        batch, leads, _ = x.shape
        apply = _apply_mask(x, self.p, generator)  # (B,)
        max_leads = min(self.max_leads, leads)
        k = (_rand((batch,), x, generator) * max_leads).floor().long() + 1  # (B,) in [1, max_leads]
        # A random permutation per record: the leads ranked below k are erased.
        rank = _rand((batch, leads), x, generator).argsort(dim=1).argsort(dim=1)  # (B, leads)
        erase = (rank < k[:, None]) & apply[:, None]  # (B, leads)
        return x.masked_fill(erase[:, :, None], 0.0)

    def extra_repr(self) -> str:
        """The settings shown in the module's repr."""
        return f'p={self.p}, max_leads={self.max_leads}'


class TimeOut(nn.Module):
    """Zero one random contiguous time span in all leads (the seed's "time out").

    Args:
        p: Probability per record.
        frac_range: (min, max) span length as a fraction of the record (default 10-40 %).
    """

    def __init__(self, p: float = 0.5, frac_range: Tuple[float, float] = (0.1, 0.4)) -> None:
        super().__init__()
        self.p = _check_prob('p', p)
        self.frac_range = _check_frac_range('frac_range', frac_range)

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Zero one random time span, in every lead, of each record drawn with probability ``p``.

        Args:
            x: ``(B, leads, L)`` batch.
            generator: Random generator on ``x``'s device (None: torch's global one).

        Returns:
            The transformed batch (a new tensor).
        """
        apply, start, span = _draw_spans(x, self.p, self.frac_range, generator)
        mask = span_mask(start, span, x.shape[-1]) & apply[:, None]  # (B, L)
        return x.masked_fill(mask[:, None, :], 0.0)

    def extra_repr(self) -> str:
        """The settings shown in the module's repr."""
        return f'p={self.p}, frac_range={self.frac_range}'


class PartialNoise(nn.Module):
    """Add Gaussian noise to one random contiguous time span in all leads (the seed's "partial noise").

    Args:
        p: Probability per record.
        std: Noise standard deviation, in units of the (z-scored) signal.
        frac_range: (min, max) span length as a fraction of the record (default 10-50 %).
    """

    def __init__(self, p: float = 0.5, std: float = 0.2, frac_range: Tuple[float, float] = (0.1, 0.5)) -> None:
        super().__init__()
        self.p = _check_prob('p', p)
        if std < 0:
            raise ValueError(f'std must be >= 0, got {std}.')
        self.std = float(std)
        self.frac_range = _check_frac_range('frac_range', frac_range)

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Add noise to one random time span, in every lead, of each record drawn with probability ``p``.

        Args:
            x: ``(B, leads, L)`` batch.
            generator: Random generator on ``x``'s device (None: torch's global one).

        Returns:
            The transformed batch (a new tensor).
        """
        apply, start, span = _draw_spans(x, self.p, self.frac_range, generator)
        mask = span_mask(start, span, x.shape[-1]) & apply[:, None]  # (B, L)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32).to(x.dtype)
        return x + noise * (self.std * mask[:, None, :].to(x.dtype))

    def extra_repr(self) -> str:
        """The settings shown in the module's repr."""
        return f'p={self.p}, std={self.std}, frac_range={self.frac_range}'


class Drop(nn.Module):
    """Zero individual samples independently in every lead (the seed's "drop").

    Args:
        p: Probability per record of applying the transform.
        rate: Fraction of (lead, sample) values zeroed in a record it is applied to.
    """

    def __init__(self, p: float = 0.5, rate: float = 0.1) -> None:
        super().__init__()
        self.p = _check_prob('p', p)
        self.rate = _check_prob('rate', rate)

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Zero a ``rate`` share of the values of each record drawn with probability ``p``.

        Args:
            x: ``(B, leads, L)`` batch.
            generator: Random generator on ``x``'s device (None: torch's global one).

        Returns:
            The transformed batch (a new tensor).
        """
        _check_batch(x)
        apply = _apply_mask(x, self.p, generator)
        drop = (_rand(x.shape, x, generator) < self.rate) & apply[:, None, None]  # (B, leads, L)
        return x.masked_fill(drop, 0.0)

    def extra_repr(self) -> str:
        """The settings shown in the module's repr."""
        return f'p={self.p}, rate={self.rate}'


class RandomResizedCrop(nn.Module):
    """Crop a random time window and stretch it back to the input length (the seed's "RRC").

    The window covers a fraction of the record uniform in ``scale``, starts uniformly, and is resampled with linear
    interpolation (:func:`crop_resize`), the same for all leads. Records not selected are returned bit-exact.

    Args:
        p: Probability per record.
        scale: (min, max) window length as a fraction of the record (default 50-100 %: at most a 2x stretch, which
            keeps heart rates within the physiological range).
    """

    def __init__(self, p: float = 0.5, scale: Tuple[float, float] = (0.5, 1.0)) -> None:
        super().__init__()
        self.p = _check_prob('p', p)
        self.scale = _check_frac_range('scale', scale)

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Crop and stretch back one random window of each record drawn with probability ``p``.

        Args:
            x: ``(B, leads, L)`` batch.
            generator: Random generator on ``x``'s device (None: torch's global one).

        Returns:
            The transformed batch; records not drawn are unchanged.
        """
        apply, start, span = _draw_spans(x, self.p, self.scale, generator)
        out = crop_resize(x, start, span, x.shape[-1])
        return torch.where(apply[:, None, None], out, x)

    def extra_repr(self) -> str:
        """The settings shown in the module's repr."""
        return f'p={self.p}, scale={self.scale}'


class LeadSetDropout(nn.Module):
    """Keep only one lead subset of a record and zero the other leads: reduced-lead input, as a device records it.

    With probability ``p`` per record, one subset is drawn uniformly from ``lead_sets`` and every lead outside it is
    set to 0 (the value an absent lead has after per-lead z-scoring: the reduced-lead convention of
    :mod:`ecgvit.lead_sets`); the other records pass unchanged. An encoder pretrained on such inputs learns to run
    on those subsets, which its pretrained cfg then records (``lead_sets``).

    Args:
        p: Probability per record of keeping one subset only.
        lead_sets: The subsets to draw from (:func:`~ecgvit.lead_sets.resolve_lead_sets`: presets such as
            ``'limb'``, lists of lead names, ``'I+II'``); default: the 6 limb leads, and lead I.

    Example:
        >>> import torch
        >>> drop = LeadSetDropout(p=1.0, lead_sets=['I'])
        >>> x, keep = drop(torch.randn(2, 12, 100), return_mask=True)
        >>> keep[0].tolist()[:3], bool((x[:, 1:] == 0).all())
        ([True, False, False], True)
    """

    def __init__(self, p: float = 0.5, lead_sets: Union[str, Sequence[LeadSpec], None] = None) -> None:
        super().__init__()
        self.p = _check_prob('p', p)
        self.lead_sets: Tuple[Tuple[str, ...], ...] = resolve_lead_sets(lead_sets)
        # (K, 12) bool, True = kept; derived from lead_sets, so not part of any state dict.
        masks = torch.tensor([lead_mask_for(s) for s in self.lead_sets], dtype=torch.bool)
        self.register_buffer('subset_masks', masks, persistent=False)

    def forward(
            self,
            x: torch.Tensor,
            generator: Optional[torch.Generator] = None,
            return_mask: bool = False,
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Zero the leads outside each chosen record's drawn subset.

        Args:
            x: ``(B, 12, L)`` batch in the lead order of ``ecgvit.constants.LEADS``.
            generator: Random generator on ``x``'s device.
            return_mask: Also return the ``(B, 12)`` bool mask applied (True = lead kept; all True for records left
                unchanged).

        Returns:
            The batch with the dropped leads zeroed, and the mask when ``return_mask``.
        """
        _check_batch(x)
        batch, leads, _ = x.shape
        if leads != len(LEADS):
            raise ValueError(f'LeadSetDropout needs the 12 leads ({", ".join(LEADS)}) in that order, got {leads} '
                             f'leads: it names subsets of the 12.')
        apply = _apply_mask(x, self.p, generator)  # (B,)
        num_sets = len(self.lead_sets)
        choice = (_rand((batch,), x, generator) * num_sets).floor().long().clamp(max=num_sets - 1)  # (B,) uniform
        keep = self.subset_masks.to(x.device)[choice] | ~apply[:, None]  # (B, 12)
        out = x.masked_fill(~keep[:, :, None], 0.0)
        return (out, keep) if return_mask else out

    def extra_repr(self) -> str:
        """The settings shown in the module's repr."""
        return f'p={self.p}, lead_sets=[{"; ".join(describe_leads(s) for s in self.lead_sets)}]'


class Compose(nn.Module):
    """Apply transforms in order, passing the same generator to each.

    Args:
        transforms: Modules or callables taking ``(x, generator=None)``.
    """

    def __init__(self, transforms: Sequence[Callable[..., torch.Tensor]]) -> None:
        super().__init__()
        transforms = list(transforms)
        # A ModuleList when possible, so repr and .to() see the transforms; plain callables are kept as a list.
        if all(isinstance(t, nn.Module) for t in transforms):
            self.transforms = nn.ModuleList(transforms)
        else:
            self.transforms = transforms

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Apply every transform in order.

        Args:
            x: ``(B, leads, L)`` batch.
            generator: Random generator on ``x``'s device (None: torch's global one).

        Returns:
            The batch after the last transform.
        """
        for transform in self.transforms:
            x = transform(x, generator=generator)
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, index: int) -> Callable[..., torch.Tensor]:
        return self.transforms[index]


def default_ecg_augment(p: float = 0.5) -> Compose:
    """The seed's five contrastive augmentations, composed, each applied with probability ``p``.

    RRC runs first so the spans of the other transforms are fractions of the output record, then Erase, time out,
    partial noise and drop in the paper's order.

    Args:
        p: Probability with which each of the five transforms is applied to a record.

    Returns:
        A :class:`Compose` of RandomResizedCrop, Erase, TimeOut, PartialNoise, Drop.
    """
    return Compose([
        RandomResizedCrop(p=p),
        Erase(p=p),
        TimeOut(p=p),
        PartialNoise(p=p),
        Drop(p=p),
    ])
