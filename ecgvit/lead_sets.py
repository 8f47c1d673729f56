"""Lead subsets: naming them, the 12-lead mask of one, and whether a model was trained to run on it.

A reduced-lead device (a single-lead patch, a 6-lead limb-lead recorder) still feeds the 12-lead model: the leads it
lacks are zero after normalisation and marked False in a lead mask. A model handles that only if it saw such inputs
while training (lead-set dropout in pretraining, ``ecgvit pretrain --lead-dropout``); its pretrained cfg lists the
subsets it saw (``lead_sets``), and :func:`check_trained_leads` refuses any other unless asked not to.
"""
from typing import List, Optional, Sequence, Tuple, Union

from ecgvit.constants import LEADS
from ecgvit.errors import EcgvitError

__all__ = ['LEAD_SET_PRESETS', 'DEFAULT_LEAD_SETS', 'UntrainedLeadsError', 'resolve_leads', 'lead_mask_for',
           'check_trained_leads', 'describe_leads', 'resolve_lead_sets', 'parse_lead_sets', 'split_lead_sets']

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
# What lead-set dropout trains for when no subsets are named: the two reduced layouts devices ship (6-lead limb
# recorders, single-lead I patches and watches).
DEFAULT_LEAD_SETS: Tuple[Tuple[str, ...], ...] = (LIMB_LEADS, ('I',))

LeadSpec = Union[str, Sequence[str], None]


class UntrainedLeadsError(EcgvitError, ValueError):
    """A model is asked to run on a lead subset it was never trained on."""


def resolve_leads(spec: LeadSpec) -> Tuple[str, ...]:
    """The leads named by ``spec``, canonically spelt, in the 12-lead order.

    Args:
        spec: None (all 12), a preset ('12', '6', 'limb', 'precordial', '1'), lead names joined by ',' or '+'
            ('I,II,V2', 'I+II+V2') or a sequence of lead names (any case: 'avr' is 'aVR').

    Raises:
        ValueError: an unknown lead or preset, a repeated lead or an empty list.
    """
    if spec is None:
        return LEADS
    if isinstance(spec, str):
        preset = LEAD_SET_PRESETS.get(spec.strip().lower())
        if preset is not None:
            return preset
        spec = [s for s in spec.replace('+', ',').split(',') if s.strip()]
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
    """The 12-lead mask (True = present) of a lead subset, in the order of ``ecgvit.constants.LEADS``.

    Args:
        leads: A lead subset, as :func:`resolve_leads` reads it.
    """
    chosen = set(resolve_leads(leads))
    return tuple(name in chosen for name in LEADS)


def describe_leads(leads: LeadSpec) -> str:
    """A short name for a subset: '12-lead', '6-lead (limb)', '1-lead (I)' or the comma list.

    Args:
        leads: A lead subset, as :func:`resolve_leads` reads it.
    """
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
        f'{model} was not trained to run on {describe_leads(chosen)} input (it was trained on: {listed}): its '
        f'features with those leads absent were never trained or checked (docs/leads.md measures some). Use '
        f'weights pretrained with lead-set dropout that include this subset '
        f'(ecgvit pretrain --lead-dropout P --lead-sets ...), or pass allow_untrained_leads=True '
        f'(--allow-untrained-leads) to run it anyway, e.g. to measure how it fares.')


def resolve_lead_sets(sets: Union[str, Sequence[LeadSpec], None]) -> Tuple[Tuple[str, ...], ...]:
    """A list of lead subsets (what lead-set dropout draws from), each resolved by :func:`resolve_leads`.

    Args:
        sets: None (:data:`DEFAULT_LEAD_SETS`: the 6 limb leads, and lead I), the command-line form parsed by
            :func:`parse_lead_sets` (``'limb,I,V1+V2'``), or a sequence of subsets, each a preset, a list of lead
            names or a string of names joined by ``','`` or ``'+'`` (``['limb', ['I'], 'I+II']``).

    Returns:
        The subsets in the order given, each in the canonical 12-lead order.

    Raises:
        ValueError: an unknown lead or preset, an empty list, a subset named twice, or the full 12 leads (always
            trained; list only the reduced subsets).
    """
    if sets is None:
        return DEFAULT_LEAD_SETS
    if isinstance(sets, str):
        return parse_lead_sets(sets)
    resolved = []
    for spec in sets:
        subset = resolve_leads(spec)
        if subset == LEADS:
            raise ValueError(f'Lead subset {spec!r} is all 12 leads, which every model trains on: list only the '
                             f'reduced subsets (e.g. limb,I).')
        if subset in resolved:
            raise ValueError(f'Lead subset {describe_leads(subset)} is named twice in {list(sets)!r}.')
        resolved.append(subset)
    if not resolved:
        raise ValueError('The list of lead subsets is empty: name at least one (e.g. "limb,I"), or pass None for '
                         'the default (the 6 limb leads, and lead I).')
    return tuple(resolved)


def parse_lead_sets(text: str) -> Tuple[Tuple[str, ...], ...]:
    """The lead subsets of a command-line value: subsets separated by ``','``, leads in one subset joined by ``'+'``.

    Each subset is a preset (``limb``/``6``, ``precordial``, ``1``) or lead names joined by ``+``:
    ``'limb,I'`` is two subsets (the 6 limb leads; lead I), ``'I+II,V1+V2+V3'`` two subsets of 2 and 3 leads.

    Args:
        text: The command-line value.

    Raises:
        ValueError: as :func:`resolve_lead_sets`.
    """
    return resolve_lead_sets(split_lead_sets(text))


def split_lead_sets(text: str) -> List[str]:
    """The subsets of a list written as ``'limb,I,I+II'`` (commas between subsets), unresolved; [] for ''.

    Args:
        text: The list as written (anything else is read as its ``str``).

    Raises:
        ValueError: an empty subset between commas (``'limb,,I'``).
    """
    parts = [p.strip() for p in str(text).split(',')]
    if not any(parts):
        return []
    if not all(parts):
        raise ValueError(f'Empty lead subset in {text!r}: separate subsets by commas and join the leads of one '
                         f'subset by "+", e.g. "limb,I,I+II".')
    return parts
