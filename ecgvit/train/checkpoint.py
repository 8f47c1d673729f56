"""Atomic, pickle-free training checkpoints.

Layout of a run's checkpoint folder::

    checkpoints/
      step-00000120/           one resumable checkpoint (the last ``keep_last`` are kept)
        model.safetensors      the module's state dict (a pretraining wrapper's keys start with ``encoder.``)
        optimizer.safetensors  optimiser state tensors, plus the torch RNG states
        state.json             everything else: step, epoch, data position, schedule, numpy/python RNG, metrics
      best.safetensors         model weights at the best validation loss (metadata: step, epoch, val_loss)

Every write goes to a hidden temporary name and is moved into place with ``os.replace``, so a crash (even SIGKILL)
leaves either the old checkpoint or the new one, never half of one; leftovers are swept on the next start.
Loading reads safetensors and JSON only: nothing is ever unpickled.

A checkpoint damaged after it was written (a truncated copy, a full disk during a backup, a bad sector) is found by
:func:`checkpoint_problem` from its safetensors headers and state.json alone: :func:`latest_checkpoint` warns, names
the damaged file and falls back to the newest intact checkpoint, and pruning never counts a damaged one among those
it keeps.
"""
import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ecgvit.errors import CheckpointError  # one class for every bad checkpoint; still importable from here
from ecgvit.files import atomic_write_text, fsync_dir, owned_tensors  # atomic_write_text: still importable from here

__all__ = ['save_checkpoint', 'load_checkpoint', 'read_checkpoint_state', 'list_checkpoints', 'latest_checkpoint',
           'checkpoint_problem', 'prune_checkpoints', 'save_best', 'load_best', 'best_info', 'clean_partial',
           'get_rng_state', 'set_rng_state', 'optimizer_to_flat', 'optimizer_from_flat', 'atomic_write_text',
           'CheckpointError']

_STEP_RE = re.compile(r'^step-(\d{8})$')
_TMP_PREFIX = '.tmp-'
_TRASH_PREFIX = '.trash-'
# safetensors' save_file (0.8.0) writes <folder>/.tmpXXXXXX and renames it: a run killed mid-write leaves that file.
_LIBRARY_TMP_RE = re.compile(r'^\.tmp[A-Za-z0-9_]{6}$')
BEST_NAME = 'best.safetensors'


def _fsync_file(path: Path) -> None:
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def _first_mismatch(error: RuntimeError) -> str:
    """The first line of ``load_state_dict``'s error after its header (e.g. ``Missing key(s) in state_dict: ...``),
    cut to 160 characters."""
    first = (str(error).strip().splitlines()[1:2] or [str(error)])[0].strip()
    return first if len(first) <= 160 else first[:160] + '...'


# ---------------------------------------------------------------------------------------------------------------------
# RNG and optimiser state as (tensors, JSON)


def get_rng_state() -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Capture torch (CPU and CUDA), numpy and python RNG states as (tensors, JSON-able dict)."""
    tensors = {'rng.torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f'rng.cuda.{i}'] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    meta = {
        'numpy': [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        'python': [py_version, list(py_internal), py_gauss],
    }
    return tensors, meta


def set_rng_state(tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> None:
    """Restore the states captured by :func:`get_rng_state`.

    Args:
        tensors: Its tensors (torch's CPU state, and each CUDA device's; those are restored only when this machine
            has as many devices).
        meta: Its JSON part (numpy's and Python's states).
    """
    torch.set_rng_state(tensors['rng.torch'])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith('rng.cuda.')),
                                           key=lambda k: int(k.rsplit('.', 1)[1]))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = meta['numpy']
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta['python']
    random.setstate((version, tuple(internal), gauss))


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into safetensors-ready tensors and a JSON-able remainder.

    Args:
        optimizer: The optimiser.
    """
    sd = optimizer.state_dict()
    tensors: Dict[str, torch.Tensor] = {}
    scalars: Dict[str, Dict[str, Any]] = {}
    for pid, pstate in sd['state'].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f'optim.{pid}.{key}'] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {'param_groups': sd['param_groups'], 'scalars': scalars}


def optimizer_from_flat(tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> Dict[str, Any]:
    """Rebuild an optimiser ``state_dict`` from :func:`optimizer_to_flat`'s output.

    Args:
        tensors: Its tensors.
        meta: Its JSON-able remainder (param groups and per-parameter scalars).
    """
    state: Dict[int, Dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith('optim.'):
            continue
        _, pid, key = name.split('.', 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, extra in meta.get('scalars', {}).items():
        state.setdefault(int(pid), {}).update(extra)
    return {'state': state, 'param_groups': meta['param_groups']}


# ---------------------------------------------------------------------------------------------------------------------
# Resumable checkpoints


def clean_partial(ckpt_dir: os.PathLike) -> List[Path]:
    """Remove leftovers of interrupted writes and deletions (temporary and trash entries, and the temporary file of a
    safetensors write that was killed, which can be as large as the model). Returns what went.

    Call it only where no other process writes into ``ckpt_dir`` (the training loop holds the run's lock).

    Args:
        ckpt_dir: The run's checkpoint folder (``<output>/checkpoints``).
    """
    ckpt_dir = Path(ckpt_dir)
    removed = []
    if not ckpt_dir.is_dir():
        return removed
    for p in ckpt_dir.iterdir():
        if p.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)) or (p.is_file() and _LIBRARY_TMP_RE.match(p.name)):
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def list_checkpoints(ckpt_dir: os.PathLike) -> List[Path]:
    """Complete resumable checkpoints in ``ckpt_dir``, oldest first.

    Args:
        ckpt_dir: The run's checkpoint folder (``<output>/checkpoints``).

    Returns:
        The ``step-XXXXXXXX`` folders holding a ``state.json`` ([] when ``ckpt_dir`` does not exist).
    """
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if _STEP_RE.match(p.name) and (p / 'state.json').is_file()]
    return sorted(found, key=lambda p: p.name)


def checkpoint_problem(path: os.PathLike) -> Optional[str]:
    """Why the checkpoint folder ``path`` cannot be resumed, or None when it is intact.

    Cheap: reads state.json and the safetensors headers (a header names every tensor's byte range, so a truncated
    file fails here), never the tensors themselves.

    Args:
        path: A ``step-XXXXXXXX`` folder.

    Returns:
        A sentence naming the damaged or missing file, or None.
    """
    path = Path(path)
    for name in ('model.safetensors', 'optimizer.safetensors'):
        file = path / name
        if not file.is_file():
            return f'{file} is missing'
        try:
            with safe_open(str(file), framework='pt'):
                pass
        except Exception as e:  # safetensors raises its own error type for short files and bad headers
            return f'{file} is damaged (truncated or corrupt: {e})'
    try:
        with open(path / 'state.json', encoding='utf-8') as f:
            json.load(f)
    except (OSError, ValueError) as e:
        return f'{path / "state.json"} is damaged (not valid JSON: {e})'
    return None


def latest_checkpoint(ckpt_dir: os.PathLike) -> Optional[Path]:
    """The newest intact checkpoint in ``ckpt_dir``, or None when there is none at all.

    A newer checkpoint that is damaged (see :func:`checkpoint_problem`) is skipped with a warning that names its
    file, so ``--resume`` continues from the newest one that loads instead of stopping on the damaged one.

    Args:
        ckpt_dir: The run's checkpoint folder (``<output>/checkpoints``).

    Raises:
        CheckpointError: there are complete checkpoints, but every one is damaged (starting afresh over them
            silently would lose the run).
    """
    found = list_checkpoints(ckpt_dir)
    damaged = []
    for path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            if damaged:
                warnings.warn(f'Skipping damaged checkpoint(s): {"; ".join(damaged)}. Resuming from the newest '
                              f'intact one, {path} (delete the damaged folder(s) to silence this).', stacklevel=2)
            return path
        damaged.append(problem)
    if damaged:
        raise CheckpointError(f'Every checkpoint in {str(ckpt_dir)!r} is damaged: {"; ".join(damaged)}. Restore '
                              f'one from a backup, or start afresh in a new --output folder.')
    return None


def save_checkpoint(
        ckpt_dir: os.PathLike,
        step: int,
        model: nn.Module,
        optimizer: Optional[torch.optim.Optimizer],
        state: Dict[str, Any],
        keep_last: int = 3,
        protect: Optional[List[Path]] = None,
) -> Path:
    """Write a resumable checkpoint for ``step`` atomically and prune old ones.

    Args:
        ckpt_dir: Folder holding the run's checkpoints.
        step: Global optimiser step; names the checkpoint ``step-XXXXXXXX``.
        model: The (unwrapped) module whose ``state_dict`` is saved.
        optimizer: Its optimiser, or None.
        state: JSON-able run state (epoch, data position, schedule, metrics, config, ...).
        keep_last: Checkpoints to keep (older ones are removed after the new one is in place); 0 keeps all.
        protect: Checkpoints never pruned.

    Returns:
        The checkpoint folder.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f'step-{step:08d}'
    tmp = ckpt_dir / f'{_TMP_PREFIX}{final.name}.{os.getpid()}'
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(owned_tensors(model.state_dict()), str(tmp / 'model.safetensors'), metadata={'format': 'pt'})
    rng_tensors, rng_meta = get_rng_state()
    extra = dict(rng_tensors)
    optim_meta = None
    if optimizer is not None:
        optim_tensors, optim_meta = optimizer_to_flat(optimizer)
        extra.update(optim_tensors)
    save_file(owned_tensors(extra), str(tmp / 'optimizer.safetensors'), metadata={'format': 'pt'})
    full_state = dict(state, step=int(step), rng=rng_meta, optimizer=optim_meta)
    # state.json is written last: its presence marks a complete checkpoint even before the rename.
    with open(tmp / 'state.json', 'w', encoding='utf-8') as f:
        json.dump(full_state, f, indent=1)
    for p in tmp.iterdir():
        _fsync_file(p)
    fsync_dir(tmp)
    if final.exists():
        # Same step written again (e.g. the end-of-run save after a periodic one): retire the old copy first.
        trash = ckpt_dir / f'{_TRASH_PREFIX}{final.name}.{os.getpid()}'
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash)
    else:
        os.replace(tmp, final)
    fsync_dir(ckpt_dir)
    prune_checkpoints(ckpt_dir, keep_last, protect=protect)
    return final


def prune_checkpoints(ckpt_dir: os.PathLike, keep_last: int, protect: Optional[List[Path]] = None) -> None:
    """Delete all but the newest ``keep_last`` intact checkpoints (0 keeps all). Each goes by rename-then-delete.

    Args:
        ckpt_dir: The run's checkpoint folder (``<output>/checkpoints``).
        keep_last: Intact checkpoints kept (damaged ones neither count nor go: they are left for the user).
        protect: Checkpoints never deleted.
    """
    if keep_last <= 0:
        return
    keep = {Path(p).resolve() for p in (protect or [])}
    # Only intact checkpoints count: a damaged newest one must not push the last good ones out. Damaged folders are
    # left for the user (latest_checkpoint names them); a later save of the same step replaces one.
    ckpts = [p for p in list_checkpoints(ckpt_dir) if checkpoint_problem(p) is None]
    for old in ckpts[:-keep_last]:
        if old.resolve() in keep:
            continue
        # Renaming first means a kill mid-delete leaves a hidden trash folder, never a half checkpoint.
        trash = old.with_name(f'{_TRASH_PREFIX}{old.name}.{os.getpid()}')
        os.replace(old, trash)
        shutil.rmtree(trash)


def _older_intact(path: Path) -> List[Path]:
    """Intact checkpoints older than the checkpoint folder ``path``, newest first (for error messages)."""
    return [p for p in reversed(list_checkpoints(path.parent)) if p.name < path.name and checkpoint_problem(p) is None]


def _load_tensors(file: Path, device: str) -> Dict[str, torch.Tensor]:
    """``load_file`` with a CheckpointError that names the damaged file and the checkpoints to resume from instead."""
    try:
        return load_file(str(file), device=device)
    except Exception as e:  # safetensors' own error type (short file, bad header), or an OSError
        older = _older_intact(file.parent)
        hint = (f'resume from the newest intact one instead (--resume {older[0]}), or pass the run folder to '
                f'--resume and the damaged one is skipped' if older else
                'no older intact checkpoint is left: restore one from a backup, or start afresh in a new --output')
        raise CheckpointError(f'{file} is damaged (truncated or corrupt: {e}); {hint}.') from None


def _resolve(path: os.PathLike) -> Path:
    """A ``step-XXXXXXXX`` folder, or the newest one inside ``path`` (or inside ``path/checkpoints``: a run
    folder)."""
    path = Path(path)
    if not (path / 'state.json').is_file():
        latest = latest_checkpoint(path)
        if latest is None and (path / 'checkpoints').is_dir():  # the run folder itself, as `ecgvit pretrain -o`
            latest = latest_checkpoint(path / 'checkpoints')
        if latest is None:
            raise CheckpointError(f'No complete checkpoint at {str(path)!r}: expected a step-XXXXXXXX folder with '
                                  f'state.json, a folder containing some, or a run folder with checkpoints/.')
        path = latest
    return path


def read_checkpoint_state(path: os.PathLike) -> Dict[str, Any]:
    """The JSON state of a checkpoint (run settings, step, ...) without loading any tensor.

    Args:
        path: The ``step-XXXXXXXX`` folder, or a folder of them (the newest is read).

    Returns:
        The state, with ``path`` set to the checkpoint folder read.

    Raises:
        CheckpointError: no complete checkpoint at ``path``, or its state.json is not valid JSON.
    """
    path = _resolve(path)
    try:
        with open(path / 'state.json', encoding='utf-8') as f:
            state = json.load(f)
    except ValueError as e:
        raise CheckpointError(f'{str(path / "state.json")!r} is not valid JSON ({e}); the checkpoint is damaged: '
                              f'resume from an older one (pass its folder to --resume) or start afresh.') from None
    state['path'] = str(path)
    return state


def load_checkpoint(
        path: os.PathLike,
        model: Optional[nn.Module] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        restore_rng: bool = True,
        map_location: str = 'cpu',
) -> Dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: The ``step-XXXXXXXX`` folder (or a run's checkpoint folder: its newest checkpoint is used).
        model: Module to load the weights into (strict), or None.
        optimizer: Optimiser to restore, or None.
        restore_rng: Restore torch/numpy/python RNG states (needed for an exact resume).
        map_location: Device for the loaded tensors.

    Returns:
        The JSON state (with ``step``).

    Raises:
        CheckpointError: no complete checkpoint at ``path``, or the weights do not fit ``model``.
    """
    state = read_checkpoint_state(path)
    path = Path(state['path'])
    if model is not None:
        weights = _load_tensors(path / 'model.safetensors', map_location)
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            # Chained: the message holds the first mismatch, the cause lists every missing, unexpected and mis-sized
            # key (which says what differs between the run that wrote it and this model).
            raise CheckpointError(f'Checkpoint {str(path)!r} does not fit the model: {_first_mismatch(e)} '
                                  f'(was it written for another --model/--method?)') from e
    extra = _load_tensors(path / 'optimizer.safetensors', 'cpu')
    if optimizer is not None and state.get('optimizer') is not None:
        optimizer.load_state_dict(optimizer_from_flat(extra, state['optimizer']))
    if restore_rng:
        set_rng_state(extra, state['rng'])
    state['path'] = str(path)
    return state


# ---------------------------------------------------------------------------------------------------------------------
# Best weights


def save_best(ckpt_dir: os.PathLike, model: nn.Module, info: Dict[str, Any]) -> Path:
    """Atomically write the model's weights as ``best.safetensors`` with ``info`` (JSON) in its metadata.

    Args:
        ckpt_dir: The run's checkpoint folder (``<output>/checkpoints``).
        model: The module whose ``state_dict`` is saved.
        info: JSON-able facts about the weights (step, epoch, val_loss).

    Returns:
        The file written.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / BEST_NAME
    tmp = ckpt_dir / f'{_TMP_PREFIX}{BEST_NAME}.{os.getpid()}'
    save_file(owned_tensors(model.state_dict()), str(tmp), metadata={'format': 'pt', 'ecgvit': json.dumps(info)})
    _fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(ckpt_dir)
    return final


def load_best(path: os.PathLike, model: Optional[nn.Module] = None) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Read ``best.safetensors`` (a file, or the checkpoint folder holding it); load into ``model`` if given.

    Args:
        path: ``best.safetensors`` or the run's ``checkpoints`` folder.
        model: The module the run trained (for a pretraining run the pretrainer wrapper, not its encoder: the encoder
            alone loads with ``ecgvit.hub.load_encoder(run_dir)``), or None to only read.

    Returns:
        (state dict, info) where info holds step, epoch and val_loss.

    Raises:
        CheckpointError: no best weights yet, a damaged file, or weights that do not fit ``model``.
    """
    path = _best_file(path)
    info = best_info(path)
    try:
        weights = load_file(str(path))
    except Exception as e:  # safetensors' own error type for short files and bad headers
        raise _damaged_best(path, e) from None
    if model is not None:
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f'{path} does not fit {type(model).__name__}: {_first_mismatch(e)} Pass the module '
                                  f'the run trained (a pretraining run: its pretrainer), or load the encoder alone '
                                  f'with ecgvit.hub.load_encoder(run_dir).') from None
    return weights, info


def best_info(path: os.PathLike) -> Dict[str, Any]:
    """The step, epoch and val_loss stored with ``best.safetensors``, read from its header (no weights are read).

    Args:
        path: ``best.safetensors`` or the run's ``checkpoints`` folder.

    Raises:
        CheckpointError: no best weights yet, or a damaged file.
    """
    path = _best_file(path)
    try:
        with safe_open(str(path), framework='pt') as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors' own error type for short files and bad headers
        raise _damaged_best(path, e) from None
    return json.loads(meta.get('ecgvit', '{}'))


def _best_file(path: os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / BEST_NAME
    if not path.is_file():
        raise CheckpointError(f'No best weights at {str(path)!r}: a run writes them after its first validation.')
    return path


def _damaged_best(path: Path, error: Exception) -> CheckpointError:
    return CheckpointError(f'{path} is damaged (truncated or corrupt: {error}): the checkpoints beside it hold the '
                           f'latest weights (--resume continues from them).')
