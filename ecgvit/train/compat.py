"""Which checkpoints a run may resume: the method and the method settings it was trained with must be this run's.

Resuming an MAE-MoCo checkpoint as MAE-Nextclip used to fail with a list of changed settings (``queue_size``,
``clip_len``, ...) that never said the obvious: the method differs. :func:`check_resume_method` says that first.
"""
import json
from typing import Any, Dict, List, Optional

__all__ = ['MethodSettingsError', 'check_same_method', 'check_resume_method', 'resumed_method']


class MethodSettingsError(ValueError):
    """A resume would continue a checkpoint under other method settings; ``diffs`` names each as ``(key, old, new)``.

    The message names no command-line flag: the CLI adds its own hint.

    Args:
        message: The error message.
        diffs: ``(key, value in the checkpoint, value in this run)`` of each setting that differs.
    """

    def __init__(self, message: str, diffs: List[tuple]) -> None:
        super().__init__(message)
        self.diffs = diffs


# Settings added after runs were first recorded, and what a checkpoint that does not record one was trained with: a
# run asking for another value must not resume it as if nothing changed (lead-set dropout was off before it existed,
# and the MAE decoder's positions started as small normal noise).
_ABSENT_MEANS: Dict[str, Any] = {'lead_dropout': 0.0, 'lead_sets': None, 'decoder_pos_init': 'normal'}


def check_same_method(state: Dict[str, Any], pretrainer: Optional[Dict[str, Any]]) -> None:
    """Refuse to resume a checkpoint with method settings other than those it was trained with.

    Only settings both record are compared: one the checkpoint records but this version no longer has is not a
    difference, and a run that records none (``pretrainer`` None, or a checkpoint without a ``pretrainer`` config)
    is not checked. A setting newer than the checkpoint (``lead_dropout``, ``lead_sets``, ``decoder_pos_init``)
    counts as its old default there.

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
    saved = dict({k: v for k, v in _ABSENT_MEANS.items() if k in current}, **saved)
    diffs = [(key, saved[key], current[key]) for key in sorted(set(saved) & set(current)) if saved[key] != current[key]]
    if diffs:
        text = '; '.join(f'{k}={old!r} there, {k}={new!r} here' for k, old, new in diffs)
        raise MethodSettingsError(f'Cannot resume from {state.get("path")}: its method settings differ from this '
                                  f'run\'s: {text}. Resume with the settings it was trained with, or start a new run '
                                  f'in another output folder.', diffs)


# One setting that only each branch has (the branch kwargs of ecgvit.pretrain.factory): names a run's branches when
# its run config records no method (runs built through the API).
_BRANCH_MARKERS = (('mae', 'mask_ratio'), ('moco', 'queue_size'), ('clip', 'clip_len'))


def resumed_method(run_config: Optional[Dict[str, Any]]) -> Optional[str]:
    """The method of a run config (``'mae_moco'``, ``'mae_moco_shared'``, or ``'mae+moco'`` from its branches).

    Args:
        run_config: A run's config (``method`` and ``pretrainer``), or None.

    Returns:
        The method, with ``_shared`` when its pretrainer used the shared pass; None when the config names none.
    """
    run_config = run_config or {}
    pretrainer = run_config.get('pretrainer') or {}
    method = run_config.get('method')
    if not isinstance(method, str) or not method:
        branches = [name for name, key in _BRANCH_MARKERS if key in pretrainer]
        if not branches:
            return None
        method = '+'.join(branches)
    if pretrainer.get('shared_pass') and not method.endswith('_shared'):
        method += '_shared'
    return method


def check_resume_method(state: Dict[str, Any], run_config: Optional[Dict[str, Any]]) -> None:
    """Refuse to resume a checkpoint trained with another pretraining method, saying so first.

    Called before :func:`check_same_method`: when the method itself differs, that is what the user needs to hear, not
    the settings that follow from it.

    Args:
        state: The checkpoint's JSON state (:func:`~ecgvit.train.checkpoint.read_checkpoint_state`).
        run_config: This run's run config (``method`` and ``pretrainer``).

    Raises:
        MethodSettingsError: the methods differ; the message names both and the fix.
    """
    old, new = resumed_method(state.get('config')), resumed_method(run_config)
    if old is None or new is None or old == new:
        return
    raise MethodSettingsError(f'Cannot resume from {state.get("path")}: the method differs: the checkpoint was trained '
                              f'with {old}, this run asks for {new}. Resume with {old} (and the settings it was '
                              f'trained with), or start {new} in a new output folder.', [('method', old, new)])
