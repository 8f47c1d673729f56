"""Weights I/O: save / load / push ECG encoders, and where ``pretrained=True`` finds its weights.

Weight resolution for ``create_model(name, pretrained=True)``, first hit wins, and never a network call when
``HF_HUB_OFFLINE=1``:

1. an explicit file or directory (``pretrained_cfg_overlay=dict(file=...)``, ``local-dir:/path``);
2. the project's ``weights/<name>/model.safetensors`` (or ``$ECGVIT_WEIGHTS_DIR/<name>/``);
3. the Hugging Face cache (``hf-hub:org/name`` or the name's published Hub id);
4. the Hub itself, only for ids that are published and only when online.

Every file is checked before use: its sha256 against the cfg (when the cfg carries one), that it parses as
safetensors (or loads with ``torch.load(weights_only=True)``; nothing is ever unpickled), and tensor shapes against
the model. Each failure raises an exception that says what was wrong and what to do.
"""
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from torch import nn

__all__ = [
    'PretrainedWeightsError', 'CheckpointError', 'save_pretrained', 'load_pretrained', 'push_to_hub',
    'resolve_pretrained_weights', 'load_weights_file', 'load_encoder', 'sha256_file', 'weights_dir', 'model_card',
]

_logger = logging.getLogger(__name__)

WEIGHTS_NAME = 'model.safetensors'
CONFIG_NAME = 'config.json'
CARD_NAME = 'README.md'


class PretrainedWeightsError(RuntimeError):
    """No usable weights could be found for a ``pretrained=True`` request."""


class CheckpointError(ValueError):
    """A weight file exists but is unusable: corrupt, truncated, wrong hash or wrong shapes."""


def weights_dir() -> Path:
    """Folder searched for shipped weights: ``$ECGVIT_WEIGHTS_DIR`` or the checkout's ``weights/``."""
    env = os.environ.get('ECGVIT_WEIGHTS_DIR')
    return Path(env) if env else Path(__file__).resolve().parent.parent / 'weights'


def sha256_file(path: Union[str, Path], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk_size), b''):
            digest.update(block)
    return digest.hexdigest()


def _hub_offline() -> bool:
    if os.environ.get('HF_HUB_OFFLINE', '').strip().lower() in ('1', 'true', 'yes', 'on'):
        return True
    from huggingface_hub import constants
    return bool(getattr(constants, 'HF_HUB_OFFLINE', False))


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
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise CheckpointError(
                f'sha256 mismatch for {path}: expected {expected_sha256}, got {actual}. The file is corrupt, '
                f'truncated or a different checkpoint: delete it and fetch it again (git lfs pull / re-download).')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for bad headers and short files
            raise CheckpointError(f'{path} is not a valid safetensors file ({e}); it is probably truncated or '
                                  f'corrupt: delete it and save or download it again.') from e
    try:
        state_dict = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise CheckpointError(f'Could not load {path} as a weights-only torch checkpoint ({e}). ecgvit never '
                              f'unpickles arbitrary objects: convert it to safetensors.') from e
    if not isinstance(state_dict, dict):
        raise CheckpointError(f'{path} does not hold a state dict (got {type(state_dict).__name__}).')
    return state_dict


def _cache_lookup(repo_id: str, filename: str = WEIGHTS_NAME, cache_dir: Optional[str] = None) -> Optional[Path]:
    from huggingface_hub import try_to_load_from_cache
    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    return Path(found) if isinstance(found, str) else None


def _missing_weights_message(variant: str, cfg: Any, tried: list) -> str:
    repo = cfg.hf_hub_id or cfg.hub_repo_id
    lines = [f'No pretrained weights found for {variant!r}.']
    if not cfg.hf_hub_id:
        lines.append(f'No weights are published for it yet (planned Hub repo: {repo or "none"}).')
    lines.append('Looked in: ' + '; '.join(tried) + '.')
    lines.append(
        f"To get weights: pretrain your own (`ecgvit pretrain ...`) and load them with "
        f"create_model('local-dir:/path/to/dir') or pretrained_cfg_overlay=dict(file='model.safetensors'); "
        f"or put model.safetensors under {weights_dir() / variant}/"
        + (f"; or download once online with `huggingface-cli download {repo}`" if cfg.hf_hub_id else '') + '.')
    return ' '.join(lines)


def resolve_pretrained_weights(
        variant: str,
        pretrained_cfg: Optional[Any] = None,
        pretrained_cfg_overlay: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Find, verify and load the weights for ``variant``; return a timm ``pretrained_cfg_overlay``.

    The overlay carries the loaded ``state_dict`` so timm's own loader (head removal, in_chans adaptation, the
    model's ``checkpoint_filter_fn``) applies it without touching the network.

    Raises:
        PretrainedWeightsError: nothing found (fast, offline-safe; the message says how to get weights).
        CheckpointError: found but unusable.
    """
    from timm.models import resolve_pretrained_cfg

    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=pretrained_cfg_overlay)
    overlay = dict(pretrained_cfg_overlay or {})
    expected = getattr(cfg, 'sha256', None)
    tried = []
    path: Optional[Path] = None

    if cfg.state_dict is not None:
        return overlay
    if cfg.file:
        path = Path(cfg.file)
        if not path.exists():
            raise CheckpointError(f'Weight file or directory {path} does not exist.')
    if path is None:
        local = weights_dir() / variant / WEIGHTS_NAME
        tried.append(str(local))
        if local.is_file():
            path = local
    if path is None:
        for repo in dict.fromkeys(r for r in (cfg.hf_hub_id, getattr(cfg, 'hub_repo_id', None)) if r):
            tried.append(f'HF cache for {repo}')
            path = _cache_lookup(repo, cfg.hf_hub_filename or WEIGHTS_NAME)
            if path is not None:
                break
    if path is None and cfg.hf_hub_id:
        if _hub_offline():
            tried.append(f'Hub {cfg.hf_hub_id} (skipped: HF_HUB_OFFLINE is set)')
        else:
            from huggingface_hub import hf_hub_download
            tried.append(f'Hub {cfg.hf_hub_id}')
            try:
                path = Path(hf_hub_download(cfg.hf_hub_id, cfg.hf_hub_filename or WEIGHTS_NAME))
            except Exception as e:
                raise PretrainedWeightsError(_missing_weights_message(variant, cfg, tried) + f' ({e})') from e
    if path is None:
        raise PretrainedWeightsError(_missing_weights_message(variant, cfg, tried))

    state_dict = load_weights_file(path, expected_sha256=expected)
    # source '' stops timm re-resolving hf-hub / local-dir sources: the state dict is already in hand.
    overlay.update(state_dict=state_dict, file=None, source='', hf_hub_id=cfg.hf_hub_id)
    return overlay


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f'{type(obj).__name__} is not JSON-serialisable')


def model_card(model: nn.Module, config: Dict[str, Any], extra: Optional[str] = None) -> str:
    """Markdown model card (with Hub YAML front matter) describing an exported encoder."""
    cfg = config.get('pretrained_cfg', {})
    arch = config.get('architecture', type(model).__name__)
    n_params = sum(p.numel() for p in model.parameters())
    leads = ', '.join(cfg.get('lead_names') or [])
    lines = [
        '---',
        'library_name: timm',
        f"license: {cfg.get('license') or 'apache-2.0'}",
        'tags: [ecg, electrocardiogram, vision-transformer, self-supervised, timm, ecgvit]',
        '---',
        f'# {arch}',
        '',
        'A 1-D Vision Transformer encoder for 12-lead ECGs from [ecgvit](https://pypi.org/project/ecgvit/) '
        '(MAE-MoCo / MAE-Nextclip, *Hybrid Self-Supervised Learning for ECG*).',
        '',
        '**Not for clinical use.** Research model; it has not been validated for diagnosis.',
        '',
        '## Input',
        '',
        '| field | value |',
        '|---|---|',
        f"| input size | {tuple(cfg.get('input_size') or ())} (leads, 1, samples) |",
        f"| sampling rate | {cfg.get('sampling_rate')} Hz |",
        f"| duration | {cfg.get('duration_s')} s |",
        f'| leads (order) | {leads} |',
        f"| normalisation | {cfg.get('normalization')} |",
        f'| parameters | {n_params:,} |',
        f"| weights sha256 | `{cfg.get('sha256')}` |",
        '',
        '## Usage',
        '',
        '```python',
        'import torch, ecgvit',
        "model = ecgvit.create_model('local-dir:PATH_TO_THIS_FOLDER', pretrained=True)  # or 'hf-hub:ORG/NAME'",
        'emb = model(torch.randn(1, 12, 3600))  # z-scored 12-lead ECG at the rate above',
        '```',
    ]
    if cfg.get('preprocessing'):
        lines += ['', '## Preprocessing', '', '```json', json.dumps(cfg['preprocessing'], indent=2,
                                                                  default=_json_default), '```']
    if extra:
        lines += ['', extra.strip()]
    return '\n'.join(lines) + '\n'


def save_pretrained(
        model: nn.Module,
        save_dir: Union[str, Path],
        *,
        model_args: Optional[Dict[str, Any]] = None,
        pretrained_cfg: Optional[Dict[str, Any]] = None,
        card_extra: Optional[str] = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and a model card ``README.md`` into ``save_dir``.

    Files are written to a temporary folder beside ``save_dir`` and moved into place with ``os.replace``, weights
    first and ``config.json`` last; the config records the weights' sha256, so a reader never silently pairs a new
    config with old weights. The folder loads with ``create_model('local-dir:save_dir')`` or :func:`load_pretrained`.

    Args:
        model: An ecgvit encoder (from ``create_model``; a pretraining wrapper's ``.encoder``).
        save_dir: Output folder (created).
        model_args: Extra JSON-serialisable reconstruction args (timm records the factory's own).
        pretrained_cfg: Fields to add to the stored pretrained cfg (e.g. ``preprocessing``, ``pretrain_method``).
        card_extra: Markdown appended to the model card (training details, evaluation table, ...).

    Returns:
        ``save_dir`` as a Path.
    """
    from safetensors.torch import save_file
    from timm.models._hub import save_config_for_hf

    save_dir = Path(save_dir)
    save_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{save_dir.name}.tmp-', dir=save_dir.parent))
    try:
        # safetensors refuses shared / non-contiguous storage; a plain copy per tensor avoids both.
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={'format': 'pt'})
        digest = sha256_file(tmp / WEIGHTS_NAME)
        save_config_for_hf(model, str(tmp / CONFIG_NAME), model_args=model_args)
        config = json.loads((tmp / CONFIG_NAME).read_text())
        config['pretrained_cfg'].update(pretrained_cfg or {})
        config['pretrained_cfg']['sha256'] = digest
        for key in ('state_dict', 'file', 'source', 'hf_hub_id', 'url'):
            config['pretrained_cfg'].pop(key, None)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=_json_default))
        (tmp / CARD_NAME).write_text(model_card(model, config, card_extra))
        save_dir.mkdir(parents=True, exist_ok=True)
        for name in (WEIGHTS_NAME, CARD_NAME, CONFIG_NAME):
            # Files made inside mkdtemp's private folder can be owner-only; shared exports must be readable.
            os.chmod(tmp / name, 0o644)
            os.replace(tmp / name, save_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return save_dir


def load_pretrained(source: Union[str, Path], **kwargs: Any) -> nn.Module:
    """Load an encoder from a folder written by :func:`save_pretrained` or from ``hf-hub:org/name``.

    Args:
        source: A local folder, ``local-dir:/path`` or ``hf-hub:org/name`` (served from the HF cache when offline).
        **kwargs: Passed to ``create_model`` (e.g. ``num_classes=5`` adds a fresh head).
    """
    from ecgvit.factory import create_model

    source = str(source)
    if not source.startswith(('hf-hub:', 'local-dir:')):
        source = f'local-dir:{source}'
    return create_model(source, pretrained=True, **kwargs)


def push_to_hub(
        model: Union[nn.Module, str, Path],
        repo_id: str,
        *,
        private: bool = False,
        token: Optional[str] = None,
        revision: Optional[str] = None,
        commit_message: str = 'Add ecgvit encoder',
        create_pr: bool = False,
        card_extra: Optional[str] = None,
        api: Optional[Any] = None,
) -> str:
    """Upload an encoder (or a folder from :func:`save_pretrained`) to the Hugging Face Hub.

    Built on ``huggingface_hub.HfApi``: ``create_repo(exist_ok=True)`` then one ``upload_folder`` commit holding
    ``model.safetensors``, ``config.json`` and the model card.

    Args:
        model: The encoder, or a folder already written by :func:`save_pretrained`.
        repo_id: ``org/name`` on the Hub.
        private: Create the repo private.
        token: Hub token (default: the logged-in one).
        revision: Branch to push to.
        commit_message: Commit message.
        create_pr: Open a pull request instead of committing to the branch.
        card_extra: Markdown appended to the model card when ``model`` is a module.
        api: An ``HfApi`` instance (tests pass a mock).

    Returns:
        The commit URL reported by the Hub.
    """
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model, nn.Module):
            folder = save_pretrained(model, Path(tmp) / 'export', card_extra=card_extra)
        else:
            folder = Path(model)
            missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME) if not (folder / n).is_file()]
            if missing:
                raise CheckpointError(f'{folder} lacks {", ".join(missing)}: write it with ecgvit.hub.save_pretrained.')
        api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type='model')
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            revision=revision,
            commit_message=commit_message,
            create_pr=create_pr,
            allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME],
        )
    return str(getattr(info, 'commit_url', info))


def to_ecg_pretrained_cfg(cfg: Union[Dict[str, Any], Any]) -> Any:
    """Turn a cfg dict (e.g. read from ``config.json``) into an ``EcgPretrainedCfg``, dropping unknown keys."""
    from ecgvit.models.ecg_vit import EcgPretrainedCfg

    if not isinstance(cfg, dict):
        return cfg
    names = {f.name for f in dataclasses.fields(EcgPretrainedCfg)}
    unknown = sorted(set(cfg) - names)
    if unknown:
        _logger.debug('Ignoring unknown pretrained cfg keys: %s', unknown)
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k in names}
    return EcgPretrainedCfg(**values)


def _run_dir_config(path: Path) -> Dict[str, Any]:
    cfg = path / 'config.json'
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text())
        except ValueError:
            return {}
    return {}


def load_encoder(checkpoint: Optional[Union[str, os.PathLike]], model: Optional[str] = None,
                 num_samples: Optional[int] = None, pretrained: bool = False, **kwargs: Any):
    """Build an encoder and load weights from a pretraining run, a checkpoint, or a save_pretrained folder.

    Args:
        checkpoint: A pretraining run folder (its best weights), a checkpoint folder or ``.safetensors`` file, a folder
            written by :func:`save_pretrained`; None builds ``model`` (with ``pretrained``) instead.
        model: Architecture; default: the run's recorded model, else ``ecg_vit_mae_moco``.
        num_samples: Input length (the position embedding is resampled to it).
        pretrained: With no checkpoint, load the model's published weights.
        **kwargs: More ``create_model`` arguments (e.g. ``num_classes``, ``drop_path_rate``).

    Returns:
        (encoder, info dict describing where the weights came from).

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        CheckpointError: it holds no weights or they do not fit the model.
    """
    import ecgvit
    from ecgvit.models.ecg_vit import checkpoint_filter_fn

    size = {} if num_samples is None else {'img_size': int(num_samples)}
    if checkpoint is None:
        name = model or 'ecg_vit_mae_moco'
        return ecgvit.create_model(name, pretrained=pretrained, **size, **kwargs), {'model': name,
                                                                                   'pretrained': pretrained}
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f'Checkpoint {checkpoint!r} does not exist.')
    if path.is_dir() and (path / 'model.safetensors').is_file() and (path / 'config.json').is_file() and \
            'architecture' in _run_dir_config(path):
        return load_pretrained(  # a save_pretrained folder
            path, **size, **kwargs), {'checkpoint': str(path)}
    run_cfg: Dict[str, Any] = {}
    if path.is_dir():
        run_cfg = _run_dir_config(path) or _run_dir_config(path.parent) or _run_dir_config(path.parent.parent)
        candidates = [path / 'checkpoints' / 'best.safetensors', path / 'best.safetensors',
                      path / 'model.safetensors']
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise CheckpointError(f'Checkpoint {checkpoint!r} holds no weights (looked for '
                                  f'checkpoints/best.safetensors, best.safetensors, model.safetensors).')
        path = found
    else:
        run_cfg = _run_dir_config(path.parent) or _run_dir_config(path.parent.parent)
    name = model or run_cfg.get('model') or 'ecg_vit_mae_moco'
    encoder = ecgvit.create_model(name, **size, **kwargs)
    state = checkpoint_filter_fn(load_weights_file(path), encoder)
    head = {k for k in encoder.state_dict() if k.startswith('head.')}
    state = {k: v for k, v in state.items() if not k.startswith('head.')}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in head]
    if missing or unexpected:
        raise CheckpointError(f'{path} does not fit {name}: missing {missing[:3]}, unexpected {unexpected[:3]} '
                              f'(pass the model it was trained with).')
    if run_cfg.get('preprocessing'):
        # What these weights were trained on, where data meet the model (ecgvit.data.prepare.model_data_cfg).
        encoder.pretrained_cfg = dict(encoder.pretrained_cfg, preprocessing=run_cfg['preprocessing'])
    return encoder, {'model': name, 'checkpoint': str(path)}
