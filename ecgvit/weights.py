"""Where ``pretrained=True`` finds its weights, and how every weight file is verified before use.

This module sits below :mod:`ecgvit.models` (it imports nothing from ecgvit but :mod:`ecgvit.errors` and the generated
sha256 table), so the model factories can resolve weights without importing the publishing code in :mod:`ecgvit.hub`.

Resolution for ``create_model(name, pretrained=True)``, first hit wins, and never a network call when
``HF_HUB_OFFLINE=1``:

1. an explicit file or directory (``pretrained_cfg_overlay=dict(file=...)``, ``local-dir:/path``);
2. for ``hf-hub:org/name``: that repository's file only (HF cache, then the Hub), never a local folder;
3. the project's ``weights/<name>/model.safetensors`` (or ``$ECGVIT_WEIGHTS_DIR/<name>/``);
4. the Hugging Face cache (the name's published Hub id, or its planned ``hub_repo_id``);
5. the Hub itself, only for ids that are published and only when online.

Every file is checked before use: its sha256 against the cfg (when the cfg carries one), that it parses as
safetensors (or loads with ``torch.load(weights_only=True)``; nothing is ever unpickled), and tensor shapes against
the model (:func:`ecgvit.models.ecg_vit.checkpoint_filter_fn`). Each failure raises an exception that says what was
wrong and what to do.
"""
import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from safetensors.torch import load_file
from timm.models import resolve_pretrained_cfg

from ecgvit.errors import CheckpointError, PretrainedWeightsError
from ecgvit.weights_sha256 import WEIGHTS_SHA256

__all__ = [
    'WEIGHTS_NAME', 'WEIGHTS_SHA256', 'CheckpointError', 'PretrainedWeightsError', 'weights_dir', 'sha256_file',
    'load_weights_file', 'resolve_pretrained_weights', 'hub_download', 'hub_offline',
]

WEIGHTS_NAME = 'model.safetensors'


def weights_dir() -> Path:
    """Folder searched for shipped weights: ``$ECGVIT_WEIGHTS_DIR`` or the checkout's ``weights/``."""
    env = os.environ.get('ECGVIT_WEIGHTS_DIR')
    return Path(env) if env else Path(__file__).resolve().parent.parent / 'weights'


def sha256_file(path: Union[str, Path], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks.

    Args:
        path: The file.
        chunk_size: Bytes read at a time.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk_size), b''):
            digest.update(block)
    return digest.hexdigest()


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (now, or when huggingface_hub was imported)."""
    if os.environ.get('HF_HUB_OFFLINE', '').strip().lower() in ('1', 'true', 'yes', 'on'):
        return True
    return bool(getattr(hf_constants, 'HF_HUB_OFFLINE', False))


def _check_sha256(path: Path, expected: str, fix: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(f'sha256 mismatch for {path}: expected {expected}, got {actual}. The file is corrupt, '
                              f'truncated or a different checkpoint than its config describes: {fix}')


def load_weights_file(path: Union[str, Path], expected_sha256: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` (preferred) or a torch file with ``weights_only=True``.

    Args:
        path: Weight file, or a directory holding ``model.safetensors``.
        expected_sha256: When given, the file's hash must match before anything is parsed.

    Returns:
        The state dict (tensors on CPU).

    Raises:
        CheckpointError: missing, corrupt or truncated file, or a hash mismatch.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / WEIGHTS_NAME] + sorted(path.glob('*.safetensors')) + sorted(path.glob('*.pth'))
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise CheckpointError(f'No weight file in {path}: expected {WEIGHTS_NAME} (write one with '
                                  f'ecgvit.hub.save_pretrained).')
        path = found
    if not path.is_file():
        raise CheckpointError(f'Weight file {path} does not exist.')
    if expected_sha256:
        _check_sha256(path, expected_sha256, 'delete it and save or download it again.')
    if path.suffix == '.safetensors':
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for bad headers and short files
            raise CheckpointError(f'{path} is not a valid safetensors file ({e}); it is probably truncated or '
                                  f'corrupt: delete it and save or download it again.') from e
    try:
        state_dict = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        # torch's own message advises weights_only=False, i.e. running the file's code: it is not repeated here.
        reason = 'objects other than tensors, or damaged' if 'Weights only load failed' in str(e) else \
            f'{type(e).__name__}: {" ".join(str(e).split())[:200]}'
        raise CheckpointError(f'Could not load {path} as a weights-only torch checkpoint ({reason}): ecgvit reads '
                              f'state dicts of tensors and never unpickles arbitrary objects. Save the weights with '
                              f'safetensors (or torch.save(model.state_dict())).') from e
    if not isinstance(state_dict, dict):
        raise CheckpointError(f'{path} does not hold a state dict (got {type(state_dict).__name__}).')
    return state_dict


def _cache_lookup(repo_id: str, filename: str = WEIGHTS_NAME, revision: Optional[str] = None) -> Optional[Path]:
    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def _unreachable_message(repo_id: str, filename: str, error: BaseException) -> str:
    return (f'Could not download {filename} of {repo_id!r} from the Hugging Face Hub at {hf_constants.ENDPOINT} '
            f'({type(error).__name__}: {error}). If this machine is offline or the Hub is blocked, set '
            f'HF_HUB_OFFLINE=1 (then only local files and the HF cache are used) and load a local copy: '
            f"create_model('local-dir:/path', pretrained=True) or pretrained_cfg_overlay=dict(file='model.safetensors')"
            f'; or download it once where the Hub is reachable with `huggingface-cli download {repo_id}`.')


def hub_download(repo_id: str, filename: str = WEIGHTS_NAME) -> Path:
    """Download one file of a Hub repository, failing within one request timeout when the Hub does not answer.

    huggingface_hub retries a file it has not cached five times with back-off after a timeout, which blocks for
    minutes against an endpoint that accepts connections and never answers. One metadata request without retries
    (timeout ``HF_HUB_ETAG_TIMEOUT``, 10 s by default) goes first, so such an endpoint costs one timeout.

    Args:
        repo_id: ``org/name``, optionally ``@revision``.
        filename: File in the repository.

    Returns:
        The local path of the file (in the HF cache).

    Raises:
        PretrainedWeightsError: the Hub could not be reached or does not serve the file; the message names the
            repository and says how to work offline.
    """
    repo, _, revision = repo_id.partition('@')
    revision = revision or None
    cached = _cache_lookup(repo, filename, revision)
    if hub_offline():
        if cached is not None:
            return cached
        raise PretrainedWeightsError(f'{filename} of {repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE '
                                     f'is set: download it once while online with `huggingface-cli download {repo}`, '
                                     f"or load a local copy with create_model('local-dir:/path', pretrained=True).")
    try:
        if cached is None:  # a cached file falls back to the cache after one timeout by itself
            url = hf_hub_url(repo, filename, revision=revision)
            get_hf_file_metadata(url, timeout=hf_constants.HF_HUB_ETAG_TIMEOUT)  # no retries: one timeout at most
        return Path(hf_hub_download(repo, filename, revision=revision))
    except Exception as e:  # httpx / huggingface_hub raise many types for a network or repository failure
        raise PretrainedWeightsError(_unreachable_message(repo_id, filename, e)) from e


def _missing_weights_message(variant: str, cfg: Any, tried: list) -> str:
    repo = cfg.hf_hub_id or getattr(cfg, 'hub_repo_id', None)
    lines = [f'No pretrained weights found for {variant!r}.']
    if not cfg.hf_hub_id:
        lines.append(f'No weights are published for it yet (planned Hub repo: {repo or "none"}).')
    lines.append('Looked in: ' + '; '.join(tried) + '.')
    if not os.environ.get('ECGVIT_WEIGHTS_DIR') and not weights_dir().is_dir():
        # A plain (non-editable) `pip install` copies the package only: the checkout's weights/ stays behind.
        lines.append(f'This ecgvit is installed without the weights/ folder of its git checkout ({weights_dir()} '
                     f'does not exist; a plain `pip install .` copies only the package): install the checkout with '
                     f'`pip install -e .`, or set ECGVIT_WEIGHTS_DIR=/path/to/checkout/weights.')
    lines.append(
        f"To get weights: pretrain your own (`ecgvit pretrain ...`) and load them with "
        f"create_model('local-dir:/path/to/dir', pretrained=True) or pretrained_cfg_overlay=dict(file="
        f"'model.safetensors'); or put model.safetensors under {weights_dir() / variant}/ (set $ECGVIT_WEIGHTS_DIR "
        f"to a folder holding <name>/model.safetensors; a git checkout's weights/ is found with `pip install -e .`)"
        + (f"; or download once online with `huggingface-cli download {repo}`" if cfg.hf_hub_id else '') + '.')
    return ' '.join(lines)


def _find_weights(variant: str, cfg: Any) -> Path:
    """The weight file ``cfg`` points to, in the order of the module doc, and a hint for a bad hash."""
    if cfg.file:
        path = Path(cfg.file)
        if not path.exists():
            raise CheckpointError(f'Weight file or directory {path} does not exist.')
        return path
    filename = cfg.hf_hub_filename or WEIGHTS_NAME
    if cfg.source == 'hf-hub':
        # hf-hub:org/name asks for that repository's file: a local folder for the same architecture is another model.
        repo, _, revision = cfg.hf_hub_id.partition('@')
        return _cache_lookup(repo, filename, revision or None) or hub_download(cfg.hf_hub_id, filename)
    tried = []
    local = weights_dir() / variant / WEIGHTS_NAME
    tried.append(str(local))
    if local.is_file():
        return local
    for repo in dict.fromkeys(r for r in (cfg.hf_hub_id, getattr(cfg, 'hub_repo_id', None)) if r):
        tried.append(f'HF cache for {repo}')
        path = _cache_lookup(repo, filename)
        if path is not None:
            return path
    if cfg.hf_hub_id:
        if not hub_offline():
            return hub_download(cfg.hf_hub_id, filename)  # the cache was looked up above
        tried.append(f'Hub {cfg.hf_hub_id} (skipped: HF_HUB_OFFLINE is set)')
    raise PretrainedWeightsError(_missing_weights_message(variant, cfg, tried))


def _sha256_fix(path: Path, cfg: Any) -> str:
    """What to do about a file whose hash does not match its cfg, by where it came from."""
    if path.is_relative_to(weights_dir()):
        return (f'restore the shipped file (git checkout -- {path.name} in {path.parent}, or reinstall ecgvit), or '
                f'point $ECGVIT_WEIGHTS_DIR at an intact copy.')
    if cfg.file:
        return 'pass the file the config was written for, or drop the sha256 from the pretrained cfg.'
    repo = (cfg.hf_hub_id or getattr(cfg, 'hub_repo_id', None) or '').partition('@')[0]
    return (f'delete the cached file and download it again (`huggingface-cli download {repo} --force-download`); if '
            f'it stays wrong, the repository {repo!r} holds a file that does not match its own config.json.')


def resolve_pretrained_weights(
        variant: str,
        pretrained_cfg: Optional[Any] = None,
        pretrained_cfg_overlay: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Find, verify and load the weights for ``variant``; return a timm ``pretrained_cfg_overlay``.

    The overlay carries the loaded ``state_dict`` so timm's own loader (head removal, in_chans adaptation, the
    model's ``checkpoint_filter_fn``) applies it without touching the network.

    Args:
        variant: The registered model name (e.g. 'ecg_vit_mae_moco').
        pretrained_cfg: A cfg replacing the registered one (timm's ``pretrained_cfg`` argument), or None.
        pretrained_cfg_overlay: Fields laid over the cfg (timm's argument); a ``state_dict`` in it is used as is.

    Raises:
        PretrainedWeightsError: nothing found, or the Hub could not be reached (fast and offline-safe; the message
            says how to get weights).
        CheckpointError: found but unusable.
    """
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=pretrained_cfg_overlay)
    overlay = dict(pretrained_cfg_overlay or {})
    if cfg.state_dict is not None:
        return overlay
    path = _find_weights(variant, cfg)
    expected = getattr(cfg, 'sha256', None)
    if expected and path.is_file():
        _check_sha256(path, expected, _sha256_fix(path, cfg))
    state_dict = load_weights_file(path, expected_sha256=expected if path.is_dir() else None)
    # source '' stops timm re-resolving hf-hub / local-dir sources: the state dict is already in hand.
    overlay.update(state_dict=state_dict, file=None, source='', hf_hub_id=cfg.hf_hub_id)
    return overlay
