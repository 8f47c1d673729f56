"""Sane bounds on the arguments that size an encoder, checked before any tensor is allocated.

A ``config.json`` (from ``local-dir:``, ``hf-hub:`` or :func:`ecgvit.hub.load_pretrained`) is data, not code, but its
``model_args`` decide how much memory ``create_model`` allocates: ``"embed_dim": 10000000`` would try to allocate
terabytes and die with an out-of-memory kill instead of an error. Every size is checked here against generous bounds
(far above any ECG model in the literature) and the total parameter count is estimated from them, so a hostile or
mistyped config fails fast with the file and the key named.
"""
import json
import math
import numbers
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from ecgvit.errors import CheckpointError

__all__ = ['ARG_BOUNDS', 'MAX_PARAMS', 'check_model_args', 'read_model_config', 'transformer_size_problem']

# Inclusive integer bounds of each sizing argument (ecgvit's largest registered model: 512 dim, 6 blocks, 16 heads).
ARG_BOUNDS: Dict[str, Tuple[int, int]] = {
    'embed_dim': (1, 8192),
    'depth': (1, 256),
    'num_heads': (1, 512),
    'in_chans': (1, 1024),
    'num_classes': (0, 1_000_000),
    'patch_size': (1, 100_000),
    'img_size': (1, 100_000_000),  # samples: over 27 hours at 1 kHz
    'class_token': (0, 1),
    'reg_tokens': (0, 1024),
}
MAX_MLP_RATIO = 64.0
# 2e9 parameters (8 GB in fp32) is over 100x the seed's encoder: any more in a config is a mistake or an attack.
MAX_PARAMS = 2_000_000_000
_RATES = ('drop_rate', 'pos_drop_rate', 'patch_drop_rate', 'proj_drop_rate', 'attn_drop_rate', 'drop_path_rate')


def _length(value: Any) -> Any:
    """The length of an ``img_size`` / ``patch_size`` given as ``n`` or ``(1, n)`` (anything else unchanged)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[1]
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # numpy integers count


def transformer_size_problem(args: Mapping[str, Any], prefix: str = '', min_depth: int = 1,
                             required: bool = False) -> Optional[Tuple[str, Any, str]]:
    """The first transformer size in ``args`` that no transformer can have (shared by encoders and decoders).

    Checks ``{prefix}embed_dim``, ``{prefix}depth`` and ``{prefix}num_heads`` (integers within :data:`ARG_BOUNDS`),
    that the head count divides the width, and ``{prefix}mlp_ratio`` (a finite number above 0, at most 64).

    Args:
        args: Keyword arguments holding the sizes.
        prefix: Prefix of their keys: '' for an encoder's, 'decoder_' or 'clip_decoder_' for a pretraining decoder's.
        min_depth: Fewest blocks allowed: 1 for an encoder, 0 for a decoder (its projections without blocks).
        required: Refuse a missing or None size (a decoder's branch builds from all four) instead of skipping it
            (an encoder leaves it to the model's default).

    Returns:
        None when all are sane, else ``(key, value, rule)``: the prefixed key, its value and what it must do, phrased
        to follow 'must' (e.g. ``('decoder_depth', -1, 'be an integer from 0 to 256')``).

    Example:
        >>> transformer_size_problem({'decoder_embed_dim': 256, 'decoder_num_heads': 7}, prefix='decoder_')[:2]
        ('decoder_num_heads', 7)
    """
    sizes: Dict[str, int] = {}
    for key in ('embed_dim', 'depth', 'num_heads'):
        value = args.get(prefix + key)
        if value is None and not required:
            continue
        lo, hi = ARG_BOUNDS[key]
        lo = min_depth if key == 'depth' else lo
        if not _is_int(value) or not lo <= value <= hi:
            return prefix + key, value, f'be an integer from {lo} to {hi}'
        sizes[key] = value
    dim, heads = sizes.get('embed_dim'), sizes.get('num_heads')
    if dim is not None and heads is not None and dim % heads != 0:
        near = max(h for h in range(1, min(heads, dim) + 1) if dim % h == 0)
        return (prefix + 'num_heads', heads, f'divide {prefix}embed_dim={dim} (each head gets embed_dim / num_heads '
                                             f'channels; e.g. {prefix}num_heads={near})')
    ratio = args.get(prefix + 'mlp_ratio')
    if (ratio is not None or required) and (isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or
                                            not math.isfinite(ratio) or not 0 < ratio <= MAX_MLP_RATIO):
        return prefix + 'mlp_ratio', ratio, f'be a finite number above 0 and at most {MAX_MLP_RATIO:g}'
    return None


def check_model_args(args: Dict[str, Any], where: str = 'create_model', error: type = ValueError) -> None:
    """Raise ``error`` naming the first sizing argument in ``args`` that is out of bounds or of the wrong type.

    Args:
        args: Model keyword arguments (``embed_dim``, ``depth``, ``img_size``, ...); others are left to the model.
        where: What held them, for the message (a config file's path, or ``'create_model'``).
        error: Exception class to raise (``CheckpointError`` for a file, ``ValueError`` for direct arguments).

    Raises:
        ValueError: (or ``error``) the message names ``where``, the key, its value and the allowed range.
    """
    def fail(key: str, value: Any, rule: str) -> None:
        raise error(f'{where}: {key}={value!r} is not a sane model size: it must {rule}. Fix or remove the key; a '
                    f'config.json written by ecgvit.hub.save_pretrained never holds such a value.')

    problem = transformer_size_problem(args)
    if problem is not None:
        fail(*problem)
    for key, (lo, hi) in ARG_BOUNDS.items():
        if key in ('embed_dim', 'depth', 'num_heads') or args.get(key) is None:
            continue
        value = _length(args[key]) if key in ('img_size', 'patch_size') else args[key]
        if key == 'class_token' and isinstance(value, bool):
            continue
        if not _is_int(value) or not lo <= value <= hi:
            fail(key, args[key], f'be an integer from {lo} to {hi}')
    for key in _RATES:
        rate = args.get(key)
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, numbers.Real) or
                                 not 0 <= rate < 1):
            fail(key, rate, 'be a probability in [0, 1)')
    # Estimate with the seed encoder's sizes for what is not given: blocks (4 D^2 attention + 2 r D^2 MLP), the
    # positional embedding ((N + 1) D) and the patch embedding (C P D).
    dim, depth, ratio = args.get('embed_dim') or 512, args.get('depth') or 6, args.get('mlp_ratio') or 2.0
    patch = _length(args.get('patch_size')) or 25
    tokens = (_length(args.get('img_size')) or 3600) // patch + 1
    params = depth * (4 + 2 * ratio) * dim * dim + tokens * dim + (args.get('in_chans') or 12) * patch * dim
    if params > MAX_PARAMS:
        raise error(f'{where}: embed_dim={dim}, depth={depth}, mlp_ratio={ratio}, img_size={args.get("img_size")}, '
                    f'patch_size={patch} make about {params:.3g} parameters, over the limit of {MAX_PARAMS:.0e}: '
                    f'the config is wrong (the seed encoder has 1.3e7).')


def read_model_config(path: Union[str, Path], registered: Optional[Any] = None) -> Dict[str, Any]:
    """Read a model ``config.json`` and check its architecture and sizes before timm builds anything from it.

    Args:
        path: The config file.
        registered: Callable ``name -> bool`` telling whether an architecture is registered (``timm.is_model``).

    Returns:
        The parsed config.

    Raises:
        CheckpointError: not JSON, not an object, no registered ``architecture``, or a size out of bounds
            (:func:`check_model_args`); the message names the file and the key.
    """
    path = Path(path)
    try:
        cfg = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError) as e:
        raise CheckpointError(f'{path} is not a readable JSON model config ({e}): write it with '
                              f'ecgvit.hub.save_pretrained, or download it again.') from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f'{path} must hold a JSON object, got {type(cfg).__name__}.')
    arch = cfg.get('architecture')
    if not isinstance(arch, str) or (registered is not None and not registered(arch.split('.', 1)[0])):
        raise CheckpointError(f'{path}: architecture={arch!r} is not a registered model; ecgvit.list_models() '
                              f'lists the ones this install provides.')
    model_args = cfg.get('model_args', {})
    if not isinstance(model_args, dict):
        raise CheckpointError(f'{path}: model_args must be a JSON object, got {type(model_args).__name__}.')
    top = {k: cfg[k] for k in ('num_classes',) if k in cfg}
    check_model_args(dict(top, **model_args), where=f'{path} (model_args)', error=CheckpointError)
    pretrained_cfg = cfg.get('pretrained_cfg') or {}
    if not isinstance(pretrained_cfg, dict):
        raise CheckpointError(f'{path}: pretrained_cfg must be a JSON object, got {type(pretrained_cfg).__name__}.')
    rate = pretrained_cfg.get('sampling_rate')
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate)
                             or rate <= 0):
        raise CheckpointError(f'{path}: pretrained_cfg.sampling_rate={rate!r} must be a positive number of Hz.')
    size = pretrained_cfg.get('input_size')
    if size is not None and not (isinstance(size, list) and len(size) == 3 and all(_is_int(v) and v > 0 for v in size)):
        raise CheckpointError(f'{path}: pretrained_cfg.input_size={size!r} must be [leads, 1, samples] (positive '
                              f'integers).')
    return cfg
