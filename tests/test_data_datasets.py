"""Dataset indexes: official splits and labels per source, the user-folder reader, the pretraining pool, errors."""
import numpy as np
import pandas as pd
import pytest
from data_fixtures import sine_leads, write_challenge, write_dx_tables, write_ptbxl, write_wfdb

from ecgvit.data import (
    DatasetLayoutError,
    PretrainingPool,
    RecordError,
    SyntheticDataset,
    get_dataset,
    list_datasets,
    make_synthetic,
    synthesize_ecg,
)


@pytest.fixture(scope='module')
def syn_root(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp('syn') / 'data', n_records=24, seed=0, fs=250.0, duration_s=10.0)


def test_list_and_unknown():
    assert {'synthetic', 'folder', 'ptbxl', 'cpsc2018', 'chapman', 'cinc', 'ludb'} <= set(list_datasets())
    with pytest.raises(ValueError, match="Unknown dataset 'mitbih'"):
        get_dataset('mitbih', '/x')
    with pytest.raises(ValueError, match='needs root'):
        get_dataset('ptbxl', None)


def test_synthetic_dataset_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv('ECGVIT_DATA_DIR', str(tmp_path / 'cache'))
    ds = get_dataset('synthetic', None, n_records=10, seed=1, fs=250.0, duration_s=4.0)
    assert ds.label_names == ['NSR', 'SB', 'ST', 'AF', 'BBB'] and not ds.multilabel and len(ds) == 10
    again = SyntheticDataset(None, n_records=10, seed=1, fs=250.0, duration_s=4.0)
    assert again.root == ds.root and again.record_ids == ds.record_ids
    rec = ds.read(0)
    assert rec.signal.shape == (12, 1000) and rec.metadata['patient_id'] == ds[0].patient_id
    with pytest.raises(DatasetLayoutError, match='generated with'):
        SyntheticDataset(ds.root, n_records=11, seed=1, fs=250.0, duration_s=4.0)
    assert not list((tmp_path / 'cache').glob('.*tmp*'))  # no temporary folder left behind


def test_folder_dataset_with_labels(syn_root):
    ds = get_dataset('folder', syn_root)
    labels = pd.read_csv(syn_root / 'labels.csv')
    assert len(ds) == 24 and sorted(ds.label_names) == sorted(labels.label.unique())
    e = ds[ds.record_ids.index('syn00005')]
    row = labels.set_index('record').loc['syn00005']
    assert ds.label_names[e.labels] == row.label and e.split == row.split and e.patient_id == row.patient_id
    counts = ds.label_counts()
    assert sum(sum(c.values()) for c in counts.values()) == 24


def test_folder_dataset_multilabel_and_generated_split(tmp_path):
    for i in range(6):
        write_wfdb(tmp_path, f'r{i}', sine_leads(250.0, 500), 250.0, comments=[f'Patient ID: p{i // 2}'])
    pd.DataFrame({'record': [f'r{i}' for i in range(6)],
                  'dx': ['AF;RBBB', 'AF', 'NSR', 'NSR;RBBB', 'AF', 'NSR']}).to_csv(tmp_path / 'y.csv', index=False)
    ds = get_dataset('folder', tmp_path, labels_csv=tmp_path / 'y.csv', label_column='dx', multilabel=True)
    assert ds.multilabel and ds.label_names == ['AF', 'NSR', 'RBBB']
    assert ds[0].labels.tolist() == [1.0, 0.0, 1.0]
    by_patient = {}
    for e in ds:
        by_patient.setdefault(e.patient_id, set()).add(e.split)
    assert set(by_patient) == {'p0', 'p1', 'p2'} and all(len(s) == 1 for s in by_patient.values())


def test_folder_dataset_unlabelled_and_header_labels(tmp_path):
    for i in range(3):
        write_wfdb(tmp_path / 'sub', f'x{i}', sine_leads(250.0, 500), 250.0, comments=[f'Chagas label: {i == 1}'])
    plain = get_dataset('folder', tmp_path)
    assert plain.label_names == [] and plain[0].labels is None and plain.record_ids[0] == 'sub/x0'
    chagas = get_dataset('folder', tmp_path, label_from_header='chagas_label')
    assert chagas.label_names == ['False', 'True'] and [e.labels for e in chagas] == [0, 1, 0]


def test_folder_dataset_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match='not a folder'):
        get_dataset('folder', tmp_path / 'missing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetLayoutError, match=r'no \.hea files'):
        get_dataset('folder', tmp_path / 'empty')
    d = tmp_path / 'd'
    for i in range(4):
        write_wfdb(d, f'r{i}', sine_leads(250.0, 500), 250.0)
    pd.DataFrame({'name': ['r0'], 'label': ['A']}).to_csv(d / 'labels.csv', index=False)
    with pytest.raises(DatasetLayoutError, match="expected a column 'record'"):
        get_dataset('folder', d)
    pd.DataFrame({'record': ['r0', 'r0'], 'label': ['A', 'B']}).to_csv(d / 'labels.csv', index=False)
    with pytest.raises(DatasetLayoutError, match=r"duplicate record ids \['r0'\]"):
        get_dataset('folder', d)
    pd.DataFrame({'record': ['r0', 'r1', 'r2', 'r3'], 'label': list('AABB'), 'patient_id': ['p', 'p', 'q', 'q'],
                  'split': ['train', 'test', 'train', 'train']}).to_csv(d / 'labels.csv', index=False)
    with pytest.raises(DatasetLayoutError, match=r"patients \['p'\].*more than one split"):
        get_dataset('folder', d)
    pd.DataFrame({'record': ['r0', 'r1', 'r2', 'r3'], 'label': list('AABB'),
                  'split': ['train', 'dev', 'train', 'train']}).to_csv(d / 'labels.csv', index=False)
    with pytest.raises(DatasetLayoutError, match=r"split values \['dev'\]"):
        get_dataset('folder', d)
    pd.DataFrame({'record': ['r0', 'r1', 'r9'], 'label': ['A', '', 'B']}).to_csv(d / 'labels.csv', index=False)
    ds = get_dataset('folder', d)
    reasons = dict(ds.skipped)
    assert len(ds) == 1 and 'empty label' in reasons['r1'] and 'no header r9.hea' in reasons['r9']
    assert 'no row for this record' in reasons['r2']
    with pytest.raises(RecordError, match='r9'):
        get_dataset('folder', d, strict=True)


def test_ptbxl(tmp_path):
    root = write_ptbxl(tmp_path / 'ptbxl', n=20)
    ds = get_dataset('ptbxl', root, sampling_rate=100)
    assert ds.label_names == ['NORM', 'MI', 'CD'] and ds.multilabel
    assert len(ds) == 15 and len(ds.skipped) == 5  # records with only ABQRS/AFIB have no superclass
    assert all('no superdiagnostic label' in r for _, r in ds.skipped)
    for e in ds:
        fold = e.meta['strat_fold']
        assert e.split == ('test' if fold == 10 else 'val' if fold == 9 else 'train')
    rec = ds.read(0)
    assert rec.fs == 100.0 and rec.signal.shape == (12, 1000)
    hr = get_dataset('ptbxl', root, sampling_rate=500, label_set='rhythm')
    assert hr.label_names == ['SR', 'AFIB'] and len(hr) == 20 and hr.read(0).signal.shape == (12, 5000)
    assert get_dataset('ptbxl', root, label_set='subdiagnostic').label_names == ['AMI', 'CLBBB', 'NORM']
    assert len(get_dataset('ptbxl', root, label_set='all').label_names) == 6
    assert get_dataset('ptbxl', root, label_set='form').label_names == ['ABQRS']
    with pytest.raises(ValueError, match='100 or 500'):
        get_dataset('ptbxl', root, sampling_rate=250)
    with pytest.raises(ValueError, match='label_set'):
        get_dataset('ptbxl', root, label_set='super')
    (root / 'scp_statements.csv').unlink()
    with pytest.raises(DatasetLayoutError, match='scp_statements.csv not found.*PTB-XL layout'):
        get_dataset('ptbxl', root)


@pytest.fixture()
def challenge_root(tmp_path):
    root = tmp_path / 'cinc'
    write_dx_tables(root)
    dx = {'cpsc/A0001': ['164889003'], 'cpsc/A0002': ['426783006', '59118001'], 'cpsc/A0003': ['164884008'],
          'cpsc/A0004': ['429622005', '270492004'], 'chap/JS00001': ['426177001'], 'chap/JS00002': ['427084000'],
          'chap/JS00003': ['426761007', '426783006'], 'chap/JS00004': ['164889003'], 'chap/JS00005': ['426783006'],
          'chap/JS00006': ['999999']}
    for k, (rid, codes) in enumerate(dx.items()):
        folder, name = rid.split('/')
        write_challenge(root / folder, name, synthesize_ecg('NSR', fs=500.0, rng=k).signal, 500.0, dx=codes)
    write_challenge(root / 'chap', 'JS00007', sine_leads(500.0, 5000), 500.0, dx=None)
    return root


def test_cinc(challenge_root):
    ds = get_dataset('cinc', challenge_root)
    assert ds.multilabel and ds.label_names == ['AF', 'NSR', 'SB', 'STach', 'CRBBB', 'IAVB']  # RBBB merged
    e = ds[ds.record_ids.index('cpsc/A0002')]
    assert [ds.label_names[k] for k in np.flatnonzero(e.labels)] == ['NSR', 'CRBBB']
    assert e.meta['source'] == 'cpsc'
    assert dict(ds.skipped) == {'chap/JS00007': 'header has no "# Dx:" SNOMED-CT codes (unlabelled record).'}
    assert not ds[ds.record_ids.index('chap/JS00006')].labels.any()  # unknown code: kept, all-zero
    full = get_dataset('cinc', challenge_root, label_set='all', merge_equivalent=False)
    assert {'RBBB', 'VEB', 'STD', 'SVT'} <= set(full.label_names)
    with pytest.raises(DatasetLayoutError, match='no code tables found'):
        get_dataset('cinc', challenge_root / 'cpsc', dx_mapping=[])


def test_cpsc2018(challenge_root):
    ds = get_dataset('cpsc2018', challenge_root / 'cpsc')
    assert ds.label_names == ['SNR', 'AF', 'IAVB', 'LBBB', 'RBBB', 'PAC', 'PVC', 'STD', 'STE'] and ds.multilabel
    labels = {e.record_id: [ds.label_names[k] for k in np.flatnonzero(e.labels)] for e in ds}
    assert labels == {'A0001': ['AF'], 'A0002': ['SNR', 'RBBB'], 'A0003': ['PVC'], 'A0004': ['IAVB', 'STD']}
    (challenge_root / 'cpsc' / 'REFERENCE.csv').write_text(
        'Recording,First_label,Second_label,Third_label\nA0001,2,,\nA0002,1,5,\nA0003,7,,\n')
    ref = get_dataset('cpsc2018', challenge_root / 'cpsc')
    assert len(ref) == 3 and 'not listed in REFERENCE.csv' in dict(ref.skipped)['A0004']


def test_chapman(challenge_root):
    ds = get_dataset('chapman', challenge_root / 'chap')
    assert ds.label_names == ['SB', 'AFIB', 'GSVT', 'SR'] and not ds.multilabel
    labels = {e.record_id: ds.label_names[e.labels] for e in ds}
    assert labels == {'JS00001': 'SB', 'JS00002': 'GSVT', 'JS00004': 'AFIB', 'JS00005': 'SR'}
    reasons = dict(ds.skipped)
    assert 'ambiguous rhythm' in reasons['JS00003'] and 'no rhythm' in reasons['JS00006']


def test_ludb(tmp_path):
    root = tmp_path / 'ludb'
    rhythms = ['Sinus rhythm', 'Sinus bradycardia\nWandering atrial pacemaker', 'Atrial fibrillation', 'Sinus rhythm']
    for i in range(1, 5):
        write_wfdb(root / 'data', str(i), sine_leads(500.0, 5000), 500.0, lead_names=[n.lower() for n in
                                                                                     ('I', 'II', 'III', 'aVR', 'aVL',
                                                                                      'aVF', 'V1', 'V2', 'V3', 'V4',
                                                                                      'V5', 'V6')],
                   comments=['<age>: 50', f'Rhythm: {rhythms[i - 1].splitlines()[0]}.'])
    pd.DataFrame({'ID': [1, 2, 3, 4], 'Sex': ['F'] * 4, 'Age': [50] * 4, 'Rhythms': rhythms,
                  'Electric axis of the heart': ['Electric axis of the heart: normal'] * 4,
                  'Hypertrophies': ['', 'Left ventricular hypertrophy', '', '']}).to_csv(root / 'ludb.csv', index=False)
    ds = get_dataset('ludb', root)
    assert ds.label_names == ['Atrial fibrillation', 'Sinus bradycardia', 'Sinus rhythm'] and not ds.multilabel
    assert ds[1].meta['rhythms'] == ['Sinus bradycardia', 'Wandering atrial pacemaker']
    assert ds.read(0).lead_names[3] == 'aVR'
    diag = get_dataset('ludb', root, label_set='diagnosis')
    assert diag.multilabel and 'Left ventricular hypertrophy' in diag.label_names
    (root / 'ludb.csv').unlink()
    assert get_dataset('ludb', root).label_names == ['Atrial fibrillation', 'Sinus bradycardia', 'Sinus rhythm']


def test_pool_windows_exclusion(tmp_path):
    a = tmp_path / 'a'
    for i in range(4):
        write_wfdb(a, f'long{i}', sine_leads(100.0, 2500, freq=1 + i), 100.0)  # 25 s -> two 10-s windows
    pd.DataFrame({'record': [f'long{i}' for i in range(4)], 'label': list('xyxy'),
                  'split': ['train', 'train', 'val', 'test']}).to_csv(a / 'labels.csv', index=False)
    b = tmp_path / 'b'
    write_wfdb(b, 'short', sine_leads(100.0, 500), 100.0)
    src_a, src_b = get_dataset('folder', a), get_dataset('folder', b)
    pool = PretrainingPool({'a': src_a, 'b': src_b}, exclude=['a:val', 'a:test'])
    ids = pool.record_ids
    assert ids == ['a/long0@0s', 'a/long0@10s', 'a/long1@0s', 'a/long1@10s', 'b/short']
    assert all(e.split == 'train' and e.labels is None for e in pool)
    assert len(pool.blocked) == 4 and pool.dedupe
    rec = pool.read(1)
    assert rec.signal.shape == (12, 1000)
    assert np.allclose(rec.signal, src_a.read(0).signal[:, 1000:2000])
    with pytest.raises(ValueError, match="exclude names source 'c'"):
        PretrainingPool({'a': src_a}, exclude=['c:test'])
    with pytest.raises(ValueError, match='both named'):
        PretrainingPool([src_a, src_b])
    with pytest.raises(ValueError, match='exclude gives splits'):
        PretrainingPool({'a': src_a}, exclude={'a': ['dev']})


def _pool_root(root):
    write_ptbxl(root / 'ptbxl', n=20)
    for i in range(30):
        write_wfdb(root / 'own' / 'records', f'r{i}', sine_leads(100.0, 1000, freq=1 + i / 10), 100.0)
    (root / 'notes').mkdir()  # a folder with no records is ignored
    return root


def test_pool_from_folder_holds_out_ptbxl_eval_folds_and_splits_by_patient(tmp_path):
    _pool_root(tmp_path)
    pool = PretrainingPool.from_folder(tmp_path, val_fraction=0.3)
    assert set(pool.sources) == {'ptbxl', 'own'}
    assert pool.excluded == {'ptbxl': {'val', 'test'}}
    ptbxl = pool.sources['ptbxl']
    held_out = {e.record_id for e in ptbxl if e.split != 'train'}
    assert held_out and not any(e.meta['source_record'] in held_out for e in pool if e.meta['source'] == 'ptbxl')
    splits = {e.split for e in pool}
    assert splits == {'train', 'val'}
    # Stable across constructions (a hash of the patient id, not Python's salted hash) and never splits a patient.
    again = PretrainingPool.from_folder(tmp_path, val_fraction=0.3)
    assert [e.split for e in again] == [e.split for e in pool]
    by_patient: dict = {}
    for e in pool:
        by_patient.setdefault(e.patient_id, set()).add(e.split)
    assert all(len(s) == 1 for s in by_patient.values())
    assert {e.split for e in PretrainingPool.from_folder(tmp_path)} <= {'train', 'val'}
    # Built by hand, the pool holds out the same PTB-XL folds by default; exclude=[] holds out nothing.
    by_hand = PretrainingPool(dict(pool.sources))
    assert by_hand.excluded == {'ptbxl': {'val', 'test'}} and len(by_hand) == len(pool)
    everything = PretrainingPool(dict(pool.sources), exclude=[])
    assert everything.excluded == {} and held_out <= {e.meta['source_record'] for e in everything}
    with pytest.raises(ValueError, match='val_fraction'):
        PretrainingPool.from_folder(tmp_path, val_fraction=1.0)
    with pytest.raises(FileNotFoundError, match='No dataset folders'):
        PretrainingPool.from_folder(tmp_path / 'notes')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        PretrainingPool.from_folder(tmp_path / 'missing')


def test_get_dataset_pool_is_pool_from_folder(tmp_path):
    _pool_root(tmp_path)
    assert 'pool' in list_datasets()
    for kwargs in ({}, {'val_fraction': 0.3, 'exclude': ['ptbxl:test']}):
        pool, ref = get_dataset('pool', tmp_path, **kwargs), PretrainingPool.from_folder(tmp_path, **kwargs)
        assert isinstance(pool, PretrainingPool) and pool.descriptor() == ref.descriptor()
        assert [(e.record_id, e.split) for e in pool] == [(e.record_id, e.split) for e in ref]
    assert get_dataset('pool', tmp_path).val_fraction == 0.05
    assert len(get_dataset('pool', tmp_path, label_set=None)) == len(get_dataset('pool', tmp_path))
    with pytest.raises(ValueError, match="unlabelled, so label_set='rhythm'"):
        get_dataset('pool', tmp_path, label_set='rhythm')
    with pytest.raises(ValueError, match='needs root'):
        get_dataset('pool', None)
    with pytest.raises(FileNotFoundError, match='No dataset folders'):
        get_dataset('pool', tmp_path / 'notes')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        get_dataset('pool', tmp_path / 'missing')
