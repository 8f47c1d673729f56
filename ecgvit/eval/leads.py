"""Running an encoder on a lead subset: which subset, whether the encoder was trained on it, and the lead mask.

A reduced-lead input is a 12-lead batch whose absent leads are zero, with a lead mask saying which are present
(``ecgvit.lead_sets``). The probe, fine-tuning, ``embed`` and the suite multiply every batch by its mask right before
the encoder (:func:`apply_lead_mask`), so whatever a dataset holds in an absent lead never reaches the model, and ask
:func:`check_encoder_leads` first, which refuses a subset the weights were not trained on (``lead_sets`` in the
pretrained cfg) unless told to run anyway.

Example:
    >>> import ecgvit, torch
    >>> enc = ecgvit.create_model('ecg_vit_tiny', img_size=500)
    >>> leads, trained = check_encoder_leads(enc, '6', allow_untrained=True)  # warns: trained on 12 leads only
    >>> x = apply_lead_mask(torch.randn(2, 12, 500), lead_mask_tensor(leads))
    >>> bool((x[:, 6:] == 0).all())
    True
"""
import warnings
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ecgvit.constants import LEADS
from ecgvit.lead_sets import (
    LEAD_SET_PRESETS,
    UntrainedLeadsError,
    check_trained_leads,
    describe_leads,
    lead_mask_for,
    resolve_leads,
    split_lead_sets,
)

__all__ = ['trained_lead_sets', 'check_encoder_leads', 'dataset_leads', 'resolve_data_leads', 'lead_mask_tensor',
           'apply_lead_mask', 'parse_lead_subsets', 'leads_label', 'leads_absent_everywhere']


def _cfg(encoder: nn.Module) -> dict:
    cfg = getattr(encoder, 'pretrained_cfg', None) or {}
    return cfg if isinstance(cfg, dict) else dict(getattr(cfg, '__dict__', {}))


def trained_lead_sets(encoder: nn.Module) -> Optional[Tuple[Tuple[str, ...], ...]]:
    """The lead subsets (besides all 12) an encoder's weights were trained on: its pretrained cfg's ``lead_sets``;
    None for weights trained on 12 leads only.

    Args:
        encoder: A model with a ``pretrained_cfg`` (dict or dataclass); one without counts as 12 leads only.
    """
    sets = _cfg(encoder).get('lead_sets')
    return None if not sets else tuple(resolve_leads(list(s)) for s in sets)


def _model_name(encoder: nn.Module, name: Optional[str]) -> str:
    return name or _cfg(encoder).get('architecture') or type(encoder).__name__


def check_encoder_leads(encoder: nn.Module, leads: Any, allow_untrained: bool = False, model_name: Optional[str] = None,
                        random_init: bool = False) -> Tuple[Tuple[str, ...], bool]:
    """Check that ``encoder`` was trained to run on ``leads`` before it is asked to.

    Args:
        encoder: The encoder (its ``pretrained_cfg['lead_sets']``).
        leads: The subset (None: all 12; a preset such as '6' or '1'; a comma list; names).
        allow_untrained: Run on an untrained subset anyway, with a warning (e.g. to measure how it fares).
        model_name: Names the weights in the message (default: the architecture).
        random_init: The encoder is at its random initialisation (the suite's floor, an untrained ``--model``): it
            has no training to contradict, so any subset is allowed, silently.

    Returns:
        (the subset in the canonical 12-lead order, whether the weights were trained on it).

    Raises:
        UntrainedLeadsError: the weights were not trained on the subset and ``allow_untrained`` is False.
    """
    chosen = resolve_leads(leads)
    if random_init:
        return chosen, True
    name = _model_name(encoder, model_name)
    try:
        check_trained_leads(trained_lead_sets(encoder), chosen, name)
        return chosen, True
    except UntrainedLeadsError:
        if not allow_untrained:
            raise
    warnings.warn(f'{name} was not trained to run on {describe_leads(chosen)} input; running anyway '
                  f'(allow_untrained_leads=True, --allow-untrained-leads): its results measure a subset the weights '
                  f'never saw.', UserWarning, stacklevel=2)
    return chosen, False


def dataset_leads(dataset: Any) -> Optional[Tuple[str, ...]]:
    """The lead subset a dataset's records were read with (``preprocessing.input_leads`` of a
    ``CachedECGDataset``, also through a ``torch.utils.data.Subset``); None when it holds every lead or cannot
    tell.

    Args:
        dataset: A dataset, possibly wrapped (each ``.dataset`` is looked through until one has a ``preprocessing``).
    """
    while dataset is not None:
        pp = getattr(dataset, 'preprocessing', None)
        if pp is not None:
            return getattr(pp, 'input_leads', None)
        dataset = getattr(dataset, 'dataset', None)
    return None


def resolve_data_leads(leads: Any, *datasets: Any) -> Tuple[str, ...]:
    """The subset an evaluation runs on: ``leads`` if given, else the one the datasets were read with, else all 12.

    Args:
        leads: The subset asked for (as :func:`~ecgvit.lead_sets.resolve_leads` reads it), or None.
        *datasets: The splits (None ones are skipped); see :func:`dataset_leads`.

    Raises:
        ValueError: the datasets were read with different subsets, or ``leads`` names a lead they do not hold.
    """
    held = {dataset_leads(d) for d in datasets if d is not None}
    subsets = {h for h in held if h is not None}
    if len(subsets) > 1:
        raise ValueError(f'The splits were read with different lead subsets {sorted(subsets)}: build them with one '
                         f'Preprocessing(input_leads=...).')
    data = next(iter(subsets), None)
    if leads is None:
        return data or LEADS
    chosen = resolve_leads(leads)
    if data is not None:
        lacking = [n for n in chosen if n not in data]
        if lacking:
            raise ValueError(f'leads {list(chosen)} asks for {lacking}, which the data do not hold: they were read '
                             f'with input_leads {list(data)}. Rebuild them with those leads (--leads), or ask for a '
                             f'subset of {list(data)}.')
    return chosen


def leads_absent_everywhere(dataset: Any, leads: Sequence[str] = LEADS) -> Tuple[str, ...]:
    """The leads of ``leads`` that no record of ``dataset`` holds: a reduced-lead device's data (6 limb leads, say)
    read as 12 leads, whose absent ones the cache zero-fills and marks False in its lead mask.

    Such data are a lead subset as much as ``--leads 6`` is, and must be checked against the weights the same way
    (:func:`check_encoder_leads`); leads missing from only some records are not (a warning at cache time says so).

    Args:
        dataset: A ``CachedECGDataset`` (its ``lead_mask``, one row per item over ``preprocessing.leads``); anything
            without a lead mask has none absent.
        leads: The leads in use, names in the canonical order.

    Example:
        >>> import numpy as np, types
        >>> mask = np.zeros((3, 12), dtype=bool); mask[:, :6] = True
        >>> ds = types.SimpleNamespace(lead_mask=mask, preprocessing=types.SimpleNamespace(leads=LEADS))
        >>> leads_absent_everywhere(ds)
        ('V1', 'V2', 'V3', 'V4', 'V5', 'V6')
    """
    import numpy as np

    mask = getattr(dataset, 'lead_mask', None)
    if mask is None or len(mask) == 0:
        return ()
    names = list(getattr(getattr(dataset, 'preprocessing', None), 'leads', None) or LEADS)
    held = np.asarray(mask, dtype=bool).any(axis=0)
    return tuple(n for n in leads if n in names and not held[names.index(n)])


def lead_mask_tensor(leads: Any) -> Optional[torch.Tensor]:
    """Bool (12,) mask of ``leads`` in the canonical order, or None for all 12 (nothing to mask).

    Args:
        leads: A lead subset, as :func:`~ecgvit.lead_sets.resolve_leads` reads it.
    """
    mask = lead_mask_for(leads)
    return None if all(mask) else torch.tensor(mask, dtype=torch.bool)


def apply_lead_mask(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``x`` (B, 12, L) with the leads where ``mask`` ((12,) or (B, 12)) is False set to exactly 0.

    Multiplying is not enough: 0 x inf or 0 x NaN in an absent lead would still be NaN, so the leads are selected.

    Args:
        x: (B, 12, L) signals (any leads-second shape: the mask broadcasts over the dimensions after the leads).
        mask: (12,) or (B, 12) booleans, True for a lead kept; None returns ``x`` itself.

    Raises:
        ValueError: the mask's lead count is not ``x``'s.
    """
    if mask is None:
        return x
    if x.dim() < 2 or x.shape[1] != mask.shape[-1]:
        raise ValueError(f'A lead mask of {mask.shape[-1]} leads does not fit a batch of shape {list(x.shape)} '
                         f'(B, leads, samples).')
    m = mask.to(device=x.device, dtype=torch.bool)
    m = m.unsqueeze(0) if m.dim() == 1 else m
    m = m.reshape(m.shape[0], m.shape[1], *([1] * (x.dim() - 2)))  # (B or 1, leads, 1, ...): broadcast over time
    return torch.where(m, x, x.new_zeros(()))


def parse_lead_subsets(items: Any) -> List[Tuple[str, ...]]:
    """Several lead subsets from a command line or a config, in the syntax of ``ecgvit pretrain --lead-sets`` (which
    refuses ``12`` only): subsets separated by ``','``, the leads of one subset joined by ``'+'`` (``'12,6,1'``,
    ``'12,I+II'``; ``'I,II'`` is two single-lead subsets, unlike the one-subset ``--leads`` of probe and embed); a list
    gives one or more subsets per item (``['12', 'I+II', '6']``, or sequences of lead names).

    Args:
        items: That string, a list of such items, or None (all 12 leads).

    Returns:
        The subsets, resolved, in the order given, without repeats.

    Raises:
        ValueError: an unknown lead or preset, or an empty subset.
    """
    if items is None:
        return [LEADS]
    if isinstance(items, str):
        items = [items]
    out: List[Tuple[str, ...]] = []
    for item in items:
        subsets: Sequence[Any] = split_lead_sets(item) if isinstance(item, str) else [item]
        if not subsets:
            raise ValueError(f'Empty lead subset in {item!r}: name one, e.g. "12,6,1" or "12,I+II".')
        for subset in subsets:
            chosen = resolve_leads(subset)
            if chosen not in out:
                out.append(chosen)
    if not out:
        raise ValueError('No lead subset given: name at least one, e.g. 12 or 6.')
    return out


def leads_label(leads: Any) -> str:
    """A short label for a subset in tables: '12', '6' (the limb leads), '1' (lead I), else the leads joined by '+'.

    Args:
        leads: A lead subset, as :func:`~ecgvit.lead_sets.resolve_leads` reads it.
    """
    chosen = resolve_leads(leads)
    for name in ('12', '6', '1', 'precordial'):
        if LEAD_SET_PRESETS[name] == chosen:
            return name
    return '+'.join(chosen)
