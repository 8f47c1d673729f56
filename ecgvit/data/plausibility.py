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
# The autocorrelation estimate reads up to 4x the detector's span: a record dated 4x too low shows only 3 s of its
# beats in the first 12 s at the declared rate, too few lags for a slow heart.
_AUTOCORR_SECONDS = 4 * _MAX_SECONDS
_HARMONIC_TIE = 0.8  # a peak at a shorter lag this close to the highest is the beat, the highest its multiple
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


def _largest_leads(x: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` leads of widest peak-to-peak range, widest first, NaNs read as 0 and flat leads left out.

    The beats are largest where the leads point along the heart's axis; which leads those are differs by record.
    """
    x = np.nan_to_num(x)
    x = x[np.argsort(np.ptp(x, axis=1))[::-1][:n]]
    return x[np.ptp(x, axis=1) > 0]


def _heart_rate_bpm(x: np.ndarray, fs: float) -> float | None:
    x = _largest_leads(x, _RATE_LEADS)
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


def _autocorr_heart_rate_bpm(x: np.ndarray, fs: float) -> float | None:
    """Heart rate from the period of the signal's slope energy (the lag of its autocorrelation's first beat peak).

    The R-peak detector filters, and waits out its refractory period, in Hz and seconds of the declared rate, so where
    that rate is 3-4 times too low its beats come out erratic (LUDB's 500-Hz records read as 125 Hz: a median of 124
    bpm instead of 16). This estimate has no band or time limit, only the signal's own repetition, so it scales with
    a wrong rate as the true heart rate would. It is wrong on 1-4 % of real records (a multiple of the beat picked on
    noisy or irregular ones), so it is read only as the median of a dataset (:func:`summarize`), never per record.
    """
    x = _largest_leads(x, 3)
    energy = np.abs(np.diff(x, axis=1)).sum(axis=0)
    n = energy.size
    if n < 8 or n < _MIN_RATE_SECONDS * fs:
        return None
    energy = energy - energy.mean()
    spec = np.fft.rfft(energy, 2 * n)
    r = np.fft.irfft(spec * np.conj(spec))[:n]
    if r[0] <= 0:
        return None  # constant slope: nothing repeats
    r = r / r[0]
    # The central lobe (the QRS resembling itself a few samples on) ends where r first turns negative; the beat
    # repeats after that. Lags beyond half the record rest on too few beats.
    negative = np.flatnonzero(r < 0)
    if negative.size == 0:
        return None
    lo, hi = max(2, int(negative[0])), n // 2
    seg = r[lo:hi]
    if seg.size < 3:
        return None
    peaks = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    if peaks.size == 0 or seg[peaks].max() <= 0:
        return None
    beat = peaks[seg[peaks] >= _HARMONIC_TIE * seg[peaks].max()].min() + lo
    return float(60.0 * fs / beat)


def _likely_rate(fs: float, hr: float) -> float | None:
    """The common sampling rate under which the record's heart rate would be a typical 75 bpm; None when even that
    rate gives an atypical one (the rate is not the only thing wrong, or the beats were miscounted)."""
    want = fs * _TYPICAL_BPM / hr
    guess = min(_COMMON_RATES, key=lambda r: abs(np.log(r / want)))
    return guess if _GUESS_BPM[0] <= hr * guess / fs <= _GUESS_BPM[1] else None


def check_record(record: Record) -> dict[str, Any]:
    """Amplitude and heart-rate plausibility of one record (as read: millivolts at ``record.fs``).

    Args:
        record: The record; leads its ``lead_mask`` marks absent are left out, and only its first 12 s are read
            (48 s for the period estimate).

    Returns:
        ``{'record_id', 'amplitude_mv', 'heart_rate_bpm', 'autocorr_heart_rate_bpm', 'problems'}``: the median
        robust peak-to-peak amplitude over leads, the heart rate from detected R peaks (None when they cannot be
        measured), the heart rate from the signal's period (first 48 s; read by :func:`summarize` only) and a list of
        problems, each saying what is off and the likely fix (empty when the record looks like an ECG in mV).
    """
    x = np.asarray(record.signal, dtype=np.float64)
    if record.lead_mask is not None:
        x = x[np.asarray(record.lead_mask, dtype=bool)]
    fs = float(record.fs)
    beats = _autocorr_heart_rate_bpm(x[:, :int(_AUTOCORR_SECONDS * fs)], fs) if fs >= MIN_ECG_RATE_HZ else None
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
    return {'record_id': record.record_id, 'amplitude_mv': amp, 'heart_rate_bpm': hr,
            'autocorr_heart_rate_bpm': beats, 'problems': problems}


def summarize(results: Sequence[dict[str, Any]], name: str = 'dataset') -> dict[str, Any]:
    """Combine ``check_record`` results of a dataset.

    Args:
        results: One :func:`check_record` result per record.
        name: The dataset's name, for the messages.

    Returns:
        ``{'checked', 'median_amplitude_mv', 'median_heart_rate_bpm', 'median_autocorr_heart_rate_bpm',
        'flagged': [{'record_id', 'problem'}], 'dataset_problems': [...]}``. A dataset problem is raised by the median
        over records, which catches a rate or unit that is wrong for every record even where each record alone is
        borderline: the median of the detected heart rates, or, where that one looks typical, the median of the
        autocorrelation estimates (a rate 3-4x too low leaves the detector erratic, not slow).
    """
    amps = [r['amplitude_mv'] for r in results if r.get('amplitude_mv') is not None]
    hrs = [r['heart_rate_bpm'] for r in results if r.get('heart_rate_bpm') is not None]
    flagged = [{'record_id': r['record_id'], 'problem': p} for r in results for p in r.get('problems', [])]
    med_amp = float(np.median(amps)) if amps else None
    beats = [r['autocorr_heart_rate_bpm'] for r in results if r.get('autocorr_heart_rate_bpm') is not None]
    med_hr = float(np.median(hrs)) if hrs else None
    med_beats = float(np.median(beats)) if beats else None
    problems = []
    lo, hi = DATASET_HEART_RATE_BPM
    if med_hr is not None and len(hrs) >= 3 and not lo <= med_hr <= hi:
        problems.append(f'{name}: the median heart rate over {len(hrs)} records is {med_hr:.0f} bpm, outside '
                        f'{lo:g}-{hi:g}: the sampling rate of these records is probably wrong (e.g. 50 Hz written '
                        f'for 100 Hz data halves every heart rate). Check the rate on the headers\' first line.')
    elif med_beats is not None and len(beats) >= 3 and not lo <= med_beats <= hi:
        detected = ('' if med_hr is None else
                    f' (the R-peak detector, whose filter assumes the declared rate, finds {med_hr:.0f} bpm)')
        problems.append(f'{name}: the median heart rate over {len(beats)} records, from the period of the signals, '
                        f'is {med_beats:.0f} bpm, outside {lo:g}-{hi:g}{detected}: the sampling rate of these '
                        f'records is probably wrong (e.g. 125 Hz written for 500 Hz data quarters every heart '
                        f'rate). Check the rate on the headers\' first line.')
    if med_amp is not None and len(amps) >= 3 and not AMPLITUDE_MV[0] <= med_amp <= AMPLITUDE_MV[1]:
        problems.append(f'{name}: the median lead amplitude over {len(amps)} records is {med_amp:.4g} mV, not that '
                        f'of an ECG (about 0.3-5 mV): the units or gains in the headers are probably wrong '
                        f'(microvolts or volts labelled mV).')
    return {'checked': len(results), 'median_amplitude_mv': med_amp, 'median_heart_rate_bpm': med_hr,
            'median_autocorr_heart_rate_bpm': med_beats, 'flagged': flagged, 'dataset_problems': problems}
