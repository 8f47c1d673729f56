"""A deterministic synthetic 12-lead ECG generator with labelled rhythm/conduction classes.

Each beat is a sum of Gaussian waves (P, septal Q, R, S, T and, for bundle-branch block, a delayed terminal wave) on a
3-D heart dipole (x = leftward, y = inferior, z = anterior). Leads I and II and the six chest leads are projections of
that dipole, and III, aVR, aVL, aVF follow from Einthoven's and Goldberger's relations, so the 12 leads are genuinely
different yet as mutually consistent as a real recording. Heart rate, RR variability, per-record axis rotation,
white noise, electrode baseline wander and (for atrial fibrillation) fibrillatory waves make the classes learnable but
not trivial: the heart-rate ranges of neighbouring classes overlap and noise hides small waves.

Beat times are returned (and written as WFDB ``atr`` annotations), so the generator also tests R-peak detectors.

Example:
    >>> ecg = synthesize_ecg('AF', fs=500.0, duration_s=10.0, rng=0)
    >>> ecg.signal.shape
    (12, 5000)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgvit.constants import LEADS

__all__ = ['SYNTHETIC_CLASSES', 'SyntheticECG', 'synthesize_ecg', 'make_synthetic', 'split_by_patient']

SYNTHETIC_CLASSES: tuple[str, ...] = ('NSR', 'SB', 'ST', 'AF', 'BBB')

# Heart-rate ranges (bpm). They overlap on purpose: a record at 60 bpm may be NSR or SB, so heart rate alone does
# not separate the classes and a model has to look at morphology and rhythm as well.
_HR_RANGE: dict[str, tuple[float, float]] = {
    'NSR': (56.0, 104.0),
    'SB': (38.0, 62.0),
    'ST': (96.0, 160.0),
    'AF': (58.0, 150.0),
    'BBB': (50.0, 110.0),
}

# Chest-lead directions in the horizontal plane (degrees from leftward towards anterior), with a slight inferior tilt.
_CHEST_ANGLES_DEG = (115.0, 95.0, 75.0, 55.0, 30.0, 5.0)


@dataclass
class SyntheticECG:
    """One synthetic 12-lead record.

    Attributes:
        signal: float32 array (12, n_samples) in millivolts, canonical lead order (``ecgvit.constants.LEADS``).
        r_peaks: int64 sample indices of every R peak inside the record.
        fs: sampling rate in Hz.
        label: one of ``SYNTHETIC_CLASSES``.
        heart_rate_bpm: mean heart rate of the generated beats.
    """
    signal: np.ndarray
    r_peaks: np.ndarray
    fs: float
    label: str
    heart_rate_bpm: float


@dataclass
class _Wave:
    """One Gaussian wave of a beat: offset from the R peak (s), width (s), dipole direction and amplitude (mV)."""
    offset: float
    width: float
    direction: np.ndarray
    amplitude: float


def _unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A random rotation with angles up to ``max_deg`` about each axis: the spread of the heart's electrical axis."""
    ax, ay, az = np.deg2rad(rng.uniform(-max_deg, max_deg, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _beat_waves(label: str, rng: np.random.Generator, mean_rr: float) -> list[_Wave]:
    """The wave list of one record's beat template (timings scale with the record's mean RR)."""
    rot = _rotation(rng, 20.0)
    scale = rng.lognormal(0.0, 0.2)
    pr = rng.uniform(0.12, 0.20)  # PR interval (s)
    qtc = rng.uniform(0.38, 0.44)  # corrected QT (s); Bazett: QT = QTc * sqrt(RR)
    t_peak = qtc * np.sqrt(mean_rr) - 0.10  # T peak relative to the R peak
    qrs = 1.0
    if label == 'BBB':
        qrs = rng.uniform(1.6, 2.2)  # QRS of 120-170 ms instead of about 80 ms
    waves = [
        _Wave(-0.028 * qrs, 0.008 * qrs, _unit([-0.5, 0.2, 0.8]), 0.25),  # septal depolarisation (q in V6, r in V1)
        _Wave(0.0, 0.011 * qrs, _unit([0.75, 0.6, -0.3]), rng.uniform(1.0, 1.6)),  # main R
        _Wave(0.030 * qrs, 0.010 * qrs, _unit([-0.2, -0.3, -0.9]), rng.uniform(0.3, 0.7)),  # S
        # T is asymmetric: a slow upstroke and a faster return, as two overlapping Gaussians.
        _Wave(t_peak - 0.03, 0.055, _unit([0.6, 0.6, 0.25]), 0.18),
        _Wave(t_peak + 0.01, 0.035, _unit([0.6, 0.6, 0.25]), 0.16),
    ]
    if label != 'AF':
        waves.append(_Wave(-pr + 0.01, 0.022, _unit([0.5, 0.8, 0.15]), rng.uniform(0.10, 0.20)))  # P
    if label == 'BBB':
        if rng.random() < 0.5:  # right bundle-branch block: late anterior-rightward R' (rSR' in V1)
            late = _Wave(0.065 * qrs / 1.6, 0.014 * qrs, _unit([-0.5, 0.1, 0.85]), rng.uniform(0.4, 0.8))
        else:  # left bundle-branch block: late leftward-posterior forces (broad notched R in V6, deep QS in V1)
            late = _Wave(0.055 * qrs / 1.6, 0.016 * qrs, _unit([0.8, 0.1, -0.6]), rng.uniform(0.5, 0.9))
        waves.append(late)
        # Secondary repolarisation change: T discordant to the terminal QRS forces.
        for w in waves[3:5]:
            w.direction = _unit(0.3 * w.direction - late.direction)
    for w in waves:
        w.direction = rot @ w.direction
        w.amplitude *= scale
    return waves


def _rr_intervals(label: str, hr: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """RR intervals (s): sinus rhythm with respiratory modulation, or an irregularly irregular AF series."""
    mean_rr = 60.0 / hr
    if label == 'AF':
        # AF: RR intervals are independent draws with a large spread (coefficient of variation 12-30 %).
        cv = rng.uniform(0.12, 0.30)
        rr = mean_rr * (1.0 + cv * rng.standard_normal(n))
        return np.clip(rr, 0.28, 2.0)
    # Sinus: respiratory sinus arrhythmia (0.15-0.4 Hz) plus small beat-to-beat jitter. Some sinus records are
    # quite variable (up to 8 %), so RR variability alone is not a perfect AF marker either.
    rsa = rng.uniform(0.0, 0.08)
    resp_hz = rng.uniform(0.15, 0.4)
    phase = rng.uniform(0, 2 * np.pi)
    t = np.cumsum(np.full(n, mean_rr))
    rr = mean_rr * (1.0 + rsa * np.sin(2 * np.pi * resp_hz * t + phase) + 0.01 * rng.standard_normal(n))
    return np.clip(rr, 0.3, 2.5)


def _lead_matrix() -> np.ndarray:
    """(8, 3) projections of the heart dipole onto I, II and V1-V6."""
    rows = [[1.0, 0.0, 0.0], [np.cos(np.pi / 3), np.sin(np.pi / 3), 0.0]]
    for ang in np.deg2rad(_CHEST_ANGLES_DEG):
        rows.append([np.cos(ang), 0.15, np.sin(ang)])
    return np.asarray(rows)


def _to_12_leads(dipole: np.ndarray) -> np.ndarray:
    """(3, T) dipole -> (12, T) leads in canonical order, limb leads related by Einthoven/Goldberger."""
    base = _lead_matrix() @ dipole  # (8, T): I, II, V1..V6
    lead_i, lead_ii = base[0], base[1]
    lead_iii = lead_ii - lead_i
    avr = -(lead_i + lead_ii) / 2
    avl = lead_i - lead_ii / 2
    avf = lead_ii - lead_i / 2
    return np.vstack([lead_i, lead_ii, lead_iii, avr, avl, avf, base[2:]])


def _as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def synthesize_ecg(label: str, fs: float = 500.0, duration_s: float = 10.0,
                   rng: np.random.Generator | int | None = None) -> SyntheticECG:
    """Generate one synthetic 12-lead ECG of a given class.

    Args:
        label: one of ``SYNTHETIC_CLASSES``: 'NSR' (normal sinus), 'SB' (sinus bradycardia), 'ST' (sinus
            tachycardia), 'AF' (atrial fibrillation: irregular RR, no P wave, fibrillatory baseline), 'BBB' (bundle-
            branch block: wide QRS with a delayed terminal wave and discordant T).
        fs: sampling rate in Hz.
        duration_s: record length in seconds.
        rng: a numpy Generator, an integer seed, or None (fresh entropy). The same seed gives the same record.

    Returns:
        A ``SyntheticECG`` with a float32 (12, round(fs * duration_s)) signal in mV and the R-peak sample indices.

    Example:
        >>> synthesize_ecg('NSR', fs=360.0, rng=1).signal.shape
        (12, 3600)
    """
    if label not in SYNTHETIC_CLASSES:
        raise ValueError(f'Unknown synthetic ECG class {label!r}: use one of {SYNTHETIC_CLASSES}.')
    if not fs > 0 or not duration_s > 0:
        raise ValueError(f'fs and duration_s must be positive, got fs={fs!r}, duration_s={duration_s!r}.')
    gen = _as_generator(rng)
    n_samples = int(round(fs * duration_s))
    t = np.arange(n_samples) / fs

    hr = gen.uniform(*_HR_RANGE[label])
    mean_rr = 60.0 / hr
    n_beats = int(np.ceil(duration_s / 0.28)) + 4
    rr = _rr_intervals(label, hr, n_beats, gen)
    # Beats start before the record so the first samples already hold a partial beat, as in a real recording.
    beat_times = gen.uniform(-0.8, 0.0) * rr[0] + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    beat_times = beat_times[beat_times < duration_s + 1.0]
    waves = _beat_waves(label, gen, mean_rr)

    dipole = np.zeros((3, n_samples))
    beat_gain = 1.0 + 0.03 * gen.standard_normal(len(beat_times))  # beat-to-beat amplitude jitter
    for w in waves:
        # (n_beats, T) Gaussian per beat, summed over beats; cheap for 10-s records (~20 beats).
        d = (t[None, :] - (beat_times[:, None] + w.offset)) / w.width
        shape = (beat_gain[:, None] * np.exp(-0.5 * d * d)).sum(axis=0)
        dipole += w.amplitude * w.direction[:, None] * shape[None, :]
    if label == 'AF':
        # Fibrillatory waves (4-9 Hz), strongest in V1/inferior leads: a few drifting sinusoids along a fixed axis.
        f_axis = _unit([-0.2, 0.6, 0.75])
        fwave = np.zeros(n_samples)
        for _ in range(3):
            freq = gen.uniform(4.0, 9.0)
            drift = 0.3 * np.cumsum(gen.standard_normal(n_samples)) / fs  # slow frequency wander
            fwave += gen.uniform(0.02, 0.06) * np.sin(2 * np.pi * freq * t + drift + gen.uniform(0, 2 * np.pi))
        dipole += f_axis[:, None] * fwave[None, :]

    signal = _to_12_leads(dipole)
    # Per-electrode artefacts: baseline wander (respiration, motion, 0.05-0.5 Hz) and white noise of varying level.
    for lead in range(signal.shape[0]):
        for _ in range(2):
            f = gen.uniform(0.05, 0.5)
            signal[lead] += gen.uniform(0.0, 0.15) * np.sin(2 * np.pi * f * t + gen.uniform(0, 2 * np.pi))
    noise_mv = gen.uniform(0.005, 0.04)
    signal += noise_mv * gen.standard_normal(signal.shape)

    inside = beat_times[(beat_times >= 0) & (beat_times < duration_s)]
    r_peaks = np.unique(np.clip(np.round(inside * fs).astype(np.int64), 0, n_samples - 1))
    in_record = beat_times[(beat_times >= 0) & (beat_times < duration_s)]
    observed_hr = 60.0 / float(np.mean(np.diff(in_record))) if len(in_record) > 1 else hr
    return SyntheticECG(signal=signal.astype(np.float32), r_peaks=r_peaks, fs=float(fs), label=label,
                        heart_rate_bpm=float(observed_hr))


def split_by_patient(patient_ids: Sequence[str], seed: int = 0,
                     fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> dict[str, str]:
    """Assign each distinct patient to 'train', 'val' or 'test', deterministically for a seed.

    Args:
        patient_ids: patient id per record (repeats allowed).
        seed: permutation seed.
        fractions: train/val/test fractions of patients.

    Returns:
        A dict patient_id -> split; every record of one patient gets the same split.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f'fractions must be three non-negative numbers summing to 1, got {fractions!r}.')
    unique = sorted(set(str(p) for p in patient_ids))
    order = np.random.default_rng(seed).permutation(len(unique))
    n_train = int(round(fractions[0] * len(unique)))
    n_val = int(round(fractions[1] * len(unique)))
    splits = {}
    for rank, idx in enumerate(order):
        splits[unique[idx]] = 'train' if rank < n_train else 'val' if rank < n_train + n_val else 'test'
    return splits


def make_synthetic(out_dir: str | Path, n_records: int, seed: int = 0, fs: float = 500.0, duration_s: float = 10.0,
                   classes: Sequence[str] = SYNTHETIC_CLASSES) -> Path:
    """Write a labelled synthetic dataset as real WFDB records (format 16) plus ``labels.csv``.

    Each record ``synNNNNN`` gets a ``.hea``/``.dat`` pair (1000 adu/mV, 1 uV resolution), an ``atr`` annotation file
    with its R peaks, and a row in ``labels.csv`` (record, patient_id, label, split, fs, n_samples, heart_rate_bpm,
    seed). ``synthesize_ecg(label, fs, duration_s, rng=seed)`` regenerates a record exactly (R peaks included).
    About one patient in five has two records, and the train/val/test split (70/15/15 % of patients) is by patient,
    so no patient crosses splits. Classes are balanced (round-robin, then shuffled).

    Args:
        out_dir: folder to write into (created if missing).
        n_records: number of records.
        seed: seed for everything; the same seed writes identical files.
        fs: sampling rate in Hz.
        duration_s: record length in seconds.
        classes: subset of ``SYNTHETIC_CLASSES`` to draw from.

    Returns:
        ``Path(out_dir)``.

    Example:
        >>> import tempfile
        >>> root = make_synthetic(tempfile.mkdtemp(), n_records=5, seed=0)
        >>> sorted(p.name for p in root.glob('*.hea'))[:2]
        ['syn00000.hea', 'syn00001.hea']
    """
    import pandas as pd
    import wfdb

    classes = tuple(classes)
    unknown = [c for c in classes if c not in SYNTHETIC_CLASSES]
    if unknown or not classes:
        raise ValueError(f'Unknown synthetic classes {unknown!r}: choose a non-empty subset of {SYNTHETIC_CLASSES}.')
    if int(n_records) < 1:
        raise ValueError(f'n_records must be >= 1, got {n_records!r}.')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(seed)
    labels = [classes[i % len(classes)] for i in range(n_records)]
    gen.shuffle(labels)
    # Patients: most have one record, about one in five has two (consecutive record numbers).
    patient_ids, pid = [], 0
    for i in range(n_records):
        if i > 0 and gen.random() < 0.2 and patient_ids.count(patient_ids[-1]) == 1:
            patient_ids.append(patient_ids[-1])
        else:
            pid += 1
            patient_ids.append(f'P{pid:05d}')
    splits = split_by_patient(patient_ids, seed=seed)
    record_seeds = gen.integers(0, 2**63 - 1, size=n_records)

    rows = []
    for i in range(n_records):
        name = f'syn{i:05d}'
        ecg = synthesize_ecg(labels[i], fs=fs, duration_s=duration_s, rng=int(record_seeds[i]))
        # Round to the 1 uV grid first so wfdb's digitisation is exact and the file round-trips bit for bit.
        p_signal = np.round(ecg.signal.T.astype(np.float64) * 1000.0) / 1000.0
        wfdb.wrsamp(name, fs=fs, units=['mV'] * len(LEADS), sig_name=list(LEADS), p_signal=p_signal,
                    fmt=['16'] * len(LEADS), adc_gain=[1000.0] * len(LEADS), baseline=[0] * len(LEADS),
                    comments=[f'Label: {labels[i]}', f'Patient ID: {patient_ids[i]}',
                              f'Heart rate: {ecg.heart_rate_bpm:.1f}'],
                    write_dir=str(out))
        if len(ecg.r_peaks):
            wfdb.wrann(name, 'atr', ecg.r_peaks, symbol=['N'] * len(ecg.r_peaks), fs=fs, write_dir=str(out))
        rows.append({'record': name, 'patient_id': patient_ids[i], 'label': labels[i],
                     'split': splits[patient_ids[i]], 'fs': fs, 'n_samples': ecg.signal.shape[1],
                     'heart_rate_bpm': round(ecg.heart_rate_bpm, 2), 'seed': int(record_seeds[i])})
    pd.DataFrame(rows).to_csv(out / 'labels.csv', index=False)
    return out
