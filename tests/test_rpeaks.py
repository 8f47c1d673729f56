"""The R-peak detector (ecgvit.data.rpeaks) against synthetic ECGs with known beat times."""
import numpy as np
import pytest

from ecgvit.data.rpeaks import detect_r_peaks, detect_r_peaks_batch, median_rr_samples
from ecgvit.data.synthetic import SYNTHETIC_CLASSES, synthesize_ecg

TOL_S = 0.05  # +-50 ms, the usual beat-matching window
EDGE_S = 0.1  # beats cut by the record's edges are ambiguous (is a half QRS a beat?) and are not scored


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)


def _match(det: np.ndarray, ref: np.ndarray, fs: float, n: int):
    """(true positives among refs, refs scored, true positives among detections, detections scored)."""
    edge = EDGE_S * fs
    ref = ref[(ref >= edge) & (ref < n - edge)]
    det = det[(det >= edge) & (det < n - edge)]
    if len(ref) == 0 or len(det) == 0:
        return 0, len(ref), 0, len(det)
    d = np.abs(det[:, None] - ref[None, :]) <= TOL_S * fs
    return int(d.any(0).sum()), len(ref), int(d.any(1).sum()), len(det)


@pytest.mark.parametrize('label', SYNTHETIC_CLASSES)
@pytest.mark.parametrize('fs', [360.0, 500.0])
def test_sensitivity_and_ppv_on_noisy_synthetic_ecgs(label, fs):
    rng = np.random.default_rng(0)
    tp_r = n_r = tp_d = n_d = 0
    for seed in range(12):
        ecg = synthesize_ecg(label, fs=fs, duration_s=10.0, rng=seed)
        x = _zscore(ecg.signal)
        x = x + rng.normal(0.0, 0.15, x.shape)  # extra white noise on top of the generator's own
        a, b, c, d = _match(detect_r_peaks(x, fs), ecg.r_peaks, fs, x.shape[1])
        tp_r, n_r, tp_d, n_d = tp_r + a, n_r + b, tp_d + c, n_d + d
    assert tp_r / n_r >= 0.98, f'sensitivity {tp_r}/{n_r}'
    assert tp_d / n_d >= 0.98, f'PPV {tp_d}/{n_d}'


def test_beats_are_located_on_the_r_wave():
    errors = []
    for seed, label in enumerate(SYNTHETIC_CLASSES * 2):
        ecg = synthesize_ecg(label, fs=500.0, duration_s=10.0, rng=100 + seed)
        det = detect_r_peaks(ecg.signal, 500.0)
        nearest = ecg.r_peaks[np.abs(det[:, None] - ecg.r_peaks[None]).argmin(1)]
        errors.append(np.abs(det - nearest) / 500.0)
    assert np.median(np.concatenate(errors)) <= 0.01  # median error within 10 ms


def test_batch_and_median_rr_match_single_record_and_fall_back():
    fs = 360.0
    ecgs = [synthesize_ecg(lab, fs=fs, duration_s=10.0, rng=7) for lab in ('NSR', 'ST')]
    batch = np.stack([_zscore(e.signal) for e in ecgs] + [np.zeros((12, 3600))])
    peaks = detect_r_peaks_batch(batch, fs)
    for b in range(2):
        assert np.array_equal(peaks[b], detect_r_peaks(batch[b], fs))
    assert peaks[2].size == 0  # flat record: no beats
    rr = median_rr_samples(batch, fs, fallback=288.0)
    for b, e in enumerate(ecgs):
        assert rr[b] == pytest.approx(np.median(np.diff(e.r_peaks)), rel=0.05)
    assert rr[2] == 288.0
    assert np.isnan(median_rr_samples(batch[2], fs))


def test_single_lead_and_errors():
    ecg = synthesize_ecg('SB', fs=250.0, duration_s=10.0, rng=3)
    lead_ii = ecg.signal[1]
    a, b, c, d = _match(detect_r_peaks(lead_ii, 250.0), ecg.r_peaks, 250.0, lead_ii.size)
    assert a == b and c == d
    with pytest.raises(ValueError, match='fs'):
        detect_r_peaks(lead_ii, 0.0)
    with pytest.raises(ValueError, match='detect_r_peaks_batch'):
        detect_r_peaks(np.zeros((2, 12, 100)), 250.0)
