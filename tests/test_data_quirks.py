"""The quirks of the project's real data, mimicked by synthetic WFDB fixtures: PTB-XL records without a 500 Hz file,
v1.0.3's age code 300, Georgia headers naming the record with its extension, the challenge's copies of PTB-XL
evaluation records, non-zero baselines and non-unit gains, and CODE-15% in the Challenge 2025 layout."""
import math

import numpy as np
import pandas as pd
import pytest
from data_fixtures import sine_leads, write_challenge, write_dx_tables, write_ptbxl, write_wfdb

from ecgvit.data import DatasetLayoutError, PretrainingPool, get_dataset, read_record, synthesize_ecg
from ecgvit.data.datasets.demographics import parse_age, parse_sex

LOWER_LEADS = ['i', 'ii', 'iii', 'avr', 'avl', 'avf', 'v1', 'v2', 'v3', 'v4', 'v5', 'v6']


def test_parse_age_and_sex():
    assert parse_age('74') == 74.0 and parse_age(300) == 90.0 and parse_age('>89') == 90.0
    assert parse_age(91.0) == 91.0 and parse_age(91.0, top_code=True) == 90.0
    assert all(math.isnan(parse_age(v)) for v in (None, 'NaN', 'Unknown', '', -1, float('nan')))
    assert [parse_sex(v) for v in ('Male', 'female', 'M', ' F\n', 'Unknown', None)] == ['M', 'F', 'M', 'F', None, None]
    assert parse_sex(0, numeric=True) == 'M' and parse_sex(1.0, numeric=True) == 'F'
    assert parse_sex(0) is None and parse_sex('1') is None  # 0/1 mean male/female only in PTB-XL's table


def test_ptbxl_without_500hz_files_falls_back_to_100hz_with_a_count(tmp_path):
    root = write_ptbxl(tmp_path / 'ptbxl', n=20, hr_upto=12)
    with pytest.warns(UserWarning, match=r'8 of 20 records have no 500 Hz file.*ecg_id 13, 14'):
        ds = get_dataset('ptbxl', root, sampling_rate=500, label_set='all')
    assert len(ds) == 20 and not ds.skipped  # nothing dropped
    assert ds.fallback_records == [str(i) for i in range(13, 21)]
    by_id = {e.record_id: e for e in ds}
    assert by_id['12'].meta['fs'] == 500 and by_id['13'].meta['fs'] == 100
    assert ds.read(by_id['12']).fs == 500.0 and ds.read(by_id['13']).signal.shape == (12, 1000)
    with pytest.raises(DatasetLayoutError, match=r'8 records have no 500 Hz file.*ecg_id 13, 14.*sampling_rate=100'):
        get_dataset('ptbxl', root, sampling_rate=500, label_set='all', missing_500hz='error')
    low = get_dataset('ptbxl', root, sampling_rate=100, label_set='all')  # no warning: every 100 Hz file is there
    assert len(low) == 20 and not low.fallback_records
    (root / 'records100/00000/00020_lr.hea').unlink()  # neither copy: skipped with a reason, not silently
    with pytest.warns(UserWarning, match='7 of 19'):
        ds = get_dataset('ptbxl', root, sampling_rate=500, label_set='all')
    assert len(ds) == 19 and 'no 100 Hz copy either' in dict(ds.skipped)['20']


def test_ptbxl_demographics_top_code_ages(tmp_path):
    root = write_ptbxl(tmp_path / 'ptbxl', n=6, ages={2: 300.0, 3: 91.0, 4: float('nan'), 5: 89.0})
    ds = get_dataset('ptbxl', root, sampling_rate=100, label_set='all')
    ages = {e.meta['ecg_id']: e.meta['age'] for e in ds}
    assert ages[1] == 50.0 and ages[2] == 90.0 and ages[3] == 90.0 and math.isnan(ages[4]) and ages[5] == 89.0
    sexes = pd.read_csv(root / 'ptbxl_database.csv', index_col='ecg_id')['sex']
    assert all(e.meta['sex'] == ('M' if sexes[e.meta['ecg_id']] == 0 else 'F') for e in ds)


def test_baseline_and_gain_are_applied(tmp_path):
    sig = sine_leads(500.0, 1000, amp=1.5)
    write_wfdb(tmp_path, 'rec', sig, 500.0, lead_names=LOWER_LEADS, gain=731.0, baseline=-57)
    header = (tmp_path / 'rec.hea').read_text().splitlines()[1]
    assert '731' in header and '(-57)' in header
    rec = read_record(tmp_path / 'rec')
    assert np.abs(rec.signal - sig).max() < 1.0 / 731 and rec.lead_names[3] == 'aVR'


def test_challenge_header_naming_the_record_with_its_extension(tmp_path):
    root = tmp_path / 'cinc'
    write_dx_tables(root)
    sig = synthesize_ecg('NSR', fs=500.0, rng=1).signal
    write_challenge(root / 'georgia', 'E00271', sig, 500.0, dx=['426783006'], header_name='E00271.mat',
                    age='NaN', sex='Male')
    assert (root / 'georgia/E00271.hea').read_text().startswith('E00271.mat 12 500 5000')
    ds = get_dataset('cinc', root)
    assert ds.record_ids == ['georgia/E00271'] and not ds.skipped
    assert math.isnan(ds[0].meta['age']) and ds[0].meta['sex'] == 'M'
    rec = ds.read(0)
    assert rec.record_id == 'georgia/E00271' and np.abs(rec.signal - sig).max() <= 0.5e-3 + 1e-6


def _pool_with_cinc_copies(root):
    # PTB-XL 1-20 with 500 Hz files only for 1-10; ecg_id 16-17 are fold 9, 18-19 fold 10.
    write_ptbxl(root / 'ptbxl', n=20, hr_upto=10)
    cinc = root / 'cinc2021_samples'
    write_dx_tables(cinc)
    for ecg_id in (3, 9, 18):  # copies at 500 Hz, as the challenge distributes them: a train, a fold-5 and a test one
        sig = synthesize_ecg('NSR', fs=500.0, rng=ecg_id).signal
        write_challenge(cinc / 'ptb-xl', f'HR{ecg_id:05d}', sig, 500.0, dx=['426783006'])
    write_challenge(cinc / 'ptb-xl', 'HR09999', sine_leads(500.0, 5000), 500.0, dx=['426783006'])  # not in the table
    write_challenge(cinc / 'georgia', 'E00001', sine_leads(500.0, 5000, freq=3.0), 500.0, dx=['426783006'])
    return root


def test_pool_holds_out_challenge_copies_of_ptbxl_eval_folds_by_ecg_id(tmp_path):
    root = _pool_with_cinc_copies(tmp_path)
    cinc = get_dataset('cinc', root / 'cinc2021_samples')
    assert {e.record_id: e.meta.get('ptbxl_ecg_id') for e in cinc} == {
        'georgia/E00001': None, 'ptb-xl/HR00003': 3, 'ptb-xl/HR00009': 9, 'ptb-xl/HR00018': 18,
        'ptb-xl/HR09999': 9999}
    with pytest.warns(UserWarning, match='10 of'):
        pool = PretrainingPool.from_folder(root)
    reasons = dict(pool.held_out_copies)
    # ecg_id 18 (fold 10) exists in the PTB-XL folder only at 100 Hz: no signal hash could match the 500 Hz copy.
    assert 'test split is held out' in reasons['cinc2021_samples/ptb-xl/HR00018']
    assert 'duplicate of PTB-XL ecg_id 3' in reasons['cinc2021_samples/ptb-xl/HR00003']
    assert 'duplicate of PTB-XL ecg_id 9' in reasons['cinc2021_samples/ptb-xl/HR00009']  # fold 5: pooled from PTB-XL
    assert 'does not list' in reasons['cinc2021_samples/ptb-xl/HR09999']
    pooled = {e.meta['source_record'] for e in pool if e.meta['source'] == 'cinc2021_samples'}
    assert pooled == {'georgia/E00001'}
    ptbxl_pooled = {int(e.meta['source_record']) for e in pool if e.meta['source'] == 'ptbxl'}
    assert ptbxl_pooled and not ptbxl_pooled & {16, 17, 18, 19}
    with pytest.warns(UserWarning):
        keep = PretrainingPool.from_folder(root, unlisted_ptbxl_copies='keep')
    assert 'cinc2021_samples/ptb-xl/HR09999' not in dict(keep.held_out_copies)
    with pytest.warns(UserWarning):  # nothing held out: an unlisted copy cannot leak into an evaluation fold
        open_pool = PretrainingPool.from_folder(root, exclude=())
    assert set(dict(open_pool.held_out_copies)) == {'cinc2021_samples/ptb-xl/HR00003',
                                                    'cinc2021_samples/ptb-xl/HR00009',
                                                    'cinc2021_samples/ptb-xl/HR00018'}  # duplicates only
    with pytest.raises(ValueError, match='unlisted_ptbxl_copies'):
        PretrainingPool([cinc], unlisted_ptbxl_copies='maybe')


def _write_code15(root):
    comments = [('1111', '48705', '43', 'Male', 'False'), ('1112', '48705', '44', 'Male', 'True'),
                ('2508934', '82907', '51', 'Female', 'False'), ('9190', '7', '89', 'Female', 'False')]
    for k, (exam, patient, age, sex, chagas) in enumerate(comments):
        n = 2934 if k % 2 == 0 else 4096  # the Challenge conversion strips CODE-15%'s padding: lengths vary
        write_wfdb(root / 'records', exam, sine_leads(400.0, n, freq=2 + k), 400.0,
                   lead_names=[n.upper() for n in ('I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4',
                                                   'V5', 'V6')],
                   comments=[f'Exam ID: {exam}', f'Patient ID: {patient}', f'Age: {age}', f'Sex: {sex}',
                             f'Chagas label: {chagas}'])
    return root


def test_code15(tmp_path):
    root = _write_code15(tmp_path / 'code15_samples')
    ds = get_dataset('code15', root)
    assert ds.label_names == ['negative', 'chagas'] and not ds.multilabel
    by_id = {e.record_id: e for e in ds}
    assert by_id['1112'].labels == 1 and by_id['1111'].labels == 0
    assert by_id['1111'].meta == {'exam_id': '1111', 'age': 43.0, 'sex': 'M'}
    assert by_id['1111'].patient_id == by_id['1112'].patient_id == '48705'
    assert by_id['1111'].split == by_id['1112'].split  # one patient, one split
    rec = ds.read(by_id['1111'])
    assert rec.fs == 400.0 and rec.signal.shape == (12, 2934)
    unlabelled = get_dataset('code15', root, label_set=None)
    assert len(unlabelled) == 4 and all(e.labels is None for e in unlabelled)
    (root / 'records/9190.hea').write_text((root / 'records/9190.hea').read_text().replace('Chagas label', 'Note'))
    assert 'no "# Chagas label' in dict(get_dataset('code15', root).skipped)['9190']
    with pytest.raises(DatasetLayoutError, match='no .hea files'):
        get_dataset('code15', tmp_path / 'empty')


def test_ludb_and_folder_demographics(tmp_path):
    root = tmp_path / 'ludb'
    for i in (1, 2):
        write_wfdb(root / 'data', str(i), sine_leads(500.0, 5000), 500.0, lead_names=LOWER_LEADS, gain=2259.0,
                   baseline=65, comments=['<age>: >89' if i == 1 else '<age>: 51', '<sex>: M' if i == 1 else '<sex>: F',
                                          'Rhythm: Sinus rhythm.'])
    ds = get_dataset('ludb', root)  # header only
    assert [(e.meta['age'], e.meta['sex']) for e in ds] == [(90.0, 'M'), (51.0, 'F')]
    pd.DataFrame({'ID': [1, 2], 'Sex': ['F\n', 'M\n'], 'Age': ['>89\n', '64\n'],
                  'Rhythms': ['Sinus rhythm', 'Sinus rhythm']}).to_csv(root / 'ludb.csv', index=False)
    ds = get_dataset('ludb', root)  # ludb.csv wins
    assert [(e.meta['age'], e.meta['sex']) for e in ds] == [(90.0, 'F'), (64.0, 'M')]
    assert np.abs(ds.read(0).signal - sine_leads(500.0, 5000)).max() < 1.0 / 2259
    folder = get_dataset('folder', root / 'data')
    assert [(e.meta['age'], e.meta['sex']) for e in folder] == [(90.0, 'M'), (51.0, 'F')]


@pytest.mark.parametrize('name, folder, dx', [('cinc', '', '426783006'), ('cpsc2018', 'cpsc', '164889003'),
                                              ('chapman', 'chap', '426177001')])
def test_challenge_readers_give_uniform_demographics(tmp_path, name, folder, dx):
    write_dx_tables(tmp_path)
    write_challenge(tmp_path / (folder or 'db'), 'A0001', sine_leads(500.0, 5000), 500.0, dx=[dx], age='74',
                    sex='Male')
    write_challenge(tmp_path / (folder or 'db'), 'A0002', sine_leads(500.0, 5000, freq=2.0), 500.0, dx=[dx], age='NaN',
                    sex='Unknown')
    ds = get_dataset(name, tmp_path / folder if folder else tmp_path)
    meta = sorted((e.record_id, e.meta['age'], e.meta['sex']) for e in ds)
    assert meta[0][1:] == (74.0, 'M') and math.isnan(meta[1][1]) and meta[1][2] is None
