"""Reading records: WFDB and challenge .mat layouts, lead aliasing and order, and every bad-file error."""
import numpy as np
import pytest
import wfdb
from data_fixtures import sine_leads, write_challenge, write_wfdb

from ecgvit.constants import LEADS
from ecgvit.data import MissingLeadsError, RecordError, RecordFileNotFoundError, canonical_lead_name, read_record


def test_roundtrip_matches_wfdb(tmp_path):
    sig = sine_leads(500.0, 2000)
    base = write_wfdb(tmp_path, 'r1', sig, 500.0, comments=['Patient ID: 7', 'Label: AF'])
    rec = read_record(base)
    ref, _ = wfdb.rdsamp(str(base))
    assert rec.signal.dtype == np.float32 and rec.signal.shape == (12, 2000)
    assert np.allclose(rec.signal, ref.T, atol=1e-6)
    assert rec.fs == 500.0 and rec.lead_names == LEADS and rec.lead_mask is None
    assert rec.metadata['patient_id'] == '7' and rec.metadata['label'] == 'AF'
    assert read_record(str(base) + '.hea').record_id == 'r1'  # extension optional


@pytest.mark.parametrize('raw, canon', [('AVR', 'aVR'), ('avl', 'aVL'), ('aVF', 'aVF'), ('v1', 'V1'), ('i', 'I'),
                                        ('III', 'III'), ('Lead II', 'II'), ('D3', 'III'), ('vx', 'vx')])
def test_lead_aliases(raw, canon):
    assert canonical_lead_name(raw) == canon


def test_reorders_aliased_leads(tmp_path):
    sig = sine_leads(250.0, 500)
    order = [11, 3, 0, 7, 1, 2, 4, 5, 6, 8, 9, 10]
    names = [LEADS[k].upper() if k % 2 else LEADS[k].lower() for k in order]
    base = write_wfdb(tmp_path, 'shuffled', sig[order], 250.0, lead_names=names)
    rec = read_record(base)
    assert rec.lead_names == LEADS
    assert np.allclose(rec.signal, sig, atol=1e-3)
    sub = read_record(base, leads=('V6', 'avr'))
    assert sub.lead_names == ('V6', 'aVR') and np.allclose(sub.signal, sig[[11, 3]], atol=1e-3)
    native = read_record(base, leads=None)
    assert native.lead_names[0] == 'V6'


def test_missing_leads_error_or_zero_fill(tmp_path):
    sig = sine_leads(250.0, 500, n_leads=8)
    names = ['I', 'II', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6']
    base = write_wfdb(tmp_path, 'eight', sig, 250.0, lead_names=names)
    with pytest.raises(MissingLeadsError, match=r"missing leads \['III', 'aVR', 'aVL', 'aVF'\].*missing_leads='zero'"):
        read_record(base)
    rec = read_record(base, missing_leads='zero')
    assert rec.signal.shape == (12, 500)
    assert rec.lead_mask.tolist() == [True, True, False, False, False, False] + [True] * 6
    assert not rec.signal[2:6].any()
    with pytest.raises(ValueError, match='missing_leads'):
        read_record(base, missing_leads='ignore')


def test_challenge_mat_layout(tmp_path):
    sig = sine_leads(500.0, 1500)
    base = write_challenge(tmp_path, 'A0001', sig, 500.0, dx=['164889003'])
    rec = read_record(base)
    assert rec.signal.shape == (12, 1500) and rec.fs == 500.0
    assert np.allclose(rec.signal, np.round(sig * 1000) / 1000, atol=1e-6)
    assert rec.metadata['dx'] == '164889003'
    ref, _ = wfdb.rdsamp(str(base))  # wfdb agrees with our .mat reader
    assert np.allclose(rec.signal, ref.T, atol=1e-6)


def test_missing_header_and_signal_files(tmp_path):
    with pytest.raises(RecordFileNotFoundError, match='header file .*nothere.hea not found'):
        read_record(tmp_path / 'nothere')
    base = write_wfdb(tmp_path, 'r', sine_leads(250.0, 300), 250.0)
    (tmp_path / 'r.dat').unlink()
    with pytest.raises(RecordFileNotFoundError, match='signal file .*r.dat named in the header is missing'):
        read_record(base)
    mat = write_challenge(tmp_path, 'm', sine_leads(250.0, 300), 250.0, dx=['426783006'])
    (tmp_path / 'm.mat').unlink()
    with pytest.raises(FileNotFoundError, match=r'm\.mat'):
        read_record(mat)


def test_truncated_files(tmp_path):
    base = write_wfdb(tmp_path, 'r', sine_leads(250.0, 1000), 250.0)
    dat = tmp_path / 'r.dat'
    dat.write_bytes(dat.read_bytes()[:5000])
    with pytest.raises(RecordError, match='truncated.*5000 bytes.*24000'):
        read_record(base)
    mat = write_challenge(tmp_path, 'm', sine_leads(250.0, 1000), 250.0, dx=['426783006'])
    p = tmp_path / 'm.mat'
    p.write_bytes(p.read_bytes()[:3000])
    with pytest.raises(RecordError, match='m'):
        read_record(mat)


def test_corrupt_headers(tmp_path):
    base = write_wfdb(tmp_path, 'r', sine_leads(250.0, 300), 250.0)
    hea = tmp_path / 'r.hea'
    good = hea.read_text()
    lines = good.splitlines()
    hea.write_text('\n'.join([lines[0]] + lines[1:5]) + '\n')  # 4 of 12 signal lines
    with pytest.raises(RecordError, match='declares 12 signals but has 4 signal lines'):
        read_record(base)
    hea.write_text('r 12\n' + '\n'.join(lines[1:]) + '\n')  # wfdb would silently assume 250 Hz
    with pytest.raises(RecordError, match='no sampling rate'):
        read_record(base)
    hea.write_text(good.replace('r 12 250', 'r 12 -5', 1))
    with pytest.raises(RecordError, match='not a positive number'):
        read_record(base)
    hea.write_text('# only a comment\n')
    with pytest.raises(RecordError, match='no record line'):
        read_record(base)
    hea.write_text(good.replace('1000.0(0)/mV', 'abc(0)/mV', 1))
    with pytest.raises(RecordError, match='corrupt header'):
        read_record(base)


def test_duplicate_and_unnamed_leads(tmp_path):
    names = list(LEADS)
    names[3] = 'AVL'  # two aVL after aliasing
    base = write_wfdb(tmp_path, 'dup', sine_leads(250.0, 300), 250.0, lead_names=names)
    with pytest.raises(RecordError, match=r"lead names \['aVL'\] occur more than once"):
        read_record(base)


def test_units_and_invalid_samples(tmp_path):
    sig = sine_leads(250.0, 300) * 1000.0  # microvolts
    base = write_wfdb(tmp_path, 'uv', sig, 250.0, units='uV', gain=1.0)
    rec = read_record(base)
    assert np.allclose(rec.signal, sig / 1000.0, atol=1e-3)
    # WFDB's invalid-sample code (-32768 in format 16) reads as NaN, so preprocessing can repair it.
    raw = np.fromfile(tmp_path / 'uv.dat', dtype='<i2').reshape(300, 12)
    raw[10:20, 4] = -32768
    raw.tofile(tmp_path / 'uv.dat')
    rec = read_record(base, verify_checksum=False)  # the edit changed the samples the header's checksums cover
    assert np.isnan(rec.signal[4, 10:20]).all() and np.isfinite(rec.signal[4, 20:]).all()


def test_other_wfdb_formats_fall_back_to_wfdb(tmp_path):
    sig = sine_leads(250.0, 400)
    base = write_wfdb(tmp_path, 'f212', sig, 250.0, fmt='212', gain=200.0)
    rec = read_record(base)
    ref, _ = wfdb.rdsamp(str(base))
    assert np.allclose(rec.signal, ref.T, atol=1e-6)


def test_matlab_v5_mat_files(tmp_path):
    # Some public CPSC copies store MATLAB v5 files; wfdb reads only the v4 layout, our reader reads both.
    from scipy.io import savemat

    sig = sine_leads(500.0, 1000)
    base = write_challenge(tmp_path, 'A1', sig, 500.0, dx=['426783006'])
    savemat(str(tmp_path / 'A1.mat'), {'val': np.round(sig * 1000).astype(np.int16)}, format='5')
    rec = read_record(base)
    assert np.allclose(rec.signal, np.round(sig * 1000) / 1000, atol=1e-6)
    savemat(str(tmp_path / 'A1.mat'), {'val': np.zeros((8, 1000), np.int16)}, format='4')  # 8 rows, header says 12
    with pytest.raises(RecordError, match=r'shape \(8, 1000\), the header declares 12 leads'):
        read_record(base)
    savemat(str(tmp_path / 'A1.mat'), {'ECG': np.zeros((12, 1000))}, format='5')
    with pytest.raises(RecordError, match='no variable "val"'):
        read_record(base)
