"""Lead subsets: naming them, the 12-lead mask of one, and whether a model was trained to run on it.

A reduced-lead device (a single-lead patch, a 6-lead limb-lead recorder) still feeds the 12-lead model: the leads it
lacks are zero after normalisation and marked False in a lead mask. A model handles that only if it saw such inputs
while training (lead-set dropout in pretraining, ``ecgvit pretrain --lead-dropout``); its pretrained cfg lists the
subsets it saw (``lead_sets``), and :func:`check_trained_leads` refuses any other unless asked not to.
"""
from typing import Optional, Sequence, Tuple, Union

from ecgvit.constants import LEADS
from ecgvit.errors import EcgvitError

__all__ = ['LEAD_SET_PRESETS', 'UntrainedLeadsError', 'resolve_leads', 'lead_mask_for', 'check_trained_leads',
           'describe_leads']

LIMB_LEADS: Tuple[str, ...] = LEADS[:6]
# Names a user (or a flag) may give instead of listing leads: the common device layouts.
LEAD_SET_PRESETS = {
    '12': LEADS,
    'all': LEADS,
    '6': LIMB_LEADS,
    'limb': LIMB_LEADS,
    'precordial': LEADS[6:],
    '1': ('I',),
}
_BY_KEY = {name.lower(): name for name in LEADS}

LeadSpec = Union[str, Sequence[str], None]


class UntrainedLeadsError(EcgvitError, ValueError):
    """A model is asked to run on a lead subset it was never trained on."""


def resolve_leads(spec: LeadSpec) -> Tuple[str, ...]:
    """The leads named by ``spec``, canonically spelt, in the 12-lead order.

    Args:
        spec: None (all 12), a preset ('12', '6', 'limb', 'precordial', '1'), a comma-separated string
            ('I,II,V2') or a sequence of lead names (any case: 'avr' is 'aVR').

    Raises:
        ValueError: an unknown lead or preset, a repeated lead or an empty list.
    """
    if spec is None:
        return LEADS
    if isinstance(spec, str):
        preset = LEAD_SET_PRESETS.get(spec.strip().lower())
        if preset is not None:
            return preset
        spec = [s for s in spec.split(',') if s.strip()]
    names = []
    for raw in spec:
        name = _BY_KEY.get(str(raw).strip().lower())
        if name is None:
            raise ValueError(f'Unknown lead {raw!r}: use names of {", ".join(LEADS)}, or a preset '
                             f'({", ".join(LEAD_SET_PRESETS)}).')
        if name in names:
            raise ValueError(f'Lead {name} is named twice in {list(spec)!r}.')
        names.append(name)
    if not names:
        raise ValueError('The lead list is empty: name at least one lead (e.g. "I"), or a preset such as "6".')
    return tuple(n for n in LEADS if n in names)


def lead_mask_for(leads: LeadSpec) -> Tuple[bool, ...]:
    """The 12-lead mask (True = present) of a lead subset, in the order of ``ecgvit.constants.LEADS``."""
    chosen = set(resolve_leads(leads))
    return tuple(name in chosen for name in LEADS)


def describe_leads(leads: LeadSpec) -> str:
    """A short name for a subset: '12-lead', '6-lead (limb)', '1-lead (I)' or the comma list."""
    chosen = resolve_leads(leads)
    if chosen == LEADS:
        return '12-lead'
    if chosen == LIMB_LEADS:
        return '6-lead (limb)'
    return f'{len(chosen)}-lead ({",".join(chosen)})'


def check_trained_leads(trained: Optional[Sequence[Sequence[str]]], leads: LeadSpec, model: str = 'this model',
                        allow_untrained: bool = False) -> Tuple[str, ...]:
    """Check that a model was trained on the subset ``leads``; returns the resolved subset.

    Args:
        trained: The subsets the model saw in training (its pretrained cfg's ``lead_sets``); None means only the
            full 12 leads (every model trained without lead-set dropout).
        leads: The subset asked for.
        model: The model's name, for the message.
        allow_untrained: Run anyway (e.g. to measure how an untrained subset fares); the caller should warn.

    Raises:
        UntrainedLeadsError: the subset is not among ``trained`` and ``allow_untrained`` is False.
    """
    chosen = resolve_leads(leads)
    known = {LEADS} | {resolve_leads(list(s)) for s in (trained or ())}
    if chosen in known or allow_untrained:
        return chosen
    listed = '; '.join(describe_leads(list(s)) for s in sorted(known, key=len, reverse=True))
    raise UntrainedLeadsError(
        f'{model} was not trained to run on {describe_leads(chosen)} input (it was trained on: {listed}). Its output '
        f'on missing leads is not meaningful. Use weights pretrained with lead-set dropout that include this subset '
        f'(ecgvit pretrain --lead-dropout P --lead-sets ...), or pass allow_untrained_leads=True '
        f'(--allow-untrained-leads) to run it anyway, e.g. to measure the loss.')
