"""``create_model`` / ``list_models``: thin wrappers over timm's that know ecgvit's names and fail helpfully."""
import difflib
import warnings
from pathlib import Path
from typing import Any, List

import timm
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from torch import nn

from ecgvit.errors import PretrainedWeightsError
from ecgvit.models.arch_bounds import read_model_config
from ecgvit.weights import hub_download, load_weights_file

__all__ = ['create_model', 'list_models', 'UnknownModelError']

_MODULE = 'ecg_vit'


class UnknownModelError(ValueError):
    """Raised for a model name that neither ecgvit nor timm knows."""


def list_models(filter: str = '', pretrained: bool = False) -> List[str]:
    """List ecgvit's registered encoders.

    Args:
        filter: fnmatch-style pattern, e.g. ``'ecg_vit_mae*'``.
        pretrained: Only names with pretrained weights: those ecgvit ships (sha256-registered, found offline in a
            checkout's ``weights/``, ``$ECGVIT_WEIGHTS_DIR``, the HF cache or the Hub) and those timm's own resolution
            knows (published Hub ids).

    Returns:
        Sorted model names; each also works with ``timm.create_model``.

    Example:
        >>> import ecgvit
        >>> ecgvit.list_models(pretrained=True)
        ['ecg_vit_mae_moco', 'ecg_vit_mae_nextclip']
    """
    names = timm.list_models(filter=filter or '*', module=_MODULE)
    if not pretrained:
        return names
    # Shipped weights count: their pretrained cfg's sha256 makes timm list them (EcgPretrainedCfg.has_weights).
    with_weights = set(timm.list_models(filter=filter or '*', module=_MODULE, pretrained=True, include_tags=False))
    return [n for n in names if n in with_weights]


def create_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Create an ECG encoder by name, exactly as ``timm.create_model`` would once ``ecgvit`` is imported.

    Also accepts timm's ``hf-hub:org/name`` and ``local-dir:/path`` sources (see :mod:`ecgvit.weights`).

    Args:
        model_name: A registered name (see :func:`list_models`), optionally ``name.tag``, or a hub/local source.
        pretrained: Load the published weights for this name (offline-safe; raises if none exist).
        **kwargs: Model arguments (``num_classes``, ``global_pool``, ``img_size``, ``drop_path_rate``, ...).

    Returns:
        The model.

    Raises:
        UnknownModelError: the name is not registered; the message lists close matches.
        PretrainedWeightsError: ``pretrained=True`` for a name without weights (``list_models(pretrained=True)``),
            or weights that cannot be found.
        CheckpointError: the weight file is corrupt, its sha256 does not match, or it does not fit the model.
        FileNotFoundError: ``checkpoint_path`` is given but is not a file (a corrupt one is a ``CheckpointError``).

    Example:
        >>> import ecgvit
        >>> ecgvit.create_model('ecg_vit_tiny', num_classes=5).num_classes
        5
    """
    if ':' not in model_name:
        arch = model_name.split('.', 1)[0]
        if not timm.is_model(arch):
            ours = list_models()
            close = difflib.get_close_matches(arch, ours, n=3, cutoff=0.4) or difflib.get_close_matches(
                arch, timm.list_models(), n=3, cutoff=0.6)
            hint = f' Did you mean: {", ".join(close)}?' if close else ''
            raise UnknownModelError(
                f'Unknown model {model_name!r}.{hint} ecgvit provides: {", ".join(ours)} '
                f'(list them with ecgvit.list_models()).')
    checkpoint_path = kwargs.get('checkpoint_path')
    if checkpoint_path:
        if not Path(checkpoint_path).is_file():
            # timm only logs the path and raises an empty FileNotFoundError.
            raise FileNotFoundError(
                f'checkpoint_path {str(checkpoint_path)!r} is not a file: pass a weights file (.safetensors, or a '
                f'.pth/.pt state dict); for a pretraining run or save_pretrained folder use ecgvit.hub.load_encoder.')
        # Read once here for the message: timm passes a truncated file's raw safetensors / unpickling error through.
        load_weights_file(checkpoint_path)
    if model_name.startswith(('hf-hub:', 'hf_hub:')):
        return _create_from_hub(model_name, pretrained=pretrained, **kwargs)
    if model_name.startswith('local-dir:'):
        config = Path(model_name.split(':', 1)[1]) / 'config.json'
        if config.is_file():  # a missing one is timm's FileNotFoundError, which names it
            read_model_config(config, timm.is_model)
        if not pretrained:
            # timm's semantics (the folder's architecture, fresh weights), but rarely what a user pointing at a folder
            # of trained weights wants; say so instead of handing back a random model silently.
            warnings.warn(f"create_model({model_name!r}) without pretrained=True builds the folder's architecture "
                          f'with random weights; pass pretrained=True to load its model.safetensors.', stacklevel=2)
    return timm.create_model(model_name, pretrained=pretrained, **kwargs)


def _create_from_hub(model_name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    repo_id = model_name.split(':', 1)[1]
    # Fetch config.json first with ecgvit's bounded download: timm's own call would retry a silent Hub for minutes.
    # It is checked before timm sizes a model from it (a config is data: it must not allocate arbitrary memory).
    read_model_config(hub_download(repo_id, 'config.json'), timm.is_model)
    try:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except (LocalEntryNotFoundError, EntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise PretrainedWeightsError(
            f'Could not get {repo_id!r} from the Hugging Face cache or Hub ({type(e).__name__}). If you are '
            f'offline (HF_HUB_OFFLINE=1), download it once while online with `huggingface-cli download {repo_id}`; '
            f'or save a local copy and use create_model("local-dir:/path").') from e
