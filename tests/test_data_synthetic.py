"""The synthetic ECG generator: shapes, determinism, class properties, WFDB output."""
import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgvit.constants import LEADS
from ecgvit.data import SYNTHETIC_CLASSES, make_synthetic, read_record, split_by_patient, synthesize_ecg


@pytest.mark.parametrize('label', SYNTHETIC_CLASSES)
def test_shapes_and_r_peaks(label):
    ecg = synthesize_ecg(label, fs=500.0, duration_s=10.0, rng=3)
    assert ecg.signal.shape == (12, 5000) and ecg.signal.dtype == np.float32
    assert ecg.r_peaks.dtype == np.int64 and np.all(np.diff(ecg.r_peaks) > 0)
    assert ecg.r_peaks.min() >= 0 and ecg.r_peaks.max() < 5000
    # Beat count agrees with the heart rate (10 s of beats).
    assert abs(len(ecg.r_peaks) - ecg.heart_rate_bpm / 6) <= 2
    # The largest deflection of lead II near each R peak is within 30 ms of it (the main R wave is there).
    lead_ii = ecg.signal[1] - np.median(ecg.signal[1])
    for r in ecg.r_peaks[(ecg.r_peaks > 50) & (ecg.r_peaks < 4950)]:
        win = np.abs(lead_ii[r - 50:r + 50])
        assert abs(int(np.argmax(win)) - 50) <= 15


def test_deterministic_and_seed_sensitive():
    a = synthesize_ecg('AF', rng=7)
    b = synthesize_ecg('AF', rng=7)
    c = synthesize_ecg('AF', rng=8)
    assert np.array_equal(a.signal, b.signal) and np.array_equal(a.r_peaks, b.r_peaks)
    assert not np.array_equal(a.signal, c.signal)


def test_leads_differ_and_obey_einthoven():
    sig = synthesize_ecg('NSR', rng=1).signal.astype(np.float64)
    corr = np.corrcoef(sig)
    assert np.sum(np.abs(corr[np.triu_indices(12, 1)]) > 0.999) == 0  # no two leads identical
    # Noise is added per electrode, so III - (II - I) is only noise-sized compared with the QRS.
    assert np.std(sig[2] - (sig[1] - sig[0])) < 0.2 * np.ptp(sig[1])


def test_class_properties():
    def rr_cv(label, seeds):
        out = []
        for s in seeds:
            rr = np.diff(synthesize_ecg(label, rng=s).r_peaks)
            out.append(np.std(rr) / np.mean(rr))
        return np.median(out)

    seeds = range(12)
    assert rr_cv('AF', seeds) > 2 * rr_cv('NSR', seeds)
    hr = {lab: np.median([synthesize_ecg(lab, rng=s).heart_rate_bpm for s in seeds]) for lab in ('SB', 'NSR', 'ST')}
    assert hr['SB'] < hr['NSR'] < hr['ST']


def test_bad_label_and_args():
    with pytest.raises(ValueError, match='Unknown synthetic ECG class'):
        synthesize_ecg('VT')
    with pytest.raises(ValueError, match='positive'):
        synthesize_ecg('NSR', fs=0)


def test_make_synthetic_writes_wfdb(tmp_path):
    root = make_synthetic(tmp_path / 'syn', n_records=12, seed=2, fs=250.0, duration_s=4.0)
    df = pd.read_csv(root / 'labels.csv')
    assert {'record', 'patient_id', 'label', 'split'} <= set(df.columns) and len(df) == 12
    assert set(df.label) <= set(SYNTHETIC_CLASSES)
    assert df.groupby('patient_id').split.nunique().max() == 1  # no patient crosses splits
    rec = read_record(root / df.record[0])
    assert rec.signal.shape == (12, 1000) and rec.fs == 250.0 and rec.lead_names == LEADS
    # The file holds what synthesize_ecg produced (rounded to the 1 uV grid of format 16).
    same = synthesize_ecg(df.label[0], fs=250.0, duration_s=4.0, rng=int(df.seed[0]))
    ann = wfdb.rdann(str(root / df.record[0]), 'atr')
    assert np.array_equal(ann.sample, same.r_peaks)
    assert np.max(np.abs(rec.signal - same.signal)) <= 0.0011
    # Same seed, same files.
    root2 = make_synthetic(tmp_path / 'syn2', n_records=12, seed=2, fs=250.0, duration_s=4.0)
    assert (root / 'syn00003.dat').read_bytes() == (root2 / 'syn00003.dat').read_bytes()


def test_split_by_patient():
    splits = split_by_patient([f'p{i}' for i in range(100)], seed=0)
    counts = pd.Series(splits).value_counts()
    assert counts['train'] == 70 and counts['val'] == 15 and counts['test'] == 15
    assert split_by_patient(['a', 'b', 'c'], seed=1) == split_by_patient(['c', 'b', 'a', 'a'], seed=1)
    with pytest.raises(ValueError, match='fractions'):
        split_by_patient(['a'], fractions=(0.5, 0.5, 0.5))
