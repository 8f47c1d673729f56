"""Whether a checkpoint was trained with the same pretraining method as the run that wants to resume it.

Resuming an MAE-MoCo checkpoint with ``--method mae_nextclip`` used to fail with a list of eleven changed settings
(``queue_size``, ``clip_len``, ...) that never said the obvious: the method differs. :func:`check_resume_method`
says that first, in terms of the ``--method`` option.

A run's method is read from its run config (``run_config['method']``, which ``ecgvit pretrain`` records, plus
``pretrainer['shared_pass']``); runs built through the API without it are told apart by the branches their settings
belong to (MAE's ``mask_ratio``, MoCo's ``queue_size``, a clip branch's ``clip_len``).
"""
from typing import Any, Dict, Optional

__all__ = ['resumed_method', 'method_change', 'check_resume_method']

# One setting that only each branch has (ecgvit.pretrain.factory's _MAE_KWARGS, _MOCO_KWARGS, _CLIP_KWARGS).
_BRANCH_MARKERS = (('mae', 'mask_ratio'), ('moco', 'queue_size'), ('clip', 'clip_len'))


def resumed_method(run_config: Optional[Dict[str, Any]]) -> Optional[str]:
    """The method of a run config, as ``--method`` spells it (``'mae_moco'``, ``'mae_moco_shared'``), or None.

    Falls back to the branches named by the pretrainer settings (``'mae+moco'``) when no method was recorded.
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


def method_change(saved: Optional[Dict[str, Any]], current: Optional[Dict[str, Any]]) -> Optional[str]:
    """A sentence saying how the method of run config ``current`` differs from ``saved``'s, or None if it does not.

    Args:
        saved: The checkpoint's run config (``state['config']``).
        current: This run's run config (the ``run_config`` given to :func:`ecgvit.train.train`).
    """
    old, new = resumed_method(saved), resumed_method(current)
    if old is None or new is None or old == new:
        return None
    return (f'the method differs: the checkpoint was trained with --method {old}, this run asks for --method {new}')


def check_resume_method(state: Dict[str, Any], run_config: Optional[Dict[str, Any]]) -> None:
    """Refuse to resume a checkpoint trained with another pretraining method, saying so first.

    Call it before comparing the individual method settings (``ecgvit.train.loop.check_same_method``): when the
    method itself differs, that is the message the user needs, not the settings that follow from it.

    Args:
        state: The checkpoint's JSON state (``ecgvit.train.checkpoint.read_checkpoint_state``).
        run_config: This run's run config.

    Raises:
        ValueError: the methods differ; the message names both, the checkpoint, and the fix.
    """
    change = method_change(state.get('config'), run_config)
    if change is None:
        return
    saved = resumed_method(state.get('config'))
    raise ValueError(f'Cannot resume from {state.get("path")}: {change}. Resume with --method {saved} (and the '
                     f'settings it was trained with), or start the new method in a new --output folder.')
