"""Which checkpoints a run may resume: the method settings it was trained with must be this run's."""
import json
from typing import Any, Dict, List, Optional

__all__ = ['MethodSettingsError', 'check_same_method']


class MethodSettingsError(ValueError):
    """A resume would continue a checkpoint under other method settings; ``diffs`` names each as ``(key, old, new)``.

    The message names no command-line flag: the CLI adds its own hint.
    """

    def __init__(self, message: str, diffs: List[tuple]) -> None:
        super().__init__(message)
        self.diffs = diffs


def check_same_method(state: Dict[str, Any], pretrainer: Optional[Dict[str, Any]]) -> None:
    """Refuse to resume a checkpoint with method settings other than those it was trained with.

    Only settings both record are compared: one the checkpoint records but this version no longer has is not a
    difference, and a run that records none (``pretrainer`` None, or a checkpoint without a ``pretrainer`` config)
    is not checked.

    Args:
        state: The checkpoint's JSON state (:func:`~ecgvit.train.checkpoint.read_checkpoint_state`).
        pretrainer: This run's method settings (``run_config['pretrainer']``, a pretrainer's ``config``).

    Raises:
        MethodSettingsError: a setting differs, naming each one and its two values.

    Example:
        >>> check_same_method({'config': {'pretrainer': {'alpha': 40.0}}}, {'alpha': 40.0})
    """
    saved = (state.get('config') or {}).get('pretrainer')
    if pretrainer is None or saved is None:
        return
    current = json.loads(json.dumps(pretrainer, default=str))  # as the checkpoint stored it
    diffs = [(key, saved[key], current[key]) for key in sorted(set(saved) & set(current)) if saved[key] != current[key]]
    if diffs:
        text = '; '.join(f'{k}={old!r} there, {k}={new!r} here' for k, old, new in diffs)
        raise MethodSettingsError(f'Cannot resume from {state.get("path")}: its method settings differ from this '
                                  f'run\'s: {text}. Resume with the settings it was trained with, or start a new run '
                                  f'in another output folder.', diffs)
