"""Stopping a run on request: SIGTERM or Ctrl-C ends it at the next step boundary, after a checkpoint.

Cluster schedulers (SLURM, Kubernetes) and ``kill PID`` send SIGTERM and kill the process a while later. Without a
handler the run dies mid-step and loses everything since its last checkpoint (up to ``save_every`` steps). With
:class:`StopRequests` around the loop, the first SIGTERM or SIGINT only sets a flag; the loop finishes the step it is
in, writes a resumable checkpoint and raises :class:`~ecgvit.errors.RunStopped`. A second signal ends the process as
it would have without the handler: a stuck step can still be interrupted.
"""
import signal
import threading
from typing import Any, Dict, Optional

__all__ = ['StopRequests']

# The signals handled, each with Python's own handler for it: only a handler still at that default is replaced.
_PYTHON_DEFAULTS = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}


class StopRequests:
    """Context manager that turns the first SIGTERM / SIGINT into a request the training loop polls.

    Only handlers still at Python's defaults are replaced (and restored on exit): a signal the caller ignores
    (``nohup ... &`` ignores SIGINT) or handles itself keeps that behaviour. Signal handlers can only be set from the
    main thread; elsewhere (or with ``enabled=False``) nothing is installed and ``signum`` stays None.

    Attributes:
        signum: The first signal received, or None.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.signum: Optional[int] = None
        self._saved: Dict[int, Any] = {}

    def __enter__(self) -> 'StopRequests':
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return self
        for sig, default in _PYTHON_DEFAULTS.items():
            if signal.getsignal(sig) is default:
                self._saved[sig] = default
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            return
        # A second request: the user means now. Stop as the process would have without this handler.
        self._restore()
        signal.raise_signal(signum)

    def _restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
