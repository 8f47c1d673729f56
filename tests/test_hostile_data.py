"""Hostile input, data layer: every bad record, header, label file, cache or concurrent run ends in a correct result
(with a warning where the data are doubtful) or a typed error whose message names the file and the fix.

Every case is one row: (kind, description, how to build the bad input, expected outcome). ``LAYERS`` holds one list
of rows per layer; another layer adds its own list there and its rows join the parametrised test and the summary
table ``docs/hostile_input.md``. The table is written from the rows, never by hand:

    ECGVIT_WRITE_HOSTILE_TABLE=1 python -m pytest -q tests/test_hostile_data.py -k table

and ``test_summary_table_is_up_to_date`` fails when the committed table no longer matches the rows.
"""
from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
from data_fixtures import write_challenge, write_ptbxl, write_real_layout, write_wfdb

from ecgvit.constants import LEADS
from ecgvit.data import (
    CacheBuildError,
    CachedECGDataset,
    CacheError,
    ChecksumError,
    DatasetLayoutError,
    ImplausibleDataError,
    MissingLeadsError,
    Preprocessing,
    PretrainingPool,
    Record,
    RecordError,
    RecordFileNotFoundError,
    SyntheticDataset,
    UnsafePathError,
    build_cache,
    get_dataset,
    read_record,
    signal_sha256,
    synthesize_ecg,
)
from ecgvit.data.plausibility import check_record
from ecgvit.data.prepare import data_preprocessing, prepare_data

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / 'docs' / 'hostile_input.md'


@dataclass(frozen=True)
class Case:
    """One hostile input.

    Attributes:
        kind: what is attacked ('record', 'header', 'labels', ...); rows of one kind are counted together.
        description: the bad input, in a few words (goes into the table).
        build: ``build(tmp_path)`` writes the input and returns a thunk that runs the operation under test.
        expect: 'ok' (the thunk must return a correct result) or the exception type it must raise.
        match: regex the error message must contain (required for errors: the file/option and the fix).
        check: for 'ok', ``check(result, tmp_path)`` asserts the result is correct.
        warns: regex of a warning that must be issued (doubtful data are reported, never silently accepted).
    """
    kind: str
    description: str
    build: Callable[[Path], Callable[[], Any]]
    expect: str | type[BaseException] = 'ok'
    match: str = ''
    check: Callable[[Any, Path], None] | None = None
    warns: str | None = None

    @property
    def id(self) -> str:
        return f'{self.kind}-' + re.sub(r'[^0-9a-z]+', '-', self.description.lower()).strip('-')[:60]

    @property
    def outcome(self) -> str:
        if self.expect == 'ok':
            if getattr(self.check, 'names_problem', False):  # a doubtful record: check_record's report is the result
                return 'problem named by check_record (build_cache warns with it)'
            return 'correct result + warning' if self.warns else 'correct result'
        return f'typed error: {self.expect.__name__}'


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks

FS = 250.0


def ecg(fs: float = FS, seconds: float = 10.0, seed: int = 0, label: str = 'NSR') -> np.ndarray:
    """A plausible 12-lead ECG in mV (leads, samples)."""
    return synthesize_ecg(label, fs=fs, duration_s=seconds, rng=seed).signal


def rec(tmp: Path, name: str = 'r', signal: np.ndarray | None = None, fs: float = FS, **kw) -> Path:
    return write_wfdb(tmp, name, ecg(fs) if signal is None else signal, fs, **kw)


def edit_header(base: Path, old: str, new: str, count: int = -1) -> Path:
    hea = base.with_suffix('.hea')
    text = hea.read_text()
    assert old in text, (old, text[:200])
    hea.write_text(text.replace(old, new, count) if count > 0 else text.replace(old, new))
    return base


def signal_lines(base: Path) -> list[str]:
    return base.with_suffix('.hea').read_text().splitlines()[1:13]


def set_field(base: Path, field: int, value: str) -> Path:
    """Set field ``field`` (0-based) of every signal line of a header."""
    lines = base.with_suffix('.hea').read_text().splitlines()
    for i in range(1, len(lines)):
        if lines[i] and not lines[i].startswith('#'):
            tok = lines[i].split()
            if len(tok) > field:
                tok[field] = value
                lines[i] = ' '.join(tok)
    base.with_suffix('.hea').write_text('\n'.join(lines) + '\n')
    return base


def read(base: Path, **kw) -> Callable[[], Any]:
    return lambda: read_record(base, **kw)


def through_preprocessing(base: Path, pp: Preprocessing | None = None, **kw) -> Callable[[], Any]:
    """Read as the commands do (missing leads zero-filled) and preprocess with the commands' lenient recipe."""
    pp = pp or data_preprocessing(FS, 2500, crop='center')  # one array per record
    return lambda: pp(read_record(base, missing_leads='zero', **kw), return_mask=True)


def close_to(expected: np.ndarray, atol: float = 1.5e-3):
    def check(result, tmp):
        assert result.signal.shape == expected.shape
        np.testing.assert_allclose(result.signal, expected, atol=atol)
    return check


def mask_is(expected: list[bool]):
    def check(result, tmp):
        x, mask = result
        assert mask.tolist() == expected
        assert np.all(x[~mask] == 0) and np.all(x[mask].std(axis=1) > 0.5)
    return check


# ---- record builders (each returns the thunk)

def b_good(tmp):
    sig = ecg()
    base = rec(tmp, signal=sig)
    return lambda: (read_record(base), sig)


def b_random_dat(tmp):
    base = rec(tmp)
    dat = base.with_suffix('.dat')
    dat.write_bytes(np.random.default_rng(0).integers(0, 256, dat.stat().st_size, dtype=np.uint8).tobytes())
    return read(base)


def b_other_records_dat(tmp):
    base = rec(tmp, 'a')
    other = rec(tmp, 'b', signal=ecg(seed=1))
    base.with_suffix('.dat').write_bytes(other.with_suffix('.dat').read_bytes())
    return read(base)


def b_one_sample_changed(tmp):
    base = rec(tmp)
    raw = np.fromfile(base.with_suffix('.dat'), dtype='<i2')
    raw[1234] += 1
    raw.tofile(base.with_suffix('.dat'))
    return read(base)


def b_random_dat_no_verify(tmp):
    base = rec(tmp)
    dat = base.with_suffix('.dat')
    dat.write_bytes(np.random.default_rng(0).integers(0, 256, dat.stat().st_size, dtype=np.uint8).tobytes())
    return read(base, verify_checksum=False)


def b_no_checksum_field(tmp):
    sig = ecg()
    base = rec(tmp, signal=sig)
    lines = base.with_suffix('.hea').read_text().splitlines()
    # Without a checksum (and init value / block size), a signal line is "<file> <fmt> <gain>/<units> <res> <zero>":
    # WFDB then allows no description, so the lead names go with them; read with leads=None.
    lines = [lines[0]] + [' '.join(ln.split()[:5]) for ln in lines[1:13]]
    base.with_suffix('.hea').write_text('\n'.join(lines) + '\n')
    return lambda: read_record(base, leads=None)


def b_truncated(tmp):
    base = rec(tmp)
    dat = base.with_suffix('.dat')
    dat.write_bytes(dat.read_bytes()[:5000])
    return read(base)


def b_empty_dat(tmp):
    base = rec(tmp)
    base.with_suffix('.dat').write_bytes(b'')
    return read(base)


def b_missing_dat(tmp):
    base = rec(tmp)
    base.with_suffix('.dat').unlink()
    return read(base)


def b_missing_hea(tmp):
    return read(tmp / 'nothing')


def b_all_zero(tmp):
    return through_preprocessing(rec(tmp, signal=np.zeros((12, 2500))))


def b_all_nan(tmp):
    base = rec(tmp)
    np.full(2500 * 12, -32768, dtype='<i2').tofile(base.with_suffix('.dat'))
    return through_preprocessing(base, verify_checksum=False)


def b_constant(tmp):
    return through_preprocessing(rec(tmp, signal=np.full((12, 2500), 0.7)))


def b_one_sample(tmp):
    return through_preprocessing(rec(tmp, signal=ecg()[:, :1]))


def b_half_second(tmp):
    return through_preprocessing(rec(tmp, signal=ecg()[:, :125]))


def b_unknown_leads(tmp):
    return through_preprocessing(rec(tmp, lead_names=[f'X{i}' for i in range(12)]))


def b_two_leads(tmp):
    return through_preprocessing(rec(tmp, signal=ecg()[:2], lead_names=['I', 'II']))


def b_six_leads_strict(tmp):
    base = rec(tmp, signal=ecg()[:6], lead_names=LEADS[:6])
    return read(base)


def b_nan_run(tmp):
    base = rec(tmp)
    raw = np.fromfile(base.with_suffix('.dat'), dtype='<i2').reshape(2500, 12)
    raw[100:140, 3] = -32768
    raw.tofile(base.with_suffix('.dat'))
    return through_preprocessing(base, verify_checksum=False)


def b_one_flat_lead(tmp):
    sig = ecg()
    sig[7] = 0
    return through_preprocessing(rec(tmp, signal=sig))


def b_gain_baseline(tmp):
    sig = ecg()
    base = rec(tmp, signal=sig, gain=731.0, baseline=-57)
    return lambda: read_record(base)


def b_uv_units(tmp):
    sig = ecg()
    base = rec(tmp, signal=sig * 1000.0, units='uV', gain=1.0)
    return read(base)


def b_fmt212(tmp):
    sig = ecg()
    base = rec(tmp, signal=sig, fmt='212', gain=200.0)
    return read(base)


def b_fmt212_corrupt(tmp):
    base = rec(tmp, fmt='212', gain=200.0)
    dat = base.with_suffix('.dat')
    data = bytearray(dat.read_bytes())
    data[300] ^= 0x5A
    dat.write_bytes(bytes(data))
    return read(base)


def b_lowercase_leads(tmp):
    sig = ecg()
    base = rec(tmp, signal=sig, lead_names=[n.lower() for n in LEADS])
    return read(base)


def b_header_real_ptbxl(tmp):
    base, sig = write_real_layout(tmp, 'ptbxl')
    return lambda: (read_record(base), sig)


def b_header_real_cinc(tmp):
    base, sig = write_real_layout(tmp, 'cinc')
    return lambda: (read_record(base), sig)


def b_header_real_ptbxl_bad_checksum(tmp):
    base, _ = write_real_layout(tmp, 'ptbxl')
    edit_header(base, ' 61530 0 I', ' 61531 0 I')
    return read(base)


def b_mat_bad_checksum(tmp):
    base = write_challenge(tmp, 'A1', ecg(500.0), 500.0, dx=['426783006'])
    line = signal_lines(base)[4]
    tok = line.split()
    edit_header(base, line, ' '.join(tok[:6] + [str(int(tok[6]) + 3)] + tok[7:]))
    return read(base)


def b_mat_gain_baseline(tmp):
    sig = ecg(500.0)
    base = write_challenge(tmp, 'A1', sig, 500.0, dx=['426783006'], gain=487.0, baseline=23)
    return lambda: (read_record(base), sig)


def b_mat_no_val(tmp):
    from scipy.io import savemat

    base = write_challenge(tmp, 'A1', ecg(500.0), 500.0, dx=['426783006'])
    savemat(str(base.with_suffix('.mat')), {'other': np.zeros((12, 5000), np.int16)}, format='4')
    return read(base)


def b_mat_garbage(tmp):
    base = write_challenge(tmp, 'A1', ecg(500.0), 500.0, dx=['426783006'])
    base.with_suffix('.mat').write_bytes(b'\x00garbage' * 1000)
    return read(base)


def b_huge_amplitudes(tmp):
    # Two different records above 2.1e6 mV (format 32, gain 1): they must hash apart and both stay in a pool.
    a = 3e6 + ecg() * 1e3
    b = 3e6 + ecg(seed=5) * 1e3
    d = tmp / 'huge'
    write_wfdb(d, 'a', a, FS, fmt='32', gain=1.0)
    write_wfdb(d, 'b', b, FS, fmt='32', gain=1.0)

    def run():
        ra, rb = read_record(d / 'a'), read_record(d / 'b')
        assert signal_sha256(ra) != signal_sha256(rb)
        pool = PretrainingPool({'x': get_dataset('folder', d, labels_csv=False)})
        out = build_cache(pool, Preprocessing(sampling_rate=FS, num_samples=2500), tmp / 'c', num_workers=0,
                          progress=False, plausibility='off')
        return CachedECGDataset(out)
    return run


# ---- header builders

def b_fs_zero(tmp):
    return read(edit_header(rec(tmp), 'r 12 250 2500', 'r 12 0 2500'))


def b_fs_negative(tmp):
    return read(edit_header(rec(tmp), 'r 12 250 2500', 'r 12 -250 2500'))


def b_fs_text(tmp):
    return read(edit_header(rec(tmp), 'r 12 250 2500', 'r 12 fast 2500'))


def b_fs_missing(tmp):
    return read(edit_header(rec(tmp), 'r 12 250 2500', 'r 12'))


def b_fs_nan(tmp):
    return read(edit_header(rec(tmp), 'r 12 250 2500', 'r 12 nan 2500'))


def b_too_few_signal_lines(tmp):
    base = rec(tmp)
    lines = base.with_suffix('.hea').read_text().splitlines()
    base.with_suffix('.hea').write_text('\n'.join(lines[:12]) + '\n')
    return read(base)


def b_empty_header(tmp):
    base = rec(tmp)
    base.with_suffix('.hea').write_text('')
    return read(base)


def b_comments_only_header(tmp):
    base = rec(tmp)
    base.with_suffix('.hea').write_text('# just a comment\n')
    return read(base)


def b_zero_signals(tmp):
    base = rec(tmp)
    base.with_suffix('.hea').write_text('r 0 250 2500\n')
    return read(base)


def b_sig_len_too_long(tmp):
    return read(edit_header(rec(tmp), 'r 12 250 2500', 'r 12 250 9000'))


def b_parent_path(tmp):
    (tmp / 'other').mkdir()
    base = rec(tmp / 'rec')
    (tmp / 'other' / 'x.dat').write_bytes(base.with_suffix('.dat').read_bytes())
    return read(set_field(base, 0, '../other/x.dat'))


def b_absolute_path(tmp):
    base = rec(tmp)
    return read(set_field(base, 0, str(base.with_suffix('.dat').resolve())))


def b_dotdot_inside(tmp):
    base = rec(tmp)
    return read(set_field(base, 0, 'sub/../../r.dat'))


def b_subfolder_path(tmp):
    sig = ecg()
    base = rec(tmp, signal=sig)
    (tmp / 'signals').mkdir()
    base.with_suffix('.dat').rename(tmp / 'signals' / 'r.dat')
    set_field(base, 0, 'signals/r.dat')
    return read(base)


def b_symlinked_dat(tmp):
    sig = ecg()
    store = rec(tmp / 'store', 'r', signal=sig)
    (tmp / 'data').mkdir()
    (tmp / 'data' / 'r.hea').write_text(store.with_suffix('.hea').read_text())
    os.symlink(store.with_suffix('.dat'), tmp / 'data' / 'r.dat')
    return read(tmp / 'data' / 'r')


def b_duplicate_leads(tmp):
    base = rec(tmp)
    line = signal_lines(base)[1]
    return read(edit_header(base, line, line[:-len('II')] + 'I'))


def b_unknown_units(tmp):
    return read(edit_header(rec(tmp), '/mV', '/furlong'))


def b_bad_gain(tmp):
    return read(edit_header(rec(tmp), '1000.0(0)/mV', 'abc(0)/mV', 1))


def b_bad_checksum_field(tmp):
    return read(set_field(rec(tmp), 6, 'x17'))


def b_latin1_comment(tmp):
    sig = ecg()
    base = rec(tmp, signal=sig)
    with open(base.with_suffix('.hea'), 'ab') as f:
        f.write('# Diagnose: Vorhofflimmern, Patient Müller\n'.encode('latin-1'))
    return read(base)


def b_no_lead_names(tmp):
    base = rec(tmp)
    return read(set_field(base, 8, ''))


# ---- plausibility builders

def b_uv_labelled_mv(tmp):
    base = rec(tmp, signal=ecg() * 1000.0, gain=1.0)  # microvolt values under a mV unit
    return lambda: check_record(read_record(base))


def b_volts_labelled_mv(tmp):
    base = rec(tmp, signal=ecg() / 1000.0, gain=1e6, fmt='32')
    return lambda: check_record(read_record(base))


def b_half_rate_record(tmp):
    # 100 Hz data written as 50 Hz: every beat looks twice as long.
    base = rec(tmp, signal=ecg(100.0, seed=3), fs=50.0)
    return lambda: check_record(read_record(base))


def _half_rate_folder(tmp, fs: float) -> Path:
    d = tmp / 'half'
    for i in range(6):
        write_wfdb(d, f'r{i}', ecg(2 * fs, seed=i), fs)  # 10 s at 2 fs, declared fs
    return d


def _half_rate_cache(tmp, fs: float, **kw):
    d = _half_rate_folder(tmp, fs)
    return lambda: CachedECGDataset(build_cache(get_dataset('folder', d, labels_csv=False),
                                                Preprocessing(sampling_rate=fs, num_samples=int(10 * fs)),
                                                tmp / 'c', num_workers=0, progress=False, **kw))


def b_half_rate_dataset_50(tmp):
    return _half_rate_cache(tmp, 50.0)


def b_half_rate_dataset_250(tmp):
    return _half_rate_cache(tmp, 250.0)


def b_half_rate_dataset_strict(tmp):
    return _half_rate_cache(tmp, 250.0, plausibility='strict')


def b_quarter_rate_short_dataset(tmp):
    # 2.5 s at 4x the true rate: 10-s records at 250 Hz declared 1000 Hz (too short for an estimate before).
    d = tmp / 'quarter'
    for i in range(6):
        write_wfdb(d, f'r{i}', ecg(250.0, seed=i), 1000.0)
    return lambda: CachedECGDataset(build_cache(get_dataset('folder', d, labels_csv=False),
                                                Preprocessing(sampling_rate=250.0, num_samples=2500, pad='zero'),
                                                tmp / 'c', num_workers=0, progress=False))


def b_quarter_rate_low_dataset(tmp):
    # 500 Hz samples declared 125 Hz (40 s each): the R-peak detector's filter and refractory period do not fit such
    # slow beats, so its rates scatter around plausible values; the signals' period still says 4x too slow.
    d = tmp / 'slow'
    for i in range(6):
        write_wfdb(d, f'r{i}', ecg(500.0, seed=i), 125.0)
    return lambda: CachedECGDataset(build_cache(get_dataset('folder', d, labels_csv=False),
                                                Preprocessing(sampling_rate=125.0, num_samples=5000),
                                                tmp / 'c', num_workers=0, progress=False))


def b_plausible_dataset(tmp):
    d = tmp / 'ok'
    for i in range(4):
        write_wfdb(d, f'r{i}', ecg(seed=i), FS)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # a plausible dataset builds without a single warning
            return CachedECGDataset(build_cache(get_dataset('folder', d, labels_csv=False),
                                                Preprocessing(sampling_rate=FS, num_samples=2500), tmp / 'c',
                                                num_workers=0, progress=False, plausibility='strict'))
    return run


def b_plausibility_option(tmp):
    d = tmp / 'ok'
    write_wfdb(d, 'r', ecg(), FS)
    return lambda: build_cache(get_dataset('folder', d, labels_csv=False), Preprocessing(), tmp / 'c',
                               plausibility='sometimes')


# ---- label-file builders

def _labelled(tmp, labels: dict[str, str], extra_records: tuple[str, ...] = ()) -> Path:
    d = tmp / 'lab'
    for i, name in enumerate([*labels, *extra_records]):
        write_wfdb(d, name, ecg(seed=i), FS)
    return d


def b_row_without_record(tmp):
    d = _labelled(tmp, {'a': 'AF', 'b': 'NSR'})
    pd.DataFrame({'record': ['a', 'b', 'ghost'], 'label': ['AF', 'NSR', 'AF']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d)


def b_record_without_row(tmp):
    d = _labelled(tmp, {'a': 'AF', 'b': 'NSR'}, extra_records=('c',))
    pd.DataFrame({'record': ['a', 'b'], 'label': ['AF', 'NSR']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d)


def b_af_afib(tmp):
    d = _labelled(tmp, {'a': 'AF', 'b': 'Afib', 'c': 'NSR'})
    pd.DataFrame({'record': list('abc'), 'label': ['AF', 'Afib', 'NSR']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d)


def b_nsr_case_space(tmp):
    d = _labelled(tmp, {'a': 'NSR', 'b': 'nsr ', 'c': 'AF'})
    pd.DataFrame({'record': list('abc'), 'label': ['NSR', 'nsr ', 'AF']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d)


def b_near_duplicate_strict(tmp):
    d = _labelled(tmp, {'a': 'AF', 'b': 'Afib'})
    pd.DataFrame({'record': list('ab'), 'label': ['AF', 'Afib']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d, strict=True)


def b_multilabel_near_duplicate(tmp):
    d = _labelled(tmp, {'a': '', 'b': ''})
    pd.DataFrame({'record': list('ab'), 'label': ['AF;RBBB', 'A-Fib']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d, multilabel=True)


def b_distinct_labels(tmp):
    d = _labelled(tmp, {'a': 'AF', 'b': 'NSR', 'c': 'STach'})
    pd.DataFrame({'record': list('abc'), 'label': ['AF', 'NSR', 'STach']}).to_csv(d / 'labels.csv', index=False)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            return get_dataset('folder', d)
    return run


def b_no_label_column(tmp):
    d = _labelled(tmp, {'a': 'AF'})
    pd.DataFrame({'record': ['a'], 'diagnosis': ['AF']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d)


def b_duplicate_rows(tmp):
    d = _labelled(tmp, {'a': 'AF'})
    pd.DataFrame({'record': ['a', 'a'], 'label': ['AF', 'NSR']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d)


def b_bad_split_value(tmp):
    d = _labelled(tmp, {'a': 'AF', 'b': 'NSR'})
    pd.DataFrame({'record': ['a', 'b'], 'label': ['AF', 'NSR'], 'split': ['training', 'test']}).to_csv(
        d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d)


def b_empty_label(tmp):
    d = _labelled(tmp, {'a': 'AF', 'b': 'NSR'})
    pd.DataFrame({'record': ['a', 'b'], 'label': ['AF', '']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d)


def b_label_not_in_names(tmp):
    d = _labelled(tmp, {'a': 'AF', 'b': 'NSR'})
    pd.DataFrame({'record': ['a', 'b'], 'label': ['AF', 'XYZ']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d, label_names=['AF', 'NSR'])


def b_patient_two_splits(tmp):
    d = _labelled(tmp, {'a': 'AF', 'b': 'NSR'})
    pd.DataFrame({'record': ['a', 'b'], 'label': ['AF', 'NSR'], 'patient_id': ['p1', 'p1'],
                  'split': ['train', 'test']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d)


def b_labels_csv_missing(tmp):
    d = _labelled(tmp, {'a': 'AF'})
    return lambda: get_dataset('folder', d, labels_csv=tmp / 'nope.csv')


def b_no_headers(tmp):
    (tmp / 'empty').mkdir()
    (tmp / 'empty' / 'notes.txt').write_text('no records here')
    return lambda: get_dataset('folder', tmp / 'empty')


def b_row_names_path_outside(tmp):
    d = _labelled(tmp, {'a': 'AF'})
    rec(tmp / 'outside', 'secret')
    pd.DataFrame({'record': ['a', '../outside/secret'], 'label': ['AF', 'NSR']}).to_csv(d / 'labels.csv', index=False)
    return lambda: get_dataset('folder', d)


# ---- PTB-XL table builders

def _ptbxl(tmp, edit: Callable[[pd.DataFrame], None] | None = None) -> Path:
    root = write_ptbxl(tmp / 'ptbxl', n=6)
    if edit is not None:
        db = pd.read_csv(root / 'ptbxl_database.csv')
        edit(db)
        db.to_csv(root / 'ptbxl_database.csv', index=False)
    return root


def b_ptbxl_lr_outside(tmp):
    rec(tmp / 'elsewhere', 'x')

    def edit(db):
        db.loc[2, 'filename_lr'] = '../elsewhere/x'
    root = _ptbxl(tmp, edit)
    return lambda: get_dataset('ptbxl', root, sampling_rate=100, label_set='all')


def b_ptbxl_hr_absolute(tmp):
    def edit(db):
        db.loc[0, 'filename_hr'] = '/etc/passwd'
    root = _ptbxl(tmp, edit)
    return lambda: get_dataset('ptbxl', root, sampling_rate=500, label_set='all')


def b_ptbxl_hr_empty(tmp):
    def edit(db):
        db['filename_hr'] = db['filename_hr'].astype(object)
        db.loc[0, 'filename_hr'] = None
    root = _ptbxl(tmp, edit)
    return lambda: get_dataset('ptbxl', root, sampling_rate=500, label_set='all')


def b_ptbxl_bad_scp(tmp):
    def edit(db):
        db.loc[1, 'scp_codes'] = "{'NORM': 100.0"
    root = _ptbxl(tmp, edit)
    return lambda: get_dataset('ptbxl', root, sampling_rate=100, label_set='all')


def b_ptbxl_missing_column(tmp):
    root = _ptbxl(tmp, lambda db: db.pop('strat_fold'))
    return lambda: get_dataset('ptbxl', root, sampling_rate=100)


# ---- cache builders

def _fourteen(tmp) -> Path:
    """The issue's folder: 10 good records and 4 bad ones (all-zero, 1 sample, unknown leads, random bytes), plus the
    good ones include a 2-lead record."""
    d = tmp / 'fourteen'
    for i in range(9):
        write_wfdb(d, f'good{i}', ecg(seed=i), FS)
    write_wfdb(d, 'twolead', ecg(seed=20)[:2], FS, lead_names=['I', 'II'])
    write_wfdb(d, 'zeros', np.zeros((12, 2500)), FS)
    write_wfdb(d, 'onesample', ecg(seed=21)[:, :1], FS)
    write_wfdb(d, 'strange', ecg(seed=22), FS, lead_names=[f'ch{i}' for i in range(12)])
    base = write_wfdb(d, 'noise', ecg(seed=23), FS)
    dat = base.with_suffix('.dat')
    dat.write_bytes(np.random.default_rng(1).integers(0, 256, dat.stat().st_size, dtype=np.uint8).tobytes())
    return d


def b_fourteen_cache(tmp):
    d = _fourteen(tmp)
    return lambda: CachedECGDataset(build_cache(get_dataset('folder', d, labels_csv=False),
                                                data_preprocessing(FS, 2500), tmp / 'c', num_workers=0,
                                                progress=False))


def check_fourteen(ds, tmp):
    assert len(ds) == 10 and 'twolead' in ds.record_ids
    skipped = pd.read_csv(ds.skipped_csv)
    reasons = dict(zip(skipped['record_id'], skipped['reason']))
    assert set(reasons) == {'zeros', 'onesample', 'strange', 'noise'}
    assert 'no usable lead' in reasons['zeros'] and 'shorter than 1 s' in reasons['onesample']
    assert 'none of the requested leads' in reasons['strange'] and 'checksum' in reasons['noise']
    assert all(p.endswith(n) for p, n in zip(skipped['path'], skipped['record_id']))
    mask = ds.lead_mask[ds.record_ids.index('twolead')]
    assert mask.tolist() == [True, True] + [False] * 10
    assert ds.lead_mask.sum() == 9 * 12 + 2
    assert json.loads((ds.cache_dir / 'manifest.json').read_text())['n_partial_leads'] == 1


def b_two_lead_cache(tmp):
    d = tmp / 'd'
    write_wfdb(d, 'a', ecg(seed=1), FS)
    write_wfdb(d, 'b', ecg(seed=2), FS)
    write_wfdb(d, 'c', ecg(seed=3)[:2], FS, lead_names=['I', 'II'])
    return lambda: CachedECGDataset(build_cache(get_dataset('folder', d, labels_csv=False),
                                                data_preprocessing(FS, 2500), tmp / 'c', num_workers=0,
                                                progress=False))


def b_fourteen_strict(tmp):
    d = _fourteen(tmp)
    return lambda: build_cache(get_dataset('folder', d, labels_csv=False), data_preprocessing(FS, 2500),
                               tmp / 'c', num_workers=0, progress=False, strict=True)


def b_fourteen_embed(tmp):
    d = _fourteen(tmp)

    def run():
        from ecgvit.cli import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(['embed', '--input', str(d), '--model', 'ecg_vit_tiny', '--sampling-rate', '250',
                         '--num-samples', '2500', '--device', 'cpu', '--no-progress', '--num-workers', '0',
                         '-o', str(tmp / 'emb')])
        return code, err.getvalue()
    return run


def check_embed(result, tmp):
    code, err = result
    assert code == 0, err
    out = tmp / 'emb'
    assert len((out / 'ids.txt').read_text().split()) == 10
    assert np.load(out / 'embeddings.npy').shape[0] == 10
    assert 'skipped 4 records' in err and str(out / 'skipped.csv') in err
    assert len(pd.read_csv(out / 'skipped.csv')) == 4
    assert json.loads((out / 'config.json').read_text())['num_skipped'] == 4


def b_fourteen_prepare(tmp):
    d = _fourteen(tmp)
    return lambda: prepare_data('folder', d, tmp / 'cache', sampling_rate=FS, num_samples=2500, seed=0)


def check_prepare(splits, tmp):
    assert splits['skipped'] == 4 and len(pd.read_csv(splits['skipped_csv'])) == 4
    assert sum(len(splits[s]) for s in ('train', 'val', 'test')) == 10


def _small_cache(tmp) -> Path:
    d = tmp / 'small'
    for i in range(3):
        write_wfdb(d, f'r{i}', ecg(seed=i), FS)
    return build_cache(get_dataset('folder', d, labels_csv=False), Preprocessing(sampling_rate=FS, num_samples=2500),
                       tmp / 'c', num_workers=0, progress=False)


def b_cache_old_version(tmp):
    out = _small_cache(tmp)
    m = json.loads((out / 'manifest.json').read_text())
    m['cache_version'] = 1
    (out / 'manifest.json').write_text(json.dumps(m))
    return lambda: CachedECGDataset(out)


def b_cache_no_mask(tmp):
    out = _small_cache(tmp)
    (out / 'lead_mask.npy').unlink()
    return lambda: CachedECGDataset(out)


def b_cache_truncated(tmp):
    out = _small_cache(tmp)
    with open(out / 'signals.f32', 'r+b') as f:
        f.truncate(1000)
    return lambda: CachedECGDataset(out)


def b_cache_over_other_folder(tmp):
    (tmp / 'mine').mkdir()
    (tmp / 'mine' / 'thesis.tex').write_text('precious')
    d = tmp / 'data'
    write_wfdb(d, 'r', ecg(), FS)
    return lambda: build_cache(get_dataset('folder', d, labels_csv=False), Preprocessing(), tmp / 'mine',
                               progress=False)


def b_cache_manifest_garbage(tmp):
    out = _small_cache(tmp)
    (out / 'manifest.json').write_text('{not json')
    return lambda: CachedECGDataset(out)


def b_cache_stale_tmp(tmp):
    pid = _dead_pid()
    stale = tmp / f'.c.tmp-{pid}-abc'
    stale.mkdir()
    (stale / 'signals.f32').write_bytes(b'\0' * 64)
    d = tmp / 'data'
    write_wfdb(d, 'r', ecg(), FS)

    def run():
        build_cache(get_dataset('folder', d, labels_csv=False), Preprocessing(sampling_rate=FS, num_samples=2500),
                    tmp / 'c', num_workers=0, progress=False)
        return stale
    return run


# ---- concurrency / interruption builders

def _dead_pid() -> int:
    """The pid of a process that has exited (a killed run's)."""
    p = subprocess.Popen([sys.executable, '-c', 'pass'])
    p.wait()
    return p.pid


def _generate(root: str, n: int, seed: int, barrier, queue) -> None:
    try:
        barrier.wait(timeout=60)
        ds = SyntheticDataset(root, n_records=n, seed=seed, fs=100.0, duration_s=10.0)
        queue.put(('ok', len(ds)))
    except Exception as e:  # reported to the parent, which checks it
        queue.put((type(e).__name__, str(e)))


def _race(root: Path, seeds: tuple[int, int]) -> list[tuple[str, Any]]:
    """Two real processes generate into ``root`` at the same moment; their outcomes, within 120 s."""
    ctx = mp.get_context('fork' if 'fork' in mp.get_all_start_methods() else 'spawn')
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_generate, args=(str(root), 12, s, barrier, queue)) for s in seeds]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results


def _build(folder: str, out: str, barrier, queue) -> None:
    try:
        ds = get_dataset('folder', folder, labels_csv=False)
        barrier.wait(timeout=60)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            path = build_cache(ds, Preprocessing(sampling_rate=FS, num_samples=2500), out, num_workers=0,
                               progress=False)
        queue.put(('ok', len(CachedECGDataset(path))))
    except Exception as e:  # reported to the parent, which checks it
        queue.put((type(e).__name__, str(e)))


def b_two_cache_builds(tmp):
    d = tmp / 'data'
    for i in range(8):
        write_wfdb(d, f'r{i}', ecg(seed=i), FS)

    def run():
        ctx = mp.get_context('fork' if 'fork' in mp.get_all_start_methods() else 'spawn')
        barrier, queue = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_build, args=(str(d), str(tmp / 'c'), barrier, queue)) for _ in range(2)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        return results
    return run


def b_lost_rename_race(tmp):
    """The interleaving two processes can hit: ours checks that ``out`` is absent, theirs renames the same cache into
    place, ours renames: forced here by making the first existence check say 'absent'."""
    import shutil
    from unittest import mock

    import ecgvit.data.cache as cache_mod

    out = _small_cache(tmp)
    theirs = json.loads((out / 'manifest.json').read_text())
    ours = tmp / f'.c.tmp-{os.getpid()}-race'
    shutil.copytree(out, ours)
    real_exists = Path.exists
    calls = []

    def exists_once_absent(self):
        if self == out and not calls:
            calls.append(self)
            return False
        return real_exists(self)

    def run():
        with mock.patch.object(Path, 'exists', exists_once_absent):
            cache_mod._swap_into_place(ours, out)
        assert calls and not ours.exists()
        return CachedECGDataset(out), theirs
    return run


def b_two_generators_same(tmp):
    return lambda: _race(tmp / 'syn', (0, 0))


def check_two_generators_same(results, tmp):
    assert results == [('ok', 12), ('ok', 12)]
    assert not [p for p in tmp.iterdir() if '.tmp-' in p.name]  # the loser removed its copy


def b_two_generators_different(tmp):
    return lambda: _race(tmp / 'syn', (0, 1))


def check_two_generators_different(results, tmp):
    kinds = sorted(r[0] for r in results)
    assert kinds == ['DatasetLayoutError', 'ok'], results
    assert 'synthetic' in dict(results)['DatasetLayoutError']


def b_killed_generation(tmp):
    stale = tmp / f'.syn.tmp-{_dead_pid()}-xyz'
    stale.mkdir()
    (stale / 'syn00000.hea').write_text('half written')

    def run():
        SyntheticDataset(tmp / 'syn', n_records=5, seed=0, fs=100.0, duration_s=10.0)
        return stale
    return run


def b_generation_into_empty_dir(tmp):
    (tmp / 'syn').mkdir()
    return lambda: SyntheticDataset(tmp / 'syn', n_records=5, seed=0, fs=100.0, duration_s=10.0)


def b_generation_into_foreign_dir(tmp):
    (tmp / 'syn').mkdir()
    (tmp / 'syn' / 'thesis.tex').write_text('precious')
    return lambda: SyntheticDataset(tmp / 'syn', n_records=5, seed=0, fs=100.0, duration_s=10.0)


def check_gone(path, tmp):
    assert not path.exists()


def check_good(result, tmp):
    record, sig = result
    np.testing.assert_allclose(record.signal, sig, atol=1.5e-3)


def check_exact(result, tmp):
    record, sig = result
    np.testing.assert_array_equal(record.signal, sig)


def check_problem(fragment):
    def check(result, tmp):
        assert any(re.search(fragment, p) for p in result['problems']), result
    check.names_problem = True
    return check


def check_no_problem(result, tmp):
    assert result['problems'] == [], result


def check_skipped(rid, fragment):
    def check(ds, tmp):
        assert rid not in ds.record_ids and fragment in dict(ds.skipped)[rid]
    return check


def check_labels(names):
    def check(ds, tmp):
        assert ds.label_names == names
    return check


# ---------------------------------------------------------------------------------------------------------------------
# The rows, one list per layer

RECORD_CASES = [
    Case('record', 'plain 12-lead format-16 record', b_good, check=check_good),
    Case('record', '.dat of random bytes of the right size', b_random_dat, ChecksumError,
         r'r\.dat does not match the checksums.*re-download'),
    Case('record', '.dat copied from another record of the same size', b_other_records_dat, ChecksumError,
         r'a\.dat does not match the checksums'),
    Case('record', 'one sample of the .dat changed by 1 adu', b_one_sample_changed, ChecksumError,
         r'1 of 12 signals'),
    Case('record', 'random .dat read with verify_checksum=False', b_random_dat_no_verify,
         check=lambda r, t: r.signal.shape == (12, 2500)),
    Case('record', 'header without checksum fields', b_no_checksum_field,
         check=lambda r, t: r.signal.shape == (12, 2500)),
    Case('record', 'truncated .dat', b_truncated, RecordError, r'r\.dat is truncated.*Re-download'),
    Case('record', 'empty .dat', b_empty_dat, RecordError, r'truncated: 0 bytes'),
    Case('record', 'missing .dat', b_missing_dat, RecordFileNotFoundError, r'r\.dat named in the header is missing'),
    Case('record', 'missing .hea', b_missing_hea, RecordFileNotFoundError, r'nothing\.hea not found'),
    Case('record', 'all-zero record', b_all_zero, RecordError, r'no usable lead.*all zero'),
    Case('record', 'all samples invalid (-32768)', b_all_nan, RecordError, r'no usable lead'),
    Case('record', 'constant record', b_constant, RecordError, r'no usable lead'),
    Case('record', '1-sample record', b_one_sample, RecordError, r'1 samples .* shorter than 1 s'),
    Case('record', '0.5-s record', b_half_second, RecordError, r'shorter than 1 s'),
    Case('record', 'no lead has a standard name (X0..X11)', b_unknown_leads, MissingLeadsError,
         r"none of the requested leads.*X0.*Rename the signals"),
    Case('record', '2-lead record (10 leads zero-filled)', b_two_leads, check=mask_is([True, True] + [False] * 10)),
    Case('record', '6-lead record read with missing_leads=error', b_six_leads_strict, MissingLeadsError,
         r"missing leads \['V1'.*missing_leads='zero'"),
    Case('record', 'run of invalid samples in one lead', b_nan_run, check=mask_is([True] * 12)),
    Case('record', 'one flat lead', b_one_flat_lead, check=mask_is([True] * 7 + [False] + [True] * 4)),
    Case('record', 'gain 731, baseline -57', b_gain_baseline,
         check=lambda r, t: np.testing.assert_allclose(r.signal, ecg(), atol=1e-3)),
    Case('record', 'units uV', b_uv_units, check=lambda r, t: np.testing.assert_allclose(r.signal, ecg(), atol=2e-3)),
    Case('record', 'format 212 (read through wfdb)', b_fmt212,
         check=lambda r, t: np.testing.assert_allclose(r.signal, ecg(), atol=6e-3)),
    Case('record', 'format 212 with a corrupted byte', b_fmt212_corrupt, ChecksumError, r'does not match'),
    Case('record', 'lower-case lead names', b_lowercase_leads, check=lambda r, t: r.lead_names == LEADS),
    Case('record', 'PTB-XL header layout, made-up values', b_header_real_ptbxl, check=check_exact),
    Case('record', 'CinC challenge header layout (.mat), made-up values', b_header_real_cinc, check=check_exact),
    Case('record', 'PTB-XL layout, one checksum off by 1', b_header_real_ptbxl_bad_checksum, ChecksumError,
         r'00042_lr\.dat .* I \(samples sum to 61530, header says 61531\)'),
    Case('record', 'challenge .mat whose checksum is wrong', b_mat_bad_checksum, ChecksumError,
         r'A1\.mat does not match'),
    Case('record', 'challenge .mat with gain 487, baseline 23', b_mat_gain_baseline, check=check_good),
    Case('record', 'challenge .mat without "val"', b_mat_no_val, RecordError, r'A1\.mat has no variable "val"'),
    Case('record', 'challenge .mat of garbage', b_mat_garbage, RecordError, r'cannot read A1\.mat.*Re-download'),
    Case('record', 'two records above 2.1e6 mV', b_huge_amplitudes, check=lambda ds, t: len(ds) == 2),
]

HEADER_CASES = [
    Case('header', 'sampling rate 0', b_fs_zero, RecordError, r'sampling rate 0\.0 Hz .* not a positive number'),
    Case('header', 'negative sampling rate', b_fs_negative, RecordError, r'not a positive number'),
    Case('header', 'sampling rate "fast"', b_fs_text, RecordError, r"unreadable sampling rate 'fast'"),
    Case('header', 'sampling rate NaN', b_fs_nan, RecordError, r'not a positive number'),
    Case('header', 'no sampling rate', b_fs_missing, RecordError, r'gives no sampling rate.*third field'),
    Case('header', 'fewer signal lines than declared', b_too_few_signal_lines, RecordError,
         r'declares 12 signals but has 11'),
    Case('header', 'empty header', b_empty_header, RecordError, r'no record line'),
    Case('header', 'comments only', b_comments_only_header, RecordError, r'no record line'),
    Case('header', '0 signals', b_zero_signals, RecordError, r'0 signals'),
    Case('header', 'sample count larger than the file', b_sig_len_too_long, RecordError, r'truncated'),
    Case('header', 'signal file ../other/x.dat', b_parent_path, UnsafePathError,
         r"'\.\./other/x\.dat', which is not inside the record's folder"),
    Case('header', 'signal file as an absolute path', b_absolute_path, UnsafePathError, r'not inside'),
    Case('header', 'signal file sub/../../r.dat', b_dotdot_inside, UnsafePathError, r'without "\.\."'),
    Case('header', 'signal file in a sub-folder (signals/r.dat)', b_subfolder_path,
         check=lambda r, t: np.testing.assert_allclose(r.signal, ecg(), atol=1e-3)),
    Case('header', 'signal file is a symbolic link', b_symlinked_dat,
         check=lambda r, t: np.testing.assert_allclose(r.signal, ecg(), atol=1e-3)),
    Case('header', 'duplicate lead names', b_duplicate_leads, RecordError, r"lead names \['I'\] occur more than once"),
    Case('header', 'units "furlong"', b_unknown_units, RecordError, r"units 'furlong'; expected mV, uV or V"),
    Case('header', 'gain "abc"', b_bad_gain, RecordError, r'corrupt header'),
    Case('header', 'checksum field "x17"', b_bad_checksum_field, RecordError, r"unreadable checksum 'x17'"),
    Case('header', 'latin-1 comment', b_latin1_comment,
         check=lambda r, t: 'Müller' in r.metadata['diagnose']),
    Case('header', 'no lead names', b_no_lead_names, RecordError, r'gives no name for some signals|missing leads'),
]

PLAUSIBILITY_CASES = [
    Case('plausibility', 'microvolts labelled mV', b_uv_labelled_mv, check=check_problem(r'microvolts labelled mV')),
    Case('plausibility', 'volts labelled mV', b_volts_labelled_mv, check=check_problem(r'volts labelled mV')),
    Case('plausibility', 'record at 100 Hz declared 50 Hz', b_half_rate_record,
         check=check_problem(r'declared sampling rate 50 Hz is below 100 Hz.*Fix the rate .*r\.hea')),
    Case('plausibility', 'dataset at 100 Hz declared 50 Hz', b_half_rate_dataset_50, check=lambda ds, t: len(ds) == 6,
         warns=r'6 record\(s\) do not look like an ECG .* declared sampling rate 50 Hz'),
    Case('plausibility', 'dataset at 500 Hz declared 250 Hz', b_half_rate_dataset_250,
         check=lambda ds, t: len(ds) == 6,
         warns=r'median heart rate over 6 records is \d+ bpm.*sampling rate .* probably wrong'),
    Case('plausibility', 'dataset at 250 Hz declared 1000 Hz (2.5 s each)', b_quarter_rate_short_dataset,
         check=lambda ds, t: len(ds) == 6,
         warns=r'median heart rate over 6 records is \d+ bpm.*sampling rate .* probably wrong'),
    Case('plausibility', 'dataset at 500 Hz declared 125 Hz (detector erratic)', b_quarter_rate_low_dataset,
         check=lambda ds, t: len(ds) == 6,
         warns=r'median heart rate over 6 records, from the period of the signals, is \d+ bpm.*probably wrong'),
    Case('plausibility', "same with plausibility='strict'", b_half_rate_dataset_strict, ImplausibleDataError,
         r"plausibility=\"strict\".*median heart rate"),
    Case('plausibility', 'plausible records, strict', b_plausible_dataset, check=lambda ds, t: len(ds) == 4),
    Case('plausibility', "plausibility='sometimes'", b_plausibility_option, ValueError,
         r"plausibility='sometimes' is not supported"),
]

LABEL_CASES = [
    Case('labels', 'labels.csv row with no record', b_row_without_record, check=check_skipped('ghost', 'no header'),
         warns=r"1 rows of .*labels\.csv name no record .*ghost"),
    Case('labels', 'record with no labels.csv row', b_record_without_row, check=check_skipped('c', 'no row'),
         warns=r'1 of 3 records .* have no row in .*labels\.csv \(c\)'),
    Case('labels', 'AF and Afib', b_af_afib, check=check_labels(['AF', 'Afib', 'NSR']),
         warns=r"\['AF', 'Afib'\] .* look like one class"),
    Case('labels', "NSR and 'nsr '", b_nsr_case_space, check=check_labels(['AF', 'NSR', 'nsr']),
         warns=r"\['NSR', 'nsr '\] .* look like one class"),
    Case('labels', 'AF and Afib, strict=True', b_near_duplicate_strict, DatasetLayoutError, r'look like one class'),
    Case('labels', 'multilabel AF and A-Fib', b_multilabel_near_duplicate,
         check=check_labels(['A-Fib', 'AF', 'RBBB']), warns=r"\['A-Fib', 'AF'\]"),
    Case('labels', 'AF, NSR, STach (distinct)', b_distinct_labels, check=check_labels(['AF', 'NSR', 'STach'])),
    Case('labels', 'no label column', b_no_label_column, DatasetLayoutError, r"expected a column 'label'"),
    Case('labels', 'two rows for one record', b_duplicate_rows, DatasetLayoutError, r"duplicate record ids \['a'\]"),
    Case('labels', 'split value "training"', b_bad_split_value, DatasetLayoutError, r"split values \['training'\]"),
    Case('labels', 'empty label cell', b_empty_label, check=check_skipped('b', 'empty label')),
    Case('labels', 'label not in label_names', b_label_not_in_names, DatasetLayoutError,
         r"labels \['XYZ'\] are not in label_names"),
    Case('labels', 'one patient in two splits', b_patient_two_splits, DatasetLayoutError, r'more than one split'),
    Case('labels', 'labels_csv that does not exist', b_labels_csv_missing, DatasetLayoutError,
         r'nope\.csv not found'),
    Case('labels', 'folder without .hea files', b_no_headers, DatasetLayoutError, r'no \.hea files under'),
    Case('labels', 'row naming ../outside/secret', b_row_names_path_outside,
         check=check_skipped('../outside/secret', 'no header'), warns=r'name no record'),
]

DATASET_CASES = [
    Case('ptbxl', 'filename_lr ../elsewhere/x', b_ptbxl_lr_outside, DatasetLayoutError,
         r"ecg_id 3 has filename_lr '\.\./elsewhere/x', which is not a path inside"),
    Case('ptbxl', 'filename_hr /etc/passwd', b_ptbxl_hr_absolute, DatasetLayoutError,
         r"ecg_id 1 has filename_hr '/etc/passwd'"),
    Case('ptbxl', 'empty filename_hr at 500 Hz', b_ptbxl_hr_empty,
         check=lambda ds, t: ds.fallback_records == ['1'] and len(ds) == 6, warns=r'read at 100 Hz'),
    Case('ptbxl', 'unparseable scp_codes', b_ptbxl_bad_scp, check=check_skipped('2', 'unparseable scp_codes')),
    Case('ptbxl', 'no strat_fold column', b_ptbxl_missing_column, DatasetLayoutError,
         r"missing columns \['strat_fold'\]"),
]

CACHE_CASES = [
    Case('cache', '14 records, 4 bad, 1 with 2 leads', b_fourteen_cache, check=check_fourteen,
         warns=r'4 of 14 records were left out .* listed in .*skipped\.csv'),
    Case('cache', 'a 2-lead record among 12-lead ones', b_two_lead_cache,
         check=lambda ds, t: ds.lead_mask[ds.record_ids.index('c')].sum() == 2 and ds.lead_mask.sum() == 26,
         warns=r'1 of 3 cached items lack leads .*: III \(1\), aVR \(1\), .*V6 \(1\)\. .*/lead_mask\.npy'),
    Case('cache', 'same through prepare_data', b_fourteen_prepare, check=check_prepare,
         warns=r'4 of 14 records were left out'),
    Case('cache', 'same, strict=True', b_fourteen_strict, CacheBuildError, r'\(.*fourteen/\w+\): '),
    Case('cache', 'version-1 cache', b_cache_old_version, CacheError, r'cache version 1.*force=True'),
    Case('cache', 'lead_mask.npy deleted', b_cache_no_mask, CacheError, r'lead_mask\.npy is missing.*force=True'),
    Case('cache', 'truncated signals.f32', b_cache_truncated, CacheError, r'incomplete.*force=True'),
    Case('cache', 'manifest.json not JSON', b_cache_manifest_garbage, CacheError, r'no readable manifest\.json'),
    Case('cache', 'out_dir is a folder of other files', b_cache_over_other_folder, CacheError,
         r'mine exists and is not an ecgvit cache.*refusing'),
    Case('cache', 'temporary folder of a killed build', b_cache_stale_tmp, check=check_gone),
]

CLI_DATA_CASES = [
    Case('cli', 'ecgvit embed on the 14-record folder', b_fourteen_embed, check=check_embed,
         warns=r'4 of 14 records were left out'),
]

CONCURRENCY_CASES = [
    Case('concurrency', 'two processes generate the same synthetic data', b_two_generators_same,
         check=check_two_generators_same),
    Case('concurrency', 'two processes build the same cache', b_two_cache_builds,
         check=lambda r, t: r == [('ok', 8), ('ok', 8)] and not [p for p in t.iterdir() if p.name.startswith('.c.')]),
    Case('concurrency', 'lost rename race against the same cache', b_lost_rename_race,
         check=lambda r, t: r[0].manifest['fingerprint'] == r[1]['fingerprint'] and len(r[0]) == 3),
    Case('concurrency', 'two processes, different seeds, one folder', b_two_generators_different,
         check=check_two_generators_different),
    Case('interruption', 'temporary folder of a killed generation', b_killed_generation, check=check_gone),
    Case('interruption', 'generation into an empty folder', b_generation_into_empty_dir,
         check=lambda ds, t: len(ds) == 5),
    Case('interruption', 'generation into a folder of other files', b_generation_into_foreign_dir,
         DatasetLayoutError, r'exists and is not empty, but holds no synthetic\.json'),
]

# One list per layer. Another layer adds its list here; its rows are run below and counted in docs/hostile_input.md.
LAYERS: dict[str, list[Case]] = {
    'data': RECORD_CASES + HEADER_CASES + PLAUSIBILITY_CASES + LABEL_CASES + DATASET_CASES + CACHE_CASES
    + CLI_DATA_CASES + CONCURRENCY_CASES,
}
ALL_CASES = [c for cases in LAYERS.values() for c in cases]


# ---------------------------------------------------------------------------------------------------------------------
# The tests

@pytest.mark.parametrize('case', ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_hostile_input(case: Case, tmp_path):
    run = case.build(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        if case.expect == 'ok':
            result = run()
        else:
            assert case.match, 'an expected error needs the message fragment that names the file/option and the fix'
            with pytest.raises(case.expect, match=case.match):
                run()
    ours = [str(w.message) for w in caught if issubclass(w.category, UserWarning)
            and not issubclass(w.category, (DeprecationWarning, FutureWarning))]
    if case.warns:
        assert any(re.search(case.warns, m) for m in ours), (case.warns, ours)
    elif case.expect == 'ok':
        assert not ours, f'a clean input must not warn: {ours}'
    if case.expect == 'ok' and case.check is not None:
        outcome = case.check(result, tmp_path)
        assert outcome is None or bool(outcome) is True  # a check is asserts (None) or an expression (True)


def test_case_ids_are_unique():
    ids = [c.id for c in ALL_CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def render_table(layers: dict[str, list[Case]] = LAYERS, model_cases: list[dict] | None = None,
                 cli_cases: list[dict] | None = None) -> str:
    """docs/hostile_input.md from the rows: per kind, the number of inputs and how they end; then every row."""
    lines = ['# Hostile input: what was tried and how it ends', '',
             'Generated from the parametrised cases of `tests/test_hostile_*.py` and `tests/test_cli_hostile.py` (one '
             'list per layer); do not edit by',
             'hand. Refresh with `ECGVIT_WRITE_HOSTILE_TABLE=1 python -m pytest -q tests/test_hostile_data.py -k '
             'table`;', '`test_summary_table_is_up_to_date` fails while this file and the cases disagree. Every case '
             'ends in a', 'correct result (with a warning where the data are doubtful) or a typed error whose message '
             'names the', 'file or option and the fix; none is accepted silently.', '',
             '| layer | kind | inputs | correct result | result + warning | typed error | error types |',
             '|---|---|---|---|---|---|---|']
    totals = [0, 0, 0, 0]
    for layer, cases in layers.items():
        kinds = list(dict.fromkeys(c.kind for c in cases))
        for kind in kinds:
            rows = [c for c in cases if c.kind == kind]
            ok = sum(c.expect == 'ok' and not c.warns for c in rows)
            warn = sum(c.expect == 'ok' and bool(c.warns) for c in rows)
            err = len(rows) - ok - warn
            types = sorted({c.expect.__name__ for c in rows if c.expect != 'ok'})
            lines.append(f'| {layer} | {kind} | {len(rows)} | {ok} | {warn} | {err} | {", ".join(types) or "-"} |')
            for i, v in enumerate((len(rows), ok, warn, err)):
                totals[i] += v
    lines.append(f'| **all** | | **{totals[0]}** | **{totals[1]}** | **{totals[2]}** | **{totals[3]}** | |')
    lines += ['', '## Every case', '', '| layer | kind | input | outcome |', '|---|---|---|---|']
    for layer, cases in layers.items():
        for c in cases:
            lines.append(f'| {layer} | {c.kind} | {c.description.replace("|", "/")} | {c.outcome} |')
    if model_cases:
        lines += ['', '## Models, weights, checkpoints, options (`tests/test_hostile_models.py`)', '',
                  '| layer | kind | cases |', '|---|---|---|']
        groups = list(dict.fromkeys((r['layer'], r['kind']) for r in model_cases))
        for layer, kind in groups:
            lines.append(f'| {layer} | {kind} | {sum((r["layer"], r["kind"]) == (layer, kind) for r in model_cases)} |')
        lines += [f'| **all** | | **{len(model_cases)}** |', '', '| layer | kind | input | expected |',
                  '|---|---|---|---|']
        for r in model_cases:
            lines.append(f'| {r["layer"]} | {r["kind"]} | {r["description"].replace("|", "/")} | '
                         f'{r["expected"].replace("|", "/")} |')
    if cli_cases:
        lines += ['', '## Command line (`tests/test_cli_hostile.py`)', '',
                  'Each ends before any work with exit status 2 and one line `ecgvit <command>: error: ...` holding '
                  'the text shown (besides the cases listed here: atomic result files, a failed run that keeps the '
                  "folder's config, `--resume` on other data, `--device cuda` without a GPU, Ctrl-C while starting).",
                  '', '| kind | input | message holds |', '|---|---|---|']
        for r in cli_cases:
            lines.append(f'| {r["kind"]} | `{r["input"]}` | {r["expected"].replace("|", "/")} |')
    return '\n'.join(lines) + '\n'


def _model_cases() -> list[dict]:
    from test_hostile_models import HOSTILE_CASES  # the other layers' rows, from their own module

    return HOSTILE_CASES


def test_summary_table_is_up_to_date():
    from test_cli_hostile import cli_cases

    text = render_table(model_cases=_model_cases(), cli_cases=cli_cases())
    if os.environ.get('ECGVIT_WRITE_HOSTILE_TABLE', '') not in ('', '0'):
        TABLE.parent.mkdir(parents=True, exist_ok=True)
        TABLE.write_text(text)
    assert TABLE.is_file() and TABLE.read_text() == text, (
        f'{TABLE} does not match the cases in {Path(__file__).name}; refresh it with ECGVIT_WRITE_HOSTILE_TABLE=1 '
        f'python -m pytest -q {Path(__file__).relative_to(ROOT)} -k table')


def test_table_counts_every_case():
    text = render_table({'x': [Case('a', 'one', b_good), Case('a', 'two', b_good, warns='w'),
                               Case('b', 'three', b_good, RecordError, 'm')]})
    assert '| x | a | 2 | 1 | 1 | 0 | - |' in text and '| x | b | 1 | 0 | 0 | 1 | RecordError |' in text
    assert '| **all** | | **3** | **1** | **1** | **1** | |' in text


def test_ectopic_beats_that_dwarf_the_normal_ones_in_some_leads_are_not_a_wrong_rate():
    """Where huge ectopic beats dominate the largest leads, the detector there finds only them (PTB-XL 833 read with
    its 6 limb leads: 19 bpm, "400 Hz would give 76 bpm"); the other leads count every beat, so nothing is flagged."""
    x = ecg(100.0, seed=1)
    x[:3] *= 0.15  # normal beats small in three leads ...
    for t in (150, 500, 850):  # ... and three wide 4-mV ectopic beats there
        x[:3, t - 6:t + 7] += 4.0 * np.hanning(13)
    record = Record(signal=x, fs=100.0, lead_names=tuple(LEADS), record_id='ectopic')
    result = check_record(record)
    assert result['problems'] == [] and 50 < result['heart_rate_bpm'] < 110


@pytest.mark.parametrize('label', ['NSR', 'SB', 'ST'])
@pytest.mark.parametrize('factor', [1.0, 4.0])
def test_the_autocorrelation_heart_rate_scales_with_a_wrong_rate(label, factor):
    from ecgvit.data.plausibility import _autocorr_heart_rate_bpm
    for seed in range(3):
        e = synthesize_ecg(label, fs=500.0, duration_s=10.0, rng=seed)
        got = _autocorr_heart_rate_bpm(e.signal, 500.0 / factor)
        assert got is not None and abs(np.log(got * factor / e.heart_rate_bpm)) < 0.1, (seed, got, e.heart_rate_bpm)


def test_the_autocorrelation_heart_rate_of_a_flat_or_short_signal_is_none():
    from ecgvit.data.plausibility import _autocorr_heart_rate_bpm
    assert _autocorr_heart_rate_bpm(np.zeros((12, 2500)), 250.0) is None
    assert _autocorr_heart_rate_bpm(ecg(250.0)[:, :250], 250.0) is None  # 1 s: below the 2 s an estimate needs


def test_a_plausible_folder_is_not_flagged_by_the_autocorrelation_median(tmp_path):
    from ecgvit.data.plausibility import summarize
    results = [check_record(read_record(rec(tmp_path, f'r{i}', signal=ecg(seed=i)))) for i in range(5)]
    summary = summarize(results)
    assert summary['dataset_problems'] == [] and 45 < summary['median_autocorr_heart_rate_bpm'] < 150


def test_a_suggested_rate_gives_a_typical_heart_rate_or_none_is_suggested():
    from ecgvit.data.plausibility import _likely_rate

    assert _likely_rate(50.0, 37.5) == 100.0  # 100 Hz data declared 50 Hz: 75 bpm at 100 Hz
    assert _likely_rate(125.0, 259.0) is None  # 100 Hz would give 207 bpm: no common rate gives a typical one
