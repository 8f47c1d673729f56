"""Reading one ECG record (WFDB ``.hea`` + ``.dat``, or the PhysioNet-challenge ``.hea`` + ``.mat``) into a ``Record``.

Lead names are matched case-insensitively with common aliases (``AVR``/``aVR``/``avr``, ``D1``/``I``, ...) and the
signal is returned in the requested lead order, canonical I, II, III, aVR, aVL, aVF, V1-V6 by default. Everything that
can be wrong with a file raises a ``RecordError`` whose message names the record, what is wrong and what to do.

Example:
    >>> rec = read_record('data/ptbxl/records100/00000/00001_lr')  # doctest: +SKIP
    >>> rec.signal.shape, rec.fs, rec.lead_names[:3]  # doctest: +SKIP
    ((12, 1000), 100.0, ('I', 'II', 'III'))
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ecgvit.constants import LEADS

__all__ = [
    'Record', 'RecordError', 'RecordFileNotFoundError', 'MissingLeadsError', 'ChecksumError', 'UnsafePathError',
    'read_record', 'read_header', 'canonical_lead_name', 'parse_comments', 'Header',
]


class RecordError(ValueError):
    """A record that cannot be read or does not meet the request. ``record`` names it, ``reason`` says why.

    Args:
        record: The record's id or path.
        reason: What is wrong with it.
    """

    def __init__(self, record: str | os.PathLike, reason: str) -> None:
        self.record = str(record)
        self.reason = reason
        super().__init__(f'{self.record}: {reason}')


class RecordFileNotFoundError(RecordError, FileNotFoundError):
    """The header or the signal file of a record does not exist."""


class MissingLeadsError(RecordError):
    """The record lacks some of the requested leads."""


class ChecksumError(RecordError):
    """The samples of a signal file do not add up to the checksum its header gives: the file is corrupt or belongs to
    another header."""


class UnsafePathError(RecordError):
    """A header names a signal file outside the record's folder (an absolute path or one through ``..``)."""


# Alias -> canonical name. Keys are normalised (lower case, no spaces, dashes or the word "lead").
_LEAD_ALIASES: dict[str, str] = {}
for _name in LEADS:
    _LEAD_ALIASES[_name.lower()] = _name
_LEAD_ALIASES.update({
    'd1': 'I', 'd2': 'II', 'd3': 'III', 'di': 'I', 'dii': 'II', 'diii': 'III', 'mli': 'I', 'mlii': 'II', 'mliii': 'III',
    '1': 'I', '2': 'II', '3': 'III', 'avr': 'aVR', 'avl': 'aVL', 'avf': 'aVF',
})


def canonical_lead_name(name: str) -> str:
    """Map a lead name from a file header to its canonical spelling.

    Args:
        name: a name as written in a header, e.g. ``'AVR'``, ``'avl'``, ``'v1'``, ``'Lead II'``, ``'D3'``.

    Returns:
        The canonical name (``'aVR'``, ``'aVL'``, ``'V1'``, ``'II'``, ``'III'``), or the stripped input when it is not a
        standard 12-lead name (e.g. Frank leads ``'vx'``), so callers can report it.
    """
    key = re.sub(r'[\s_\-]+', '', str(name)).lower()
    if key.startswith('lead'):
        key = key[4:]
    return _LEAD_ALIASES.get(key, str(name).strip())


def parse_comments(comments: Sequence[str]) -> dict[str, str]:
    """Parse ``Key: value`` header comments (``#Dx: ...``, ``#<age>: 51``, ``# Patient ID: 7``) into a dict.

    Keys are lower-cased with spaces and angle brackets removed (``'patient id'`` -> ``'patient_id'``). Comments without
    a colon are kept in order under ``'notes'`` (joined by newlines).

    Args:
        comments: The comment lines, with or without their leading ``#``; a key given twice keeps its first value.
    """
    out: dict[str, str] = {}
    notes = []
    for line in comments:
        text = str(line).strip().lstrip('#').strip()
        if ':' in text:
            key, value = text.split(':', 1)
            key = re.sub(r'[<>]', '', key).strip().lower().replace(' ', '_')
            value = value.strip()
            if key and key not in out:
                out[key] = value
                continue
        if text:
            notes.append(text)
    if notes:
        out['notes'] = '\n'.join(notes)
    return out


@dataclass
class Record:
    """One ECG record in memory.

    Attributes:
        signal: float32 array (leads, samples) in millivolts.
        fs: sampling rate in Hz.
        lead_names: lead name per row of ``signal`` (canonical spelling where known).
        record_id: the record's name (file stem, or a dataset-relative id).
        lead_mask: bool per lead, False where the lead was missing and zero-filled; None when all leads are real.
        comments: raw header comment lines.
        metadata: parsed ``Key: value`` comments plus anything a dataset adds (e.g. ``patient_id``).
        path: the record path without extension, when read from disk.
    """
    signal: np.ndarray
    fs: float
    lead_names: tuple[str, ...]
    record_id: str
    lead_mask: np.ndarray | None = None
    comments: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def num_samples(self) -> int:
        """Number of samples per lead."""
        return int(self.signal.shape[-1])

    @property
    def duration_s(self) -> float:
        """Length of the record in seconds."""
        return self.num_samples / self.fs


def _record_base(path: str | os.PathLike) -> Path:
    """The record path without ``.hea``/``.dat``/``.mat``: what wfdb wants."""
    p = Path(path)
    if p.suffix.lower() in ('.hea', '.dat', '.mat'):
        p = p.with_suffix('')
    return p


@dataclass
class Header:
    """The parts of a WFDB header that reading needs (one entry per signal in the list fields)."""
    record_name: str
    n_sig: int
    fs: float
    sig_len: int
    file_name: list[str]
    fmt: list[str]
    byte_offset: list[int]
    samps_per_frame: list[int]
    adc_gain: list[float]
    baseline: list[int]
    units: list[str]
    sig_name: list[str]
    comments: list[str]
    simple: bool = True  # single segment, no skew, one sample per frame: the fast reader applies
    checksum: list[int | None] = field(default_factory=list)  # 16-bit sum of each signal's samples, when given


def _parse_fs(base: Path, record_line: str) -> float:
    """The sampling rate from the record line; wfdb silently defaults to 250 Hz when it is absent, we refuse."""
    tokens = record_line.split()
    if len(tokens) < 3:
        n = tokens[1] if len(tokens) > 1 else 12
        raise RecordError(base, f'the header record line {record_line!r} gives no sampling rate. Add it as the '
                                f'third field (e.g. "{tokens[0]} {n} 500").')
    try:
        fs = float(tokens[2].split('/')[0].split('(')[0])
    except ValueError:
        raise RecordError(base, f'unreadable sampling rate {tokens[2]!r} in the header record line '
                                f'{record_line!r}; it must be a positive number in Hz.') from None
    if not np.isfinite(fs) or fs <= 0:
        raise RecordError(base, f'sampling rate {fs!r} Hz in the header is not a positive number; fix the third '
                                f'field of the record line.')
    return fs


def _parse_header_text(base: Path, text: str) -> Header | None:
    """Parse a single-segment WFDB header; None when it uses a feature only wfdb handles (then wfdb parses it)."""
    lines, comments = [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith('#'):
            comments.append(line[1:].strip())
            continue
        lines.append(line.split('#', 1)[0].strip())
    if not lines:
        raise RecordError(base, 'the header has no record line; a WFDB header starts with '
                                '"<name> <n_leads> <fs> <n_samples>".')
    fs = _parse_fs(base, lines[0])
    rec = lines[0].split()
    if '/' in rec[0]:
        return None  # multi-segment record
    try:
        n_sig = int(rec[1])
        sig_len = int(rec[3]) if len(rec) > 3 else 0
    except (ValueError, IndexError):
        raise RecordError(base, f'corrupt header record line {lines[0]!r}; expected "<name> <n_leads> <fs> '
                                f'<n_samples>".') from None
    if len(lines) - 1 < n_sig:
        raise RecordError(base, f'the header declares {n_sig} signals but has {len(lines) - 1} signal lines; '
                                f'the header is truncated or corrupt.')
    h = Header(rec[0], n_sig, fs, sig_len, [], [], [], [], [], [], [], [], comments)
    for line in lines[1:1 + n_sig]:
        tok = line.split()
        if len(tok) < 2:
            raise RecordError(base, f'corrupt signal line {line!r}; expected "<file> <format> <gain>/<units> ... '
                                    f'<lead name>".')
        fmt_spec = tok[1]
        if ':' in fmt_spec or 'x' in fmt_spec:
            h.simple = False
        fmt = fmt_spec.split('+')[0].split('x')[0].split(':')[0]
        offset = int(fmt_spec.split('+')[1]) if '+' in fmt_spec else 0
        gain, baseline, units = 200.0, None, 'mV'
        if len(tok) > 2:
            g = tok[2]
            if '/' in g:
                g, units = g.split('/', 1)
            if '(' in g:
                g, b = g.split('(', 1)
                baseline = int(b.rstrip(')'))
            gain = float(g) or 200.0  # WFDB: gain 0 means uncalibrated, read as 200
        if baseline is None:
            baseline = int(tok[4]) if len(tok) > 4 else 0  # WFDB: the baseline defaults to the ADC zero
        try:  # fields: file format gain adc_res adc_zero init_value checksum block_size description
            checksum = int(tok[6]) if len(tok) > 6 else None
        except ValueError:
            raise RecordError(base, f'unreadable checksum {tok[6]!r} (7th field) in signal line {line!r}; it must be '
                                    f'an integer (the 16-bit sum of the samples).') from None
        h.file_name.append(tok[0])
        h.fmt.append(fmt)
        h.byte_offset.append(offset)
        h.samps_per_frame.append(1)
        h.adc_gain.append(gain)
        h.baseline.append(baseline)
        h.units.append(units)
        h.sig_name.append(' '.join(tok[8:]) if len(tok) > 8 else '')
        h.checksum.append(checksum)
    return h


def _signal_path(base: Path, name: str) -> Path:
    """The path of a signal file a header names, which must stay inside the record's folder.

    WFDB names signal files relative to the header. An absolute name or one through ``..`` would make reading a
    record from an untrusted folder open any file on the machine, so it is refused. The check is lexical (no
    ``resolve``), so a folder of symbolic links to the real files still reads.
    """
    text = str(name).replace('\\', '/')
    norm = os.path.normpath(text)
    if not text or os.path.isabs(text) or re.match(r'^[A-Za-z]:', text) or norm == '..' or \
            norm.startswith('../') or norm == '.':
        raise UnsafePathError(base, f'the header names signal file {name!r}, which is not inside the record\'s '
                                    f'folder {base.parent}. A WFDB header must name its signal files by a path '
                                    f'relative to the header, without "..": fix the first field of the signal lines '
                                    f'in {base.with_suffix(".hea").name} (e.g. {base.name}.dat).')
    return base.parent / norm


def _header_from_wfdb(base: Path, fs: float) -> Header:
    import wfdb

    w = wfdb.rdheader(str(base))
    for seg in getattr(w, 'seg_name', None) or []:  # multi-segment: the segments' headers must stay inside too
        if seg and seg != '~':
            _signal_path(base, seg)
    n = w.n_sig or 0
    return Header(w.record_name, n, fs, w.sig_len or 0, list(w.file_name or []), [str(f) for f in (w.fmt or [])],
                  [b or 0 for b in (w.byte_offset or [0] * n)], list(w.samps_per_frame or [1] * n),
                  [g or 200.0 for g in (w.adc_gain or [200.0] * n)], [b or 0 for b in (w.baseline or [0] * n)],
                  list(w.units or ['mV'] * n), list(w.sig_name or [''] * n), list(w.comments or []), simple=False,
                  checksum=list(w.checksum or [None] * n))


def read_header(path: str | os.PathLike) -> Header:
    """Read and check a WFDB header (no signal).

    Args:
        path: record path, with or without ``.hea``.

    Returns:
        A ``Header`` (sampling rate, length, per-signal file/format/gain/baseline/units/name, comments).

    Raises:
        RecordFileNotFoundError: the ``.hea`` file does not exist.
        RecordError: the header cannot be parsed, or gives no valid sampling rate.
    """
    base = _record_base(path)
    hea = base.with_suffix('.hea')
    if not hea.is_file():
        raise RecordFileNotFoundError(base, f'header file {hea} not found. A record needs <name>.hea next to its '
                                            f'signal file (.dat or .mat); pass the path without extension.')
    try:
        text = hea.read_text(encoding='latin-1')
    except OSError as e:
        raise RecordError(base, f'cannot read header {hea} ({e}).') from e
    try:
        header = _parse_header_text(base, text)
        if header is None:
            record_line = next(ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith('#'))
            header = _header_from_wfdb(base, _parse_fs(base, record_line))
    except RecordError:
        raise
    except Exception as e:  # wfdb raises a zoo of types for a malformed header
        raise RecordError(base, f'corrupt header ({type(e).__name__}: {e}). Check {hea} against the WFDB header '
                                f'format (record line, then one line per signal).') from e
    if not header.n_sig:
        raise RecordError(base, 'the header declares 0 signals; an ECG record needs at least one lead.')
    for name in dict.fromkeys(header.file_name):
        _signal_path(base, name)
    return header


# Bytes per sample for the WFDB storage formats whose size is easy to check (212/310/311 pack several samples).
_BYTES_PER_SAMPLE = {'8': 1.0, '16': 2.0, '61': 2.0, '80': 1.0, '160': 2.0, '24': 3.0, '32': 4.0,
                     '212': 1.5, '310': 4 / 3, '311': 4 / 3}


def _check_signal_files(base: Path, header: Header) -> None:
    """Existence and size checks, so a truncated file is an error instead of silently short or garbage data."""
    by_file: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name):
        by_file.setdefault(name, []).append(i)
    for name, idx in by_file.items():
        fpath = _signal_path(base, name)
        if not fpath.is_file():
            raise RecordFileNotFoundError(base, f'signal file {fpath} named in the header is missing. Copy it next '
                                                f'to {base.with_suffix(".hea").name}.')
        if name.lower().endswith('.mat'):
            continue  # checked when loadmat parses it
        fmt = header.fmt[idx[0]]
        bps = _BYTES_PER_SAMPLE.get(str(fmt))
        if bps is None or not header.sig_len:
            continue
        frame = sum(header.samps_per_frame[i] for i in idx)
        offset = header.byte_offset[idx[0]]
        expected = int(np.ceil(header.sig_len * frame * bps)) + offset
        size = fpath.stat().st_size
        if size < expected:
            raise RecordError(base, f'signal file {fpath.name} is truncated: {size} bytes, the header needs '
                                    f'{expected} ({header.sig_len} samples x {frame} signals, format {fmt}). '
                                    f'Re-download the record.')


def _verify_checksums(base: Path, header: Header, sums: np.ndarray, file_name: str) -> None:
    """Compare each signal's sample sum with the header's checksum (WFDB: the sum modulo 2**16, written signed or
    unsigned), so a signal file of the right size but the wrong content (random bytes, another record's file, a
    corrupted copy) is an error instead of a plausible-looking ECG. Costs one integer sum per signal."""
    bad = []
    for i, (got, want) in enumerate(zip(sums, header.checksum or [])):
        if want is not None and (int(got) - int(want)) % 65536:
            bad.append(f'{header.sig_name[i] or i} (samples sum to {int(got) % 65536}, header says '
                       f'{int(want) % 65536})')
    if bad:
        raise ChecksumError(base, f'signal file {file_name} does not match the checksums in '
                                  f'{base.with_suffix(".hea").name} for {len(bad)} of {header.n_sig} signals: '
                                  f'{", ".join(bad[:4])}{", ..." if len(bad) > 4 else ""}. The file is corrupt or '
                                  f'belongs to another record: re-download the record (read_record(..., '
                                  f'verify_checksum=False) reads it anyway).')


def _read_mat(base: Path, header: Header, verify_checksum: bool = True) -> np.ndarray:
    """Read the challenge ``.mat`` layout (a ``val`` int array, leads x samples) and convert to physical units."""
    from scipy.io import loadmat

    mat_path = _signal_path(base, header.file_name[0])
    try:
        val = loadmat(str(mat_path))['val']
    except KeyError:
        raise RecordError(base, f'{mat_path.name} has no variable "val"; the challenge layout stores the digital '
                                f'signal as val (leads x samples).') from None
    except Exception as e:
        raise RecordError(base, f'cannot read {mat_path.name} ({type(e).__name__}: {e}); the file is corrupt or '
                                f'truncated. Re-download the record.') from e
    val = np.asarray(val)
    if val.ndim != 2 or val.shape[0] != header.n_sig:
        raise RecordError(base, f'{mat_path.name} holds an array of shape {val.shape}, the header declares '
                                f'{header.n_sig} leads x {header.sig_len} samples.')
    if header.sig_len and val.shape[1] < header.sig_len:
        raise RecordError(base, f'{mat_path.name} is truncated: {val.shape[1]} samples, the header declares '
                              f'{header.sig_len}. Re-download the record.')
    if header.sig_len:
        val = val[:, :header.sig_len]
    if verify_checksum:
        _verify_checksums(base, header, val.astype(np.int64).sum(axis=1), mat_path.name)
    gain = np.asarray(header.adc_gain, dtype=np.float64)[:, None]
    baseline = np.asarray(header.baseline, dtype=np.float64)[:, None]
    return (val.astype(np.float64) - baseline) / gain


# Formats the fast reader handles: numpy dtype, value subtracted after reading, and the WFDB "invalid sample" code.
_FAST_FORMATS = {'16': ('<i2', 0, -32768), '61': ('>i2', 0, -32768), '80': ('u1', 128, -128),
                 '160': ('<u2', 32768, -32768), '32': ('<i4', 0, -2147483648)}


def _read_dat(base: Path, header: Header, verify_checksum: bool = True) -> np.ndarray:
    """(n_sig, n) physical values; plain interleaved formats are read directly with numpy, the rest with wfdb."""
    fast = (header.simple and len(set(header.file_name)) == 1 and len(set(header.fmt)) == 1
            and header.fmt[0] in _FAST_FORMATS and len(set(header.byte_offset)) == 1)
    if fast:
        dtype, shift, invalid = _FAST_FORMATS[header.fmt[0]]
        path = _signal_path(base, header.file_name[0])
        itemsize = np.dtype(dtype).itemsize
        n = header.sig_len or (path.stat().st_size - header.byte_offset[0]) // (itemsize * header.n_sig)
        raw = np.fromfile(path, dtype=dtype, count=n * header.n_sig, offset=header.byte_offset[0])
        if raw.size != n * header.n_sig:
            raise RecordError(base, f'signal file {path.name} is truncated: {raw.size} values, the header needs '
                                    f'{n * header.n_sig}. Re-download the record.')
        digital = raw.reshape(n, header.n_sig).T.astype(np.int64) - shift
        if verify_checksum:
            _verify_checksums(base, header, digital.sum(axis=1), path.name)
        gain = np.asarray(header.adc_gain, dtype=np.float64)[:, None]
        baseline = np.asarray(header.baseline, dtype=np.float64)[:, None]
        sig = (digital - baseline) / gain
        sig[digital == invalid] = np.nan
        return sig
    import wfdb

    try:
        try:
            rec = wfdb.rdrecord(str(base), physical=False, return_res=64)
            digital = rec.d_signal
        except (ValueError, TypeError, AttributeError):  # e.g. multi-segment layouts wfdb only reads physically
            rec, digital = None, None
        if digital is None:
            sig = wfdb.rdrecord(str(base), physical=True, return_res=64).p_signal
        else:
            # Multi-frequency signals are read with their frames averaged, which changes their sums: not checked.
            if verify_checksum and rec.checksum is not None and all(k == 1 for k in rec.samps_per_frame or [1]):
                header.checksum = list(rec.checksum)
                _verify_checksums(base, header, np.asarray(digital, dtype=np.int64).sum(axis=0),
                                  ', '.join(dict.fromkeys(rec.file_name or [])))
            sig = rec.dac(return_res=64)
    except RecordError:
        raise
    except Exception as e:
        raise RecordError(base, f'cannot read the signal ({type(e).__name__}: {e}); the signal file is corrupt or '
                                f'does not match the header.') from e
    if sig is None or sig.ndim != 2 or sig.shape[1] != header.n_sig:
        raise RecordError(base, f'signal shape {None if sig is None else sig.shape} does not match the header '
                                f'({header.n_sig} signals).')
    return sig.T


_UNIT_SCALE = {'mv': 1.0, 'uv': 1e-3, 'µv': 1e-3, 'μv': 1e-3, 'v': 1e3, 'nu': 1.0, '': 1.0}


def read_record(path: str | os.PathLike, *, leads: Sequence[str] | None = LEADS, missing_leads: str = 'error',
                record_id: str | None = None, verify_checksum: bool = True) -> Record:
    """Read a WFDB record (``.hea`` + ``.dat``, or the challenge ``.hea`` + ``.mat``) as float32 millivolts.

    Args:
        path: record path, with or without the ``.hea`` extension.
        leads: lead names wanted, in output order (aliases accepted); None keeps the file's leads in file order.
        missing_leads: 'error' (raise ``MissingLeadsError``) or 'zero' (fill with zeros, set ``lead_mask``).
        record_id: id to give the record; defaults to the file stem.
        verify_checksum: compare each signal's samples with the checksum in its header line (when the header gives
            one) and raise ``ChecksumError`` on a mismatch.

    Returns:
        A ``Record`` with ``signal`` of shape (len(leads), samples). NaNs mark invalid samples (e.g. WFDB's -32768).

    Raises:
        RecordFileNotFoundError: the header or a signal file is missing.
        MissingLeadsError: requested leads are absent and ``missing_leads='error'``.
        ChecksumError: the samples do not match the header's checksums (corrupt file, or another record's).
        UnsafePathError: the header names a signal file outside the record's folder.
        RecordError: corrupt/truncated files, duplicate lead names, no sampling rate, unknown units.

    Example:
        >>> rec = read_record('my_ecgs/patient7', leads=('I', 'II'))  # doctest: +SKIP
    """
    if missing_leads not in ('error', 'zero'):
        raise ValueError(f"missing_leads must be 'error' or 'zero', got {missing_leads!r}.")
    base = _record_base(path)
    header = read_header(base)
    _check_signal_files(base, header)
    if any(str(n).lower().endswith('.mat') for n in header.file_name):
        sig = _read_mat(base, header, verify_checksum)
    else:
        sig = _read_dat(base, header, verify_checksum)
    if header.sig_len and sig.shape[1] != header.sig_len:
        raise RecordError(base, f'read {sig.shape[1]} samples, the header declares {header.sig_len}; the signal '
                                f'file is truncated or has the wrong format.')
    if sig.shape[1] == 0:
        raise RecordError(base, 'the record has 0 samples.')

    # Units: the models expect millivolts.
    for i, unit in enumerate(header.units or [''] * header.n_sig):
        scale = _UNIT_SCALE.get(str(unit or '').strip().lower())
        if scale is None:
            raise RecordError(base, f'lead {header.sig_name[i]!r} has units {unit!r}; expected mV, uV or V.')
        if scale != 1.0:
            sig[i] *= scale

    file_leads = [canonical_lead_name(n) for n in (header.sig_name or [])]
    if leads is not None and not all(file_leads):
        raise RecordError(base, f'the header gives no name for some signals ({header.sig_name}); add lead names '
                                f'(I, II, ..., V6) as the last field of each signal line, or pass leads=None.')
    if len(file_leads) != header.n_sig:
        raise RecordError(base, f'the header names {len(file_leads)} leads for {header.n_sig} signals.')
    dupes = sorted({n for n in file_leads if n and file_leads.count(n) > 1})  # unnamed: leads=None only
    if dupes:
        raise RecordError(base, f'lead names {dupes} occur more than once in the header ({header.sig_name}); '
                                f'each lead must have a distinct name.')

    lead_mask = None
    if leads is None:
        out, names = sig, tuple(file_leads)
    else:
        names = tuple(canonical_lead_name(n) for n in leads)
        missing = [n for n in names if n not in file_leads]
        if len(missing) == len(names):  # zero-filling every lead would make an all-zero input, not an ECG
            raise MissingLeadsError(base, f'none of the requested leads {list(names)} is in the file, whose signals '
                                          f'are named {header.sig_name}. Rename the signals in the header to standard '
                                          f'lead names (I, II, III, aVR, aVL, aVF, V1-V6), or pass leads=None.')
        if missing and missing_leads == 'error':
            raise MissingLeadsError(base, f'missing leads {missing}; the file has {header.sig_name}. Pass '
                                          f"missing_leads='zero' to zero-fill them (with a lead mask), or choose "
                                          f'leads= from those present.')
        out = np.zeros((len(names), sig.shape[1]), dtype=np.float64)
        mask = np.ones(len(names), dtype=bool)
        for row, name in enumerate(names):
            if name in file_leads:
                out[row] = sig[file_leads.index(name)]
            else:
                mask[row] = False
        lead_mask = None if mask.all() else mask

    comments = list(header.comments or [])
    return Record(signal=np.ascontiguousarray(out, dtype=np.float32), fs=float(header.fs), lead_names=names,
                  record_id=record_id if record_id is not None else base.name, lead_mask=lead_mask,
                  comments=comments, metadata=parse_comments(comments), path=str(base))
