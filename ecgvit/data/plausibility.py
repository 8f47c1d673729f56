"""Is this an ECG in millivolts at the rate its header says? Amplitude and heart-rate checks that name the likely fix.

Files that read without error can still be wrong in ways no reader sees: samples in microvolts under a ``mV`` unit
(the field's most reported preprocessing bug: every value 1000 times too large), volts under ``mV``, or a header
rate that is not the rate the samples were taken at (50 Hz written for 100 Hz data: every beat looks twice as long,
the heart rate half). A model trains on such data without complaint. These checks look at what every 12-lead ECG
has, QRS amplitudes of about 0.3-5 mV and a heart rate of about 30-220 bpm, and say what is off and what to fix.
They warn; ``build_cache(..., plausibility='strict')`` refuses instead.

Example:
    >>> from ecgvit.data.plausibility import check_record
    >>> check_record(read_record('my/rec'))['problems']  # doctest: +SKIP
    ['median lead amplitude 1480 mV: ... likely microvolts labelled mV; ...']
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from .records import Record

__all__ = ['check_record', 'summarize', 'AMPLITUDE_MV', 'HEART_RATE_BPM', 'PLAUSIBILITY_MODES']

PLAUSIBILITY_MODES = ('warn', 'strict', 'off')
# Median over leads of the robust peak-to-peak amplitude (0.5th to 99.5th percentile). Real 12-lead records: about
# 0.3-5 mV; limits leave an order of magnitude either side before calling a unit wrong.
AMPLITUDE_MV = (0.03, 40.0)
# Median RR of detected beats. Below 25 bpm or above 250 bpm a record is far more likely misdated than real.
HEART_RATE_BPM = (25.0, 250.0)
# For a whole dataset, a median outside this range means the rate is off for (almost) every record: real collections
# have medians of about 60-80 bpm, one with the rate doubled or halved in every header lands outside.
DATASET_HEART_RATE_BPM = (45.0, 150.0)
# No ECG recorder in use samples below 100 Hz (QRS content reaches 40 Hz and more); a lower declared rate is a typo or
# a unit mix-up in the header, and the R-peak detector is not reliable there either.
MIN_ECG_RATE_HZ = 100.0
_COMMON_RATES = (100.0, 125.0, 128.0, 200.0, 250.0, 257.0, 300.0, 360.0, 400.0, 500.0, 1000.0)
_MAX_SECONDS = 12.0  # the check looks at the first 12 s of a long record: enough beats, bounded cost
# 2 s at the declared rate: a record misdated upwards (500 Hz samples under 2000 Hz) looks that short, and still holds
# the 3 beats an estimate needs.
_MIN_RATE_SECONDS = 2.0
_RATE_LEADS = 6  # each of the 6 largest leads alone, and the 3 largest together
_TYPICAL_BPM = 75.0
_GUESS_BPM = (40.0, 150.0)  # a suggested rate must give a heart rate in this range


def _amplitude_mv(x: np.ndarray) -> float | None:
    """Median over leads of the robust peak-to-peak amplitude (0.5th to 99.5th percentile); flat leads left out."""
    if x.size == 0:
        return None
    if np.isfinite(x).all():
        lo, hi = np.percentile(x, [0.5, 99.5], axis=1)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN leads give NaN, dropped below
            lo, hi = np.nanpercentile(x, [0.5, 99.5], axis=1)
    amps = (hi - lo)[np.isfinite(hi - lo) & (hi > lo)]
    return float(np.median(amps)) if amps.size else None


def _heart_rate_bpm(x: np.ndarray, fs: float) -> float | None:
    x = np.nan_to_num(x)
    spread = np.ptp(x, axis=1)
    x = x[np.argsort(spread)[::-1][:_RATE_LEADS]]
    x = x[np.ptp(x, axis=1) > 0]
    if x.shape[0] == 0 or x.shape[1] < _MIN_RATE_SECONDS * fs or fs < 20:
        return None  # too short (or too coarse) for a rate estimate
    # The beats are in every lead: the 3 largest together are enough for almost every record.
    combined = _rate_of(x[:3], fs)
    if combined is not None and HEART_RATE_BPM[0] <= combined <= HEART_RATE_BPM[1]:
        return combined
    # Where ectopic beats dwarf the normal ones a lead finds only those (PTB-XL 833, LBBB with PVCs: 19 bpm in II,
    # III and aVF, 95 in the others); a wrong rate scales every lead alike, so the most typical estimate is the
    # record's. A rate wrong for a whole folder still shows in the median over records (summarize).
    estimates = [hr for hr in [combined] + [_rate_of(x[i:i + 1], fs) for i in range(x.shape[0])] if hr is not None]
    return min(estimates, key=lambda hr: abs(np.log(hr / _TYPICAL_BPM))) if estimates else None


def _rate_of(leads: np.ndarray, fs: float) -> float | None:
    """Heart rate from the median RR of the R peaks detected in ``leads`` together; None below 3 peaks."""
    from .rpeaks import detect_r_peaks

    peaks = detect_r_peaks(leads, fs, refractory_s=0.2)
    return float(60.0 * fs / np.median(np.diff(peaks))) if peaks.size >= 3 else None


def _likely_rate(fs: float, hr: float) -> float | None:
    """The common sampling rate under which the record's heart rate would be a typical 75 bpm; None when even that
    rate gives an atypical one (the rate is not the only thing wrong, or the beats were miscounted)."""
    want = fs * _TYPICAL_BPM / hr
    guess = min(_COMMON_RATES, key=lambda r: abs(np.log(r / want)))
    return guess if _GUESS_BPM[0] <= hr * guess / fs <= _GUESS_BPM[1] else None


def check_record(record: Record) -> dict[str, Any]:
    """Amplitude and heart-rate plausibility of one record (as read: millivolts at ``record.fs``).

    Args:
        record: The record; leads its ``lead_mask`` marks absent are left out, and only its first 12 s are read.

    Returns:
        ``{'record_id', 'amplitude_mv', 'heart_rate_bpm', 'problems'}``: the median robust peak-to-peak amplitude
        over leads, the heart rate from detected R peaks (None when they cannot be measured) and a list of problems,
        each saying what is off and the likely fix (empty when the record looks like an ECG in mV).
    """
    x = np.asarray(record.signal, dtype=np.float64)
    if record.lead_mask is not None:
        x = x[np.asarray(record.lead_mask, dtype=bool)]
    fs = float(record.fs)
    x = x[:, :int(_MAX_SECONDS * fs)] if fs > 0 else x
    amp = _amplitude_mv(x)
    hr = _heart_rate_bpm(x, fs) if fs >= MIN_ECG_RATE_HZ else None
    problems = []
    where = f' (file {record.path}.hea)' if record.path else ''
    if fs < MIN_ECG_RATE_HZ:
        problems.append(f'declared sampling rate {fs:g} Hz is below {MIN_ECG_RATE_HZ:g} Hz, lower than any ECG '
                        f'recorder uses: the rate is likely wrong (e.g. 50 Hz written for 100 Hz data, which makes '
                        f'every beat look twice as long). Fix the rate on the header\'s first line{where}.')
    if amp is not None and amp > AMPLITUDE_MV[1]:
        factor = '1000' if amp > 300 else '10-100'
        problems.append(f'median lead amplitude {amp:.4g} mV is {factor} times that of an ECG (about 0.3-5 mV): the '
                        f'samples are likely in microvolts labelled mV (or the gain is too small). Fix the units '
                        f'field of the header\'s signal lines (uV) or the gain{where}.')
    elif amp is not None and amp < AMPLITUDE_MV[0]:
        problems.append(f'median lead amplitude {amp:.3g} mV is far below that of an ECG (about 0.3-5 mV): the '
                        f'samples are likely in volts labelled mV (or the gain is too large). Fix the units field of '
                        f'the header\'s signal lines (V) or the gain{where}.')
    if hr is not None and not HEART_RATE_BPM[0] <= hr <= HEART_RATE_BPM[1]:
        guess = _likely_rate(fs, hr)
        likely = (f'the sampling rate is likely wrong ({guess:g} Hz would give {hr * guess / fs:.0f} bpm). Fix the '
                  f'rate on the header\'s first line{where}.' if guess is not None else
                  f'the sampling rate or the signal is likely wrong (no common rate gives a typical heart rate). '
                  f'Check the rate on the header\'s first line and the samples{where}.')
        problems.append(f'heart rate {hr:.0f} bpm at the declared {fs:g} Hz is not plausible: {likely}')
    return {'record_id': record.record_id, 'amplitude_mv': amp, 'heart_rate_bpm': hr, 'problems': problems}


def summarize(results: Sequence[dict[str, Any]], name: str = 'dataset') -> dict[str, Any]:
    """Combine ``check_record`` results of a dataset.

    Args:
        results: One :func:`check_record` result per record.
        name: The dataset's name, for the messages.

    Returns:
        ``{'checked', 'median_amplitude_mv', 'median_heart_rate_bpm', 'flagged': [{'record_id', 'problem'}],
        'dataset_problems': [...]}``. A dataset problem is raised by the median over records, which catches a rate
        or unit that is wrong for every record even where each record alone is borderline.
    """
    amps = [r['amplitude_mv'] for r in results if r.get('amplitude_mv') is not None]
    hrs = [r['heart_rate_bpm'] for r in results if r.get('heart_rate_bpm') is not None]
    flagged = [{'record_id': r['record_id'], 'problem': p} for r in results for p in r.get('problems', [])]
    med_amp = float(np.median(amps)) if amps else None
    med_hr = float(np.median(hrs)) if hrs else None
    problems = []
    if med_hr is not None and len(hrs) >= 3 and not DATASET_HEART_RATE_BPM[0] <= med_hr <= DATASET_HEART_RATE_BPM[1]:
        problems.append(f'{name}: the median heart rate over {len(hrs)} records is {med_hr:.0f} bpm, outside '
                        f'{DATASET_HEART_RATE_BPM[0]:g}-{DATASET_HEART_RATE_BPM[1]:g}: the sampling rate of these '
                        f'records is probably wrong (e.g. 50 Hz written for 100 Hz data halves every heart rate). '
                        f'Check the rate on the headers\' first line.')
    if med_amp is not None and len(amps) >= 3 and not AMPLITUDE_MV[0] <= med_amp <= AMPLITUDE_MV[1]:
        problems.append(f'{name}: the median lead amplitude over {len(amps)} records is {med_amp:.4g} mV, not that '
                        f'of an ECG (about 0.3-5 mV): the units or gains in the headers are probably wrong '
                        f'(microvolts or volts labelled mV).')
    return {'checked': len(results), 'median_amplitude_mv': med_amp, 'median_heart_rate_bpm': med_hr,
            'flagged': flagged, 'dataset_problems': problems}
