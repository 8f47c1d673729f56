"""The memmap cache: contents, idempotence, rebuilds, atomicity, skipped records, zero-copy torch reads."""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import sine_leads, write_challenge, write_dx_tables, write_wfdb

import ecgvit.data.cache as cache_mod
from ecgvit.data import (
    CacheBuildError,
    CachedECGDataset,
    CacheError,
    Preprocessing,
    PretrainingPool,
    build_cache,
    get_dataset,
    make_synthetic,
)


@pytest.fixture(scope='module')
def syn(tmp_path_factory):
    root = make_synthetic(tmp_path_factory.mktemp('syn') / 'data', n_records=30, seed=0, fs=250.0, duration_s=10.0)
    return get_dataset('folder', root, label_names=['NSR', 'SB', 'ST', 'AF', 'BBB'])


def test_build_and_read(syn, tmp_path):
    pp = Preprocessing()
    out = build_cache(syn, pp, tmp_path / 'c', num_workers=2, progress=False)
    full = CachedECGDataset(out)
    assert len(full) == 30 and full.signals.shape == (30, 12, 3600)
    assert full.label_names == syn.label_names and not full.multilabel and full.preprocessing == pp
    # Every item equals preprocessing the record directly, and labels/ids line up.
    for i in (0, 13, 29):
        rid = full.record_ids[i]
        entry = syn[syn.record_ids.index(rid)]
        x, y = full[i]
        assert x.dtype == torch.float32 and x.shape == (12, 3600)
        assert np.array_equal(x.numpy(), pp(syn.read(entry)))
        assert y.dtype == torch.long and y.ndim == 0 and int(y) == entry.labels
        assert full.patient_ids[i] == entry.patient_id and full.splits[i] == entry.split
    total = 0
    for split in ('train', 'val', 'test'):
        part = CachedECGDataset(out, split=split)
        assert set(part.splits) <= {split} and len(part) == len(syn.split_entries(split))
        assert isinstance(part.signals, np.memmap)
        total += len(part)
    assert total == 30
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['complete'] and manifest['n_skipped'] == 0 and manifest['preprocessing'] == pp.to_dict()
    assert len(pd.read_csv(out / 'index.csv').sha256.unique()) == 30


def test_zero_copy_and_no_warnings(syn, tmp_path):
    out = build_cache(syn, Preprocessing(), tmp_path / 'c', num_workers=0, progress=False)
    ds = CachedECGDataset(out, split='train')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a read-only memmap would warn in torch.from_numpy
        x, _ = ds[3]
    assert np.shares_memory(x.numpy(), ds.signals)
    before = np.array(ds.signals[3])
    x.mul_(0)  # copy-on-write: the caller may scribble on x; the file stays intact
    assert np.array_equal(np.asarray(CachedECGDataset(out, split='train').signals[3]), before)


def test_dataloader_with_workers(syn, tmp_path):
    out = build_cache(syn, Preprocessing(), tmp_path / 'c', num_workers=0, progress=False)
    ds = CachedECGDataset(out)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, shuffle=False)
    xs, ys = zip(*loader)
    assert torch.cat(xs).shape == (30, 12, 3600) and torch.equal(torch.cat(ys), torch.from_numpy(ds.labels))


def test_idempotent_and_rebuilds_on_change(syn, tmp_path):
    out = tmp_path / 'c'
    build_cache(syn, Preprocessing(), out, num_workers=0, progress=False)
    stamp = (out / 'manifest.json').stat().st_mtime_ns
    calls = []
    real = cache_mod._write
    try:
        cache_mod._write = lambda *a, **k: calls.append(1) or real(*a, **k)
        build_cache(syn, Preprocessing(), out, num_workers=0, progress=False)
        assert not calls and (out / 'manifest.json').stat().st_mtime_ns == stamp  # no-op
        build_cache(syn, Preprocessing(sampling_rate=250.0, num_samples=2500), out, num_workers=0, progress=False)
        assert calls == [1]
    finally:
        cache_mod._write = real
    ds = CachedECGDataset(out)
    assert ds.signals.shape == (30, 12, 2500) and ds.preprocessing.sampling_rate == 250.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]  # no temp/old folders left


def test_interrupted_build_leaves_no_loadable_cache(syn, tmp_path, monkeypatch):
    out = tmp_path / 'c'

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    real_swap = cache_mod._swap_into_place
    monkeypatch.setattr(cache_mod, '_swap_into_place', crash)
    with pytest.raises(KeyboardInterrupt):
        build_cache(syn, Preprocessing(), out, num_workers=0, progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.raises(CacheError, match='no readable manifest.json'):
        CachedECGDataset(out)
    monkeypatch.setattr(cache_mod, '_swap_into_place', real_swap)
    build_cache(syn, Preprocessing(), out, num_workers=0, progress=False)
    good = (out / 'manifest.json').read_text()
    # A crash while rebuilding keeps the old cache intact.
    monkeypatch.setattr(cache_mod, '_swap_into_place', crash)
    with pytest.raises(KeyboardInterrupt):
        build_cache(syn, Preprocessing(num_samples=3000), out, num_workers=0, progress=False)
    assert (out / 'manifest.json').read_text() == good and len(CachedECGDataset(out)) == 30
    # A killed process leaves its temp folder; the next build removes it (its pid is gone).
    stale, old = tmp_path / '.c.tmp-999999999-x', tmp_path / '.c.old-999999999-1'
    stale.mkdir()
    old.mkdir()
    (stale / 'signals.f32').write_bytes(b'\0' * 10)
    monkeypatch.setattr(cache_mod, '_swap_into_place', real_swap)
    build_cache(syn, Preprocessing(num_samples=3000), out, num_workers=0, progress=False)
    assert not stale.exists() and not old.exists()


def test_truncated_signals_file_is_refused(syn, tmp_path):
    out = build_cache(syn, Preprocessing(), tmp_path / 'c', num_workers=0, progress=False)
    with open(out / 'signals.f32', 'r+b') as f:
        f.truncate(1000)
    with pytest.raises(CacheError, match='incomplete'):
        CachedECGDataset(out)
    rebuilt = build_cache(syn, Preprocessing(), out, num_workers=0, progress=False)  # invalid cache -> rebuilt
    assert len(CachedECGDataset(rebuilt, verify=True)) == 30


def test_refuses_to_overwrite_foreign_folder(syn, tmp_path):
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'thesis.tex').write_text('precious')
    with pytest.raises(CacheError, match='not an ecgvit cache'):
        build_cache(syn, Preprocessing(), tmp_path / 'mine', progress=False)


@pytest.fixture()
def messy_folder(tmp_path):
    d = tmp_path / 'messy'
    fs = 250.0
    write_wfdb(d, 'good', sine_leads(fs, 2500), fs)
    write_wfdb(d, 'short', sine_leads(fs, 1000), fs)
    flat = sine_leads(fs, 2500)
    flat[7] = 0
    write_wfdb(d, 'flatlead', flat, fs)
    write_wfdb(d, 'trunc', sine_leads(fs, 2500), fs)
    (d / 'trunc.dat').write_bytes((d / 'trunc.dat').read_bytes()[:100])
    write_wfdb(d, 'nodat', sine_leads(fs, 2500), fs)
    (d / 'nodat.dat').unlink()
    write_wfdb(d, 'nofs', sine_leads(fs, 2500), fs)
    (d / 'nofs.hea').write_text((d / 'nofs.hea').read_text().replace('nofs 12 250 2500', 'nofs 12'))
    write_wfdb(d, 'sixleads', sine_leads(fs, 2500, n_leads=6), fs, lead_names=['I', 'II', 'III', 'aVR', 'aVL', 'aVF'])
    return d


def test_skipped_records_are_reported(messy_folder, tmp_path):
    ds = get_dataset('folder', messy_folder)
    assert dict(ds.skipped)['nodat'].startswith('no signal file')
    out = build_cache(ds, Preprocessing(), tmp_path / 'c', num_workers=0, progress=False)
    cached = CachedECGDataset(out)
    assert cached.record_ids == ['good']
    reasons = {s['record_id']: s['reason'] for s in cached.skipped}
    assert set(reasons) == {'short', 'flatlead', 'trunc', 'nodat', 'nofs', 'sixleads'}
    assert 'shorter than the target' in reasons['short'] and 'empty leads' in reasons['flatlead']
    assert 'truncated' in reasons['trunc'] and 'no sampling rate' in reasons['nofs']
    assert 'missing leads' in reasons['sixleads']
    with pytest.raises(CacheBuildError, match='nodat'):
        build_cache(ds, Preprocessing(), tmp_path / 'strict', strict=True, progress=False)
    lenient = Preprocessing(pad='zero', empty_lead_policy='zero', missing_leads='zero')
    out2 = build_cache(ds, lenient, tmp_path / 'c2', num_workers=0, progress=False)
    kept = CachedECGDataset(out2, verify=True)
    assert sorted(kept.record_ids) == ['flatlead', 'good', 'short', 'sixleads']
    for i, rid in enumerate(kept.record_ids):  # rows were compacted over the skipped records' slots
        entry = ds[ds.record_ids.index(rid)]
        assert np.array_equal(kept[i][0].numpy(), lenient(ds.read(entry, missing_leads='zero')))
    with pytest.raises(CacheBuildError, match='No record'):
        build_cache(get_dataset('folder', messy_folder / '..' / 'messy', labels_csv=False), Preprocessing(
            num_samples=100000), tmp_path / 'c3', num_workers=0, progress=False)


def test_multilabel_cache_and_windows(tmp_path):
    root = tmp_path / 'cinc'
    write_dx_tables(root)
    write_challenge(root, 'A1', sine_leads(500.0, 12000), 500.0, dx=['164889003', '59118001'])
    write_challenge(root, 'A2', sine_leads(500.0, 5000), 500.0, dx=['426783006'])
    ds = get_dataset('cinc', root)
    out = build_cache(ds, Preprocessing(crop='windows'), tmp_path / 'c', num_workers=0, progress=False)
    cached = CachedECGDataset(out)
    assert cached.multilabel and len(cached) == 3  # 24 s -> two 10-s windows, 10 s -> one
    assert sorted(zip(cached.record_ids, cached.windows)) == [('A1', 0), ('A1', 1), ('A2', 0)]
    x, y = cached[cached.record_ids.index('A1')]
    assert y.dtype == torch.float32 and y.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_pool_drops_duplicates_and_copies_of_held_out_records(tmp_path):
    fs = 250.0
    a, b = tmp_path / 'a', tmp_path / 'b'
    sigs = [sine_leads(fs, 2500, freq=2 + i) for i in range(4)]
    for i, s in enumerate(sigs):
        write_wfdb(a, f'a{i}', s, fs)
    pd.DataFrame({'record': [f'a{i}' for i in range(4)], 'label': list('xxyy'),
                  'split': ['train', 'train', 'test', 'val']}).to_csv(a / 'labels.csv', index=False)
    write_challenge(b, 'copy_of_train', sigs[0], fs, dx=['426783006'])  # same samples, other format
    write_challenge(b, 'copy_of_test', sigs[2], fs, dx=['426783006'])
    write_challenge(b, 'new', sine_leads(fs, 2500, freq=9.0), fs, dx=['426783006'])
    write_dx_tables(b)
    pool = PretrainingPool({'a': get_dataset('folder', a), 'b': get_dataset('cinc', b)}, exclude=['a:test', 'a:val'])
    out = build_cache(pool, Preprocessing(), tmp_path / 'c', num_workers=0, progress=False)
    cached = CachedECGDataset(out, split='train')
    assert sorted(cached.record_ids) == ['a/a0@0s', 'a/a1@0s', 'b/new@0s']
    reasons = {s['record_id']: s['reason'] for s in cached.skipped}
    assert reasons['b/copy_of_train@0s'] == 'exact duplicate of a/a0@0s.'
    assert reasons['b/copy_of_test@0s'] == 'exact copy of held-out record a/a2@0s.'
    assert cached.labels.tolist() == [-1, -1, -1]


def test_cache_dir_errors(tmp_path):
    with pytest.raises(CacheError, match='build_cache'):
        CachedECGDataset(tmp_path)
    with pytest.raises(TypeError, match='Preprocessing'):
        build_cache(None, {'sampling_rate': 360}, tmp_path / 'x')
    with pytest.raises(TypeError, match='ECGDataset'):
        build_cache(['rec1'], Preprocessing(), tmp_path / 'x')


def test_split_ranges_are_contiguous(syn, tmp_path):
    out = build_cache(syn, Preprocessing(), tmp_path / 'c', num_workers=0, progress=False)
    ranges = json.loads((out / 'manifest.json').read_text())['split_ranges']
    bounds = sorted(tuple(v) for v in ranges.values())
    assert bounds[0][0] == 0 and bounds[-1][1] == 30
    assert all(x[1] == y[0] for x, y in zip(bounds, bounds[1:]))
    assert os.path.getsize(out / 'signals.f32') == 30 * 12 * 3600 * 4


def test_the_left_out_warning_relates_its_count_to_the_datasets(tmp_path):
    from ecgvit.data.cache import _report

    # 18 of 1598 files left out, 17 while indexing: the dataset said 1581 records, so the warning says how they relate.
    skipped = [{'record_id': str(i), 'reason': 'unparseable scp_codes', 'stage': 'index'} for i in range(17)]
    skipped.append({'record_id': '99', 'reason': 'no usable lead', 'stage': 'convert'})
    manifest = {'skipped': skipped, 'n_entries': 1581, 'n_partial_leads': 0}
    with pytest.warns(UserWarning, match=r"ptbxl: 18 of 1598 records were left out of the cache \(17 while indexing, "
                                         r"which the dataset's 1581 records do not count; 1 while converting\)"):
        _report(manifest, tmp_path, 'ptbxl')
