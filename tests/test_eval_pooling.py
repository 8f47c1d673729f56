"""Whole records: windows of the model's length, pooled per record in embed, the probe and fine-tuning."""
import csv
import json

import numpy as np
import pytest
import torch
from data_fixtures import sine_leads, write_wfdb

import ecgvit
from ecgvit.cli import main
from ecgvit.data import CachedECGDataset, build_cache, get_dataset, prepare_data
from ecgvit.data.prepare import check_short_records, data_preprocessing
from ecgvit.eval import finetune, linear_probe
from ecgvit.eval.common import TaskInfo
from ecgvit.eval.pooling import embed_records, pool_labels, pool_windows, predict_records, record_groups

pytestmark = pytest.mark.usefixtures('one_thread')

FS = 50.0
RUN = ['--no-progress', '--threads', '1']


@pytest.fixture(scope='module')
def encoder_dir(tmp_path_factory):
    """A tiny encoder saved with its recipe (50 Hz, 10-s windows)."""
    from ecgvit.hub import save_pretrained

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('enc') / 'encoder'
    save_pretrained(ecgvit.create_model('ecg_vit_tiny', img_size=500), path,
                    pretrained_cfg={'preprocessing': data_preprocessing(FS, 500).to_dict()})
    return path


@pytest.fixture
def records(tmp_path):
    """A 30-s, a 10-s and a 6-s record at 50 Hz (1.13 Hz: the three windows of the long one differ)."""
    root = tmp_path / 'wfdb'
    for name, seconds, freq in (('long', 30, 1.13), ('one', 10, 1.7), ('short', 6, 2.3)):
        write_wfdb(root, name, sine_leads(FS, int(seconds * FS), freq=freq), FS)
    return root


def _embed(tmp_path, encoder, name, *args):
    assert main(['embed', '--checkpoint', str(encoder), *RUN, '--output', str(tmp_path / name), *args]) == 0
    out = tmp_path / name
    return np.load(out / 'embeddings.npy'), (out / 'ids.txt').read_text().split()


def test_pool_windows_and_labels():
    x = np.array([[1.0, 4.0], [3.0, 0.0], [5.0, 5.0], [2.0, 2.0]], dtype=np.float32)
    index = np.array([0, 0, 1, 0])
    np.testing.assert_allclose(pool_windows(x, index, 2, 'mean'), [[2.0, 2.0], [5.0, 5.0]])
    np.testing.assert_allclose(pool_windows(x, index, 2, 'max'), [[3.0, 4.0], [5.0, 5.0]])
    assert pool_windows(x, index, 2, 'none') is x
    np.testing.assert_array_equal(pool_labels(np.array([1, 1, 0, 1]), index, 2), [1, 0])
    with pytest.raises(ValueError, match='different labels'):
        pool_labels(np.array([1, 0, 0, 1]), index, 2)
    with pytest.raises(ValueError, match="pooling='sum'"):
        pool_windows(x, index, 2, 'sum')

    class Items(torch.utils.data.Dataset):
        record_ids = ['b', 'b', 'a', 'c', 'a']

        def __len__(self):
            return 5

    ids, index = record_groups(Items())
    assert ids == ['b', 'a', 'c'] and index.tolist() == [0, 0, 1, 2, 1]


@pytest.mark.filterwarnings('ignore:1 of 3 records of folder are shorter')
def test_a_30s_record_gives_three_windows_pooled_to_their_mean(tmp_path, records, encoder_dir):
    with pytest.warns(UserWarning, match=r"1 of 3 records of folder are shorter than one model window .*'short'.*"
                                         r'zero-padded'):
        per_window, ids_w = _embed(tmp_path, encoder_dir, 'none', '--input', str(records), '--pooling', 'none')
    assert ids_w == ['long#0', 'long#1', 'long#2', 'one#0', 'short#0']  # the folder's order, windows in time
    w = {i: per_window[k] for k, i in enumerate(ids_w)}
    long = np.stack([w['long#0'], w['long#1'], w['long#2']])
    with open(tmp_path / 'none' / 'windows.csv') as f:
        rows = [(r['record_id'], r['window'], r['start_s'], r['end_s']) for r in csv.DictReader(f)]
    assert [r for r in rows if r[0] == 'long'] == [('long', '0', '0', '10'), ('long', '1', '10', '20'),
                                                   ('long', '2', '20', '30')]
    mean, ids = _embed(tmp_path, encoder_dir, 'mean', '--input', str(records))
    assert ids == ['long', 'one', 'short'] and mean.shape == (3, per_window.shape[1])
    m = dict(zip(ids, mean))
    np.testing.assert_allclose(m['long'], long.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m['one'], w['one#0'], atol=1e-6)
    np.testing.assert_allclose(m['short'], w['short#0'], atol=1e-6)
    assert not np.allclose(m['long'], long[0], atol=1e-3)  # the pooling did something
    top, ids_top = _embed(tmp_path, encoder_dir, 'max', '--input', str(records), '--pooling', 'max')
    np.testing.assert_allclose(top[ids_top.index('long')], long.max(0), atol=1e-6)
    cfg = json.loads((tmp_path / 'mean' / 'config.json').read_text())
    assert (cfg['num_records'], cfg['num_windows'], cfg['num_rows'], cfg['pooling']) == (3, 5, 3, 'mean')
    # --crop center: one window per record, the middle one for the 30-s record.
    center, ids_c = _embed(tmp_path, encoder_dir, 'center', '--input', str(records), '--crop', 'center')
    np.testing.assert_allclose(center[ids_c.index('long')], w['long#1'], atol=1e-5)


@pytest.mark.filterwarnings('ignore:1 of 3 records of folder are shorter')
def test_window_stride(tmp_path, records, encoder_dir):
    with pytest.warns(UserWarning):
        per_window, ids = _embed(tmp_path, encoder_dir, 'half', '--input', str(records), '--pooling', 'none',
                                 '--window-stride', '250')
    assert [i for i in ids if i.startswith('long')] == [f'long#{k}' for k in range(5)]  # 0, 5, 10, 15, 20 s
    with open(tmp_path / 'half' / 'windows.csv') as f:
        assert [r['start_s'] for r in csv.DictReader(f) if r['record_id'] == 'long'] == ['0', '5', '10', '15', '20']
    full, ids_full = _embed(tmp_path, encoder_dir, 'full', '--input', str(records), '--pooling', 'none')
    for k in range(3):  # every other half-stride window is a full-stride one
        np.testing.assert_allclose(per_window[ids.index(f'long#{2 * k}')], full[ids_full.index(f'long#{k}')],
                                   atol=1e-5)
    assert main(['embed', '--checkpoint', str(encoder_dir), *RUN, '--input', str(records), '--crop', 'center',
                 '--window-stride', '250', '--output', str(tmp_path / 'bad')]) == 2


def test_short_records_pad_skip_or_refuse(tmp_path, records, encoder_dir, capsys):
    with pytest.warns(UserWarning, match=r"left out.*--short-records pad"):
        _, ids = _embed(tmp_path, encoder_dir, 'skip', '--input', str(records), '--short-records', 'skip')
    assert sorted(ids) == ['long', 'one']
    manifest = json.loads((tmp_path / 'skip' / 'cache' / 'manifest.json').read_text())
    assert [s['record_id'] for s in manifest['skipped']] == ['short']
    assert main(['embed', '--checkpoint', str(encoder_dir), *RUN, '--input', str(records), '--short-records',
                 'error', '--output', str(tmp_path / 'err')]) == 2
    err = capsys.readouterr().err
    assert "['short']" in err and '--short-records pad' in err and not (tmp_path / 'err' / 'cache').exists()
    ds = get_dataset('folder', records, labels_csv=False)
    pp = data_preprocessing(FS, 500)
    with pytest.raises(ValueError, match=r"1 of 3 records .*\['short'\].*--short-records pad"):
        check_short_records(ds, pp, 'error')
    with pytest.warns(UserWarning, match='zero-padded'):
        assert check_short_records(ds, pp, 'pad') == ['short']
    with pytest.raises(ValueError, match=r"short_records='bogus' is not supported"):  # not read as 'skip'
        check_short_records(ds, pp, 'bogus')
    # Exactly one window long after resampling (10 s at 50 Hz read at 100 Hz) is not short.
    with pytest.warns(UserWarning):
        assert check_short_records(ds, data_preprocessing(100.0, 1000), 'pad') == ['short']
    with pytest.raises(ValueError, match=r"\['one', 'short'\]"):
        check_short_records(ds, data_preprocessing(100.0, 1025), 'error')


def _labelled_folder(root, n=24):
    """n records of 30 s (3 windows each), two per patient, labels a/b."""
    rows = ['record,patient_id,label']
    for i in range(n):
        write_wfdb(root, f'r{i:02d}', sine_leads(FS, 1500, freq=1.0 + 0.1 * i, amp=1 + i % 2), FS)
        rows.append(f'r{i:02d},p{i // 2},{"ab"[i % 2]}')
    (root / 'labels.csv').write_text('\n'.join(rows) + '\n')
    return root


def test_probe_and_finetune_evaluate_whole_records(tmp_path):
    root = _labelled_folder(tmp_path / 'data')
    splits = prepare_data('folder', root, tmp_path / 'cache', sampling_rate=FS, num_samples=500, progress=False)
    # No leakage: a record's windows are all in one split, and the splits share no record or patient.
    seen = {}
    for name in ('train', 'val', 'test'):
        ds = splits[name]
        assert all(ds.record_ids.count(r) == 3 for r in ds.record_ids)
        seen[name] = set(ds.record_ids)
    assert not (seen['train'] & seen['test']) and not (seen['train'] & seen['val']) and not (seen['val'] & seen['test'])
    torch.manual_seed(0)
    enc = ecgvit.create_model('ecg_vit_tiny', img_size=500)
    res = linear_probe(enc, splits['train'], splits['val'], splits['test'], epochs=2, batch_size=8, n_boot=0,
                       progress=False, device='cpu', output_dir=str(tmp_path / 'probe'))
    n_test = len(seen['test'])
    assert res['n_test'] == n_test and res['windows']['test'] == {'pooling': 'mean', 'n_windows': 3 * n_test,
                                                                  'n_records': n_test}
    ids = np.load(tmp_path / 'probe' / 'predictions.npz')['ids']
    assert sorted(ids) == sorted(seen['test'])
    res = linear_probe(enc, splits['train'], splits['val'], splits['test'], epochs=1, batch_size=8, n_boot=0,
                       progress=False, device='cpu', pooling='none')
    assert res['n_test'] == 3 * n_test  # window-level metrics on request
    res = finetune(ecgvit.create_model('ecg_vit_tiny', img_size=500), splits['train'], splits['val'], splits['test'],
                   epochs=1, batch_size=8, n_boot=0, progress=False, device='cpu', output_dir=str(tmp_path / 'ft'))
    assert res['n_test'] == n_test and sorted(np.load(tmp_path / 'ft' / 'predictions.npz')['ids']) == \
        sorted(seen['test'])


def test_predict_records_averages_window_logits(tmp_path):
    root = _labelled_folder(tmp_path / 'data', n=6)
    ds = CachedECGDataset(build_cache(get_dataset('folder', root), data_preprocessing(FS, 500), tmp_path / 'cache',
                                      num_workers=0, progress=False))
    assert len(ds) == 18
    torch.manual_seed(0)
    model = ecgvit.create_model('ecg_vit_tiny', img_size=500, num_classes=2).eval()
    task = TaskInfo(2, False, ['a', 'b'])
    y, prob, loss, ids = predict_records(model, ds, task, torch.device('cpu'), pooling='mean', batch_size=4)
    with torch.no_grad():
        logits = model(torch.from_numpy(np.asarray(ds.signals))).numpy()
    want = np.stack([logits[[i for i, r in enumerate(ds.record_ids) if r == rid]].mean(0) for rid in ids])
    np.testing.assert_allclose(prob, torch.softmax(torch.from_numpy(want), -1).numpy(), atol=1e-5)
    assert len(ids) == 6 and sorted(ids) == sorted(set(ds.record_ids)) and y.shape == (6,) and np.isfinite(loss)
    feats, labels, fids = embed_records(model, ds, 'mean', batch_size=4, device=torch.device('cpu'))
    assert feats.shape[0] == 6 and fids == ids and labels.tolist() == y.tolist()
