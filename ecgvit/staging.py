"""Temporary sibling folders for atomic writes, named after the process that owns them, and their clean-up.

A folder that is built in place (a cache, a generated dataset) is written into ``.<name>.tmp-<pid>-<random>`` next to
it and renamed into place when complete. A process killed half-way leaves that folder behind; the next build of the
same target removes the ones whose process is gone (``sweep_stale``), and never those of a live process, which may be
a concurrent build of the same target.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ['staging_dir', 'sweep_stale']

_MARKERS = ('.tmp-', '.old-')


def staging_dir(target: Path) -> Path:
    """Create and return a fresh temporary sibling of ``target`` owned by this process.

    Args:
        target: The folder being built (its parent is created if needed); the sibling's hidden name carries
            ``target``'s name and this process's id, which :func:`sweep_stale` reads.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f'.{target.name}.tmp-{os.getpid()}-', dir=target.parent))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another build in this process (a thread) may be using it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def sweep_stale(target: Path) -> list[Path]:
    """Remove the temporary (``.tmp-``) and set-aside (``.old-``) siblings of ``target`` whose owning process is gone.

    Args:
        target: The folder whose siblings are swept.

    Returns:
        The folders removed.
    """
    removed = []
    if not target.parent.is_dir():
        return removed
    for marker in _MARKERS:
        for tmp in target.parent.glob(f'.{target.name}{marker}*'):
            try:
                pid = int(tmp.name.rsplit(marker, 1)[1].split('-')[0])
            except (ValueError, IndexError):
                pid = None  # not named by this module (e.g. an older version's): nobody can be using it by pid
            if pid is not None and _pid_alive(pid):
                continue
            shutil.rmtree(tmp, ignore_errors=True)
            if not tmp.exists():
                removed.append(tmp)
    return removed
