"""Per-record age and sex in one form for every source: ``meta['age']`` float years (NaN if unknown) and
``meta['sex']`` 'M', 'F' or None.

Sources code them differently: PTB-XL's table has ``sex`` 0 (male) / 1 (female) and, from v1.0.3 on, ages over 89
coded as 300; LUDB writes 'M'/'F' and '>89'; the PhysioNet/CinC and CODE-15% headers write 'Male'/'Female' and
'NaN' for unknown ages. Ages are top-coded at 90 ("90 or over") wherever a source top-codes, so the same person is
not 300 in one source and 90 in another.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ['AGE_TOP_CODE', 'parse_age', 'parse_sex']

# HIPAA-style top code: PTB-XL v1.0.3 writes ages over 89 as 300, LUDB as '>89'; both mean "90 or over".
AGE_TOP_CODE = 90.0
_PTBXL_AGE_CODE = 300.0

_SEX = {'m': 'M', 'male': 'M', 'man': 'M', '0': 'M', 'f': 'F', 'female': 'F', 'woman': 'F', '1': 'F'}


def parse_age(value: Any, *, top_code: bool = False) -> float:
    """Age in years as a float, NaN when missing or not a number.

    Args:
        value: a number or a header/table cell ('74', '>89', 'NaN', 'Unknown', 300).
        top_code: map ages of 90 and over to 90.0 (PTB-XL: v1.0.1 rows hold 90 and 91, v1.0.3 rows the code 300 for
            the same "over 89"). The code 300 itself always maps to 90.

    Returns:
        Float years, or NaN.
    """
    if value is None:
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        if text.startswith('>'):  # '>89': over 89
            try:
                return max(float(text[1:]) + 1.0, AGE_TOP_CODE)
            except ValueError:
                return math.nan
        value = text
    try:
        age = float(value)
    except (TypeError, ValueError):
        return math.nan
    if not math.isfinite(age) or age < 0:
        return math.nan
    if age == _PTBXL_AGE_CODE or (top_code and age >= AGE_TOP_CODE):
        return AGE_TOP_CODE
    return age


def parse_sex(value: Any, *, numeric: bool = False) -> str | None:
    """'M', 'F' or None from 'Male'/'Female'/'M'/'F' (any case) or, with ``numeric``, PTB-XL's 0 (male) / 1 (female).

    Numbers are read only with ``numeric=True``: 0/1 mean male/female in PTB-XL, but no other source codes sex so.

    Args:
        value: The recorded value (a string, a number, None or NaN).
        numeric: Read 0 / 1 (numbers or their text) as PTB-XL's male / female.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not numeric or float(value) not in (0.0, 1.0):
            return None
        return 'M' if float(value) == 0.0 else 'F'
    text = str(value).strip().lower()
    if text in ('0', '1', '0.0', '1.0'):
        return ('M' if text.startswith('0') else 'F') if numeric else None
    return _SEX.get(text)


def age_sex(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``{'age': ..., 'sex': ...}`` parsed from a header's age / sex comments (the uniform ``Entry.meta`` keys)."""
    return {'age': parse_age(meta.get('age')), 'sex': parse_sex(meta.get('sex'))}
