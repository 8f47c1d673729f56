"""ECG Vision Transformer: a 1-D ViT encoder for 12-lead ECGs, as a timm model.

The encoder of *Hybrid Self-Supervised Learning for ECG* (MAE-MoCo and MAE-Nextclip share it): a 12-lead record of
L samples is treated as a 1 x L "image" with 12 channels, cut into 25-sample patches by a (1, 25) convolution (the
seed's Conv1d(12, 512, 25, stride 25)), given a [CLS] token and a learnable positional embedding, and run through a
standard pre-norm transformer.

Subclassing timm's ``VisionTransformer`` keeps timm's whole model contract (registry, ``build_model_with_cfg``,
``forward_features`` / ``forward_head``, ``forward_intermediates``, ``features_only``, grad checkpointing, Hub
helpers). Only what ECG needs is overridden: 3-D ``(B, 12, L)`` input, a clear error for lengths that do not divide
into patches, and positional embeddings resampled along time only (never as a square image). One method is added:
``forward_masked``, the encoder on a subset of its patches (embedding only the kept ones), which the MAE-style
pretraining wrappers call; it holds no parameters and stays out of the TorchScript / FX path of ``forward``.
"""
import dataclasses
import logging
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, register_notrace_function
from timm.models import PretrainedCfg, build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ecgvit.constants import (
    DEFAULT_DURATION_S,
    DEFAULT_NUM_SAMPLES,
    DEFAULT_SAMPLING_RATE,
    LEADS,
    NUM_LEADS,
    PATCH_SIZE,
)
from ecgvit.errors import CheckpointError
from ecgvit.layers import adopt_ecg_attention
from ecgvit.models.arch_bounds import check_model_args
from ecgvit.weights import WEIGHTS_SHA256, resolve_pretrained_weights

__all__ = ['EcgVisionTransformer', 'EcgPretrainedCfg', 'resample_pos_embed_1d', 'checkpoint_filter_fn',
           'to_ecg_pretrained_cfg']

_logger = logging.getLogger(__name__)


@dataclass
class EcgPretrainedCfg(PretrainedCfg):
    """timm's pretrained cfg plus the ECG facts a checkpoint is only valid under.

    Data code checks these against its preprocessing when a dataset meets a model, so a 500 Hz record is never fed to
    a 360 Hz model by accident.
    """
    sampling_rate: float = DEFAULT_SAMPLING_RATE  # Hz
    duration_s: float = DEFAULT_DURATION_S
    lead_names: Tuple[str, ...] = LEADS
    normalization: str = 'zscore_per_lead'  # seed: z-score; per lead, per record
    preprocessing: Optional[Dict[str, Any]] = None  # full ecgvit.data.Preprocessing settings, once weights exist
    sha256: Optional[str] = None  # of the weight file; checked before loading
    hub_repo_id: Optional[str] = None  # where the weights are (to be) published; not a download source until set
    pretrain_method: Optional[str] = None
    # Lead subsets (beyond all 12) the weights were trained to run on, via lead-set dropout; None: all 12 only.
    lead_sets: Optional[Tuple[Tuple[str, ...], ...]] = None

    @property
    def has_weights(self) -> bool:
        # ecgvit finds its published weights itself (weights/, the HF cache: ecgvit.weights), not through a url, file
        # or hf_hub_id timm would fetch; their sha256 marks them, so timm.list_models(pretrained=True) lists them.
        return bool(super().has_weights or self.sha256)


def to_ecg_pretrained_cfg(cfg: Any) -> Any:
    """Turn a cfg dict (e.g. read from ``config.json``) into an ``EcgPretrainedCfg``, dropping unknown keys.

    Keys the dict lacks take ECG defaults, not timm's image ones: ``input_size`` is (leads, 1, ``duration_s`` x
    ``sampling_rate``) when the dict gives a duration, else (12, 1, 3600), as ``Preprocessing.from_pretrained_cfg``
    reads the same dict; no channel normalisation (the data are z-scored per lead). Anything that is not a dict (None,
    a tag string, a cfg instance) is returned unchanged.

    Args:
        cfg: The cfg dict, or anything else (returned as is).
    """
    if not isinstance(cfg, dict):
        return cfg
    names = {f.name for f in dataclasses.fields(EcgPretrainedCfg)}
    unknown = sorted(set(cfg) - names)
    if unknown:
        _logger.debug('Ignoring unknown pretrained cfg keys: %s', unknown)
    values = {k: _as_tuples(v) for k, v in cfg.items() if k in names}
    leads = len(values.get('lead_names') or LEADS)
    length = (int(round(float(values['duration_s']) * float(values.get('sampling_rate', DEFAULT_SAMPLING_RATE))))
              if values.get('duration_s') is not None else DEFAULT_NUM_SAMPLES)
    defaults = dict(input_size=(leads, 1, length), min_input_size=(leads, 1, 100), mean=(0.,) * leads,
                    std=(1.,) * leads, crop_pct=1.0, interpolation='linear', num_classes=0)
    return EcgPretrainedCfg(**{**defaults, **values})


def _as_tuples(value: Any) -> Any:
    # JSON gives lists; the cfg holds (nested) tuples, e.g. lead_sets.
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


@register_notrace_function
def ecg_to_4d(x: torch.Tensor, patch_len: int, num_leads: int = -1) -> torch.Tensor:
    """Return ``(B, C, 1, L)`` from ``(B, C, L)`` or ``(B, C, 1, L)``, checking the leads and that L divides into
    patches.

    Registered as an FX leaf so symbolic tracing does not branch on the input's shape (and TorchScript compiles the
    checks as plain ``raise`` statements).

    Args:
        x: The ECG batch.
        patch_len: Samples per patch.
        num_leads: Leads the model was built for (``in_chans``); -1 skips the check.
    """
    if x.dim() == 3:
        x = x.unsqueeze(2)
    if x.dim() != 4:
        raise ValueError(f'Expected an ECG batch of shape (B, leads, samples) or (B, leads, 1, samples), '
                         f'got {x.dim()} dims.')
    if num_leads > 0 and x.shape[1] != num_leads:
        # Without this the patch convolution fails with torch's raw "expected input to have N channels".
        # A literal (TorchScript cannot read a global str): ecgvit.constants.LEADS, checked by the tests.
        order = ' in the order I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6' if num_leads == 12 else ''
        if x.shape[2] == 1 and x.shape[3] == num_leads:
            # (B, samples, leads), the layout wfdb.rdsamp and most arrays use: in_chans would be the wrong fix.
            raise ValueError(f'The model expects (B, leads, samples) with {num_leads} leads{order} in dim 1, got '
                             f'shape {[x.shape[0], x.shape[1], x.shape[3]]}, which looks like (B, samples, leads): '
                             f'transpose it with x.transpose(1, 2).')
        raise ValueError(f'The model expects {num_leads} leads{order} (dim 1 of a (B, leads, samples) batch), got '
                         f'{x.shape[1]} in shape {list(x.shape)}: select or reorder the leads to match '
                         f'(ecgvit.data.Preprocessing(leads=...) does), or build the model with in_chans='
                         f'{x.shape[1]}.')
    if not x.is_floating_point():  # else torch's raw "Input type (long int) and bias type (float)"
        raise ValueError(f'Expected a floating-point ECG batch, got dtype {x.dtype}: convert it with x.float().')
    length = x.shape[-1]
    if length < patch_len:  # an empty record would otherwise meet the convolution's raw "kernel size" error
        raise ValueError(f'ECG length {length} is shorter than one patch: the model needs a multiple of the patch '
                         f'size {patch_len}, at least {patch_len} samples.')
    if length % patch_len != 0:
        raise ValueError(f'ECG length {length} is not a multiple of the patch size {patch_len}: crop or pad the '
                         f'signal to a multiple of {patch_len} samples (e.g. {(length // patch_len) * patch_len}).')
    return x


@register_notrace_function
def resample_pos_embed_1d(pos_embed: torch.Tensor, num_patches: int, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Resample a ``(1, prefix + N, D)`` positional embedding to ``num_patches`` positions along time.

    Prefix tokens ([CLS]) keep their embedding; the patch part is linearly interpolated. A no-op when the count
    already matches, so the default length costs nothing.

    Args:
        pos_embed: ``(1, prefix + N, D)`` embedding.
        num_patches: Patch positions wanted.
        num_prefix_tokens: Leading tokens kept as they are.
    """
    if pos_embed.shape[1] - num_prefix_tokens == num_patches:
        return pos_embed
    prefix = pos_embed[:, :num_prefix_tokens]
    grid = pos_embed[:, num_prefix_tokens:].transpose(1, 2).float()  # (1, D, N_old)
    grid = F.interpolate(grid, size=num_patches, mode='linear', align_corners=False)
    grid = grid.transpose(1, 2).to(pos_embed.dtype)  # (1, N_new, D)
    return torch.cat([prefix, grid], dim=1)


class EcgPatchEmbed(PatchEmbed):
    """timm's PatchEmbed with a (1, P) kernel that also accepts ``(B, leads, samples)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ecg_to_4d(x, self.patch_size[1], self.proj.in_channels)
        x = self.proj(x)  # (B, D, 1, N)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        x = self.norm(x)
        return x


def _as_length(img_size: Union[int, Tuple[int, int], List[int]]) -> int:
    if isinstance(img_size, numbers.Integral):  # numpy integers too
        return int(img_size)
    size = tuple(img_size)
    if len(size) != 2 or size[0] != 1:
        raise ValueError(f'ECG models take img_size as a length or (1, length), got {img_size}.')
    return int(size[1])


def _as_patch(patch_size: Union[int, Tuple[int, int], List[int]]) -> int:
    if isinstance(patch_size, numbers.Integral):  # numpy integers too
        return int(patch_size)
    size = tuple(patch_size)
    if len(size) != 2 or size[0] != 1:
        raise ValueError(f'ECG models take patch_size as a length or (1, length), got {patch_size}.')
    return int(size[1])


class EcgVisionTransformer(VisionTransformer):
    """1-D Vision Transformer for 12-lead ECGs (the seed's encoder).

    Input is ``(B, 12, L)`` or ``(B, 12, 1, L)`` with L a multiple of ``patch_size``; the default L = 3600 is 10 s at
    360 Hz. Other lengths work without ``set_input_size`` (the positional embedding is resampled on the fly along
    time); ``set_input_size`` makes a new length the stored one.

    Example:
        >>> import torch, ecgvit
        >>> model = ecgvit.create_model('ecg_vit_tiny', num_classes=5)
        >>> model(torch.randn(2, 12, 3600)).shape
        torch.Size([2, 5])
    """

    def __init__(
            self,
            img_size: Union[int, Tuple[int, int]] = DEFAULT_NUM_SAMPLES,
            patch_size: Union[int, Tuple[int, int]] = PATCH_SIZE,
            in_chans: int = NUM_LEADS,
            num_classes: int = 0,
            global_pool: str = 'token',
            embed_dim: int = 512,
            depth: int = 6,
            num_heads: int = 16,
            mlp_ratio: float = 2.,
            **kwargs: Any,
    ) -> None:
        """
        Args:
            img_size: Input length in samples, or ``(1, length)``.
            patch_size: Samples per patch (seed: 25), or ``(1, samples)``.
            in_chans: Number of leads.
            num_classes: Classifier outputs; 0 (default) returns the pooled embedding.
            global_pool: 'token' ([CLS], the seed's choice), 'avg' (mean of patch tokens) or '' (no pooling).
            embed_dim: Token dimension (seed: 512).
            depth: Transformer blocks (seed: 6).
            num_heads: Attention heads (seed: 16).
            mlp_ratio: MLP hidden size over embed_dim (seed: 2).
            **kwargs: Any other timm ``VisionTransformer`` argument (drop_path_rate, qkv_bias, ...).
        """
        for key in ('dynamic_img_size', 'dynamic_img_pad', 'no_embed_class', 'embed_layer'):
            if kwargs.get(key):
                raise TypeError(f'EcgVisionTransformer does not support {key}: any multiple of the patch size '
                                f'already works, with positional embeddings resampled along time.')
            kwargs.pop(key, None)
        if kwargs.get('pos_embed', 'learn') != 'learn':
            raise TypeError('EcgVisionTransformer needs a learnable positional embedding (pos_embed="learn").')
        length, patch = _as_length(img_size), _as_patch(patch_size)
        if length % patch != 0:
            raise ValueError(f'img_size {length} is not a multiple of patch_size {patch}.')
        super().__init__(
            img_size=(1, length),
            patch_size=(1, patch),
            in_chans=in_chans,
            num_classes=num_classes,
            global_pool=global_pool,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            embed_layer=EcgPatchEmbed,
            **kwargs,
        )
        # Any length that divides into patches is accepted; the pos-embed follows it (see _pos_embed).
        self.patch_embed.strict_img_size = False
        adopt_ecg_attention(self)  # the attention kernel is picked per call (fused, or explicit on CPU in bf16)

    @property
    def seq_len(self) -> int:
        """Stored input length in samples (the length the positional embedding was learnt at)."""
        return self.patch_embed.img_size[1]

    @property
    def patch_len(self) -> int:
        """Samples per patch."""
        return self.patch_embed.patch_size[1]

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, N, D) patch tokens
        pos_embed = resample_pos_embed_1d(self.pos_embed, x.shape[1], self.num_prefix_tokens)
        to_cat: List[torch.Tensor] = []
        if self.cls_token is not None:
            to_cat.append(self.cls_token.expand(x.shape[0], -1, -1))
        if self.reg_token is not None:
            to_cat.append(self.reg_token.expand(x.shape[0], -1, -1))
        if len(to_cat) > 0:
            x = torch.cat(to_cat + [x], dim=1)
        x = x + pos_embed  # (B, prefix + N, D)
        return self.pos_drop(x)

    @torch.jit.ignore
    def embed_patches(self, x: torch.Tensor, ids_keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Patch tokens with their positions, without the prefix tokens: all of them, or only the kept ones.

        Args:
            x: ``(B, leads, L)`` or ``(B, leads, 1, L)`` ECGs, L a multiple of the patch length.
            ids_keep: Optional ``(B, K)`` patch indices; only those patches are embedded, in that order.

        Returns:
            ``(B, N, D)`` tokens, or ``(B, K, D)`` with ``ids_keep`` (positional dropout applied, as in
            ``forward_features``).
        """
        proj = self._patch_linear()
        if ids_keep is None or proj is None:
            tokens = self.patch_embed(x)  # (B, N, D)
            pos = resample_pos_embed_1d(self.pos_embed, tokens.shape[1], self.num_prefix_tokens)
            tokens = tokens + pos[:, self.num_prefix_tokens:]
            if ids_keep is not None:
                tokens = torch.gather(tokens, 1, ids_keep[:, :, None].expand(-1, -1, tokens.shape[-1]))
            return self.pos_drop(tokens)
        # The patch embedding is a (1, P) convolution with stride P, i.e. one linear map per patch: apply it to the
        # kept patches only. At MAE's mask ratio this skips three quarters of the embedding and of the positional
        # add, and the (B, D, N) -> (B, N, D) copy of every token.
        weight, bias = proj
        patch_len = self.patch_len
        x = ecg_to_4d(x, patch_len, weight.shape[1] // patch_len)  # (B, C, 1, L), checked as patch_embed checks it
        batch, chans, length = x.shape[0], x.shape[1], x.shape[-1]
        num = length // patch_len
        patches = x.reshape(batch, chans, num, patch_len)[torch.arange(batch, device=x.device)[:, None], :, ids_keep]
        tokens = self.patch_embed.norm(F.linear(patches.flatten(2), weight, bias))  # (B, K, D)
        pos = resample_pos_embed_1d(self.pos_embed, num, self.num_prefix_tokens)[0, self.num_prefix_tokens:]
        return self.pos_drop(tokens + pos[ids_keep])

    def _patch_linear(self) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """The patch embedding as a ``(D, C * P)`` linear map, or None when it is not a plain non-overlapping conv.

        The flattened conv weight is lead-major inside a patch. Modules with hooks (feature hooks, old-style weight
        norm, adapters) or a replaced / re-configured convolution return None: only running the module honours them.
        """
        embed = self.patch_embed
        conv = getattr(embed, 'proj', None)
        if not isinstance(conv, nn.Conv2d) or not getattr(embed, 'flatten', True) or conv.groups != 1:
            return None
        if any(m._forward_hooks or m._forward_pre_hooks for m in (embed, conv)):
            return None
        if conv.kernel_size != (1, self.patch_len) or conv.stride != conv.kernel_size or conv.padding != (0, 0) \
                or conv.dilation != (1, 1) or getattr(embed, 'dynamic_img_pad', False):
            return None
        return conv.weight.flatten(1), conv.bias

    def _prefix_tokens(self, batch: int) -> torch.Tensor:
        """The [CLS] (and register) tokens with their positions, as ``_pos_embed`` adds them: ``(B, prefix, D)``."""
        prefix = [t.expand(batch, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        return self.pos_drop(torch.cat(prefix, dim=1) + self.pos_embed[:, :self.num_prefix_tokens])

    @torch.jit.ignore
    def forward_masked(
            self,
            x: torch.Tensor,
            ids_keep: Optional[torch.Tensor],
            with_prefix: bool = False,
    ) -> torch.Tensor:
        """``forward_features`` on a subset of the patches: only the kept ones are embedded and encoded.

        The masked pass of MAE-style pretraining (and of the shared-pass hybrids' [CLS] tasks). It holds no
        parameters of its own: the pretraining wrappers choose ``ids_keep`` and keep their decoders.

        Args:
            x: ``(B, leads, L)`` or ``(B, leads, 1, L)`` ECGs, L a multiple of the patch length.
            ids_keep: ``(B, K)`` indices of the patches to encode, in the order wanted out; None keeps all.
            with_prefix: Also encode the [CLS] (and register) tokens, first in the output (MAE's own pass leaves
                them out).

        Returns:
            ``(B, [prefix +] K, D)`` normed tokens. With ``ids_keep=None`` and ``with_prefix=True`` this equals
            ``forward_features(x)``.
        """
        tokens = self.embed_patches(x, ids_keep)
        if with_prefix and self.num_prefix_tokens > 0:
            tokens = torch.cat([self._prefix_tokens(tokens.shape[0]), tokens], dim=1)
        tokens = self.norm_pre(tokens)
        if self.grad_checkpointing and torch.is_grad_enabled():
            tokens = checkpoint_seq(self.blocks, tokens)  # honour set_grad_checkpointing(), as forward_features does
        else:
            tokens = self.blocks(tokens)
        return self.norm(tokens)

    @torch.jit.ignore
    def set_input_size(
            self,
            img_size: Optional[Union[int, Tuple[int, int]]] = None,
            patch_size: Optional[Union[int, Tuple[int, int]]] = None,
    ) -> None:
        """Make a new input length (and/or patch size) the stored one, resampling the pos-embed along time.

        Args:
            img_size: New length in samples, or ``(1, length)``; an ``(H, length)`` pair from 2-D tooling warns and
                uses the length.
            patch_size: New samples per patch, or ``(1, samples)``; the patch kernel is resampled by timm.
        """
        if isinstance(img_size, (tuple, list)) and len(img_size) == 2 and img_size[0] != 1:
            # Generic 2-D tooling (timm's scripts and tests) scales (H, W) together; an ECG's height is always 1.
            warnings.warn(f'ECG models have height 1; using length {img_size[1]} from img_size={tuple(img_size)}.',
                          stacklevel=2)
            img_size = int(img_size[1])
        length = self.seq_len if img_size is None else _as_length(img_size)
        patch = self.patch_len if patch_size is None else _as_patch(patch_size)
        if length % patch != 0:
            raise ValueError(f'img_size {length} is not a multiple of patch_size {patch}: choose a length that is.')
        VisionTransformer.set_input_size(
            self, img_size=(1, length), patch_size=None if patch_size is None else (1, patch))

    @torch.jit.ignore
    def forward_intermediates(self, x: torch.Tensor, *args: Any, **kwargs: Any):
        """timm's ``forward_intermediates``, also for ``(B, leads, samples)`` input; NCHW features are (B, D, 1, N).

        Args:
            x: ``(B, leads, samples)`` or timm's ``(B, leads, 1, samples)``.
            *args: Passed to timm's ``VisionTransformer.forward_intermediates``.
            **kwargs: Likewise (``indices``, ``output_fmt``, ``intermediates_only``, ...).
        """
        return VisionTransformer.forward_intermediates(self, ecg_to_4d(x, self.patch_len), *args, **kwargs)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: EcgVisionTransformer) -> Dict[str, torch.Tensor]:
    """Adapt a checkpoint to ``model``: resample the pos-embed along time, unwrap pretraining wrappers, and drop a
    classifier head that does not fit the model's (so a fine-tuned checkpoint loads as an encoder and vice versa).

    Accepts plain encoder state dicts, those nested under ``'state_dict'`` / ``'model'``, those saved from a
    DistributedDataParallel or ``torch.compile`` wrapper (every key under ``module.`` / ``_orig_mod.``), and those of a
    pretraining wrapper (the encoder's keys under ``encoder.``; its other branches are dropped).

    Args:
        state_dict: The checkpoint's tensors.
        model: The model they are loaded into.

    Raises:
        CheckpointError: the encoder tensors do not fit ``model`` (other sizes, missing or extra tensors).
    """
    for key in ('state_dict', 'model'):
        if isinstance(state_dict.get(key), dict):
            state_dict = state_dict[key]
    for prefix in ('module.', '_orig_mod.'):  # wrappers that prefix every key (DDP, torch.compile)
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    if any(k.startswith('encoder.') for k in state_dict):
        state_dict = {k[len('encoder.'):]: v for k, v in state_dict.items() if k.startswith('encoder.')}
    model_sd = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        if k == 'pos_embed' and v.shape[1] != model.pos_embed.shape[1]:
            v = resample_pos_embed_1d(v, model.patch_embed.num_patches, model.num_prefix_tokens)
        if k.startswith('head.') and (k not in model_sd or model_sd[k].shape != v.shape):
            # A classifier trained for other classes (or none wanted): the encoder loads, the head stays fresh.
            continue
        out[k] = v
    _check_fits(out, model_sd, getattr(model, 'pretrained_cfg', {}).get('architecture') or type(model).__name__)
    return out


def _check_fits(state_dict: Dict[str, torch.Tensor], model_sd: Dict[str, torch.Tensor], name: str) -> None:
    """Raise a CheckpointError naming every encoder tensor whose presence or shape differs from the model's."""
    first_conv = 'patch_embed.proj.weight'
    wrong = []
    for k, v in state_dict.items():
        want = model_sd.get(k)
        if want is None:
            wrong.append(f'unexpected {k}')
        elif v.shape != want.shape and not (k == first_conv and v.shape[:1] + v.shape[2:] == want.shape[:1]
                                            + want.shape[2:]):  # another lead count: timm adapts the conv
            wrong.append(f'{k} is {tuple(v.shape)}, the model has {tuple(want.shape)}')
    wrong += [f'missing {k}' for k in model_sd if k not in state_dict and not k.startswith('head.')]
    moved = [f'{a}.{t}' for a, b in (('norm', 'fc_norm'), ('fc_norm', 'norm')) for t in ('weight', 'bias')
             if f'{a}.{t}' in state_dict and f'{a}.{t}' not in model_sd and f'{b}.{t}' in model_sd]
    if moved and len(wrong) == 2 * len(moved):  # only the final norm differs: the pooling moved it (timm's fc_norm)
        before = moved[0].startswith('norm.')
        raise CheckpointError(
            f'The checkpoint does not fit {name} with these arguments: its final LayerNorm is '
            f'{"before" if before else "after"} the pooling ({moved[0].split(".")[0]}) and the model has it '
            f'{"after" if before else "before"}. '
            + ("global_pool='avg' (or 'max') puts it after the pooling unless fc_norm=False: pass fc_norm=False to "
               "pool the normed patch tokens with these weights (or build with the default pooling and call "
               "model.reset_classifier(0, 'avg')), or global_pool='token'." if before else
               'These weights were trained with the norm after an average pooling: pass the global_pool they were '
               "trained with (e.g. 'avg') and leave fc_norm unset."))
    if wrong:
        raise CheckpointError(
            f'The checkpoint does not fit {name} with these arguments: {"; ".join(wrong[:4])}'
            f'{f" (and {len(wrong) - 4} more)" if len(wrong) > 4 else ""}. Check that the weights were saved from '
            f'the same architecture (embed_dim, depth, patch_size) and pass matching kwargs.')


def _create_ecg_vit(variant: str, pretrained: bool = False, **kwargs: Any) -> EcgVisionTransformer:
    check_model_args(kwargs, where=f'create_model({variant!r})')  # before any tensor is allocated
    if kwargs.get('img_size') is not None:
        kwargs['img_size'] = (1, _as_length(kwargs['img_size']))
    # cfg dicts come from config.json (local-dir: / hf-hub:) and carry the ECG fields timm's dataclass lacks.
    kwargs['pretrained_cfg'] = to_ecg_pretrained_cfg(kwargs.get('pretrained_cfg'))
    if pretrained:  # ecgvit's lookup (local weights/, sha256) hands timm the verified state dict
        kwargs['pretrained_cfg_overlay'] = resolve_pretrained_weights(
            variant, kwargs['pretrained_cfg'], kwargs.get('pretrained_cfg_overlay'))
    # timm's ViT default is the last 3 blocks; shallower test-size variants get all of theirs.
    out_indices = kwargs.pop('out_indices', min(3, kwargs.get('depth', 3)))
    model = build_model_with_cfg(
        EcgVisionTransformer, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'), **kwargs)
    model.pretrained_cfg.pop('state_dict', None)  # the tensors live in the model now; the cfg keeps no second copy
    return model


def _cfg(hub_repo_id: Optional[str] = None, **kwargs: Any) -> EcgPretrainedCfg:
    cfg = EcgPretrainedCfg(
        num_classes=0,
        input_size=(NUM_LEADS, 1, DEFAULT_NUM_SAMPLES),
        # timm's model tests shrink inputs to their own targets; 100 samples (4 patches) keeps them valid.
        min_input_size=(NUM_LEADS, 1, 100),
        pool_size=None,
        crop_pct=1.0,
        interpolation='linear',
        # Inputs are z-scored per lead in the data pipeline, so no further channel normalisation.
        mean=(0.,) * NUM_LEADS,
        std=(1.,) * NUM_LEADS,
        first_conv='patch_embed.proj',
        classifier='head',
        license='apache-2.0',
        paper_name='Hybrid Self-Supervised Learning for ECG',
        paper_ids='openreview:iTjqAWYw2K',
        hub_repo_id=hub_repo_id,
    )
    return dataclasses.replace(cfg, **kwargs)


default_cfgs = generate_default_cfgs({
    'ecg_vit_mae_moco': _cfg(hub_repo_id='ecgvit/ecg_vit_mae_moco', pretrain_method='mae_moco',
                             sha256=WEIGHTS_SHA256.get('ecg_vit_mae_moco')),
    'ecg_vit_mae_nextclip': _cfg(hub_repo_id='ecgvit/ecg_vit_mae_nextclip', pretrain_method='mae_nextclip',
                                 sha256=WEIGHTS_SHA256.get('ecg_vit_mae_nextclip')),
    'ecg_vit_tiny': _cfg(),
    'ecg_vit_small': _cfg(),
})


@register_model
def ecg_vit_mae_moco(pretrained: bool = False, **kwargs: Any) -> EcgVisionTransformer:
    """Seed-size ECG ViT (512 dim, 6 blocks, 16 heads, MLP 2; 12.8M params) for MAE-MoCo weights.

    Args:
        pretrained: Load the published weights, verified by sha256 (``PretrainedWeightsError`` where there are none).
        **kwargs: Model arguments overriding the variant's (``img_size``, ``num_classes``, ``in_chans``, ...),
            bounds-checked first (:func:`~ecgvit.models.arch_bounds.check_model_args`).
    """
    model_args = dict(patch_size=25, embed_dim=512, depth=6, num_heads=16, mlp_ratio=2.)
    return _create_ecg_vit('ecg_vit_mae_moco', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def ecg_vit_mae_nextclip(pretrained: bool = False, **kwargs: Any) -> EcgVisionTransformer:
    """Seed-size ECG ViT (512 dim, 6 blocks, 16 heads, MLP 2; 12.8M params) for MAE-Nextclip weights.

    Args:
        pretrained: Load the published weights, verified by sha256 (``PretrainedWeightsError`` where there are none).
        **kwargs: Model arguments overriding the variant's (``img_size``, ``num_classes``, ``in_chans``, ...),
            bounds-checked first (:func:`~ecgvit.models.arch_bounds.check_model_args`).
    """
    model_args = dict(patch_size=25, embed_dim=512, depth=6, num_heads=16, mlp_ratio=2.)
    return _create_ecg_vit('ecg_vit_mae_nextclip', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def ecg_vit_small(pretrained: bool = False, **kwargs: Any) -> EcgVisionTransformer:
    """ECG ViT at 256 dim, 4 blocks, 8 heads (about 2.2M params): quick CPU pretraining.

    Args:
        pretrained: Load the published weights, verified by sha256 (``PretrainedWeightsError`` where there are none).
        **kwargs: Model arguments overriding the variant's (``img_size``, ``num_classes``, ``in_chans``, ...),
            bounds-checked first (:func:`~ecgvit.models.arch_bounds.check_model_args`).
    """
    model_args = dict(patch_size=25, embed_dim=256, depth=4, num_heads=8, mlp_ratio=2.)
    return _create_ecg_vit('ecg_vit_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def ecg_vit_tiny(pretrained: bool = False, **kwargs: Any) -> EcgVisionTransformer:
    """ECG ViT at 64 dim, 3 blocks, 4 heads (about 0.2M params): for tests and smoke runs, not for accuracy.

    Args:
        pretrained: Load the published weights, verified by sha256 (``PretrainedWeightsError`` where there are none).
        **kwargs: Model arguments overriding the variant's (``img_size``, ``num_classes``, ``in_chans``, ...),
            bounds-checked first (:func:`~ecgvit.models.arch_bounds.check_model_args`).
    """
    model_args = dict(patch_size=25, embed_dim=64, depth=3, num_heads=4, mlp_ratio=2.)
    return _create_ecg_vit('ecg_vit_tiny', pretrained=pretrained, **dict(model_args, **kwargs))
