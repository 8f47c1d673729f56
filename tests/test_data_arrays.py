"""The arrays dataset: numpy arrays, .npy/.npz/HDF5 files beside WFDB folders, through the same cache and commands."""
import json

import numpy as np
import pytest
from data_fixtures import sine_leads, write_wfdb

from ecgvit.cli import main
from ecgvit.constants import LEADS
from ecgvit.data import CachedECGDataset, Preprocessing, build_cache, get_dataset, prepare_data
from ecgvit.data.datasets import ArraysDataset, DatasetLayoutError

pytestmark = pytest.mark.usefixtures('one_thread')

FS = 50.0
RUN = ['--no-progress', '--threads', '1']
TINY = ['--model', 'ecg_vit_tiny', '--sampling-rate', '50', '--num-samples', '500', *RUN]


@pytest.fixture(scope='module')
def encoder_dir(tmp_path_factory):
    """A tiny encoder saved with its recipe (50 Hz, 10-s windows): every embed of a test uses the same weights."""
    import ecgvit
    from ecgvit.data.prepare import data_preprocessing
    from ecgvit.hub import save_pretrained

    torch = pytest.importorskip('torch')
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('enc') / 'encoder'
    save_pretrained(ecgvit.create_model('ecg_vit_tiny', img_size=500), path,
                    pretrained_cfg={'preprocessing': data_preprocessing(FS, 500).to_dict()})
    return path


def _signals(n=12, length=500, n_leads=12):
    """(n, leads, length) sines on a 1-uV grid (so a WFDB copy holds exactly the same values)."""
    x = np.stack([sine_leads(FS, length, freq=1.0 + 0.3 * i, n_leads=n_leads) for i in range(n)])
    return (np.round(x * 1000) / 1000).astype(np.float32)


def _embed(tmp_path, encoder, name, *args):
    assert main(['embed', '--checkpoint', str(encoder), *RUN, '--output', str(tmp_path / name), *args]) == 0
    ids = (tmp_path / name / 'ids.txt').read_text().split()
    return np.load(tmp_path / name / 'embeddings.npy'), ids


def test_npz_npy_and_wfdb_give_the_same_embeddings(tmp_path, encoder_dir):
    x = _signals()
    np.savez(tmp_path / 'ecgs.npz', signals=x, sampling_rate=FS, leads=np.array(LEADS))
    np.save(tmp_path / 'last.npy', x.transpose(0, 2, 1))  # channels-last, rate and leads in a sidecar
    (tmp_path / 'last.json').write_text(json.dumps({'sampling_rate': FS, 'leads': list(LEADS), 'layout': 'NLC'}))
    for i, rec in enumerate(x):
        write_wfdb(tmp_path / 'wfdb', str(i), rec, FS)
    a, ids_a = _embed(tmp_path, encoder_dir, 'npz', '--input', str(tmp_path / 'ecgs.npz'))
    b, ids_b = _embed(tmp_path, encoder_dir, 'npy', '--data', 'arrays', '--data-dir', str(tmp_path / 'last.npy'))
    c, ids_c = _embed(tmp_path, encoder_dir, 'wfdb', '--input', str(tmp_path / 'wfdb'))
    assert a.shape == (12, 64) and ids_a == [str(i) for i in range(12)]  # the array's row order
    assert ids_a == ids_b
    np.testing.assert_allclose(a, b, atol=1e-6)
    order = [ids_c.index(i) for i in ids_a]  # the WFDB folder lists records in its own order
    np.testing.assert_allclose(a, c[order], atol=1e-5)


def test_hdf5_attributes_and_datasets(tmp_path, encoder_dir):
    h5py = pytest.importorskip('h5py')
    x = _signals(n=6)
    with h5py.File(tmp_path / 'ecgs.h5', 'w') as f:
        d = f.create_dataset('ecg', data=x.transpose(0, 2, 1))
        d.attrs['sampling_rate'] = FS
        d.attrs['leads'] = list(LEADS)
        f.create_dataset('record_ids', data=np.array([f'r{i}' for i in range(6)], dtype='S'))
        f.create_dataset('labels', data=np.array([0, 1] * 3))
    ds = get_dataset('arrays', tmp_path / 'ecgs.h5', signals_key='ecg')
    assert ds.layout == 'NLC' and ds.record_ids == [f'r{i}' for i in range(6)] and ds.label_names == ['0', '1']
    rec = ds.read(2)
    np.testing.assert_array_equal(rec.signal, x[2])
    # Cache built with worker processes (each reopens the file) equals the in-process one.
    pp = Preprocessing(sampling_rate=FS, num_samples=500)
    one = CachedECGDataset(build_cache(ds, pp, tmp_path / 'c0', num_workers=0, progress=False))
    two = CachedECGDataset(build_cache(ds, pp, tmp_path / 'c2', num_workers=2, progress=False))
    np.testing.assert_array_equal(np.asarray(one.signals), np.asarray(two.signals))
    np.savez(tmp_path / 'same.npz', signals=x, sampling_rate=FS, leads=np.array(LEADS))
    a, ids_a = _embed(tmp_path, encoder_dir, 'npz', '--input', str(tmp_path / 'same.npz'))
    (tmp_path / 'ecgs.json').write_text(json.dumps({'signals_key': 'ecg'}))  # the command line's way to name it
    b, ids_b = _embed(tmp_path, encoder_dir, 'h5', '--input', str(tmp_path / 'ecgs.h5'))
    assert b.shape == (6, 64) and sorted(ids_b) == [f'r{i}' for i in range(6)]
    np.testing.assert_allclose(b, a[[ids_a.index(i[1:]) for i in ids_b]], atol=1e-6)


def test_layout_detected_or_refused(tmp_path, caplog):
    x = _signals(n=3)
    with caplog.at_level('INFO'):
        ds = get_dataset('arrays', x.transpose(0, 2, 1), sampling_rate=FS, leads=LEADS)
    assert ds.layout == 'NLC' and ds.shape == (3, 12, 500) and 'channels-last' in caplog.text
    np.testing.assert_array_equal(ds.read(1).signal, x[1])
    # Stated wrongly: the error says which layout the array looks like.
    with pytest.raises(DatasetLayoutError, match=r"looks channels-last, use layout='NLC'"):
        get_dataset('arrays', x.transpose(0, 2, 1), sampling_rate=FS, leads=LEADS, layout='NCL')
    # Ambiguous: as many samples as leads.
    with pytest.raises(DatasetLayoutError, match=r"ambiguous.*layout='NCL'.*layout='NLC'"):
        get_dataset('arrays', np.ones((2, 12, 12)), sampling_rate=FS, leads=LEADS)
    assert get_dataset('arrays', np.random.rand(2, 12, 12), sampling_rate=FS, leads=LEADS, layout='nlc').layout \
        == 'NLC'
    with pytest.raises(DatasetLayoutError, match=r'expected 3 axes.*x\[None\]'):
        get_dataset('arrays', x[0], sampling_rate=FS, leads=LEADS)
    with pytest.raises(DatasetLayoutError, match="layout='NCL' or 'NLC'|use 'NCL'"):
        get_dataset('arrays', x, sampling_rate=FS, leads=LEADS, layout='CL')


# cache.signal_sha256 casts the NaNs left for the preprocessing to repair (its concern, not this dataset's).
@pytest.mark.filterwarnings('ignore:invalid value encountered in cast:RuntimeWarning')
def test_lead_rate_and_nan_errors_name_the_file_and_the_fix(tmp_path):
    x = _signals(n=4)
    path = tmp_path / 'ecgs.npz'
    np.savez(path, signals=x)
    with pytest.raises(DatasetLayoutError, match=rf'{path}: no sampling rate.*ecgs\.json'):
        get_dataset('arrays', path, leads=LEADS)
    with pytest.raises(DatasetLayoutError, match=rf'{path}: no lead names'):
        get_dataset('arrays', path, sampling_rate=FS)
    with pytest.raises(DatasetLayoutError, match=r"6 lead names.*no axis of 6 leads"):
        get_dataset('arrays', path, sampling_rate=FS, leads=LEADS[:6])
    with pytest.raises(DatasetLayoutError, match=r"unknown lead names \['X1'\]"):
        get_dataset('arrays', path, sampling_rate=FS, leads=[*LEADS[:11], 'X1'])
    with pytest.raises(DatasetLayoutError, match='must be distinct'):
        get_dataset('arrays', path, sampling_rate=FS, leads=[*LEADS[:11], 'I'])
    with pytest.raises(DatasetLayoutError, match='not a positive number of Hz'):
        get_dataset('arrays', path, sampling_rate=-5, leads=LEADS)
    # Aliases are fine.
    ds = get_dataset('arrays', path, sampling_rate=FS, leads=['D1', 'D2', 'D3', 'AVR', 'AVL', 'AVF', *LEADS[6:]])
    assert ds.leads == LEADS
    # The rate is a fact: the file and the sidecar may not disagree on it.
    np.savez(path, signals=x, sampling_rate=FS, leads=np.array(LEADS))
    (tmp_path / 'ecgs.json').write_text(json.dumps({'sampling_rate': 100}))
    with pytest.raises(DatasetLayoutError, match='sampling_rate is 100.0 in the .*ecgs.json but 50.0 in'):
        get_dataset('arrays', path)
    (tmp_path / 'ecgs.json').write_text(json.dumps({'rate': 100}))
    with pytest.raises(DatasetLayoutError, match=r"unknown option\(s\) \['rate'\]"):
        get_dataset('arrays', path)
    (tmp_path / 'ecgs.json').unlink()
    bad = x.copy()
    bad[2, 3, 10] = np.nan
    bad[3, 0, 0] = np.inf
    np.savez(path, signals=bad, sampling_rate=FS, leads=np.array(LEADS))
    with pytest.raises(DatasetLayoutError, match=r"2 record\(s\) hold NaN/inf .*rows \[2, 3\].*nan_policy='repair'"):
        get_dataset('arrays', path)
    ds = get_dataset('arrays', path, nan_policy='repair')
    out = build_cache(ds, Preprocessing(sampling_rate=FS, num_samples=500), tmp_path / 'c', num_workers=0,
                      progress=False)
    assert np.isfinite(np.asarray(CachedECGDataset(out).signals)).all()
    with pytest.raises(DatasetLayoutError, match='not an array file'):
        get_dataset('arrays', tmp_path / 'c' / 'manifest.json')
    with pytest.raises(DatasetLayoutError, match="no array 'signals'"):
        np.savez(tmp_path / 'other.npz', x=x)
        get_dataset('arrays', tmp_path / 'other.npz', sampling_rate=FS, leads=LEADS)


def test_labels_patients_splits_and_meta(tmp_path):
    n = 40
    x = _signals(n=n, length=100, n_leads=2)
    ids = [f'ecg{i:02d}' for i in range(n)]
    patients = [f'p{i // 4}' for i in range(n)]  # four records per patient
    ds = get_dataset('arrays', x, sampling_rate=FS, leads=['II', 'V1'], record_ids=ids, patient_ids=patients,
                     labels=['AF' if i % 3 else 'NSR' for i in range(n)], age=[50 + i for i in range(n)],
                     sex=['Male', 'F'] * (n // 2))
    assert ds.label_names == ['AF', 'NSR'] and not ds.multilabel and ds.entries[0].labels == 1
    assert ds.entries[0].meta['age'] == 50.0 and ds.entries[0].meta['sex'] == 'M'
    where = {}
    for e in ds.entries:
        where.setdefault(e.patient_id, set()).add(e.split)
    assert all(len(s) == 1 for s in where.values()) and {e.split for e in ds.entries} == {'train', 'val', 'test'}
    # Without patient ids: a seeded split of records (each its own patient), the same every time.
    a = get_dataset('arrays', x, sampling_rate=FS, leads=['II', 'V1'], seed=3)
    b = get_dataset('arrays', x, sampling_rate=FS, leads=['II', 'V1'], seed=3)
    assert a.patient_free and [e.split for e in a.entries] == [e.split for e in b.entries]
    # Labels from a CSV: ids are the row numbers; a record with no row is skipped (and said so).
    np.save(tmp_path / 'x.npy', x)
    (tmp_path / 'labels.csv').write_text('record,label,patient_id,split,age,sex\n' + ''.join(
        f'{i},{"AF;PVC" if i % 2 else "NSR"},p{i},{"train" if i < 30 else "test"},60,F\n' for i in range(1, n)))
    (tmp_path / 'x.json').write_text(json.dumps({'sampling_rate': FS, 'leads': ['II', 'V1'], 'labels': 'labels.csv',
                                                 'multilabel': True}))
    ds = get_dataset('arrays', tmp_path / 'x.npy')
    assert ds.multilabel and ds.label_names == ['AF', 'NSR', 'PVC'] and len(ds) == n - 1
    assert ds.skipped == [('0', 'no row for this record in labels.csv.')]
    e = ds.entries[0]
    assert e.record_id == '1' and e.split == 'train' and e.patient_id == 'p1' and e.meta['age'] == 60.0
    np.testing.assert_array_equal(e.labels, [1, 0, 1])
    # Class indices and multi-hot rows.
    ds = get_dataset('arrays', x[:4], sampling_rate=FS, leads=['II', 'V1'], labels=[0, 2, 1, 2],
                     label_names=['a', 'b', 'c'])
    assert [e.labels for e in ds.entries] == [0, 2, 1, 2]
    ds = get_dataset('arrays', x[:3], sampling_rate=FS, leads=['II', 'V1'], labels=np.eye(3)[[0, 1, 1]])
    assert ds.multilabel and ds.label_names == ['0', '1', '2']
    with pytest.raises(DatasetLayoutError, match='labels has 3 values for 4 records'):
        get_dataset('arrays', x[:4], sampling_rate=FS, leads=['II', 'V1'], labels=[0, 1, 1])
    with pytest.raises(DatasetLayoutError, match=r"class index 2 but only 2 label_names"):
        get_dataset('arrays', x[:2], sampling_rate=FS, leads=['II', 'V1'], labels=[0, 2], label_names=['a', 'b'])
    with pytest.raises(DatasetLayoutError, match=r"split values \['tst'\]"):
        get_dataset('arrays', x[:2], sampling_rate=FS, leads=['II', 'V1'], splits=['train', 'tst'])


def test_cache_follows_the_array_content(tmp_path):
    x = _signals(n=4)
    pp = Preprocessing(sampling_rate=FS, num_samples=500)
    c1 = build_cache(get_dataset('arrays', x, sampling_rate=FS, leads=LEADS), pp, tmp_path / 'c', progress=False,
                     num_workers=0)
    m1 = json.loads((c1 / 'manifest.json').read_text())['fingerprint']
    y = x.copy()
    y[0, 0, 0] += 1
    c2 = build_cache(get_dataset('arrays', y, sampling_rate=FS, leads=LEADS), pp, tmp_path / 'c', progress=False,
                     num_workers=0)
    assert json.loads((c2 / 'manifest.json').read_text())['fingerprint'] != m1
    # A reduced-lead array: the missing leads are zero-filled and masked by the preprocessing, as for WFDB records.
    ds = get_dataset('arrays', x[:, :1], sampling_rate=FS, leads=['II'])
    rec = ds.read(0, leads=LEADS, missing_leads='zero')
    assert rec.signal.shape == (12, 500) and rec.lead_mask.sum() == 1 and rec.lead_mask[1]
    out = build_cache(ds, Preprocessing(sampling_rate=FS, num_samples=500, missing_leads='zero'), tmp_path / 'r',
                      progress=False, num_workers=0)
    sig = np.asarray(CachedECGDataset(out).signals)
    assert np.abs(sig[:, 1]).sum() > 0 and not np.abs(sig[:, [0, *range(2, 12)]]).any()


def test_probe_and_finetune_on_an_npz_file(tmp_path):
    x = _signals(n=30, length=1000)
    labels = np.array(['a', 'b', 'c'] * 10)
    np.savez(tmp_path / 'ecgs.npz', signals=x, sampling_rate=FS, leads=np.array(LEADS), labels=labels)
    for cmd in ('probe', 'finetune'):
        assert main([cmd, *TINY, '--data', 'arrays', '--data-dir', str(tmp_path / 'ecgs.npz'), '--epochs', '1',
                     '-b', '8', '--n-boot', '0', '--output', str(tmp_path / cmd)]) == 0
        result = json.loads((tmp_path / cmd / 'results.json').read_text())
        assert result['label_names'] == ['a', 'b', 'c']
        assert result['windows']['test']['n_windows'] == 2 * result['windows']['test']['n_records']
    with pytest.raises(FileNotFoundError, match=r'--data arrays needs --data-dir <file.npy\|.npz\|.h5\|.hdf5>'):
        prepare_data('arrays', tmp_path, tmp_path / 'cache')
    # From Python, the rate and leads of a bare .npy can come with the call instead of a sidecar.
    np.save(tmp_path / 'bare.npy', x)
    splits = prepare_data('arrays', tmp_path / 'bare.npy', tmp_path / 'cache', sampling_rate=FS, num_samples=500,
                          progress=False, dataset_options={'sampling_rate': FS, 'leads': LEADS,
                                                           'labels': labels.tolist()})
    assert splits['label_names'] == ['a', 'b', 'c'] and sum(len(splits[s]) for s in ('train', 'val', 'test')) == 60


def test_arrays_dataset_is_registered():
    from ecgvit.data.datasets import DATASETS, list_datasets

    assert DATASETS['arrays'] is ArraysDataset and 'arrays' in list_datasets()


def test_npy_that_is_not_an_array_of_numbers(tmp_path):
    """numpy's own message for these advises allow_pickle=True (running the file's code); ours names what is wrong."""
    garbage, objects = tmp_path / 'garbage.npy', tmp_path / 'objects.npy'
    garbage.write_bytes(b'not a numpy file')
    np.save(objects, np.array([{'a': 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetLayoutError, match='no .npy header') as e:
        ArraysDataset(garbage, sampling_rate=500, leads=LEADS)
    assert 'allow_pickle' not in str(e.value)
    with pytest.raises(DatasetLayoutError, match=r'Python objects \(dtype=object\)'):
        ArraysDataset(objects, sampling_rate=500, leads=LEADS)
