"""Publishing encoders: save_pretrained / push_to_hub / model cards, and loading run folders (load_encoder).

This module sits above :mod:`ecgvit.models` and imports it; nothing below imports this module. Finding and verifying
weight files for ``pretrained=True`` lives in :mod:`ecgvit.weights` (re-exported here under the old names).
"""
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Union

from huggingface_hub import HfApi
from safetensors.torch import save_file
from timm.models._hub import save_config_for_hf
from torch import nn

from ecgvit.constants import HEADS_NAME
from ecgvit.errors import CheckpointError, PretrainedWeightsError
from ecgvit.factory import create_model
from ecgvit.files import owned_tensors
from ecgvit.models.ecg_vit import checkpoint_filter_fn, to_ecg_pretrained_cfg
from ecgvit.staging import staging_dir, sweep_stale
from ecgvit.train.compat import resumed_method
from ecgvit.weights import WEIGHTS_NAME, load_weights_file, resolve_pretrained_weights, sha256_file, weights_dir

_logger = logging.getLogger(__name__)

__all__ = [
    'PretrainedWeightsError', 'CheckpointError', 'save_pretrained', 'load_pretrained', 'push_to_hub',
    'resolve_pretrained_weights', 'load_weights_file', 'load_encoder', 'encoder_weights_file', 'sha256_file',
    'weights_dir', 'model_card', 'to_ecg_pretrained_cfg', 'checkpoint_architecture',
]

CONFIG_NAME = 'config.json'
CARD_NAME = 'README.md'


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f'{type(obj).__name__} is not JSON-serialisable')


def model_card(model: nn.Module, config: Dict[str, Any], extra: Optional[str] = None, *,
               datasets: Sequence[str] = (), eval_rows: Iterable[Mapping[str, Any]] = ()) -> str:
    """Markdown model card describing an exported encoder, with Hugging Face YAML metadata (:mod:`ecgvit.cards`).

    Args:
        model: The encoder.
        config: Its ``config.json`` content.
        extra: Markdown appended to the card.
        datasets: ecgvit names of its pretraining and evaluation data (``datasets:``).
        eval_rows: Evaluation results rows (``ecgvit.cards.benchmark_rows`` / ``suite_rows``): the ``model-index``.
    """
    from ecgvit.cards import encoder_card_data, front_matter

    cfg = config.get('pretrained_cfg', {})
    arch = config.get('architecture', type(model).__name__)
    n_params = sum(p.numel() for p in model.parameters())
    leads = ', '.join(cfg.get('lead_names') or [])
    lines = [
        front_matter(encoder_card_data(dict(config, architecture=arch), datasets, eval_rows)).rstrip('\n'),
        f'# {arch}',
        '',
        # No link: ecgvit is not published on PyPI (a card must not point at a page that does not exist).
        'A 1-D Vision Transformer encoder for 12-lead ECGs from `ecgvit`, a timm plugin (MAE-MoCo / MAE-Nextclip, '
        '*Hybrid Self-Supervised Learning for ECG*). ecgvit is not on PyPI yet: install it from its source checkout '
        'with `pip install -e .`.',
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
        f"emb = model(torch.randn(1, {', '.join(map(str, (cfg.get('input_size') or [12, 1, 3600])[::2]))}))"
        '  # z-scored ECG (leads, samples) at the rate above',
        '```',
    ]
    if cfg.get('preprocessing'):
        lines += ['', '## Preprocessing', '', '```json', json.dumps(cfg['preprocessing'], indent=2,
                                                                  default=_json_default), '```']
    if extra:
        lines += ['', extra.strip()]
    return '\n'.join(lines) + '\n'


def _input_fields(model: nn.Module, model_cfg: Dict[str, Any], given: Dict[str, Any]) -> Dict[str, Any]:
    """Sampling rate, input size and duration of the input ``model`` was trained on, for its exported cfg.

    The rate comes from ``given`` (the caller's fields), else the ``preprocessing`` recorded there or in the model's
    cfg, else the model's own cfg; the length from that preprocessing, else the model's stored length (``img_size``).
    Without this a model trained at 100 Hz would be exported with the registry's 360 Hz defaults.
    """
    preprocessing = given.get('preprocessing') or model_cfg.get('preprocessing') or {}
    rate = float(given.get('sampling_rate') or preprocessing.get('sampling_rate') or model_cfg['sampling_rate'])
    length = int(preprocessing.get('num_samples') or getattr(model, 'seq_len', None) or model_cfg['input_size'][-1])
    leads = int(getattr(getattr(getattr(model, 'patch_embed', None), 'proj', None), 'in_channels', 0)
                or model_cfg['input_size'][0])
    return {'sampling_rate': rate, 'input_size': [leads, 1, length], 'duration_s': length / rate}


def save_pretrained(
        model: nn.Module,
        save_dir: Union[str, Path],
        *,
        model_args: Optional[Dict[str, Any]] = None,
        pretrained_cfg: Optional[Dict[str, Any]] = None,
        card_extra: Optional[str] = None,
        card_metadata: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and a model card ``README.md`` into ``save_dir``.

    Files are written to a temporary folder beside ``save_dir`` and moved into place with ``os.replace``, weights
    first and ``config.json`` last; the config records the weights' sha256, so a reader never silently pairs a new
    config with old weights. The folder loads with ``create_model('local-dir:save_dir', pretrained=True)`` or
    :func:`load_pretrained`.

    Args:
        model: An ecgvit encoder (from ``create_model``; a pretraining wrapper's ``.encoder``).
        save_dir: Output folder (created).
        model_args: Extra JSON-serialisable reconstruction args (timm records the factory's own).
        pretrained_cfg: Fields to add to the stored pretrained cfg (e.g. ``preprocessing``, ``pretrain_method``).
        card_extra: Markdown appended to the model card (training details, evaluation table, ...).
        card_metadata: The card's Hub metadata: ``datasets`` (ecgvit source names) and ``eval_rows`` (evaluation
            results rows, see :mod:`ecgvit.cards`), passed to :func:`model_card`.

    Returns:
        ``save_dir`` as a Path.

    Raises:
        TypeError: ``model`` is not an encoder (e.g. a pretraining wrapper: pass its ``.encoder``).
    """
    if not hasattr(model, 'pretrained_cfg'):
        hint = ' (a pretraining wrapper: pass its .encoder)' if hasattr(model, 'encoder') else ''
        raise TypeError(f'save_pretrained takes an ecgvit encoder (from create_model), got '
                        f'{type(model).__name__}{hint}.')
    save_dir = Path(save_dir)
    removed = sweep_stale(save_dir)  # what an export killed half-way left beside it (never a live process's)
    if removed:
        _logger.info('removed %d temporary folder(s) an interrupted export left: %s', len(removed), removed)
    tmp = staging_dir(save_dir)
    try:
        save_file(owned_tensors(model.state_dict()), str(tmp / WEIGHTS_NAME), metadata={'format': 'pt'})
        digest = sha256_file(tmp / WEIGHTS_NAME)
        save_config_for_hf(model, str(tmp / CONFIG_NAME), model_args=model_args)
        config = json.loads((tmp / CONFIG_NAME).read_text())
        config['pretrained_cfg'].update(_input_fields(model, config['pretrained_cfg'], pretrained_cfg or {}))
        config['pretrained_cfg'].update(pretrained_cfg or {})
        config['pretrained_cfg']['sha256'] = digest
        for key in ('state_dict', 'file', 'source', 'hf_hub_id', 'url'):
            config['pretrained_cfg'].pop(key, None)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=_json_default))
        (tmp / CARD_NAME).write_text(model_card(model, config, card_extra, **(card_metadata or {})))
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
            allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, HEADS_NAME],  # heads: when the folder has them
        )
    return str(getattr(info, 'commit_url', info))


def _run_dir_config(path: Path) -> Dict[str, Any]:
    cfg = path / 'config.json'
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text())
        except ValueError:
            return {}
    return {}


def _is_pretrained_folder(path: Path) -> bool:
    return path.is_dir() and (path / 'model.safetensors').is_file() and (path / 'config.json').is_file() and \
        'architecture' in _run_dir_config(path)


def encoder_weights_file(checkpoint: Union[str, os.PathLike]) -> Path:
    """The file :func:`load_encoder` reads the weights of ``checkpoint`` from.

    A :func:`save_pretrained` folder gives its ``model.safetensors``; a pretraining run or checkpoint folder its best
    weights (``checkpoints/best.safetensors``, ``best.safetensors``, then ``model.safetensors``); a file is itself.

    Args:
        checkpoint: A weights file, a ``save_pretrained`` folder, or a run or checkpoint folder.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        CheckpointError: a folder holds none of those files.
    """
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f'Checkpoint {str(checkpoint)!r} does not exist.')
    if not path.is_dir():
        return path
    if _is_pretrained_folder(path):
        return path / 'model.safetensors'
    candidates = [path / 'checkpoints' / 'best.safetensors', path / 'best.safetensors', path / 'model.safetensors']
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise CheckpointError(f'Checkpoint {str(checkpoint)!r} holds no weights (looked for '
                              f'checkpoints/best.safetensors, best.safetensors, model.safetensors).')
    return found


def _run_config_of(path: Path) -> Dict[str, Any]:
    """The config.json of the pretraining run a run folder, checkpoint folder or weights file belongs to ({}: none)."""
    if path.is_dir():
        return _run_dir_config(path) or _run_dir_config(path.parent) or _run_dir_config(path.parent.parent)
    return _run_dir_config(path.parent) or _run_dir_config(path.parent.parent)


def checkpoint_architecture(checkpoint: Union[str, os.PathLike]) -> Optional[str]:
    """The registered architecture a checkpoint's weights were made for, read from its config (no weights are read).

    Args:
        checkpoint: A :func:`save_pretrained` folder, a pretraining run or checkpoint folder, or a weights file.

    Returns:
        The architecture name; None when nothing beside the weights records it (a bare weights file).

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
    """
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f'Checkpoint {str(checkpoint)!r} does not exist.')
    if _is_pretrained_folder(path):
        return _run_dir_config(path).get('architecture')
    return _run_config_of(path).get('model')


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
    size = {} if num_samples is None else {'img_size': int(num_samples)}
    if checkpoint is None:
        name = model or 'ecg_vit_mae_moco'
        return create_model(name, pretrained=pretrained, **size, **kwargs), {'model': name,
                                                                                   'pretrained': pretrained}
    path = Path(checkpoint)
    weights = encoder_weights_file(path)
    if _is_pretrained_folder(path):
        return load_pretrained(path, **size, **kwargs), {'checkpoint': str(path)}
    run_cfg = _run_config_of(path)
    path = weights
    name = model or run_cfg.get('model') or 'ecg_vit_mae_moco'
    encoder = create_model(name, **size, **kwargs)
    stored = load_weights_file(path)  # a corrupt file's own message; the hint below is for weights that do not fit
    try:
        state = checkpoint_filter_fn(stored, encoder)
    except CheckpointError as e:
        raise CheckpointError(f'{path}: {e} Pass the --model / model it was trained with.') from e
    # The filter checked every encoder tensor; a run's classifier head (if any) is not what ships, so it stays fresh.
    encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith('head.')}, strict=False)
    # These are the run's weights, not the architecture's published ones: its method, and no published digest.
    encoder.pretrained_cfg = dict(encoder.pretrained_cfg, pretrain_method=resumed_method(run_cfg), sha256=None)
    if run_cfg.get('preprocessing'):
        # What these weights were trained on, where data meet the model (ecgvit.data.prepare.model_data_cfg).
        encoder.pretrained_cfg = dict(encoder.pretrained_cfg, preprocessing=run_cfg['preprocessing'])
    trained = run_cfg.get('pretrainer') or {}
    if trained.get('lead_dropout') and trained.get('lead_sets'):
        # The lead subsets lead-set dropout trained it for, as save_pretrained would export them.
        encoder.pretrained_cfg = dict(encoder.pretrained_cfg,
                                      lead_sets=tuple(tuple(s) for s in trained['lead_sets']))
    info: Dict[str, Any] = {'model': name, 'checkpoint': str(path)}
    if run_cfg.get('data'):  # what the run read, for a command that would continue it on other data
        info['run_data'] = {'data': run_cfg['data'].get('spec'),
                            'data_dir': (run_cfg.get('args') or {}).get('data_dir')}
    return encoder, info
