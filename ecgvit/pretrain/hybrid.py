"""One pretraining wrapper for every method: MAE-MoCo, MAE-Nextclip, MAE-Centerclip and the MAE / MoCo baselines.

A :class:`HybridPretrainer` owns one shared encoder and any of three branches:

- ``mae``: :class:`~ecgvit.pretrain.mae.MaeBranch` on the un-augmented ECG (seed: MAE branch of both hybrids);
- ``moco``: :class:`~ecgvit.pretrain.moco.MocoBranch` on two independent augmentation draws;
- ``clip``: :class:`~ecgvit.pretrain.nextclip.NextclipBranch` or
  :class:`~ecgvit.pretrain.centerclip.CenterclipBranch` on the zeroed ECG.

The loss is the non-MAE branch plus ``alpha`` times the MAE loss (seed: L = L_MoCo + 40 L_MAE and
L = L_Nextclip + 2 L_MAE); MAE alone or MoCo alone are the same code with a branch left out, so the paper's ablation
is the ``method`` string (or ``alpha=0``, which skips the MAE branch entirely and, unless ``shared_pass=True`` is
asked for, runs the other branch on its own full views). Build one with :func:`ecgvit.pretrain.create_pretrainer`.

**The paper's passes (the default).** ``mae_moco``, ``mae_nextclip`` and ``mae_centerclip`` compute what the paper
describes: the MAE encodes the un-augmented record's visible patches without [CLS]; MoCo's query is [CLS] of one
augmented, unmasked view and its key the momentum encoder's [CLS] of a second, independent draw; Nextclip's [CLS]
comes from a full-token pass over the record zeroed after the clip start. Every extra view costs a full-token encoder
pass (145 tokens against MAE's 36 visible patches), which the authors name as the method's main cost.

**ecgvit's shared pass (``shared_pass=True``, or the names** ``mae_moco_shared`` **,** ``mae_nextclip_shared`` **,**
``mae_centerclip_shared`` **).** Our variant, not the paper's method: the encoder runs once, on [CLS] plus the MAE's
visible patches, and [CLS] is read from that pass:

- MAE-MoCo: the query is the MAE pass's [CLS] (the un-augmented record, 75% masked); the key is the momentum
  encoder's [CLS] of an augmented view masked the same way with its own mask (``MocoBranch.key_mask_ratio``), so
  the two views differ by augmentation and by which patches survive.
- MAE-Nextclip / MAE-Centerclip: the MAE pass runs on the clip-zeroed record, its mask always keeping the patch where
  the clip starts (:meth:`~ecgvit.pretrain.nextclip.NextclipBranch.masking_noise`); [CLS] feeds the clip decoder, and
  the MAE loss scores only masked patches the zeroing left intact (the zeros and the clip are not MAE targets).

The shared MAE pass gains one token ([CLS]) and keeps the seed's mask ratio, decoder and loss weights. For the clip
hybrids the mask is drawn over the whole zeroed record, so the MAE sees and scores less signal than the paper's:
Nextclip zeroes on average about half the record, Centerclip one half-cycle. Keeping the token count fixed is what
keeps the step cost near MAE's (about 4x fewer FLOPs per seed-size step than the paper's passes). Whether it learns
as well is an empirical question: the measured comparison is in ``benchmarks/README.md`` (results live in the docs,
not here).

**Reduced leads (``lead_dropout``, off by default).** With a :class:`~ecgvit.data.augment.LeadSetDropout`, every
encoder pass sees its input with, per record and with probability ``p``, only one lead subset kept (the others zeroed):
MAE's masked pass, each MoCo view (after its augmentation, with its own draw) and the clip's pass (after the clip is
hidden). The targets stay the full record: the MAE reconstructs the dropped leads from the kept ones, the clip decoder
predicts every lead's clip. Off, no draw is made and every step is what it was without the option.

**Leads missing in the data.** A batch may carry ``lead_mask`` ``(B, 12)`` (False where the record lacked the lead
and the data zero-filled it, as a cache's ``lead_mask``; :class:`ecgvit.data.lead_mask_dataset.WithLeadMask` puts it
in the batch): those values are no target of the MAE or the clip loss (MoCo has none per lead). With every lead
present the losses are exactly the plain ones.
"""
import math
from typing import Any, Callable, Dict, Optional, Set, Tuple

import torch
from torch import nn

from ecgvit.pretrain.mae import MaeBranch
from ecgvit.pretrain.moco import MocoBranch
from ecgvit.pretrain.nextclip import NextclipBranch

__all__ = ['HybridPretrainer']


class HybridPretrainer(nn.Module):
    """A shared encoder with MAE, MoCo and/or clip-prediction branches, trained by one ``forward``.

    ``forward(batch)`` returns ``{'loss': ..., 'loss_mae': ..., 'loss_moco': ... | 'loss_nextclip': ...}``. In
    training mode it also performs the MoCo momentum update (before the keys are computed) and the queue update, so a
    generic loop is just ``loss = model(x)['loss']; loss.backward(); opt.step()``.

    Args:
        encoder: The ecgvit encoder; ``self.encoder.state_dict()`` is what ships after pretraining.
        method: Method name, kept as ``self.method``.
        mae: MAE branch, or ``None``.
        moco: MoCo branch, or ``None``.
        clip: Nextclip / Centerclip branch, or ``None``.
        alpha: Weight of the MAE loss when another branch is present (seed: 40 for MAE-MoCo, 2 for MAE-Nextclip).
            ``0`` skips the MAE branch. Ignored when MAE is the only branch.
        augment: Callable ``(x, generator=None) -> x`` drawing one augmented view; used twice per step for MoCo.
        config: JSON-serialisable method kwargs, kept as ``self.config``.
        clip_name: Loss key suffix of the clip branch (``'nextclip'`` or ``'centerclip'``).
        shared_pass: ecgvit's variant: read MoCo's query / the clip's [CLS] from one masked MAE pass (see the module
            doc) instead of the paper's full-token passes (False, the default). Needs the MAE branch and one other,
            and MoCo's ``key_mask_ratio`` set to match; :func:`~ecgvit.pretrain.create_pretrainer` does both.
        lead_dropout: Callable ``(x, generator=None) -> x`` applied to the input of every encoder pass (a
            :class:`~ecgvit.data.augment.LeadSetDropout`), or None (off, the default).

    Example:
        >>> import torch
        >>> from ecgvit.pretrain import create_pretrainer
        >>> model = create_pretrainer('mae_nextclip', 'ecg_vit_tiny', cycle='fixed')
        >>> out = model(torch.randn(2, 12, 3600))
        >>> sorted(out)
        ['loss', 'loss_mae', 'loss_nextclip']
    """

    def __init__(
            self,
            encoder: nn.Module,
            method: str,
            mae: Optional[MaeBranch] = None,
            moco: Optional[MocoBranch] = None,
            clip: Optional[NextclipBranch] = None,
            alpha: float = 1.0,
            augment: Optional[Callable[..., torch.Tensor]] = None,
            config: Optional[Dict[str, Any]] = None,
            clip_name: str = 'nextclip',
            shared_pass: bool = False,
            lead_dropout: Optional[Callable[..., torch.Tensor]] = None,
    ) -> None:
        super().__init__()
        if mae is None and moco is None and clip is None:
            raise ValueError('A pretrainer needs at least one branch (mae, moco or clip).')
        if not math.isfinite(alpha) or alpha < 0:  # NaN passed `< 0` and silently switched the MAE branch off
            raise ValueError(f'alpha (the MAE loss weight) must be a finite number >= 0, got {alpha}.')
        if shared_pass and (mae is None or (moco is None and clip is None)):
            raise ValueError('shared_pass=True reads [CLS] from the MAE pass for MoCo or a clip branch: it needs the '
                             'MAE branch and one of them (methods mae_moco, mae_nextclip, mae_centerclip).')
        if shared_pass and moco is not None and clip is not None:
            raise ValueError('shared_pass=True supports one [CLS] task beside MAE, got both MoCo and a clip branch.')
        self.encoder = encoder
        self.method = method
        self.mae = mae
        self.moco = moco
        self.clip = clip
        self.alpha = float(alpha)
        self.augment = augment
        self.clip_name = clip_name
        self.shared_pass = bool(shared_pass)
        self.lead_dropout = lead_dropout
        self.config: Dict[str, Any] = dict(config or {})

    @property
    def mae_weight(self) -> float:
        """Weight of the MAE loss in ``loss``: ``alpha`` beside another branch, 1 for MAE alone."""
        if self.mae is None:
            return 0.0
        return 1.0 if (self.moco is None and self.clip is None) else self.alpha

    @property
    def skips_parameters(self) -> bool:
        """Whether some trainable parameters get no gradient in a step, so that DDP must look for them every step.

        True for MAE alone (it encodes the patches only: the [CLS] and register tokens are not used) and for an MAE
        branch weighted 0 (its decoder is not run). Which parameters a step uses follows from the configuration, never
        from the batch (a clip branch with unknown RR intervals falls back to a default one and still runs).
        """
        alone = self.moco is None and self.clip is None
        return (self.mae is not None and self.mae_weight == 0) or (alone and self.encoder.num_prefix_tokens > 0)

    @property
    def lead_sets(self) -> Optional[Tuple[Tuple[str, ...], ...]]:
        """The lead subsets lead-set dropout trains for (what the encoder's pretrained cfg records), None when off."""
        return getattr(self.lead_dropout, 'lead_sets', None) if self.lead_dropout is not None else None

    def _view(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        return x if self.augment is None else self.augment(x, generator=generator)

    def _drop(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """An encoder pass's input: ``x`` with lead-set dropout applied when it is on."""
        return x if self.lead_dropout is None else self.lead_dropout(x, generator=generator)

    def forward(
            self,
            x: torch.Tensor,
            rr_samples: Optional[torch.Tensor] = None,
            generator: Optional[torch.Generator] = None,
            lead_mask: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """One pretraining step's losses.

        Args:
            x: ``(B, 12, L)`` (or ``(B, 12, 1, L)``) z-scored ECGs, L a multiple of the patch length.
            rr_samples: Optional ``(B,)`` RR interval per record in samples (NaN = unknown) for the clip branch; when
                omitted and the clip branch uses R peaks, they are detected on a CPU copy of ``x``.
            generator: Optional ``torch.Generator`` on ``x``'s device for masking, augmentation and clip draws.
            lead_mask: Optional ``(B, leads)`` bool, False for leads the data lacks (zero-filled): excluded from the
                MAE and clip losses (see the module doc).

        Returns:
            ``{'loss': weighted total, 'loss_<branch>': each branch's loss}`` (scalars).
        """
        if x.dim() == 4:
            x = x.squeeze(2)  # (B, C, L)
        if x.dim() != 3:
            raise ValueError(f'Expected a (B, leads, samples) batch, got shape {tuple(x.shape)}.')
        if lead_mask is not None:
            lead_mask = torch.as_tensor(lead_mask, device=x.device).to(torch.bool)
            if lead_mask.shape != x.shape[:2]:
                raise ValueError(f'lead_mask must be (batch, leads) = {tuple(x.shape[:2])}, got '
                                 f'{tuple(lead_mask.shape)}: one bool per lead of each record, False where missing.')
        if self.shared_pass:
            return self._forward_shared(x, rr_samples, generator, lead_mask)
        out: Dict[str, torch.Tensor] = {}
        total = x.new_zeros((), dtype=torch.float32)
        mae_weight = self.mae_weight
        if self.mae is not None and mae_weight > 0:
            # seed: MAE sees the un-augmented ECG; its target is the full record even when leads are dropped.
            loss_mae, _, _ = self.mae(self.encoder, self._drop(x, generator), generator, target=x, lead_mask=lead_mask)
            out['loss_mae'] = loss_mae
            total = total + mae_weight * loss_mae
        if self.moco is not None:
            # Two independent draws: query and key views differ in every random choice.
            x_q = self._drop(self._view(x, generator), generator)
            x_k = self._drop(self._view(x, generator), generator)
            loss_moco, _, _ = self.moco(self.encoder, x_q, x_k)
            out['loss_moco'] = loss_moco
            total = total + loss_moco
        if self.clip is not None:
            # The hidden record's leads are dropped before the encoder; the target is the full record's clip.
            loss_clip, _, _ = self.clip(self.encoder, x, rr_samples, generator, lead_mask, self.lead_dropout)
            out[f'loss_{self.clip_name}'] = loss_clip
            total = total + loss_clip
        out['loss'] = total
        return out

    def _forward_shared(
            self,
            x: torch.Tensor,
            rr_samples: Optional[torch.Tensor],
            generator: Optional[torch.Generator],
            lead_mask: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """``forward`` with ``shared_pass=True``: one masked encoder pass serves MAE and the [CLS] task."""
        x_in, noise, intact, target = x, None, None, None
        if self.clip is not None:
            x_in, target, start, span = self.clip.make_targets(x, rr_samples, generator)
            noise, intact = self.clip.masking_noise(start, span, x.shape[-1], self.mae.patch_len, generator)
        x_enc = self._drop(x_in, generator)  # the MAE target stays x_in, every lead
        latent, mask, ids_restore = self.mae.forward_encoder(self.encoder, x_enc, generator, noise, with_prefix=True)
        cls, latent = latent[:, 0], latent[:, self.encoder.num_prefix_tokens:]
        out: Dict[str, torch.Tensor] = {}
        total = x.new_zeros((), dtype=torch.float32)
        if self.alpha > 0:
            pred = self.mae.forward_decoder(latent, ids_restore)
            loss_mae = self.mae.forward_loss(x_in, pred, mask if intact is None else mask * intact.to(mask.dtype),
                                             lead_mask)
            out['loss_mae'] = loss_mae
            total = total + self.alpha * loss_mae
        if self.moco is not None:
            x_k = self._drop(self._view(x, generator), generator)
            loss_moco, _, _ = self.moco.forward_from_cls(self.encoder, cls, x_k, generator)
            out['loss_moco'] = loss_moco
            total = total + loss_moco
        else:
            loss_clip, _ = self.clip.loss_from_cls(cls, target, lead_mask)
            out[f'loss_{self.clip_name}'] = loss_clip
            total = total + loss_clip
        out['loss'] = total
        return out

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        """Parameter names that should get no weight decay (positions and learnt tokens), as timm's convention."""
        names = {f'encoder.{n}' for n in getattr(self.encoder, 'no_weight_decay', lambda: set())()}
        for name, _ in self.named_parameters():
            if name.endswith(('mask_token', 'decoder_pos_embed')):
                names.add(name)
        return names

    def extra_repr(self) -> str:
        """The method's settings shown in the module's repr."""
        return f'method={self.method!r}, alpha={self.alpha}, shared_pass={self.shared_pass}'
