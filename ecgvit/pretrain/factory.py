"""``create_pretrainer``: build any pretraining method around any ecgvit encoder from plain, JSON-friendly kwargs."""
import math
import warnings
from typing import Any, Dict, List, Optional, Tuple, Union

from torch import nn

from ecgvit.data.augment import LeadSetDropout, default_ecg_augment
from ecgvit.errors import UnknownMethodSettingError
from ecgvit.models.arch_bounds import transformer_size_problem
from ecgvit.models.ecg_vit import EcgVisionTransformer
from ecgvit.pretrain.centerclip import CenterclipBranch
from ecgvit.pretrain.hybrid import HybridPretrainer
from ecgvit.pretrain.mae import MaeBranch
from ecgvit.pretrain.moco import MocoBranch
from ecgvit.pretrain.nextclip import NextclipBranch

__all__ = ['create_pretrainer', 'method_settings', 'list_pretrainers', 'split_method', 'METHODS', 'SHARED_PASS',
           'PAPER_PASSES']

# Which branches each method has, and its default MAE weight alpha (seed: 40 for MAE-MoCo, 2 for MAE-Nextclip; we
# use MAE-Nextclip's for MAE-Centerclip, the closest task).
METHODS: Dict[str, Dict[str, Any]] = {
    'mae_moco': dict(mae=True, moco=True, clip=None, alpha=40.0),
    'mae_nextclip': dict(mae=True, moco=False, clip='nextclip', alpha=2.0),
    'mae_centerclip': dict(mae=True, moco=False, clip='centerclip', alpha=2.0),
    'mae': dict(mae=True, moco=False, clip=None, alpha=None),
    'moco': dict(mae=False, moco=True, clip=None, alpha=None),
}

# Method kwargs by branch, with their defaults (each documented on the branch class).
_MAE_KWARGS: Dict[str, Any] = dict(
    mask_ratio=0.75, decoder_embed_dim=256, decoder_depth=1, decoder_num_heads=8, decoder_mlp_ratio=2.0,
    decoder_num_patches=None, decoder_pos_init='normal')
_MOCO_KWARGS: Dict[str, Any] = dict(
    moco_dim=128, moco_hidden_dim=128, moco_num_layers=3, queue_size=65536, momentum=0.99, temperature=0.2,
    sync_bn=False, augment_p=0.5, augment=None)
_CLIP_KWARGS: Dict[str, Any] = dict(
    clip_len=150, sampling_rate=360.0, cycle='rpeak', cycle_fraction=0.5, fallback_rr_s=0.8, min_context=0.1,
    clip_decoder_embed_dim=256, clip_decoder_depth=1, clip_decoder_num_heads=8, clip_decoder_mlp_ratio=2.0)
# Every method: lead-set dropout for reduced-lead input (off by default, so the paper's methods are unchanged).
_LEAD_KWARGS: Dict[str, Any] = dict(lead_dropout=0.0, lead_sets=None)


# ecgvit's own variant of each hybrid, named apart from the paper's method: one masked encoder pass serves MAE and the
# [CLS] task (shared_pass=True; see ecgvit.pretrain.hybrid). 'mae_moco' is always the paper's method.
SHARED_PASS = '_shared'
# Deprecated suffix of 0.1: 'mae_moco+paper' named the paper's passes while the shared pass was the default. The plain
# name is the paper's method now; the suffix is still read so old commands and configs keep running.
PAPER_PASSES = '+paper'


def list_pretrainers(variants: bool = False) -> List[str]:
    """Names accepted by :func:`create_pretrainer`.

    Args:
        variants: Also list ecgvit's shared-pass variant of each hybrid (``'mae_moco_shared'``, ...).

    Returns:
        The paper's methods and baselines (``'mae_moco'``, ``'mae_nextclip'``, ``'mae_centerclip'``, ``'mae'``,
        ``'moco'``), then the variants when asked for.
    """
    names = list(METHODS)
    if variants:
        names += [m + SHARED_PASS for m, spec in METHODS.items() if spec['alpha'] is not None]
    return names


def split_method(name: str) -> Tuple[str, Dict[str, Any]]:
    """A method name as the method and the settings its name implies.

    Args:
        name: a name of :func:`list_pretrainers` (``variants=True``), e.g. ``'mae_moco'`` or ``'mae_moco_shared'``.

    Returns:
        ``('mae_moco', {})`` (the paper's passes, the default) or ``('mae_moco', {'shared_pass': True})``.

    Raises:
        ValueError: not a known method or variant.
    """
    if name.endswith(PAPER_PASSES) and METHODS.get(name.removesuffix(PAPER_PASSES), {}).get('alpha') is not None:
        base = name.removesuffix(PAPER_PASSES)
        warnings.warn(f'{name!r} is deprecated: {base!r} is the paper\'s method (separate encoder passes) by default '
                      f'now; use {base!r}.', FutureWarning, stacklevel=2)
        return base, {'shared_pass': False}
    if name not in list_pretrainers(variants=True):
        raise ValueError(f'Unknown pretraining method {name!r}; valid: {", ".join(list_pretrainers(variants=True))}.')
    if name.endswith(SHARED_PASS):
        return name.removesuffix(SHARED_PASS), {'shared_pass': True}
    return name, {}


def _check_encoder(encoder: nn.Module) -> None:
    if not isinstance(encoder, EcgVisionTransformer):
        raise TypeError(f'Encoder {type(encoder).__name__} is not an ecgvit encoder: the pretraining methods need '
                        f'EcgVisionTransformer.forward_masked. Pass ecgvit.create_model(...) or a registered name '
                        f'such as "ecg_vit_mae_moco".')
    if encoder.cls_token is None:
        raise ValueError('The encoder has no [CLS] token (class_token=False); MoCo and Nextclip read [CLS]. Create it '
                         'with class_token=True (the default).')


def method_settings(method: str) -> Dict[str, Any]:
    """The settings a pretraining method takes (the keyword arguments of :func:`create_pretrainer`), with defaults.

    Args:
        method: A method of :data:`METHODS` (a variant name such as ``'mae_moco_shared'`` gives its base method's).

    Returns:
        ``{setting: default}``; the defaults are the paper's (seed) values.

    Raises:
        ValueError: an unknown method.

    Example:
        >>> method_settings('mae_moco')['alpha'], method_settings('mae')['mask_ratio']
        (40.0, 0.75)
    """
    if method not in METHODS:
        try:
            method = split_method(method)[0]
        except ValueError:
            raise ValueError(f'Unknown pretraining method {method!r}; valid methods: '
                             f'{", ".join(list_pretrainers(variants=True))}.') from None
    spec = METHODS[method]
    allowed: Dict[str, Any] = {}
    if spec['alpha'] is not None:
        allowed['alpha'] = spec['alpha']
        allowed['shared_pass'] = False  # the paper's passes; True is ecgvit's variant (hybrids only)
    if spec['mae']:
        allowed.update(_MAE_KWARGS)
    if spec['moco']:
        allowed.update(_MOCO_KWARGS)
    if spec['clip']:
        allowed.update(_CLIP_KWARGS)
    allowed.update(_LEAD_KWARGS)
    return allowed


def create_pretrainer(
        method: str,
        encoder: Union[str, nn.Module] = 'ecg_vit_mae_moco',
        encoder_kwargs: Optional[Dict[str, Any]] = None,
        **method_kwargs: Any,
) -> HybridPretrainer:
    """Create a pretraining wrapper around an ecgvit encoder.

    Args:
        method: ``'mae_moco'``, ``'mae_nextclip'``, ``'mae_centerclip'``, ``'mae'`` or ``'moco'`` (the paper's
            methods and baselines, as the paper computes them), or ecgvit's shared-pass variant of a hybrid,
            ``'mae_moco_shared'``, ``'mae_nextclip_shared'``, ``'mae_centerclip_shared'`` (the same as
            ``shared_pass=True``).
        encoder: A registered encoder name (made with ``ecgvit.create_model(encoder, **encoder_kwargs)``) or an
            encoder module, used as is (not copied).
        encoder_kwargs: Arguments for ``create_model`` when ``encoder`` is a name, e.g.
            ``dict(embed_dim=64, depth=2, num_heads=4)``.
        **method_kwargs: Settings of the method's branches (defaults are the seed's where it gives them):

            - all hybrids: ``alpha`` (MAE loss weight; 40 for mae_moco, 2 for mae_nextclip / mae_centerclip; 0 skips
              the MAE branch), ``shared_pass`` (False, the default: the paper's separate passes, MAE on the
              un-augmented record without [CLS], MoCo on two augmented unmasked views, Nextclip on the zeroed
              record; True: ecgvit's variant, one masked encoder pass serves both tasks, about 4x fewer FLOPs per
              step, see :mod:`ecgvit.pretrain.hybrid`).
            - MAE (mae_*, mae): ``mask_ratio`` (0.75), ``decoder_embed_dim`` (256), ``decoder_depth`` (1),
              ``decoder_num_heads`` (8), ``decoder_mlp_ratio`` (2), ``decoder_num_patches`` (the encoder's),
              ``decoder_pos_init`` ('normal' | 'sincos': how the learnable decoder positions start).
            - MoCo (mae_moco, moco): ``moco_dim`` (128), ``moco_hidden_dim`` (128), ``moco_num_layers`` (3),
              ``queue_size`` (65536), ``momentum`` (0.99), ``temperature`` (0.2), ``sync_bn`` (False),
              ``augment_p`` (0.5, probability of each of the five default augmentations), ``augment`` (None or
              ``'default_ecg_augment'`` for those five, or a callable ``(x, generator=None)`` replacing them; a
              callable is recorded in ``config`` by class name only, so pass it again when rebuilding).
            - clip (mae_nextclip, mae_centerclip): ``clip_len`` (150), ``sampling_rate`` (360), ``cycle``
              ('rpeak' | 'fixed'), ``cycle_fraction`` (0.5), ``fallback_rr_s`` (0.8), ``min_context`` (0.1),
              ``clip_decoder_embed_dim`` (256), ``clip_decoder_depth`` (1), ``clip_decoder_num_heads`` (8),
              ``clip_decoder_mlp_ratio`` (2).
            - every method: ``lead_dropout`` (0.0, off: the probability per record and encoder pass of keeping one
              lead subset only, :class:`~ecgvit.data.augment.LeadSetDropout`), ``lead_sets`` (the subsets, for
              ``lead_dropout > 0`` only: presets, lead-name lists or ``'I+II'`` strings, or the command-line string
              ``'limb,I'``; default the 6 limb leads and lead I). ``config`` records them as lists of lead names, and
              the encoder's ``pretrained_cfg['lead_sets']`` too, so :func:`ecgvit.hub.save_pretrained` exports which
              subsets the weights were trained to run on.

    Returns:
        A :class:`~ecgvit.pretrain.hybrid.HybridPretrainer` with ``.encoder``, ``.method`` and ``.config`` (all
        method kwargs, defaults filled in).

    Raises:
        ValueError: unknown ``method``, or a bad setting value.
        UnknownMethodSettingError: a kwarg the method does not take (a ``TypeError``; it names the method's
            settings).
        TypeError: ``encoder_kwargs`` with an encoder module, or a setting of the wrong type.

    Example:
        >>> import torch
        >>> from ecgvit.pretrain import create_pretrainer
        >>> model = create_pretrainer('mae_moco', 'ecg_vit_tiny', queue_size=256)
        >>> out = model(torch.randn(4, 12, 3600))
        >>> sorted(out), model.config['alpha']
        (['loss', 'loss_mae', 'loss_moco'], 40.0)
    """
    if method not in METHODS:
        name = method
        try:
            method, implied = split_method(method)
        except ValueError:
            raise ValueError(f'Unknown pretraining method {method!r}; valid methods: '
                             f'{", ".join(list_pretrainers(variants=True))}.') from None
        clash = {k: method_kwargs[k] for k, v in implied.items() if k in method_kwargs and method_kwargs[k] != v}
        if clash:
            raise ValueError(f'The method name {name!r} implies {implied} but {clash} was passed; drop one of them.')
        method_kwargs = {**method_kwargs, **implied}
    spec, allowed = METHODS[method], method_settings(method)
    unknown = sorted(set(method_kwargs) - set(allowed))
    if unknown:
        raise UnknownMethodSettingError(method, unknown, allowed)
    cfg = dict(allowed, **method_kwargs)
    shared_pass = cfg.get('shared_pass', False)
    if not isinstance(shared_pass, bool):
        raise TypeError(f'shared_pass must be True or False, got {shared_pass!r}.')
    lead_dropout = _lead_dropout(cfg)  # before the encoder is built: a bad value costs nothing
    for prefix in ('decoder_', 'clip_decoder_'):
        _check_decoder_size(cfg, prefix)

    if isinstance(encoder, str):
        from ecgvit.factory import create_model  # local: ecgvit/__init__ may re-export this module
        encoder = create_model(encoder, **(encoder_kwargs or {}))
    elif isinstance(encoder, nn.Module):
        if encoder_kwargs:
            raise TypeError('encoder_kwargs only apply when encoder is a model name; got an encoder module and '
                            f'encoder_kwargs={encoder_kwargs}. Configure the module before passing it.')
    else:
        raise TypeError(f'encoder must be a model name or an nn.Module, got {type(encoder).__name__}.')
    _check_encoder(encoder)

    mae = moco = clip = None
    augment = None
    if spec['mae']:
        mae = MaeBranch(
            encoder,
            mask_ratio=cfg['mask_ratio'],
            decoder_embed_dim=cfg['decoder_embed_dim'],
            decoder_depth=cfg['decoder_depth'],
            decoder_num_heads=cfg['decoder_num_heads'],
            decoder_mlp_ratio=cfg['decoder_mlp_ratio'],
            decoder_num_patches=cfg['decoder_num_patches'],
            decoder_pos_init=cfg['decoder_pos_init'],
        )
    if spec['moco']:
        moco = MocoBranch(
            encoder,
            dim=cfg['moco_dim'],
            hidden_dim=cfg['moco_hidden_dim'],
            num_layers=cfg['moco_num_layers'],
            queue_size=cfg['queue_size'],
            momentum=cfg['momentum'],
            temperature=cfg['temperature'],
            sync_bn=cfg['sync_bn'],
            key_mask_ratio=cfg['mask_ratio'] if shared_pass else 0.0,
        )
        augment = cfg['augment']
        if augment is None or augment == 'default_ecg_augment':  # the name is what config records: round-trips
            augment = default_ecg_augment(p=cfg['augment_p'])
            cfg['augment'] = 'default_ecg_augment'
        elif isinstance(augment, str):
            raise ValueError(f'augment={augment!r} is not a known augmentation; pass None or "default_ecg_augment" '
                             f'for the seed\'s five, or the callable itself (a config only records its class name).')
        else:
            if not callable(augment):
                raise TypeError(f'augment must be callable as augment(x, generator=None), got {augment!r}.')
            cfg['augment'] = type(augment).__name__
    if spec['clip']:
        clip_cls = NextclipBranch if spec['clip'] == 'nextclip' else CenterclipBranch
        clip = clip_cls(
            encoder,
            clip_len=cfg['clip_len'],
            sampling_rate=cfg['sampling_rate'],
            cycle=cfg['cycle'],
            cycle_fraction=cfg['cycle_fraction'],
            fallback_rr_s=cfg['fallback_rr_s'],
            min_context=cfg['min_context'],
            decoder_embed_dim=cfg['clip_decoder_embed_dim'],
            decoder_depth=cfg['clip_decoder_depth'],
            decoder_num_heads=cfg['clip_decoder_num_heads'],
            decoder_mlp_ratio=cfg['clip_decoder_mlp_ratio'],
        )
    if lead_dropout is not None:
        # What ships says what it was trained for: save_pretrained writes the encoder's pretrained cfg.
        encoder.pretrained_cfg = dict(getattr(encoder, 'pretrained_cfg', None) or {}, lead_sets=lead_dropout.lead_sets)
    return HybridPretrainer(
        encoder,
        method=method,
        mae=mae,
        moco=moco,
        clip=clip,
        alpha=cfg.get('alpha', 1.0),
        augment=augment,
        config=cfg,
        clip_name=spec['clip'] or 'nextclip',
        shared_pass=shared_pass,
        lead_dropout=lead_dropout,
    )


def _check_decoder_size(cfg: Dict[str, Any], prefix: str) -> None:
    """A ValueError naming the setting for a decoder size no transformer can have (instead of an assertion or a
    division by zero deep inside timm's blocks); the bounds are the encoder's (:mod:`ecgvit.models.arch_bounds`)."""
    if prefix + 'embed_dim' not in cfg:  # the method has no such decoder
        return
    # Depth 0 is allowed: the decoder is then its projections, positions and LayerNorm without blocks.
    problem = transformer_size_problem(cfg, prefix, min_depth=0, required=True)
    if problem is not None:
        key, value, rule = problem
        raise ValueError(f'{key} must {rule}, got {value!r}.')


def _lead_dropout(cfg: Dict[str, Any]) -> Optional[LeadSetDropout]:
    """The lead-set dropout ``cfg`` asks for (None when off); records its settings in ``cfg`` as plain JSON."""
    p = cfg['lead_dropout']
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f'lead_dropout must be a probability in [0, 1] (0 = off), got {p!r}.')
    cfg['lead_dropout'] = float(p)
    if p == 0:
        if cfg['lead_sets'] is not None:
            raise ValueError(f'lead_sets={cfg["lead_sets"]!r} has no effect with lead_dropout=0: pass lead_dropout > 0 '
                             f'(ecgvit pretrain --lead-dropout P) to train on those subsets, or drop lead_sets.')
        return None
    module = LeadSetDropout(p=float(p), lead_sets=cfg['lead_sets'])
    cfg['lead_sets'] = [list(s) for s in module.lead_sets]  # as config.json holds it: round-trips
    return module
