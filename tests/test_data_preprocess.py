"""Preprocessing: resampling keeps frequencies, z-score, crop/pad, NaN and empty-lead policies, model cfg checks."""
import json

import numpy as np
import pytest
from data_fixtures import sine_leads

from ecgvit.constants import LEADS
from ecgvit.data import IncompatibleDataError, Preprocessing, Record, RecordError
from ecgvit.data.preprocess import bandpass_filter, resample


def _record(sig, fs, names=LEADS, mask=None, rid='r'):
    return Record(signal=np.asarray(sig, dtype=np.float32), fs=fs, lead_names=tuple(names), record_id=rid,
                  lead_mask=mask)


def _peak_hz(x, fs):
    spec = np.abs(np.fft.rfft(x - x.mean()))
    return np.fft.rfftfreq(len(x), 1 / fs)[np.argmax(spec)]


@pytest.mark.parametrize('fs_in', [100.0, 250.0, 257.0, 400.0, 500.0, 1000.0])
def test_resampling_preserves_frequency_and_length(fs_in):
    n = int(fs_in * 10)
    sig = sine_leads(fs_in, n, freq=7.0)
    x = Preprocessing(normalize='none')(_record(sig, fs_in))
    assert x.shape == (12, 3600) and x.dtype == np.float32
    assert abs(_peak_hz(x[0], 360.0) - 7.0) < 0.15
    # Amplitude survives (away from the edges, where the anti-aliasing filter has no history).
    assert np.isclose(np.ptp(x[0, 200:-200]), 2.0, atol=0.05)


def test_resample_matches_scipy_and_is_identity_at_same_rate():
    from scipy.signal import resample_poly

    x = np.random.default_rng(0).standard_normal((3, 1000))
    assert np.allclose(resample(x, 500.0, 360.0), resample_poly(x, 18, 25, axis=-1))
    assert resample(x, 360.0, 360.0) is x


def test_zscore_per_lead():
    sig = sine_leads(360.0, 3600) * np.arange(1, 13)[:, None] + 5.0
    x = Preprocessing()(_record(sig, 360.0))
    assert np.allclose(x.mean(axis=1), 0, atol=1e-5) and np.allclose(x.std(axis=1), 1, atol=1e-3)


def test_crop_modes():
    fs, n = 360.0, 3600 * 3 + 100
    ramp = np.tile(np.arange(n, dtype=np.float64), (12, 1))
    rec = _record(ramp, fs)
    center = Preprocessing(normalize='none', crop='center')(rec)
    assert center[0, 0] == (n - 3600) // 2
    assert Preprocessing(normalize='none', crop='start')(rec)[0, 0] == 0
    r1 = Preprocessing(normalize='none', crop='random')(rec, rng=1)
    r2 = Preprocessing(normalize='none', crop='random')(rec, rng=1)
    assert np.array_equal(r1, r2) and 0 <= r1[0, 0] <= n - 3600
    windows = Preprocessing(normalize='none', crop='windows')(rec)
    assert isinstance(windows, list) and len(windows) == 3 and [w[0, 0] for w in windows] == [0, 3600, 7200]
    half = Preprocessing(normalize='none', crop='windows', window_stride=1800)(rec)
    assert len(half) == 5


def test_short_records_error_or_pad():
    rec = _record(sine_leads(360.0, 3000), 360.0)
    with pytest.raises(RecordError, match=r"3000 samples.*shorter than the target 3600.*pad='zero'"):
        Preprocessing()(rec)
    x = Preprocessing(pad='zero')(rec)
    assert x.shape == (12, 3600) and np.all(x[:, :300] == 0) and np.all(x[:, -300:] == 0)
    assert np.allclose(x[:, 300:3300].std(axis=1), 1, atol=1e-3)  # statistics of the real part only
    e = Preprocessing(pad='edge', normalize='none')(rec)
    assert np.all(e[:, :300] == e[:, 300:301])
    assert len(Preprocessing(pad='zero', crop='windows')(rec)) == 1


def test_nan_policies():
    sig = sine_leads(360.0, 3600)
    sig[2, 100:110] = np.nan
    sig[5, 7] = np.inf
    rec = _record(sig, 360.0)
    x = Preprocessing(nan_policy='interpolate')(rec)
    assert np.isfinite(x).all()
    assert np.isfinite(Preprocessing(nan_policy='zero')(rec)).all()
    with pytest.raises(RecordError, match=r"11 NaN/inf samples in leads \['III', 'aVF'\]"):
        Preprocessing(nan_policy='error')(rec)


@pytest.mark.parametrize('kind, fill', [('all zero', 0.0), ('all NaN', np.nan), ('constant', 3.0)])
def test_empty_leads(kind, fill):
    sig = sine_leads(360.0, 3600)
    sig[4] = fill
    rec = _record(sig, 360.0)
    with pytest.raises(RecordError, match=rf"empty leads \['aVL'\] \({kind}\).*empty_lead_policy='zero'"):
        Preprocessing()(rec)
    x = Preprocessing(empty_lead_policy='zero')(rec)
    assert np.all(x[4] == 0) and np.isfinite(x).all() and np.allclose(x[0].std(), 1, atol=1e-3)


def test_lead_selection_and_zero_filled_leads():
    sig = sine_leads(360.0, 3600)
    rec = _record(sig[::-1], 360.0, names=[n.upper() for n in LEADS[::-1]])
    x = Preprocessing(normalize='none')(rec)
    assert np.allclose(x, sig, atol=1e-5)
    mask = np.ones(12, bool)
    mask[3] = False
    masked = sig.copy()
    masked[3] = 0
    y = Preprocessing()(_record(masked, 360.0, mask=mask))  # a zero-filled lead is not an "empty lead" error
    assert np.all(y[3] == 0)
    two = _record(sig[:2], 360.0, names=('I', 'II'))
    with pytest.raises(RecordError, match="missing leads.*missing_leads='zero'"):
        Preprocessing()(two)
    z = Preprocessing(missing_leads='zero')(two)
    assert z.shape == (12, 3600) and not z[2:].any()
    assert Preprocessing(leads=('II', 'I'), normalize='none')(two).shape == (2, 3600)


def test_bandpass_removes_baseline_wander():
    fs = 360.0
    t = np.arange(3600) / fs
    slow, fast = np.sin(2 * np.pi * 0.1 * t), np.sin(2 * np.pi * 10 * t)
    y = bandpass_filter(np.stack([slow + fast]), fs, 0.5, 40.0)[0]
    assert np.abs(y - fast)[400:-400].max() < 0.1
    with pytest.raises(ValueError, match='Nyquist'):
        Preprocessing(bandpass=(0.5, 200.0))
    x = Preprocessing(bandpass=(0.5, 40.0))(_record(np.tile(slow + fast, (12, 1)), fs))
    assert abs(_peak_hz(x[0], fs) - 10.0) < 0.2


def test_json_roundtrip_and_validation():
    pp = Preprocessing(sampling_rate=500, num_samples=5000, bandpass=(0.5, 45), crop='random', pad='zero')
    d = json.loads(json.dumps(pp.to_dict()))
    assert Preprocessing.from_dict(d) == pp and Preprocessing.from_dict(d).fingerprint() == pp.fingerprint()
    assert Preprocessing().fingerprint() != pp.fingerprint()
    with pytest.raises(ValueError, match=r"Unknown Preprocessing settings \['resample'\]"):
        Preprocessing.from_dict({'resample': True})
    with pytest.raises(ValueError, match="crop='middle' is not supported"):
        Preprocessing(crop='middle')
    with pytest.raises(ValueError, match='sampling_rate'):
        Preprocessing(sampling_rate=0)
    with pytest.raises(ValueError, match='distinct'):
        Preprocessing(leads=('I', 'i'))
    with pytest.raises(RecordError, match='unknown sampling rate'):
        Preprocessing()(_record(np.ones((12, 10)), float('nan')))


# A dict shaped like an EcgPretrainedCfg's (data code never imports the model package).
MODEL_CFG = {'input_size': (12, 1, 3600), 'sampling_rate': 360.0, 'duration_s': 10.0, 'lead_names': LEADS,
             'normalization': 'zscore_per_lead', 'preprocessing': None}


def test_check_compatible():
    Preprocessing().check_compatible(MODEL_CFG)
    with pytest.raises(IncompatibleDataError) as err:
        Preprocessing(sampling_rate=500, num_samples=5000, leads=('I', 'II'), normalize='none').check_compatible(
            MODEL_CFG)
    msg = str(err.value)
    for part in ('sampling rate: data 500 Hz, model 360 Hz', 'length: data 5000 samples, model 3600',
                 "leads: data ['I', 'II']", 'normalisation', 'Fix:', 'sampling_rate=360.0',
                 'from_pretrained_cfg'):
        assert part in msg
    with_pp = dict(MODEL_CFG, preprocessing=Preprocessing(bandpass=(0.5, 40.0)).to_dict())
    with pytest.raises(IncompatibleDataError, match='band-pass'):
        Preprocessing().check_compatible(with_pp)
    assert Preprocessing.from_pretrained_cfg(with_pp).bandpass == (0.5, 40.0)
    assert Preprocessing.from_pretrained_cfg(MODEL_CFG) == Preprocessing()
    with pytest.raises(TypeError, match='pretrained cfg dict'):
        Preprocessing().check_compatible(42)
