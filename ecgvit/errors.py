"""ecgvit's exception hierarchy: one class per kind of failure, all under :class:`EcgvitError`.

This module imports nothing from ecgvit, so every layer (weights, models, train, hub, cli) can raise and catch the
same classes: ``except CheckpointError`` catches a bad weight file from ``create_model(pretrained=True)`` as well as a
bad training checkpoint from ``--resume``.
"""
import signal

__all__ = ['EcgvitError', 'CheckpointError', 'PretrainedWeightsError', 'RunExistsError', 'RunInUseError',
           'TrainingDivergedError', 'UnknownMethodSettingError', 'RunStopped']


class EcgvitError(Exception):
    """Base of every error ecgvit raises on purpose (the message names the bad value and the fix)."""


class CheckpointError(EcgvitError, ValueError, RuntimeError):
    """A weight file or training checkpoint exists but is unusable: corrupt, truncated, wrong hash, incomplete, or
    its tensors do not fit the model.

    Both ``ValueError`` (what ``ecgvit.hub`` raised) and ``RuntimeError`` (what ``ecgvit.train.checkpoint`` raised,
    and what ``nn.Module.load_state_dict`` raises for a mismatch) are bases, so ``except`` clauses written for
    either of the two former classes still catch it.
    """


class PretrainedWeightsError(EcgvitError, RuntimeError):
    """No usable weights could be found for a ``pretrained=True`` request (nothing local, offline, or the Hub
    could not be reached)."""


class RunExistsError(EcgvitError, FileExistsError):
    """A fresh training run was pointed at a folder that already holds a run: starting there would overwrite its
    metrics, best weights and checkpoints, and a later resume would mix the two runs."""


class RunInUseError(EcgvitError, RuntimeError):
    """A training run was pointed at a folder another live process is training into (resume or fresh start):
    both would write checkpoints and metrics into one run."""


class TrainingDivergedError(EcgvitError, RuntimeError):
    """A run finished with nothing usable: its weights hold non-finite values, or most of its steps were skipped as
    non-finite. Its checkpoints and metrics stay on disk for inspection."""


class UnknownMethodSettingError(EcgvitError, TypeError):
    """A pretraining method was given a setting it does not take (``TypeError``, as Python's own unexpected
    keyword argument). ``method``, ``unknown`` (the settings refused) and ``allowed`` (the method's settings and their
    defaults) let a caller such as the command line name them its own way."""

    def __init__(self, method: str, unknown: list, allowed: dict) -> None:
        self.method, self.unknown, self.allowed = method, list(unknown), dict(allowed)
        super().__init__(f'create_pretrainer({method!r}) got unexpected keyword argument(s) {self.unknown}; '
                         f'{method} takes: {", ".join(sorted(self.allowed))}.')

    def __reduce__(self):  # pickled whole (e.g. from a worker process), not from its message alone
        return type(self), (self.method, self.unknown, self.allowed)


class RunStopped(KeyboardInterrupt):
    """A training run stopped on request (SIGTERM, or Ctrl-C) at a step boundary, after writing a checkpoint that
    ``--resume`` (``TrainConfig.resume=True``) continues exactly.

    A ``KeyboardInterrupt``, not an :class:`EcgvitError`: code that catches ``Exception`` to carry on with the next
    job (a benchmark's next method, say) must not swallow a request to stop. ``signum`` (the signal), ``step`` and
    ``checkpoint`` (the folder written) say where the run stands.
    """

    def __init__(self, signum: int, step: int, checkpoint: str) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f'stopped by {signal.Signals(signum).name} after step {step}; the checkpoint {checkpoint} '
                         f'holds everything up to it: continue the run with --resume (resume=True).')

    @property
    def exit_code(self) -> int:
        """The status a command stopped this way exits with: the shell's 128 + signal (143 for SIGTERM, 130 for
        Ctrl-C)."""
        return 128 + self.signum

    def __reduce__(self):
        return type(self), (self.signum, self.step, self.checkpoint)
