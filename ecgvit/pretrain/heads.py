"""Pretraining heads saved beside an encoder, so a later run continues pretraining without starting them over.

A published encoder holds the encoder alone; its MAE decoder, Nextclip decoder and MoCo projection head are dropped.
A run that continues pretraining from such weights (``ecgvit pretrain --pretrained``) then starts those heads from a
random init, and they first have to relearn what they knew: in ecgvit's continued MAE-MoCo runs the MAE term sat on
its plateau (predicting the mean) for about 65 epochs from the 56-epoch weights and for 7 from the 171-epoch weights
before the encoder got anything from it again (facebookresearch/mae, too, publishes checkpoints that keep the
decoder). ``heads.safetensors`` holds the trained heads; ``ecgvit pretrain --heads FILE`` starts a run from them.

What the file holds: every tensor of the pretrainer's state dict that is neither the encoder's nor derived from it at
the start of a run. MoCo's momentum encoder and momentum head are copies of the query side when a run starts (as at a
fresh start), and its key queue starts as random unit keys (as MoCo's does; it refills in ``queue_size / batch``
steps), so neither is stored. The file's metadata says which method and encoder the heads belong to; loading checks it,
and every key and shape, before anything changes.
"""
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch
from safetensors import safe_open
from torch import nn

from ecgvit.constants import HEADS_NAME
from ecgvit.errors import CheckpointError
from ecgvit.files import atomic_save_safetensors, owned_tensors

__all__ = ['HEADS_NAME', 'HEADS_FORMAT', 'head_state', 'encoder_fingerprint', 'save_heads', 'read_heads', 'load_heads']

HEADS_FORMAT = 'ecgvit-pretraining-heads-v1'
# Keys rebuilt from the query side at the start of a run (see the module doc), by the last name or a module on the way.
_DERIVED_MODULES = ('momentum_encoder', 'momentum_head')
_DERIVED_BUFFERS = ('queue', 'queue_ptr')


def _is_head_key(key: str) -> bool:
    parts = key.split('.')
    return (parts[0] != 'encoder' and not any(p in _DERIVED_MODULES for p in parts[:-1])
            and parts[-1] not in _DERIVED_BUFFERS)


def head_state(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The heads' part of a pretrainer state dict (a pretrainer's ``state_dict()`` or a run's ``best.safetensors``).

    Args:
        state: The whole pretrainer's state, keys as ``state_dict()`` names them.

    Returns:
        The tensors a heads file holds, in the same order.
    """
    return {k: v for k, v in state.items() if _is_head_key(k)}


def encoder_fingerprint(encoder: nn.Module) -> str:
    """sha256 over an encoder's weights as float32 (names and values; its classifier ``head.`` left out).

    It names the weights the heads were fitted to whatever file they came from (a run's checkpoint, an exported
    folder, bf16 published weights read back as float32), so loading can tell heads saved with other weights.
    """
    digest = hashlib.sha256()
    for key, value in sorted(encoder.state_dict().items()):
        if key.startswith('head.') or not value.is_floating_point():
            continue
        digest.update(key.encode())
        digest.update(value.detach().to('cpu', torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _heads_file(path: Union[str, Path]) -> Path:
    path = Path(path)
    return path / HEADS_NAME if path.is_dir() else path


def save_heads(state: Mapping[str, torch.Tensor], path: Union[str, Path], *, method: str, model: str,
               encoder: Optional[nn.Module] = None, dtype: Optional[torch.dtype] = None,
               extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write the heads of a pretrainer state atomically (a crash leaves the old file or the new one).

    Args:
        state: The whole pretrainer's state dict (the encoder's keys are left out here).
        path: The file, or a folder to write ``heads.safetensors`` into.
        method: The pretraining method the state comes from (e.g. ``'mae_nextclip'``), checked on load.
        model: The encoder architecture (e.g. ``'ecg_vit_mae_nextclip'``), checked on load.
        encoder: The encoder weights the heads were fitted to, as they are published (e.g. rounded to bf16); its
            :func:`encoder_fingerprint` is kept, so loading can say whether a run starts from the same weights.
        dtype: Cast floating tensors to this dtype (e.g. ``torch.bfloat16``, as the published encoders); integer
            buffers (BatchNorm's batch count) keep theirs.
        extra: More JSON-able facts to keep in the metadata (e.g. the run's epoch).

    Returns:
        The file written.
    """
    heads = head_state(state)
    if not heads:
        raise ValueError(f'{method}: the state holds no pretraining heads (only encoder weights?); pass the whole '
                         f'pretrainer state, e.g. a run\'s checkpoints/best.safetensors.')
    if dtype is not None:
        heads = {k: v.to(dtype) if v.is_floating_point() else v for k, v in heads.items()}
    path = _heads_file(path)
    if path.suffix != '.safetensors':
        raise ValueError(f'{path}: a heads file is safetensors; name it *.safetensors (e.g. {HEADS_NAME}).')
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {'format': 'pt', 'ecgvit': HEADS_FORMAT, 'method': method, 'model': model,
                'encoder_fingerprint': encoder_fingerprint(encoder) if encoder is not None else '',
                'extra': json.dumps(extra or {}, sort_keys=True)}
    atomic_save_safetensors(path, owned_tensors(heads), metadata=metadata)
    return path


def read_heads(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a heads file (or a folder holding ``heads.safetensors``) without loading it anywhere.

    Returns:
        ``{'path', 'method', 'model', 'encoder_fingerprint', 'extra', 'tensors'}``.

    Raises:
        CheckpointError: a missing, damaged or foreign file.
    """
    file = _heads_file(path)
    if not file.is_file():
        raise CheckpointError(f'No pretraining heads at {file}: pass the {HEADS_NAME} written beside published '
                              f'weights (or by `ecgvit pretrain`), or drop --heads to start the heads from a random '
                              f'init.')
    try:
        with safe_open(str(file), framework='pt') as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own types for short files and bad headers
        raise CheckpointError(f'{file} is not a readable safetensors file ({type(e).__name__}: {e}); it is damaged '
                              f'or not a heads file: copy it again.') from None
    if meta.get('ecgvit') != HEADS_FORMAT:
        raise CheckpointError(f'{file} is not an ecgvit pretraining-heads file (metadata ecgvit='
                              f'{meta.get("ecgvit")!r}, expected {HEADS_FORMAT!r}); an encoder\'s model.safetensors '
                              f'loads with --pretrained / --checkpoint instead.')
    try:
        extra = json.loads(meta.get('extra') or '{}')
    except json.JSONDecodeError:
        raise CheckpointError(f'{file}: its metadata is damaged (extra is not JSON); copy the file again.') from None
    return {'path': file, 'method': meta.get('method'), 'model': meta.get('model'),
            'encoder_fingerprint': meta.get('encoder_fingerprint') or None, 'extra': extra, 'tensors': tensors}


def load_heads(pretrainer: nn.Module, path: Union[str, Path], method: Optional[str] = None,
               model: Optional[str] = None) -> Dict[str, Any]:
    """Start a pretrainer's heads from a heads file; its encoder is left as it is.

    Every check runs before anything is copied, so a refused file leaves the pretrainer untouched. MoCo's momentum
    head then becomes a copy of the loaded head (as a fresh start copies the query side).

    Args:
        pretrainer: The pretraining wrapper (``create_pretrainer``), holding its encoder.
        path: The heads file, or a folder holding ``heads.safetensors``.
        method: The run's method, compared with the file's (None skips the check).
        model: The run's encoder architecture, compared with the file's (None skips the check).

    Returns:
        What was read: ``{'path', 'method', 'model', 'extra', 'keys', 'same_encoder'}``; ``same_encoder`` says whether
        the pretrainer's encoder is the one the heads were fitted to (None when the file does not say).

    Raises:
        CheckpointError: a missing or damaged file, heads of another method or architecture, or heads whose keys or
            shapes do not fit this pretrainer (other method settings, e.g. the decoder's depth).
    """
    read = read_heads(path)
    file, tensors = read['path'], read['tensors']
    if method is not None and read['method'] != method:
        raise CheckpointError(f'{file} holds heads of {read["method"]}, not {method}: pass the heads saved with '
                              f'{method} weights, or drop --heads.')
    if model is not None and read['model'] != model:
        raise CheckpointError(f'{file} holds heads trained with {read["model"]}, not {model}: their decoders were '
                              f'fitted to another encoder; pass that model, or drop --heads.')
    own = head_state(pretrainer.state_dict())
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(f'{file} does not fit this {read["method"]} pretrainer: missing {missing[:4]}'
                              f'{" ..." if len(missing) > 4 else ""}, unexpected {unexpected[:4]}'
                              f'{" ..." if len(unexpected) > 4 else ""}. The heads were saved with other method '
                              f'settings (decoder size, MoCo head, Nextclip clip length); pass the same settings.')
    shapes = [f'{k}: {tuple(tensors[k].shape)} in the file, {tuple(v.shape)} here' for k, v in own.items()
              if tensors[k].shape != v.shape]
    if shapes:
        raise CheckpointError(f'{file} does not fit this pretrainer: {"; ".join(shapes[:3])}. The heads were saved '
                              f'with other method settings; pass the same settings.')
    with torch.no_grad():
        for key, value in own.items():
            value.copy_(tensors[key].to(value.dtype))  # state_dict() tensors share storage with the module's
        for module in pretrainer.modules():
            if hasattr(module, 'momentum_head') and hasattr(module, 'head'):
                module.momentum_head.load_state_dict(module.head.state_dict())
    fitted = read['encoder_fingerprint']
    return {'path': str(file), 'method': read['method'], 'model': read['model'], 'extra': read['extra'],
            'keys': len(own), 'same_encoder': None if fitted is None else fitted == encoder_fingerprint(
                pretrainer.encoder)}
