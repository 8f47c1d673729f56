"""ECG records held in arrays: a numpy array, or a ``.npy``, ``.npz`` or HDF5 (``.h5``/``.hdf5``) file, with the
sampling rate and the lead names given once for all records.

The signals are one 3-D array: ``(records, leads, samples)`` (``layout='NCL'``, channels first) or
``(records, samples, leads)`` (``layout='NLC'``, channels last). Without ``layout`` the lead axis is the one whose
size is the number of lead names; when both axes have that size the layout must be given (an error says so).

What goes with the signals (each optional except the rate and the lead names) can be given three ways, all with the
same names: as keyword arguments, in a sidecar JSON file next to the array file with the same stem (``ecgs.npz`` ->
``ecgs.json``, holding any of the keyword arguments: the one way to pass them from the command line, ``ecgvit probe
--data arrays --data-dir ecgs.npz``), or inside the file (``.npz`` keys / HDF5 datasets, HDF5 attributes for
``sampling_rate``, ``leads`` and ``layout``):

- ``signals``: the array (the key/dataset name is ``signals_key``, default 'signals').
- ``sampling_rate`` (Hz) and ``leads`` (names; aliases such as 'AVR' or 'D1' accepted): required.
- ``labels``: per record a class name, a class index, or (multilabel) a multi-hot row; or the path of a labels CSV
  with a ``record`` column and a ``label`` column, optional ``patient_id``/``split``/``age``/``sex`` columns (the
  same layout as the WFDB-folder dataset's ``labels.csv``).
- ``record_ids`` (default: the row number), ``patient_ids``, ``splits`` ('train'/'val'/'test'), ``age``, ``sex``.

Keyword arguments win over the sidecar, which wins over the file; the rate, the lead names and the layout are
facts about the data, so two sources that disagree on them are an error. Without ``splits`` the records are split
70/15/15 by patient with a fixed seed; without ``patient_ids`` every record counts as its own patient, which is
right only when no patient has two records (otherwise pass ``patient_ids``, or records of one patient may land in
both train and test).

NaN/inf samples are an error at indexing (naming the records; the check reads the whole array once per index)
unless ``nan_policy='repair'``, which skips the check and leaves them to the preprocessing's repair (linear
interpolation). ``entry.meta['row']`` is a record's row in the array. Values are read as float32; millivolts are
expected (the model input is z-scored per lead, so a constant scale does not matter).

Example:
    >>> np.savez('ecgs.npz', signals=x, sampling_rate=500, leads=['I', 'II', 'V1'], labels=y)  # doctest: +SKIP
    >>> ds = get_dataset('arrays', 'ecgs.npz')  # doctest: +SKIP
    >>> ds = get_dataset('arrays', x, sampling_rate=500, leads=['I'], layout='NLC', labels=y)  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ecgvit.constants import LEADS

from ..records import MissingLeadsError, Record, RecordError, canonical_lead_name
from .base import SPLITS, DatasetLayoutError, ECGDataset, Entry, assign_splits
from .demographics import parse_age, parse_sex

__all__ = ['ArraysDataset', 'ARRAY_SUFFIXES', 'sidecar_path']

_logger = logging.getLogger(__name__)

ARRAY_SUFFIXES = ('.npy', '.npz', '.h5', '.hdf5')
_LAYOUTS = ('NCL', 'NLC')
_FACTS = ('sampling_rate', 'leads', 'layout')  # must agree wherever they are given
_PER_RECORD = ('labels', 'record_ids', 'patient_ids', 'splits', 'age', 'sex')
_SIDECAR_KEYS = (*_FACTS, *_PER_RECORD, 'label_names', 'multilabel', 'label_sep', 'record_column', 'label_column',
                 'patient_column', 'split_column', 'signals_key', 'nan_policy', 'seed')
_MISSING = object()


def sidecar_path(path: str | os.PathLike) -> Path:
    """The sidecar JSON of an array file: same folder and stem, ``.json`` (``ecgs.npz`` -> ``ecgs.json``).

    Args:
        path: The array file.
    """
    return Path(path).with_suffix('.json')


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())


class ArraysDataset(ECGDataset):
    """Records stored as one array (in memory or in a ``.npy``/``.npz``/HDF5 file); see the module docstring.

    Args:
        source: the array itself, or the path of a ``.npy``, ``.npz``, ``.h5`` or ``.hdf5`` file.
        sampling_rate: Hz, the same for every record.
        leads: lead names in the array's lead order.
        layout: 'NCL' (records, leads, samples) or 'NLC' (records, samples, leads); default: detected.
        labels: per-record labels (class names, class indices, or multi-hot rows), or a labels CSV path.
        label_names: class order; default: the sorted names found (indices: '0', '1', ...).
        multilabel: labels are multi-hot rows, or (names / CSV) ``label_sep``-separated lists.
        label_sep: separator of multilabel names.
        record_ids: unique id per record; default: the row number ('0', '1', ...).
        patient_ids: patient per record (used for the patient-wise split); default: one patient per record.
        splits: 'train'/'val'/'test' per record; default: a seeded 70/15/15 split by patient.
        age: years per record (NaN/None unknown) -> ``entry.meta['age']``.
        sex: 'M'/'F'/'male'/'female' per record -> ``entry.meta['sex']``.
        record_column, label_column, patient_column, split_column: column names of a labels CSV.
        signals_key: the signals' key in a ``.npz`` or the dataset name in an HDF5 file.
        nan_policy: 'error' (NaN/inf samples raise at indexing) or 'repair' (left to ``Preprocessing.nan_policy``).
        seed: split seed.
        strict: raise at a CSV row without a record (or a record without a row) instead of skipping it.

    Raises:
        DatasetLayoutError: every problem with the arrays, their metadata or the labels, naming the source and the
            fix (a missing rate or lead names, a lead count that does not match the array, a layout that cannot be
            told, NaNs, a per-record array of the wrong length, ...).
    """
    name = 'arrays'

    def __init__(self, source: str | os.PathLike | np.ndarray, *, sampling_rate: float | None = None,
                 leads: Sequence[str] | None = None, layout: str | None = None, labels: Any = None,
                 label_names: Sequence[str] | None = None, multilabel: bool | None = None, label_sep: str = ';',
                 record_ids: Sequence[str] | None = None, patient_ids: Sequence[str] | None = None,
                 splits: Sequence[str] | None = None, age: Sequence[Any] | None = None,
                 sex: Sequence[Any] | None = None, record_column: str = 'record', label_column: str = 'label',
                 patient_column: str = 'patient_id', split_column: str = 'split', signals_key: str = 'signals',
                 nan_policy: str = 'error', seed: int = 0, strict: bool = False):
        in_memory = not isinstance(source, (str, os.PathLike))
        super().__init__(None if in_memory else source, strict=strict)
        self._memory = np.asarray(source) if in_memory else None
        self.path = None if in_memory else Path(source)
        self.where = 'the array' if in_memory else str(self.path)
        self._array = self._memory
        self._pid = None
        args = {'sampling_rate': sampling_rate, 'leads': leads, 'layout': layout, 'labels': labels,
                'label_names': label_names, 'multilabel': multilabel, 'record_ids': record_ids,
                'patient_ids': patient_ids, 'splits': splits, 'age': age, 'sex': sex}
        given = {k: v for k, v in args.items() if v is not None}
        defaults = {'label_sep': label_sep, 'record_column': record_column, 'label_column': label_column,
                    'patient_column': patient_column, 'split_column': split_column, 'signals_key': signals_key,
                    'nan_policy': nan_policy, 'seed': seed}
        if not in_memory:
            if self.path.suffix.lower() not in ARRAY_SUFFIXES:
                raise DatasetLayoutError(f'{self.name}: {self.path} is not an array file; expected one of '
                                         f'{ARRAY_SUFFIXES} (for a folder of WFDB records use --data folder).')
            if not self.path.is_file():
                raise DatasetLayoutError(f'{self.name}: {self.path} does not exist.')
        sidecar = {} if in_memory else self._read_sidecar()
        self.signals_key = str(sidecar.get('signals_key', signals_key) if signals_key == 'signals' else signals_key)
        stored = {} if in_memory else self._read_stored()
        opts = self._merge(given, sidecar, stored)
        for k, v in defaults.items():
            opts.setdefault(k, v)
        if opts['nan_policy'] not in ('error', 'repair'):
            raise DatasetLayoutError(f"{self.name}: nan_policy={opts['nan_policy']!r}; use 'error' or 'repair'.")
        self.sampling_rate = self._check_rate(opts.get('sampling_rate'))
        self.leads = self._check_leads(opts.get('leads'))
        self.layout, self.shape = self._check_shape(opts.get('layout'))
        n = self.shape[0]
        if opts['nan_policy'] == 'error':
            self._check_finite()

        ids = self._per_record(opts.get('record_ids'), 'record_ids', n)
        ids = [str(i) for i in range(n)] if ids is None else [_text(v).strip() for v in ids]
        patients = self._per_record(opts.get('patient_ids'), 'patient_ids', n)
        split_col = self._per_record(opts.get('splits'), 'splits', n)
        ages = self._per_record(opts.get('age'), 'age', n)
        sexes = self._per_record(opts.get('sex'), 'sex', n)
        multi = opts.get('multilabel')
        cells = opts.get('labels')
        rows = None
        if isinstance(cells, (str, os.PathLike)):
            rows, patients, split_col, ages, sexes = self._read_csv(Path(cells), ids, opts, patients, split_col,
                                                                    ages, sexes)
            cells = [None if r is None else r[opts['label_column']] for r in rows]
        else:
            cells = self._per_record(cells, 'labels', n)
        keep = [rows is None or rows[i] is not None for i in range(n)]
        self.multilabel, self.label_names, y = self._labels(cells, keep, multi, opts.get('label_names'),
                                                            opts['label_sep'])
        raw_patients = [None if patients is None or _is_missing(patients[i]) else _text(patients[i]).strip()
                        for i in range(n)]
        self.patient_free = patients is None
        if split_col is not None:
            given_splits = [_text(s).strip() for s in split_col]
            bad = sorted({s for s, k in zip(given_splits, keep) if k and s not in SPLITS})
            if bad:
                raise DatasetLayoutError(f'{self.where}: split values {bad} are not among {SPLITS}; fix them, or '
                                         f'leave splits out to split by patient.')
        kept = [i for i in range(n) if keep[i]]
        pids = [raw_patients[i] or ids[i] for i in kept]
        auto = assign_splits(pids, seed=int(opts['seed']))
        for i, pid in zip(kept, pids):
            meta = {}
            if ages is not None:
                meta['age'] = parse_age(ages[i])
            if sexes is not None:
                meta['sex'] = parse_sex(_text(sexes[i]) if isinstance(sexes[i], bytes) else sexes[i])
            split = given_splits[i] if split_col is not None else auto[pid]
            self.entries.append(Entry(record_id=ids[i], patient_id=pid, split=split, labels=y[i],
                                      path=self.where, meta=dict(meta, row=i)))
        self._options = {k: v for k, v in opts.items() if k in ('label_sep', 'signals_key', 'nan_policy', 'seed')}
        self._finalize()

    # ---- where the options come from
    def _read_sidecar(self) -> dict[str, Any]:
        path = sidecar_path(self.path)
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding='utf-8'))
        except (OSError, ValueError) as e:
            raise DatasetLayoutError(f'{path}: not valid JSON ({e}); it must hold an object such as '
                                     f'{{"sampling_rate": 500, "leads": ["I", "II"]}}.') from None
        if not isinstance(data, dict):
            raise DatasetLayoutError(f'{path}: expected a JSON object of options such as {{"sampling_rate": 500}}, '
                                     f'got {type(data).__name__}.')
        unknown = sorted(set(data) - set(_SIDECAR_KEYS))
        if unknown:
            raise DatasetLayoutError(f'{path}: unknown option(s) {unknown}; known: {sorted(_SIDECAR_KEYS)}.')
        if isinstance(data.get('labels'), str):  # a CSV path is relative to the sidecar's folder
            data['labels'] = str(path.parent / data['labels'])
        return data

    def _read_stored(self) -> dict[str, Any]:
        """Options stored in the file itself (npz keys; HDF5 datasets and attributes), and the signals' shape."""
        suffix = self.path.suffix.lower()
        names = (*_FACTS, *_PER_RECORD, 'label_names')
        if suffix == '.npy':  # one array and nothing else; read its header now, before the options are asked for
            # numpy's own messages suggest allow_pickle=True, i.e. running the file's code: not repeated here.
            with open(self.path, 'rb') as f:
                header = f.read(6)
            reason = None if header == b'\x93NUMPY' else 'no .npy header: not written by numpy.save, or damaged'
            if reason is None:
                try:
                    np.load(self.path, mmap_mode='r', allow_pickle=False)
                except ValueError:
                    reason = 'it holds Python objects (dtype=object), which ecgvit never unpickles'
                except (OSError, EOFError) as e:
                    reason = f'unreadable: {" ".join(str(e).split())[:120]}'
            if reason is not None:
                raise DatasetLayoutError(f'{self.path}: not an array of numbers ({reason}); save the signals with '
                                         f'np.save(path, np.asarray(x, dtype=np.float32)).')
            return {}
        if suffix == '.npz':
            with np.load(self.path, allow_pickle=False) as z:
                if self.signals_key not in z.files:
                    raise DatasetLayoutError(f'{self.path}: no array {self.signals_key!r} (found {z.files}); save '
                                             f'the signals under that name, or pass signals_key=<name>.')
                out = {}
                for k in names:
                    if k in z.files:
                        try:
                            out[k] = z[k]
                        except ValueError:  # an object array: numpy will not unpickle it (and should not)
                            raise DatasetLayoutError(f'{self.path}: {k!r} is an object array; save it as numbers or '
                                                     f'strings (np.asarray(values, dtype=str)).') from None
                return out
        with self._h5() as f:
            if self.signals_key not in f:
                raise DatasetLayoutError(f'{self.path}: no dataset {self.signals_key!r} (found {list(f.keys())}); '
                                         f'store the signals under that name, or pass signals_key=<name>.')
            out = {k: f[k][()] for k in names if k in f and k != self.signals_key}
            for attrs in (f.attrs, f[self.signals_key].attrs):
                for k in _FACTS:
                    if k in attrs:
                        out[k] = attrs[k]
            return out

    def _h5(self):
        try:
            import h5py
        except ImportError:
            raise DatasetLayoutError(f'{self.path} is an HDF5 file and h5py is not installed: pip install '
                                     f"'ecgvit[hdf5]' (or pip install h5py), or save the arrays with numpy.savez.") \
                from None
        return h5py.File(self.path, 'r')

    def _merge(self, given: dict, sidecar: dict, stored: dict) -> dict[str, Any]:
        sources = (('argument', given), (str(sidecar_path(self.path)) if self.path else '', sidecar),
                   (f'{self.where} itself', stored))
        for key in _FACTS:
            seen = [(where, self._fact(key, d[key])) for where, d in sources if d.get(key) is not None]
            for where, value in seen[1:]:
                if value != seen[0][1]:
                    raise DatasetLayoutError(f'{self.name}: {key} is {seen[0][1]!r} in the {seen[0][0]} but '
                                             f'{value!r} in {where}; give it once (or make them agree).')
        out = dict(stored)
        out.update(sidecar)
        out.update(given)
        return out

    @staticmethod
    def _fact(key: str, v: Any) -> Any:
        if key == 'sampling_rate':
            try:
                return float(np.asarray(v).item())
            except (TypeError, ValueError):
                return v
        if key == 'leads':
            return tuple(_text(n) for n in np.atleast_1d(np.asarray(v, dtype=object)))
        return _text(np.asarray(v).item() if isinstance(v, np.ndarray) else v).upper()

    # ---- checks
    def _check_rate(self, value: Any) -> float:
        fix = 'pass sampling_rate=<Hz>'
        if self.path is not None:  # the sidecar works from the command line too
            fix = f'write {{"sampling_rate": 500}} (the rate in Hz) into {sidecar_path(self.path)}'
            if self.path.suffix.lower() != '.npy':  # a .npy holds one array and nothing else
                fix += " or store 'sampling_rate' in the file"
            fix += ' (from Python: or pass sampling_rate=<Hz>)'
        if value is None:
            raise DatasetLayoutError(f'{self.where}: no sampling rate; {fix}.')
        rate = self._fact('sampling_rate', value)
        if not isinstance(rate, float) or not np.isfinite(rate) or rate <= 0:
            raise DatasetLayoutError(f'{self.where}: sampling rate {value!r} is not a positive number of Hz; {fix}.')
        return rate

    def _check_leads(self, value: Any) -> tuple[str, ...]:
        example = '["I", "II", "III", "aVR", "aVL", "aVF", "V1", ..., "V6"]'
        if value is None:
            fix = (f'pass leads=[...] in the array\'s lead order (e.g. {example})' +
                   (f', or write {{"leads": [...]}} into {sidecar_path(self.path)}' if self.path else ''))
            raise DatasetLayoutError(f'{self.where}: no lead names; {fix}.')
        names = self._fact('leads', value)
        canon = tuple(canonical_lead_name(n) for n in names)
        unknown = [n for n, c in zip(names, canon) if c not in LEADS]
        if unknown:
            raise DatasetLayoutError(f'{self.where}: unknown lead names {unknown}; use the standard names '
                                     f'{list(LEADS)} (aliases such as AVR, avl or D1 are accepted).')
        dupes = sorted({c for c in canon if canon.count(c) > 1})
        if dupes or not canon:
            raise DatasetLayoutError(f'{self.where}: lead names {list(names)} must be distinct and non-empty '
                                     f'(repeated: {dupes}).')
        return canon

    def _check_shape(self, layout: Any) -> tuple[str, tuple[int, int, int]]:
        arr = self._signals()
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise DatasetLayoutError(f'{self.where}: signals have dtype {arr.dtype}; expected real numbers (float or '
                                     f'int).')
        shape = tuple(int(s) for s in arr.shape)
        c = len(self.leads)
        if len(shape) != 3:
            hint = ' (one record: add a record axis, x[None])' if len(shape) == 2 else ''
            raise DatasetLayoutError(f'{self.where}: signals have shape {shape}; expected 3 axes, (records, leads, '
                                     f"samples) with layout='NCL' or (records, samples, leads) with layout='NLC'"
                                     f'{hint}.')
        if shape[0] == 0:
            raise DatasetLayoutError(f'{self.where}: the signals hold no record (shape {shape}).')
        if layout is not None:
            layout = self._fact('layout', layout).upper()
            if layout not in _LAYOUTS:
                raise DatasetLayoutError(f"{self.where}: layout={layout!r}; use 'NCL' (records, leads, samples) or "
                                         f"'NLC' (records, samples, leads).")
            axis = 1 if layout == 'NCL' else 2
            if shape[axis] != c:
                other = 'NLC' if layout == 'NCL' else 'NCL'
                looks = 'channels-last' if other == 'NLC' else 'channels-first'
                hint = (f' The other axis has {c}: the array looks {looks}, use layout={other!r}.'
                        if shape[3 - axis] == c else '')
                raise DatasetLayoutError(f'{self.where}: {c} lead names {list(self.leads)} but the lead axis '
                                         f'(axis {axis} for layout={layout!r}) of shape {shape} has {shape[axis]} '
                                         f'leads.{hint} Give one name per lead, in order.')
            return layout, (shape[0], c, shape[3 - axis])
        if shape[1] == c and shape[2] == c:
            raise DatasetLayoutError(f"{self.where}: shape {shape} is ambiguous (both axes 1 and 2 have {c}, the "
                                     f"number of lead names): pass layout='NCL' (records, leads, samples) or "
                                     f"layout='NLC' (records, samples, leads).")
        if c not in shape[1:]:
            raise DatasetLayoutError(f'{self.where}: {c} lead names {list(self.leads)} but signals of shape {shape} '
                                     f'have no axis of {c} leads (axes 1 and 2: {shape[1]}, {shape[2]}). Give one '
                                     f'name per lead, in the array\'s order.')
        layout = 'NCL' if shape[1] == c else 'NLC'
        _logger.info("%s: signals %s read as %s (layout=%r, detected: axis %d holds the %d leads); pass layout= to "
                     "state it", self.where, shape, 'channels-first' if layout == 'NCL' else 'channels-last', layout,
                     1 if layout == 'NCL' else 2, c)
        return layout, (shape[0], c, shape[2] if layout == 'NCL' else shape[1])

    def _check_finite(self) -> None:
        arr = self._signals()
        bad = []
        step = max(1, int(2 ** 24 // max(1, self.shape[1] * self.shape[2])))  # ~64 MB of float32 per chunk
        for lo in range(0, self.shape[0], step):
            chunk = np.asarray(arr[lo:lo + step])
            ok = np.isfinite(chunk).all(axis=(1, 2))
            bad.extend(lo + int(i) for i in np.flatnonzero(~ok))
        if bad:
            raise DatasetLayoutError(f'{self.where}: {len(bad)} record(s) hold NaN/inf samples (rows {bad[:10]}'
                                     f"{'...' if len(bad) > 10 else ''}). Clean them, or pass nan_policy='repair' to "
                                     f'let the preprocessing interpolate them (a lead that is all NaN is then zeroed '
                                     f'or refused by its empty-lead policy).')

    def _per_record(self, value: Any, key: str, n: int) -> list | None:
        if value is None:
            return None
        arr = np.asarray(value, dtype=object if key != 'labels' else None)
        if arr.ndim == 0 or len(arr) != n:
            got = 'a single value' if arr.ndim == 0 else f'{len(arr)} values'
            raise DatasetLayoutError(f'{self.where}: {key} has {got} for {n} records; give one per record, in the '
                                     f'order of the signals.')
        return list(arr)

    def _read_csv(self, path: Path, ids, opts, patients, split_col, ages, sexes):
        import pandas as pd

        if not path.is_file():
            raise DatasetLayoutError(f'{self.where}: labels file {path} not found.')
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        rc, lc = opts['record_column'], opts['label_column']
        for col in (rc, lc):
            if col not in df.columns:
                raise DatasetLayoutError(f'{path}: expected a column {col!r} (columns {rc!r}, {lc!r}, optional '
                                         f"{opts['patient_column']!r}, {opts['split_column']!r}, 'age', 'sex'); "
                                         f'found {list(df.columns)}.')
        by_id = {}
        for row in df.to_dict('records'):
            key = str(row[rc]).strip()
            if key in by_id:
                raise DatasetLayoutError(f'{path}: record {key!r} has more than one row; each record needs one.')
            by_id[key] = row
        index = set(ids)
        for key in by_id:
            if key not in index:
                self._skip(key, f'listed in {path.name} but not a record id of {self.where} (ids are '
                                f"{'the row numbers' if opts.get('record_ids') is None else 'its record_ids'}).")
        rows = []
        for rid in ids:
            row = by_id.get(rid)
            if row is None:
                self._skip(rid, f'no row for this record in {path.name}.')
            elif _is_missing(row[lc]):
                self._skip(rid, f'empty label in {path.name}.')
                row = None
            rows.append(row)

        def column(name, current):
            if name not in df.columns:
                return current
            return [None if r is None else r[name] for r in rows]
        return (rows, column(opts['patient_column'], patients), column(opts['split_column'], split_col),
                column('age', ages), column('sex', sexes))

    def _labels(self, cells, keep, multilabel, label_names, sep):
        n = len(keep)
        if cells is None:
            return bool(multilabel), list(label_names or []), [None] * n
        arr = np.asarray([c for c, k in zip(cells, keep) if k], dtype=object)
        if arr.ndim == 2:  # multi-hot rows
            try:
                hot = arr.astype(np.float32)
            except (TypeError, ValueError):
                raise DatasetLayoutError(f'{self.where}: 2-D labels must be multi-hot numbers (0/1).') from None
            if not np.isin(hot, (0.0, 1.0)).all():
                raise DatasetLayoutError(f'{self.where}: multi-hot labels must be 0 or 1; found other values.')
            if multilabel is False:
                raise DatasetLayoutError(f'{self.where}: 2-D (multi-hot) labels with multilabel=False; pass class '
                                         f'indices or names for single-label data.')
            names = list(label_names) if label_names is not None else [str(k) for k in range(hot.shape[1])]
            if len(names) != hot.shape[1]:
                raise DatasetLayoutError(f'{self.where}: {len(names)} label_names for {hot.shape[1]} label columns.')
            it = iter(hot)
            return True, names, [next(it) if k else None for k in keep]
        values = [c for c, k in zip(cells, keep) if k]
        missing = [i for i, v in enumerate(values) if _is_missing(v)]
        if missing:
            raise DatasetLayoutError(f'{self.where}: {len(missing)} record(s) have no label (e.g. position '
                                     f'{missing[0]}); give every record a label, or leave labels out.')
        numeric = all(isinstance(v, (int, np.integer)) or
                      (isinstance(v, (float, np.floating)) and float(v).is_integer()) for v in values)
        if numeric and not multilabel:
            idx = [int(v) for v in values]
            if min(idx) < 0:
                raise DatasetLayoutError(f'{self.where}: class indices must be >= 0, found {min(idx)}.')
            names = list(label_names) if label_names is not None else [str(k) for k in range(max(idx) + 1)]
            if max(idx) >= len(names):
                raise DatasetLayoutError(f'{self.where}: class index {max(idx)} but only {len(names)} label_names '
                                         f'{names}.')
            it = iter(idx)
            return False, names, [next(it) if k else None for k in keep]
        text = [_text(v).strip() for v in values]
        parsed = [[s.strip() for s in t.split(sep) if s.strip()] for t in text] if multilabel else text
        found = sorted({s for p in parsed for s in p}) if multilabel else sorted(set(text))
        names = list(label_names) if label_names is not None else found
        unknown = sorted(set(found) - set(names))
        if unknown:
            raise DatasetLayoutError(f'{self.where}: labels {unknown} are not in label_names {names}; add them or fix '
                                     f'the labels.')
        pos = {name: i for i, name in enumerate(names)}
        out = []
        for p in parsed:
            if multilabel:
                y = np.zeros(len(names), dtype=np.float32)
                y[[pos[s] for s in p]] = 1.0
                out.append(y)
            else:
                out.append(pos[p])
        it = iter(out)
        return bool(multilabel), names, [next(it) if k else None for k in keep]

    # ---- reading
    def _signals(self):
        """The signals array (a memmap for .npy; loaded once per process for .npz; an h5py dataset for HDF5)."""
        if self._memory is not None:
            return self._memory
        if self._array is not None and self._pid == os.getpid():
            return self._array
        suffix = self.path.suffix.lower()
        if suffix == '.npy':
            arr = np.load(self.path, mmap_mode='r', allow_pickle=False)
        elif suffix == '.npz':
            with np.load(self.path, allow_pickle=False) as z:
                arr = z[self.signals_key]
        else:  # a file handle per process: h5py handles do not survive fork
            arr = self._h5()[self.signals_key]
        self._array, self._pid = arr, os.getpid()
        return arr

    def __getstate__(self):
        state = self.__dict__.copy()
        if self._memory is None:  # workers reopen the file rather than receive the signals through a pipe
            state['_array'] = None
            state['_pid'] = None
        return state

    def signal_length(self, entry: Entry) -> tuple[int, float] | None:
        """(samples, Hz) of an entry's signal, without reading it.

        Args:
            entry: One of ``entries`` (its window, when it has one, is what is measured).
        """
        n = self.shape[2]
        if entry.start_s is not None or entry.end_s is not None:
            start = int(round((entry.start_s or 0.0) * self.sampling_rate))
            end = n if entry.end_s is None else int(round(entry.end_s * self.sampling_rate))
            n = max(0, min(end, n) - start)
        return n, self.sampling_rate

    def read(self, i: int | Entry, *, leads: Sequence[str] | None = None, missing_leads: str = 'error') -> Record:
        """The record of entry ``i`` (index or ``Entry``) as float32 (leads, samples), in the array's lead order
        (or in ``leads`` order, absent ones zero-filled with a lead mask when ``missing_leads='zero'``).

        Args:
            i: Index into ``entries``, or the ``Entry`` itself.
            leads: Lead names to return, in that order (None: the array's leads).
            missing_leads: 'error' (refuse a lead the array lacks) or 'zero' (zero-fill it, and set the lead mask).

        Raises:
            MissingLeadsError: ``leads`` names a lead the array lacks and ``missing_leads`` is 'error'.
            RecordError: the entry's window holds no samples.
        """
        entry = self.entries[i] if not isinstance(i, Entry) else i
        row = np.asarray(self._signals()[entry.meta['row']], dtype=np.float32)
        sig = row if self.layout == 'NCL' else row.T
        if entry.start_s is not None or entry.end_s is not None:
            start = int(round((entry.start_s or 0.0) * self.sampling_rate))
            end = sig.shape[1] if entry.end_s is None else int(round(entry.end_s * self.sampling_rate))
            sig = sig[:, start:end]
        names, mask = self.leads, None
        if leads is not None and tuple(canonical_lead_name(n) for n in leads) != self.leads:
            names = tuple(canonical_lead_name(n) for n in leads)
            absent = [n for n in names if n not in self.leads]
            if absent and missing_leads == 'error':
                raise MissingLeadsError(entry.record_id, f'missing leads {absent}; {self.where} has '
                                                         f"{list(self.leads)}. Pass missing_leads='zero'.")
            out = np.zeros((len(names), sig.shape[1]), dtype=np.float32)
            mask = np.array([n in self.leads for n in names])
            for r, n in enumerate(names):
                if n in self.leads:
                    out[r] = sig[self.leads.index(n)]
            sig, mask = out, (None if mask.all() else mask)
        if sig.shape[1] == 0:
            raise RecordError(entry.record_id, 'the record has 0 samples.')
        return Record(signal=np.ascontiguousarray(sig, dtype=np.float32), fs=self.sampling_rate, lead_names=names,
                      record_id=entry.record_id, lead_mask=mask, metadata={'patient_id': entry.patient_id},
                      path=None if self.path is None else str(self.path))

    # ---- identity (for cache fingerprints)
    def descriptor(self) -> dict[str, Any]:
        """The base descriptor plus what identifies the signals: the file's size and time (or, for an array in
        memory, its sha256), the key, the layout, the rate and the options that shape the index."""
        h = hashlib.sha256()
        for e in self.entries:
            labels = None if e.labels is None else np.asarray(e.labels).tolist()
            h.update(f'{e.record_id}|{e.patient_id}|{e.split}|{labels}|{e.meta.get("row")}\n'.encode())
        if self._memory is not None:
            h.update(hashlib.sha256(np.ascontiguousarray(self._memory).data).digest())
            signals = {'sha256': h.hexdigest()}
        else:
            st = os.stat(self.path)
            signals = {'path': str(self.path.absolute()), 'size': st.st_size, 'mtime_ns': st.st_mtime_ns}
        return {'name': self.name, 'class': type(self).__name__, 'root': None if self.root is None else str(self.root),
                'n_entries': len(self.entries), 'label_names': list(self.label_names), 'multilabel': self.multilabel,
                'leads': list(self.leads), 'sampling_rate': self.sampling_rate, 'layout': self.layout,
                'shape': list(self.shape), 'signals': signals, 'options': self._options,
                'index_sha256': h.hexdigest()}
