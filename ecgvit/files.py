"""Atomic file writes: results either appear whole or not at all.

Every file a command leaves for its user (embeddings, predictions, results tables, configs) is written to a temporary
file in the destination folder, flushed to disk, then renamed over the destination. A full disk, a killed process or
an exception mid-write leaves the previous file intact and no half-written one beside it.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_save_npy(folder / 'x.npy', np.arange(3))
    >>> np.load(folder / 'x.npy').tolist()
    [0, 1, 2]
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, Mapping

__all__ = ['atomic_open', 'atomic_write_text', 'atomic_save_npy', 'atomic_savez', 'atomic_copy', 'atomic_savefig',
           'atomic_save_safetensors', 'owned_tensors', 'fsync_dir']


def fsync_dir(path: os.PathLike) -> None:
    """Flush a folder's entries to disk (so a rename inside it survives a crash); a no-op where unsupported.

    Args:
        path: The folder.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: os.PathLike, mode: str = 'w', **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``, on an error it is removed.

    Args:
        path: The destination file (its folder must exist).
        mode: 'w' (text, UTF-8 unless ``encoding`` is given) or 'wb'.
        **kwargs: Passed to ``open`` (e.g. ``newline=''`` for csv).
    """
    path = Path(path)
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}.")
    if mode == 'w':
        kwargs.setdefault('encoding', 'utf-8')
    # A hidden name (dot first) so globs of the folder's results never pick up a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's file is private to its owner; a result is meant to be read by others
        os.replace(tmp, path)
    except OSError as e:  # a full disk, a quota: numpy's and the OS's messages do not name the file
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, f'could not write {path} ({e.strerror or e}); the previous file, if any, is '
                               f'unchanged') from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically.

    Args:
        path: The destination file (its folder must exist).
        text: The file's whole content.
    """
    with atomic_open(path, 'w') as f:
        f.write(text)


def _atomic_with(path: os.PathLike, write: Callable[[IO], None]) -> None:
    with atomic_open(path, 'wb') as f:
        write(f)


def atomic_save_npy(path: os.PathLike, array: Any) -> None:
    """``numpy.save`` to ``path`` atomically (no pickles: object arrays are refused, as ``np.load`` would).

    Args:
        path: The destination file (its folder must exist).
        array: The array (anything ``np.asarray`` takes).
    """
    import numpy as np

    _atomic_with(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def atomic_savez(path: os.PathLike, **arrays: Any) -> None:
    """``numpy.savez`` to ``path`` atomically.

    Args:
        path: The destination file (its folder must exist).
        **arrays: Name -> array, as ``numpy.savez`` takes them.
    """
    import numpy as np

    _atomic_with(path, lambda f: np.savez(f, **arrays))


def owned_tensors(state: Mapping[str, Any]) -> Dict[str, Any]:
    """An owned, contiguous CPU copy of each tensor of ``state``: what ``safetensors`` can always write.

    ``safetensors`` refuses tensors that share storage (tied weights, views of one buffer) and non-contiguous ones; a
    model's ``state_dict()`` may hold both.

    Args:
        state: Name -> tensor, e.g. ``model.state_dict()`` (on any device).

    Returns:
        Name -> detached CPU tensor that owns its memory.
    """
    return {k: v.detach().to('cpu').contiguous().clone() for k, v in state.items()}


def atomic_save_safetensors(path: os.PathLike, tensors: Any, metadata: Any = None) -> None:
    """``safetensors.torch.save_file`` to ``path`` atomically.

    Args:
        path: The destination file (its folder must exist).
        tensors: Name -> tensor (contiguous, no shared storage: :func:`owned_tensors` makes such a copy).
        metadata: Text -> text header entries, or None.
    """
    from safetensors.torch import save

    blob = save(tensors, metadata=metadata)
    _atomic_with(path, lambda f: f.write(blob))


def atomic_copy(src: os.PathLike, dst: os.PathLike) -> None:
    """Copy file ``src``'s bytes to ``dst`` atomically.

    Args:
        src: The file copied.
        dst: The destination file (its folder must exist).
    """
    import shutil

    with open(src, 'rb') as fin:
        _atomic_with(dst, lambda f: shutil.copyfileobj(fin, f))


def atomic_savefig(fig: Any, path: os.PathLike, **kwargs: Any) -> None:
    """``fig.savefig`` to ``path`` atomically (the format from the suffix of ``path``).

    Args:
        fig: A matplotlib figure.
        path: The destination file (its folder must exist).
        **kwargs: Passed to ``fig.savefig`` (e.g. ``dpi``); ``format`` overrides the suffix's (png without one).
    """
    fmt = kwargs.pop('format', None) or Path(path).suffix.lstrip('.') or 'png'
    _atomic_with(path, lambda f: fig.savefig(f, format=fmt, **kwargs))
