"""Masked autoencoding of 12-lead ECGs: random patch masking, the seed's light decoder, and the masked-patch MSE.

The MAE branch of *Hybrid Self-Supervised Learning for ECG* (both MAE-MoCo and MAE-Nextclip): the un-augmented ECG
is cut into 25-sample patches, a random subset is kept, and only the kept patches (no [CLS] token) run through the
shared encoder. A one-block decoder (seed: Linear 512 -> 256, a learnable [mask] token, learnable pos-embed of
144 x 256, 1 block with 8 heads and MLP ratio 2, LayerNorm, a linear "size matcher" to 25 x 12 values) fills the masked
positions back in, and the loss is the MSE on the masked patches only.

The split into :func:`random_masking`, ``forward_encoder``, ``forward_decoder`` and ``forward_loss`` follows
facebookresearch/mae; the encoder is not owned here but passed in, so one encoder can serve several branches. The
masked pass itself (embedding and encoding only the kept patches) is the encoder's own
:meth:`~ecgvit.models.ecg_vit.EcgVisionTransformer.forward_masked`; this module only chooses which patches to keep.
"""
from typing import Optional, Tuple

import torch
from torch import nn

from ecgvit.pretrain.decoder import POS_INITS, LightDecoder

__all__ = ['patchify', 'unpatchify', 'masking_ids', 'random_masking', 'encode_masked', 'MaeDecoder', 'MaeBranch']


def patchify(x: torch.Tensor, patch_len: int) -> torch.Tensor:
    """Cut ``(B, C, L)`` into ``(B, N, C * patch_len)`` patches, lead-major inside a patch (all of lead 0 first).

    The layout matches what one encoder token sees: all leads over one ``patch_len`` window.

    Args:
        x: ``(B, C, L)`` batch.
        patch_len: Samples per patch; must divide ``L``.

    Raises:
        ValueError: ``L`` is not a multiple of ``patch_len``.
    """
    batch, chans, length = x.shape
    if length % patch_len != 0:
        raise ValueError(f'Length {length} is not a multiple of the patch length {patch_len}: crop or pad the ECG to '
                         f'a multiple of {patch_len} samples.')
    x = x.reshape(batch, chans, length // patch_len, patch_len)  # (B, C, N, P)
    return x.permute(0, 2, 1, 3).reshape(batch, length // patch_len, chans * patch_len)  # (B, N, C*P)


def unpatchify(patches: torch.Tensor, chans: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, C * P)`` -> ``(B, C, N * P)``.

    Args:
        patches: ``(B, N, C * P)`` patches.
        chans: Leads ``C``; must divide the patch width.

    Raises:
        ValueError: the patch width is not a multiple of ``chans``.
    """
    batch, num, width = patches.shape
    if width % chans != 0:
        raise ValueError(f'Patch width {width} is not a multiple of the lead count {chans}.')
    patch_len = width // chans
    x = patches.reshape(batch, num, chans, patch_len).permute(0, 2, 1, 3)  # (B, C, N, P)
    return x.reshape(batch, chans, num * patch_len)


def masking_ids(
        batch: int,
        num: int,
        mask_ratio: float,
        device: torch.device,
        generator: Optional[torch.Generator] = None,
        noise: Optional[torch.Tensor] = None,
        dtype: torch.dtype = torch.float32,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which tokens a random mask keeps (MAE's noise-argsort trick), without touching the tokens themselves.

    Args:
        batch: Records in the batch.
        num: Tokens per record.
        mask_ratio: Fraction of tokens to drop, ``0 <= mask_ratio < 1``.
        device: Device of the returned indices.
        generator: Random generator on ``device``.
        noise: Optional ``(B, N)`` ranking to use instead of fresh uniform noise: the lowest values are kept, so a
            caller can force tokens in (very low values) or hold them back (high values).
        dtype: dtype of ``mask``.

    Returns:
        ``ids_keep`` ``(B, N_keep)`` (kept token indices, in noise order), ``mask`` ``(B, N)`` with 1 = masked and
        0 = kept, and ``ids_restore`` ``(B, N)`` that puts a kept-then-masked sequence back in the original order.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}.')
    num_keep = max(1, int(round(num * (1.0 - mask_ratio))))
    if noise is None:
        noise = torch.rand(batch, num, device=device, generator=generator)  # (B, N)
    elif noise.shape != (batch, num):
        raise ValueError(f'noise must be (batch, tokens) = {(batch, num)}, got {tuple(noise.shape)}.')
    ids_shuffle = noise.argsort(dim=1)  # ascending: the first num_keep are kept
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = torch.ones(batch, num, device=device, dtype=dtype)
    mask[:, :num_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # (B, N) in the original order
    return ids_shuffle[:, :num_keep], mask, ids_restore


def random_masking(
        x: torch.Tensor,
        mask_ratio: float,
        generator: Optional[torch.Generator] = None,
        noise: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random subset of tokens per record (MAE's noise-argsort trick, see :func:`masking_ids`).

    Args:
        x: ``(B, N, D)`` tokens.
        mask_ratio: Fraction of tokens to drop, ``0 <= mask_ratio < 1``.
        generator: Random generator on ``x``'s device.
        noise: Optional ``(B, N)`` ranking to use instead of fresh uniform noise: the lowest values are kept, so a
            caller can force tokens in (very low values) or hold them back (high values).

    Returns:
        ``x_kept`` ``(B, N_keep, D)``, ``mask`` ``(B, N)`` with 1 = masked (dropped) and 0 = kept, and
        ``ids_restore`` ``(B, N)`` that puts a kept-then-masked sequence back in the original order.
    """
    batch, num, dim = x.shape
    ids_keep, mask, ids_restore = masking_ids(batch, num, mask_ratio, x.device, generator, noise, x.dtype)
    x_kept = torch.gather(x, 1, ids_keep[:, :, None].expand(-1, -1, dim))  # (B, N_keep, D)
    return x_kept, mask, ids_restore


def encode_masked(
        encoder: nn.Module,
        x: torch.Tensor,
        mask_ratio: float,
        generator: Optional[torch.Generator] = None,
        noise: Optional[torch.Tensor] = None,
        with_prefix: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw a random mask over ``x``'s patches (:func:`masking_ids`) and encode the kept ones with
    ``encoder.forward_masked``.

    Args:
        encoder: An ecgvit encoder.
        x: ``(B, C, L)`` or ``(B, C, 1, L)`` ECGs.
        mask_ratio: Fraction of patches dropped.
        generator: Random generator on ``x``'s device.
        noise: Optional ``(B, N)`` ranking (see :func:`masking_ids`).
        with_prefix: Also encode the [CLS] (and register) tokens, first in the output.

    Returns:
        ``latent`` ``(B, [prefix +] N_keep, D)``, ``mask`` ``(B, N)`` (1 = masked), ``ids_restore`` ``(B, N)``.
    """
    ids_keep, mask, ids_restore = masking_ids(x.shape[0], x.shape[-1] // encoder.patch_len, mask_ratio, x.device,
                                              generator, noise)
    latent = encoder.forward_masked(x, ids_keep, with_prefix=with_prefix)
    return latent, mask.to(latent.dtype), ids_restore


class MaeDecoder(LightDecoder):
    """The seed's MAE decoder: embed, fill with the [mask] token, add positions, blocks, norm, size matcher.

    Args:
        embed_dim: Encoder token width (seed: 512).
        num_patches: Positions of the learnable decoder pos-embed (seed: 144 = 3600 / 25); other lengths resample it.
        patch_values: Values predicted per patch (seed: 25 samples x 12 leads = 300).
        decoder_embed_dim: Decoder width (seed: 256).
        decoder_depth: Decoder blocks (seed: 1).
        decoder_num_heads: Decoder heads (seed: 8).
        decoder_mlp_ratio: Decoder MLP ratio (seed: 2).
        pos_init: How the learnable decoder positions start, ``'normal'`` or ``'sincos'`` (see
            :class:`~ecgvit.pretrain.decoder.LightDecoder`).
    """

    def __init__(
            self,
            embed_dim: int = 512,
            num_patches: int = 144,
            patch_values: int = 300,
            decoder_embed_dim: int = 256,
            decoder_depth: int = 1,
            decoder_num_heads: int = 8,
            decoder_mlp_ratio: float = 2.0,
            pos_init: str = 'normal',
    ) -> None:
        # seed: Linear 512 -> 256, [mask] token (1, 256), pos-embed (144, 256), size matcher to 25 x 12
        super().__init__(embed_dim, decoder_embed_dim, num_patches, patch_values, decoder_embed_dim, decoder_depth,
                         decoder_num_heads, decoder_mlp_ratio, mask_token=True, pos_init=pos_init)
        self.num_patches = num_patches

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch from the kept tokens.

        Args:
            latent: ``(B, N_keep, D)`` encoded kept tokens.
            ids_restore: ``(B, N)`` from :func:`random_masking`.

        Returns:
            ``(B, N, patch_values)`` predictions for all patches.
        """
        x = self.decoder_embed(latent)  # (B, N_keep, Dd)
        batch, num_keep, dim = x.shape
        num = ids_restore.shape[1]
        mask_tokens = self.mask_token.to(x.dtype).expand(batch, num - num_keep, dim)
        x = torch.cat([x, mask_tokens], dim=1)  # (B, N, Dd) kept-then-masked
        x = torch.gather(x, 1, ids_restore[:, :, None].expand(-1, -1, dim))  # original order
        return self.decode(x)  # (B, N, C*P)


class MaeBranch(nn.Module):
    """Masked autoencoding around a shared encoder: :func:`random_masking`, encoder, :class:`MaeDecoder`, loss.

    Args:
        encoder: The ecgvit encoder (used for its sizes only; it is passed to ``forward``, not owned).
        mask_ratio: Fraction of patches masked. Default 0.75: the seed does not state its value; 0.75 is MAE's and
            what the ECG MAEs we follow use (ST-MEM, MaeFE/MTAE), and with 25-sample patches (~70 ms, under a QRS)
            the signal is redundant enough that lower ratios make the task interpolation.
        decoder_embed_dim: Decoder width (seed: 256).
        decoder_depth: Decoder blocks (seed: 1).
        decoder_num_heads: Decoder heads (seed: 8).
        decoder_mlp_ratio: Decoder MLP ratio (seed: 2).
        decoder_num_patches: Decoder pos-embed positions (seed: 144); ``None`` = the encoder's patch count.
        decoder_pos_init: How the learnable decoder positions start. ``'normal'`` (default; std 0.02, as every ecgvit
            run so far) or ``'sincos'`` (sinusoids in [-1, 1], MAE's values, still learned). The seed states a
            learnable pos-embed, not its start. At ``ecg_vit_small`` and the seed's recipe, ``'sincos'`` ends MAE-only's
            plateau near 1 (the mean) 40 epochs earlier and reaches a far lower loss, but its encoder is not shown
            better by the linear probe (``benchmarks/README.md``), so the default stays the seed's.
    """

    def __init__(
            self,
            encoder: nn.Module,
            mask_ratio: float = 0.75,
            decoder_embed_dim: int = 256,
            decoder_depth: int = 1,
            decoder_num_heads: int = 8,
            decoder_mlp_ratio: float = 2.0,
            decoder_num_patches: Optional[int] = None,
            decoder_pos_init: str = 'normal',
    ) -> None:
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}; the seed-style default is 0.75.')
        if decoder_pos_init not in POS_INITS:  # named here as the method's setting, not the decoder's argument
            raise ValueError(f'decoder_pos_init must be one of {POS_INITS}, got {decoder_pos_init!r}.')
        self.mask_ratio = float(mask_ratio)
        self.patch_len = int(encoder.patch_len)
        self.in_chans = int(encoder.patch_embed.proj.in_channels)
        self.decoder = MaeDecoder(
            embed_dim=encoder.embed_dim,
            num_patches=decoder_num_patches or encoder.patch_embed.num_patches,
            patch_values=self.patch_len * self.in_chans,
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            decoder_mlp_ratio=decoder_mlp_ratio,
            pos_init=decoder_pos_init,
        )

    def forward_encoder(
            self,
            encoder: nn.Module,
            x: torch.Tensor,
            generator: Optional[torch.Generator] = None,
            noise: Optional[torch.Tensor] = None,
            with_prefix: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed, add positions, mask, and encode the kept patches (no [CLS] by default, as the seed's MAE branch).

        Args:
            encoder: The shared encoder.
            x: ``(B, C, L)`` ECGs.
            generator: Random generator for the mask.
            noise: Optional ``(B, N)`` masking ranking (see :func:`random_masking`).
            with_prefix: Encode [CLS] too, as the first output token (the shared-pass hybrids read it).

        Returns:
            ``latent`` ``(B, [1 +] N_keep, D)``, ``mask`` ``(B, N)`` (1 = masked), ``ids_restore`` ``(B, N)``.
        """
        return encode_masked(encoder, x, self.mask_ratio, generator, noise, with_prefix)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """``(B, N_keep, D)`` -> ``(B, N, C * P)`` patch predictions.

        Args:
            latent: ``(B, N_keep, D)`` encoder outputs of the kept patches (without prefix tokens).
            ids_restore: ``(B, N)`` from :func:`random_masking`.
        """
        return self.decoder(latent, ids_restore)

    def forward_loss(
            self,
            x: torch.Tensor,
            pred: torch.Tensor,
            mask: torch.Tensor,
            lead_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """MSE between the ECG's patches and their predictions, averaged over masked patches only.

        Args:
            x: ``(B, C, L)`` the un-masked input (the reconstruction target).
            pred: ``(B, N, C * P)``.
            mask: ``(B, N)``, 1 = masked.
            lead_mask: Optional ``(B, C)`` bool, False for leads the record lacks (zero-filled by the data, e.g. a
                cache's ``lead_mask``): their values are no target, so the MSE is averaged over the present leads'
                values in masked patches. None, or every lead present, gives exactly the plain loss.
        """
        target = patchify(x, self.patch_len)  # (B, N, C*P)
        mask = mask.float()
        if lead_mask is not None and not bool(lead_mask.all()):  # one host sync per step, as the loop's input check
            return self._loss_present_leads(target, pred, mask, lead_mask)
        per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)  # (B, N)
        return (per_patch * mask).sum() / mask.sum().clamp(min=1.0)

    def _loss_present_leads(self, target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor,
                            lead_mask: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_loss` when some records lack leads: the mean squared error over present values only."""
        batch, chans = lead_mask.shape
        if chans * self.patch_len != target.shape[-1]:
            raise ValueError(f'lead_mask has {chans} leads for patches of {target.shape[-1] // self.patch_len}: pass '
                             f'one (B, leads) mask in the order of the input leads.')
        # patchify lays a patch out lead-major (all of lead 0 first): one weight per value.
        present = lead_mask.to(torch.float32)[:, None, :, None].expand(batch, 1, chans, self.patch_len)
        weight = present.reshape(batch, 1, chans * self.patch_len) * mask[:, :, None]  # (B, N, C*P)
        err = (pred.float() - target.float()).pow(2)
        return (err * weight).sum() / weight.sum().clamp(min=1.0)

    def forward(
            self,
            encoder: nn.Module,
            x: torch.Tensor,
            generator: Optional[torch.Generator] = None,
            target: Optional[torch.Tensor] = None,
            lead_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked reconstruction of ``x`` ``(B, C, L)``.

        Args:
            encoder: The shared encoder.
            x: ``(B, C, L)`` the encoder's input.
            generator: Random generator for the mask.
            target: What to reconstruct, when not ``x`` itself: the full record when ``x`` has leads zeroed by
                lead-set dropout (predicting the absent leads from the present ones is the task).
            lead_mask: Optional ``(B, C)`` bool, False for leads the data lacks (see :meth:`forward_loss`).

        Returns:
            ``(loss, pred, mask)`` as facebookresearch/mae: scalar loss, ``(B, N, C * P)`` predictions,
            ``(B, N)`` mask.
        """
        if x.dim() == 4:
            x = x.squeeze(2)
        if target is None:
            target = x
        elif target.dim() == 4:
            target = target.squeeze(2)
        if target.shape != x.shape:
            raise ValueError(f'The MAE target {tuple(target.shape)} must have the input\'s shape {tuple(x.shape)}.')
        latent, mask, ids_restore = self.forward_encoder(encoder, x, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(target, pred, mask, lead_mask), pred, mask
