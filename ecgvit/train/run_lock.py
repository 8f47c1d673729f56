"""One writer per run folder: an advisory lock that ``train`` holds from start to end.

Two processes resuming the same folder (a second terminal, a job scheduler that restarts a job it thinks died) would
each sweep the other's partial checkpoint files, append to one ``metrics.csv`` and write checkpoints of two diverging
runs under one step count. The lock makes the second process stop before it touches anything. It is an ``flock`` on
``<run folder>/.ecgvit-run.lock``: the kernel drops it when the holder exits, however it exits, so a killed run never
leaves a stale lock behind. The file itself stays (removing it would race a process about to lock it) and holds the
holder's pid, host and start time for the error message. On platforms without ``fcntl`` (Windows) nothing is locked.
"""
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Optional

from ecgvit.errors import RunInUseError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks through the standard library; the run is not protected
    fcntl = None

__all__ = ['LOCK_NAME', 'RunLock']

LOCK_NAME = '.ecgvit-run.lock'


class RunLock:
    """Exclusive, non-blocking lock on a run folder (creates the folder).

    Args:
        out_dir: The run folder; the lock is a file in it.
        enabled: Take the lock (False, e.g. on DDP ranks other than 0, makes this a no-op; so does a platform
            without ``fcntl``).

    Example:
        >>> # with RunLock(Path('runs/mae_moco')):
        >>> #     ...  # train into runs/mae_moco; a second RunLock on it raises RunInUseError meanwhile
    """

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self.enabled = enabled and fcntl is not None
        self._file: Optional[IO[str]] = None

    def acquire(self) -> 'RunLock':
        """Take the lock, or raise :class:`RunInUseError` naming the process that holds it."""
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, 'a+', encoding='utf-8')  # noqa: SIM115 - held open for the whole run
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read()
            f.close()
            raise RunInUseError(
                f'{self.path.parent} is in use by another training process ({_describe(holder)}): two runs writing '
                f'one folder would mix their checkpoints and metrics. Wait for it to finish, stop it (it resumes '
                f'with --resume / resume=True), or write to another output folder. Nothing was changed.') from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                            'started': time.strftime('%Y-%m-%d %H:%M:%S %Z')}) + '\n')
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        """Drop the lock (closing the file releases it; the file stays)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> 'RunLock':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(holder: str) -> str:
    """'pid 123 on host h since ...' from the lock file's JSON, or a plain phrase when it cannot be read."""
    try:
        h = json.loads(holder)
        return f"pid {h['pid']} on host {h['host']}, since {h['started']}"
    except (ValueError, KeyError, TypeError):
        return 'holder unknown'
