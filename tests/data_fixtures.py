"""Helpers that write small WFDB / challenge-format fixtures for the data tests (never the shared real data)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import wfdb

from ecgvit.constants import LEADS


def sine_leads(fs: float, n: int, freq: float = 5.0, n_leads: int = 12, amp: float = 1.0) -> np.ndarray:
    """(n_leads, n) sines of one frequency with a different phase and offset per lead (so leads are tellable)."""
    t = np.arange(n) / fs
    return np.stack([amp * np.sin(2 * np.pi * freq * t + 0.3 * k) + 0.1 * k for k in range(n_leads)])


def write_wfdb(folder: Path, name: str, signal: np.ndarray, fs: float, lead_names: Sequence[str] = LEADS,
               comments: Sequence[str] = (), fmt: str = '16', units: str = 'mV', gain: float = 1000.0,
               baseline: int = 0) -> Path:
    """Write ``signal`` (leads, samples) in mV-like units as a WFDB record; return the record path (no extension).

    ``gain`` (adu per unit) and ``baseline`` (adu of 0 units) go into the header as in real files (LUDB: gains of
    about 700-2300, baselines != 0), so a reader must apply both to get the signal back.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = signal.shape[0]
    p = np.round(np.asarray(signal, dtype=np.float64).T * gain) / gain
    wfdb.wrsamp(name, fs=fs, units=[units] * n, sig_name=list(lead_names), p_signal=p, fmt=[fmt] * n,
                adc_gain=[gain] * n, baseline=[baseline] * n, comments=list(comments), write_dir=str(folder))
    return folder / name


def checksum16(digital: np.ndarray) -> int:
    """A WFDB header checksum: the sum of a signal's samples modulo 2**16, written signed as the challenge files do."""
    c = int(np.asarray(digital, dtype=np.int64).sum()) % 65536
    return c - 65536 if c >= 32768 else c


def write_challenge(folder: Path, name: str, signal: np.ndarray, fs: float, dx: Sequence[str] | None,
                    lead_names: Sequence[str] = LEADS, extra_comments: Sequence[str] = (),
                    header_name: str | None = None, age: str = '60', sex: str = 'Female', gain: float = 1000.0,
                    baseline: int = 0) -> Path:
    """Write the PhysioNet/CinC challenge layout: MATLAB v4 ``val`` (int16, 1000 adu/mV) + a ``.hea`` header.

    ``header_name`` replaces the record name on the header's first line, e.g. ``'E00271.mat'`` as some Georgia
    headers have it. ``gain`` / ``baseline`` other than the challenge's 1000 and 0 are written as ``gain(baseline)``,
    so a reader must apply both.
    """
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    val = (np.round(np.asarray(signal) * gain) + baseline).astype(np.int16)
    savemat(str(folder / f'{name}.mat'), {'val': val}, format='4')
    lines = [f'{header_name or name} {val.shape[0]} {fs:g} {val.shape[1]}']
    adc = f'{gain:g}' if baseline == 0 else f'{gain:g}({baseline})'
    for k, lead in enumerate(lead_names):
        lines.append(f'{name}.mat 16+24 {adc}/mV 16 0 {int(val[k, 0])} {checksum16(val[k])} 0 {lead}')
    lines += [f'#Age: {age}', f'#Sex: {sex}']
    if dx is not None:
        lines.append('#Dx: ' + ','.join(dx))
    lines += [f'#{c}' for c in extra_comments]
    (folder / f'{name}.hea').write_text('\n'.join(lines) + '\n')
    return folder / name


def write_dx_tables(folder: Path) -> None:
    """A miniature of the challenge code tables (same columns as the official files)."""
    folder.mkdir(parents=True, exist_ok=True)
    scored = [('atrial fibrillation', '164889003', 'AF', ''), ('sinus rhythm', '426783006', 'NSR', ''),
              ('sinus bradycardia', '426177001', 'SB', ''), ('sinus tachycardia', '427084000', 'STach', ''),
              ('complete right bundle branch block', '713427006', 'CRBBB', 'same as 59118001'),
              ('right bundle branch block', '59118001', 'RBBB', 'same as 713427006'),
              ('1st degree av block', '270492004', 'IAVB', '')]
    unscored = [('ventricular ectopics', '164884008', 'VEB'), ('st depression', '429622005', 'STD'),
                ('supraventricular tachycardia', '426761007', 'SVT')]
    (folder / 'dx_mapping_scored.csv').write_text(
        'Dx,SNOMEDCTCode,Abbreviation,Notes\n' + ''.join(f'{a},{b},{c},{d}\n' for a, b, c, d in scored))
    (folder / 'dx_mapping_unscored.csv').write_text(
        'Dx,SNOMEDCTCode,Abbreviation\n' + ''.join(f'{a},{b},{c}\n' for a, b, c in unscored))


def write_ptbxl(root: Path, n: int = 20, rng_seed: int = 0, hr_upto: int | None = None,
                ages: dict[int, float] | None = None) -> Path:
    """A tiny PTB-XL layout: both record copies, ptbxl_database.csv and a reduced scp_statements.csv.

    Record ``i`` is ``synthesize_ecg('NSR', fs=500, rng=i)`` (its 100 Hz copy every 5th sample) in ``strat_fold``
    ``(i // 2) % 10 + 1``, aged 50 unless ``ages`` says otherwise (e.g. ``{3: 300}``, v1.0.3's code for over 89).
    ``hr_upto``: write 500 Hz files only for ecg_id <= hr_upto, as in a subset that holds the rest at 100 Hz only
    (``filename_hr`` still names a file for every row, as in the official table).
    """
    import pandas as pd

    from ecgvit.data import synthesize_ecg

    stmts = pd.DataFrame({
        'description': ['normal ECG', 'anterior MI', 'left bundle branch block', 'sinus rhythm', 'atrial fibrillation',
                        'abnormal QRS'],
        'diagnostic': [1.0, 1.0, 1.0, None, None, None], 'form': [None, None, None, None, None, 1.0],
        'rhythm': [None, None, None, 1.0, 1.0, None], 'diagnostic_class': ['NORM', 'MI', 'CD', None, None, None],
        'diagnostic_subclass': ['NORM', 'AMI', 'CLBBB', None, None, None]},
        index=pd.Index(['NORM', 'AMI', 'CLBBB', 'SR', 'AFIB', 'ABQRS']))
    root.mkdir(parents=True, exist_ok=True)
    stmts.to_csv(root / 'scp_statements.csv')
    rng = np.random.default_rng(rng_seed)
    codes = ["{'NORM': 100.0, 'SR': 0.0}", "{'AMI': 80.0, 'SR': 0.0}", "{'CLBBB': 100.0, 'AFIB': 0.0}",
             "{'ABQRS': 0.0, 'AFIB': 0.0}"]
    rows = []
    for i in range(1, n + 1):
        lr, hr = f'records100/00000/{i:05d}_lr', f'records500/00000/{i:05d}_hr'
        ecg = synthesize_ecg('NSR', fs=500.0, rng=i)
        if hr_upto is None or i <= hr_upto:
            write_wfdb(root / 'records500/00000', f'{i:05d}_hr', ecg.signal, 500.0,
                       lead_names=[n.upper() for n in LEADS])
        write_wfdb(root / 'records100/00000', f'{i:05d}_lr', ecg.signal[:, ::5], 100.0)
        rows.append({'ecg_id': i, 'patient_id': float(1000 + i // 2), 'age': (ages or {}).get(i, 50.0),
                     'sex': int(rng.integers(0, 2)),
                     'scp_codes': codes[i % len(codes)], 'strat_fold': (i // 2) % 10 + 1, 'filename_lr': lr,
                     'filename_hr': hr})
    pd.DataFrame(rows).to_csv(root / 'ptbxl_database.csv', index=False)
    return root


# Headers with exactly the layout of the real files (spacing, field order, gain with baseline in parentheses, unsigned
# checksums in PTB-XL, signed ones plus the date/time and #Rx/#Hx/#Sx comments in the PhysioNet/CinC challenge files).
# The values are made up; ``write_real_layout`` writes samples that match their initial values and checksums.
PTBXL_LAYOUT_HEADER = """\
00042_lr 12 100 1000
00042_lr.dat 16 1000.0(0)/mV 16 0 -87 61530 0 I
00042_lr.dat 16 1000.0(0)/mV 16 0 -12 1877 0 II
00042_lr.dat 16 1000.0(0)/mV 16 0 75 5402 0 III
00042_lr.dat 16 1000.0(0)/mV 16 0 49 63310 0 AVR
00042_lr.dat 16 1000.0(0)/mV 16 0 -81 60015 0 AVL
00042_lr.dat 16 1000.0(0)/mV 16 0 31 4477 0 AVF
00042_lr.dat 16 1000.0(0)/mV 16 0 -40 2290 0 V1
00042_lr.dat 16 1000.0(0)/mV 16 0 -18 59001 0 V2
00042_lr.dat 16 1000.0(0)/mV 16 0 6 64123 0 V3
00042_lr.dat 16 1000.0(0)/mV 16 0 -22 812 0 V4
00042_lr.dat 16 1000.0(0)/mV 16 0 -35 33017 0 V5
00042_lr.dat 16 1000.0(0)/mV 16 0 -64 7 0 V6
"""

CINC_LAYOUT_HEADER = """\
E99001 12 500 5000 11-Jan-2021 09:41:07
E99001.mat 16+24 1000/mV 16 0 112 -20411 0 I
E99001.mat 16+24 1000/mV 16 0 95 871 0 II
E99001.mat 16+24 1000/mV 16 0 -17 22014 0 III
E99001.mat 16+24 1000/mV 16 0 -103 -15320 0 aVR
E99001.mat 16+24 1000/mV 16 0 64 -30007 0 aVL
E99001.mat 16+24 1000/mV 16 0 39 9123 0 aVF
E99001.mat 16+24 1000/mV 16 0 -28 12001 0 V1
E99001.mat 16+24 1000/mV 16 0 51 -18422 0 V2
E99001.mat 16+24 1000/mV 16 0 70 -27 0 V3
E99001.mat 16+24 1000/mV 16 0 83 31999 0 V4
E99001.mat 16+24 1000/mV 16 0 77 -32101 0 V5
E99001.mat 16+24 1000/mV 16 0 66 14550 0 V6
#Age: 63
#Sex: Female
#Dx: 426783006
#Rx: Unknown
#Hx: Unknown
#Sx: Unknown
"""


def _digital_matching(init: int, checksum: int, n: int, fs: float, lead: int) -> np.ndarray:
    """int16 samples of an ECG-like lead that start at ``init`` and sum to ``checksum`` modulo 2**16: a synthetic
    beat train, nudged by at most a few adu per sample (a few uV) so the sum comes out right."""
    from ecgvit.data import synthesize_ecg

    d = np.round(synthesize_ecg('NSR', fs=fs, duration_s=n / fs, rng=7).signal[lead] * 1000.0).astype(np.int64)
    d += init - d[0]
    delta = (checksum - int(d.sum())) % 65536
    if delta >= 32768:
        delta -= 65536
    step, rest = divmod(abs(delta), n - 1)
    sign = 1 if delta >= 0 else -1
    d[1:] += sign * step
    d[1:1 + rest] += sign
    assert (int(d.sum()) - checksum) % 65536 == 0 and d[0] == init
    return d


def write_real_layout(folder: Path, which: str) -> tuple[Path, np.ndarray]:
    """Write ``PTBXL_LAYOUT_HEADER`` (format 16 ``.dat``) or ``CINC_LAYOUT_HEADER`` (MATLAB v4 ``.mat``) with
    samples that agree with the header; return (record path, expected signal in mV, shape (12, n))."""
    from scipy.io import savemat

    text = PTBXL_LAYOUT_HEADER if which == 'ptbxl' else CINC_LAYOUT_HEADER
    lines = text.splitlines()
    name, _, fs, n = lines[0].split()[:4]
    fs, n = float(fs), int(n)
    digital = np.stack([_digital_matching(int(line.split()[5]), int(line.split()[6]), n, fs, k)
                        for k, line in enumerate(lines[1:13])])
    folder.mkdir(parents=True, exist_ok=True)
    if which == 'ptbxl':
        digital.T.astype('<i2').tofile(folder / f'{name}.dat')
    else:
        savemat(str(folder / f'{name}.mat'), {'val': digital.astype(np.int16)}, format='4')
    (folder / f'{name}.hea').write_text(text)
    return folder / name, (digital / 1000.0).astype(np.float32)


def _sex_signal(fs: float, seconds: float, female: bool, rng: np.random.Generator) -> np.ndarray:
    # Sex is in the rhythm's frequency, so a spectral encoder can read it and a constant one cannot.
    t = np.arange(int(fs * seconds)) / fs
    freq = 6.0 if female else 2.0
    base = np.sin(2 * np.pi * freq * t)
    return np.stack([base * (1 + 0.1 * k) + 0.3 * rng.normal(size=t.size) + 0.05 * k for k in range(12)])


def write_suite_folders(root: Path) -> Path:
    """PTB-XL, LUDB, CinC and CODE-15% laid out as in the shared data folder, tiny, with learnable sex (the suite's
    fixture)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    ptb = root / 'ptbxl'
    stmts = pd.DataFrame({
        'description': ['normal', 'inferior MI', 'LBBB', 'sinus rhythm', 'AF', 'abnormal QRS', 'never used', 'low T'],
        'diagnostic': [1.0, 1.0, 1.0, None, None, None, 1.0, None],
        'form': [None, None, None, None, None, 1.0, None, 1.0],
        'rhythm': [None, None, None, 1.0, 1.0, None, None, None],
        'diagnostic_class': ['NORM', 'MI', 'CD', None, None, None, 'HYP', None],
        'diagnostic_subclass': ['NORM', 'IMI', 'CLBBB', None, None, None, 'LVH', None]},
        index=pd.Index(['NORM', 'IMI', 'CLBBB', 'SR', 'AFIB', 'ABQRS', 'LVH', 'LOWT']))
    ptb.mkdir(parents=True)
    stmts.to_csv(ptb / 'scp_statements.csv')
    codes = ["{'NORM': 100.0, 'SR': 0.0, 'LOWT': 0.0}", "{'IMI': 80.0, 'SR': 0.0, 'ABQRS': 0.0}",
             "{'CLBBB': 100.0, 'AFIB': 0.0}", "{'AFIB': 0.0, 'ABQRS': 0.0}"]
    rows = []
    for i in range(1, 61):
        female = i % 2 == 0
        fold = 9 if i % 5 == 1 else 10 if i % 5 == 2 else (i % 8) + 1
        write_wfdb(ptb / 'records100/00000', f'{i:05d}_lr', _sex_signal(100.0, 10, female, rng), 100.0)
        rows.append({'ecg_id': i, 'patient_id': float(500 + i), 'age': 300.0 if i == 3 else float(30 + (i * 7) % 60),
                     'sex': int(female), 'scp_codes': codes[i % 4], 'strat_fold': fold,
                     'filename_lr': f'records100/00000/{i:05d}_lr', 'filename_hr': f'records500/00000/{i:05d}_hr'})
    pd.DataFrame(rows).to_csv(ptb / 'ptbxl_database.csv', index=False)

    ludb = root / 'ludb'
    rhythms = ['Sinus rhythm.', 'Sinus bradycardia.', 'Atrial fibrillation.']
    lrows = []
    for i in range(1, 31):
        female = i % 3 != 0
        write_wfdb(ludb / 'data', str(i), _sex_signal(500.0, 10, female, rng), 500.0,
                   lead_names=['i', 'ii', 'iii', 'avr', 'avl', 'avf', 'v1', 'v2', 'v3', 'v4', 'v5', 'v6'],
                   comments=[f'<age>: {20 + 2 * i}', f'<sex>: {"F" if female else "M"}',
                             f'Rhythm: {rhythms[i % 3]}'])
        lrows.append({'ID': i, 'Sex': 'F' if female else 'M', 'Age': 20 + 2 * i, 'Rhythms': rhythms[i % 3]})
    pd.DataFrame(lrows).to_csv(ludb / 'ludb.csv', index=False)

    cinc = root / 'cinc2021_samples'
    write_dx_tables(cinc)
    dx = [['426783006'], ['164889003'], ['426177001', '270492004']]
    for i in range(1, 31):
        write_challenge(cinc / 'georgia', f'E{i:05d}', _sex_signal(500.0, 10, i % 2 == 0, rng), 500.0, dx[i % 3])
    # A CinC copy of PTB-XL ecg_id 1: it must not enter the pooled tasks a second time.
    write_challenge(cinc / 'ptb-xl', 'HR00001', _sex_signal(500.0, 10, False, rng), 500.0, ['426783006'])

    code15 = root / 'code15_samples' / 'records'
    for i in range(12):
        female = (i // 2) % 2 == 1
        # 3 s at 400 Hz: shorter than the model's 5 s window, so it is zero-padded
        write_wfdb(code15, f'{9000 + i}', _sex_signal(400.0, 3, female, rng), 400.0,
                   comments=[f'Exam ID: {9000 + i}', f'Patient ID: {700 + i // 2}', f'Age: {25 + 4 * i}',
                             f'Sex: {"Female" if female else "Male"}', 'Chagas label: False'])
    # An unreadable record: its signal file is cut short.
    dat = code15 / '9011.dat'
    dat.write_bytes(dat.read_bytes()[:1000])
    return root
