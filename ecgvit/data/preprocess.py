"""Preprocessing: one JSON-serialisable object that turns a ``Record`` into the model's input array.

Steps, in order: select/reorder leads (only ``input_leads`` when set: the others are zero and masked) -> repair
NaN/inf samples -> check for empty leads -> resample to the target rate (``scipy.signal.resample_poly``) -> optional
zero-phase band-pass -> crop or pad to the target length -> per-lead z-score. Filtering runs on the whole record
before cropping, so a crop never sees filter edge effects. The z-score statistics come from the output window itself
(per lead, per record, as in the seed), so training and inference compute them the same way.

The settings are stored next to every cache and in a model's pretrained cfg; ``check_compatible`` compares the two
when data meets a model.

Example:
    >>> pp = Preprocessing(sampling_rate=360.0, num_samples=3600)
    >>> x = pp(record)  # doctest: +SKIP
    >>> x.shape, x.dtype  # doctest: +SKIP
    ((12, 3600), dtype('float32'))
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from ecgvit.constants import DEFAULT_NUM_SAMPLES, DEFAULT_SAMPLING_RATE, LEADS
from ecgvit.lead_sets import resolve_leads

from .records import Record, RecordError, canonical_lead_name

__all__ = ['Preprocessing', 'IncompatibleDataError', 'resample', 'bandpass_filter', 'zscore', 'MIN_RECORD_S']

# A record shorter than this holds no complete heartbeat (at 60 bpm); padded, it would be an input of zeros.
MIN_RECORD_S = 1.0

_CROPS = ('center', 'random', 'start', 'windows')
_PADS = ('error', 'zero', 'edge')
_NAN_POLICIES = ('interpolate', 'zero', 'error')
_EMPTY_POLICIES = ('error', 'zero')
_NORMALIZE = ('zscore', 'none')


class IncompatibleDataError(ValueError):
    """Data preprocessing and a model's pretrained cfg disagree (rate, length, leads or normalisation)."""


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample ``(..., samples)`` from ``fs_in`` to ``fs_out`` Hz with a polyphase anti-aliasing filter.

    The ratio is approximated by a fraction with denominator <= 1000 (exact for the usual 100/250/257/400/500/1000 Hz).

    Args:
        x: Signals, samples last.
        fs_in: Their sampling rate in Hz.
        fs_out: The rate wanted (equal to ``fs_in``: ``x`` is returned as is).

    Raises:
        ValueError: a ratio too extreme to approximate.
    """
    if fs_in == fs_out:
        return x
    from scipy.signal import resample_poly

    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    if ratio.numerator == 0:
        raise ValueError(f'Cannot resample from {fs_in} Hz to {fs_out} Hz: the ratio is too extreme.')
    up, down = ratio.numerator, ratio.denominator
    return resample_poly(x, up, down, axis=-1, window=_antialias_fir(up, down))


@functools.lru_cache(maxsize=32)
def _antialias_fir(up: int, down: int) -> np.ndarray:
    """scipy's default resample_poly filter (Kaiser, beta 5), designed once per ratio instead of once per record."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    h = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=('kaiser', 5.0))
    h.setflags(write=False)
    return h


def bandpass_filter(x: np.ndarray, fs: float, low: float | None, high: float | None, order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth band-pass (or high/low-pass when one edge is None) along the last axis.

    Args:
        x: Signals, samples last.
        fs: Sampling rate in Hz.
        low: Lower edge in Hz, or None (low-pass only).
        high: Upper edge in Hz (below Nyquist), or None (high-pass only); both None returns ``x``.
        order: Butterworth order (doubled by the forward-backward pass).

    Raises:
        ValueError: ``high`` at or above Nyquist, or ``low >= high``.
    """
    from scipy.signal import butter, sosfiltfilt

    nyq = fs / 2
    if high is not None and high >= nyq:
        raise ValueError(f'Band-pass upper edge {high} Hz is not below the Nyquist frequency {nyq} Hz at {fs} Hz; '
                         f'lower it (e.g. {0.9 * nyq:g}) or raise sampling_rate.')
    if low is not None and high is not None and low >= high:
        raise ValueError(f'Band-pass edges must satisfy low < high, got ({low}, {high}).')
    if low is None and high is None:
        return x
    if low is None:
        sos = butter(order, high, btype='lowpass', fs=fs, output='sos')
    elif high is None:
        sos = butter(order, low, btype='highpass', fs=fs, output='sos')
    else:
        sos = butter(order, [low, high], btype='bandpass', fs=fs, output='sos')
    padlen = min(x.shape[-1] - 1, 3 * (2 * len(sos) + 1))
    return sosfiltfilt(sos, x, axis=-1, padlen=padlen)


def zscore(x: np.ndarray, eps: float = 1e-6, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-lead z-score over the last axis; leads where ``mask`` is False stay zero.

    Args:
        x: (leads, samples) signals (any shape with samples last).
        eps: Added to the standard deviation, so a flat lead gives zeros, not NaN.
        mask: (leads,) booleans, False for an absent lead, or None.
    """
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    out = (x - mean) / (std + eps)
    if mask is not None:
        out[~mask] = 0.0
    return out


def _fix_nans(x: np.ndarray, policy: str, record_id: str, lead_names: tuple[str, ...]) -> np.ndarray:
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    if policy == 'error':
        leads = [lead_names[i] for i in np.flatnonzero(bad.any(axis=1))]
        raise RecordError(record_id, f'{int(bad.sum())} NaN/inf samples in leads {leads}. Set '
                                     f"nan_policy='interpolate' or 'zero' to repair them.")
    x = x.copy()
    if policy == 'zero':
        x[bad] = 0.0
        return x
    idx = np.arange(x.shape[1])
    for i in np.flatnonzero(bad.any(axis=1)):
        good = ~bad[i]
        if good.any():  # fully bad leads are left for the empty-lead check
            x[i, ~good] = np.interp(idx[~good], idx[good], x[i, good])
    return x


@dataclass
class Preprocessing:
    """How a record becomes model input. Every field is JSON-serialisable (``to_dict``/``from_dict``).

    Attributes:
        sampling_rate: target rate in Hz (seed: 360).
        num_samples: target length in samples (seed: 3600 = 10 s at 360 Hz).
        leads: output lead order; records are reordered by name.
        bandpass: (low, high) Hz for a zero-phase Butterworth filter; either edge may be None; None disables it.
        bandpass_order: Butterworth order (applied forwards and backwards, so the effective order doubles).
        normalize: 'zscore' (per lead, per output window; the seed's) or 'none'.
        crop: 'center', 'random' (pass an rng or seed at call time to repeat it; without one each call draws from
            fresh entropy), 'start', or 'windows' (every full window).
        window_stride: stride in samples between windows for crop='windows'; default ``num_samples`` (no overlap).
        pad: what to do with a record shorter than ``num_samples``: 'error', 'zero' (pad both sides with zeros
            after z-scoring, so padding is exactly 0) or 'edge' (repeat the edge values).
        nan_policy: NaN/inf samples: 'interpolate' (linear, per lead), 'zero', or 'error'.
        empty_lead_policy: a lead that is all NaN, all zero or constant: 'error', or 'zero' (keep it at 0).
        missing_leads: a lead of ``leads`` (of ``input_leads`` when set) the record lacks: 'error', or 'zero'
            (zero-fill it, False in the lead mask). Datasets pass it to ``read_record`` (see ``read_missing_leads``).
        input_leads: the leads the user's device has (a reduced-lead input, e.g. ``('I',)`` or the preset '6'); the
            other leads of ``leads`` are never read: they are exactly zero in the output and False in the lead mask,
            whatever the record holds there. The leads kept are processed exactly as without this option (every step
            is per lead). None (the default, or a subset naming every lead) reads all of ``leads``.
    """
    sampling_rate: float = DEFAULT_SAMPLING_RATE
    num_samples: int = DEFAULT_NUM_SAMPLES
    leads: tuple[str, ...] = LEADS
    bandpass: tuple[float | None, float | None] | None = None
    bandpass_order: int = 2
    normalize: str = 'zscore'
    crop: str = 'center'
    window_stride: int | None = None
    pad: str = 'error'
    nan_policy: str = 'interpolate'
    empty_lead_policy: str = 'error'
    missing_leads: str = 'error'
    input_leads: tuple[str, ...] | None = None

    def __post_init__(self):
        self.sampling_rate = float(self.sampling_rate)
        self.num_samples = int(self.num_samples)
        self.leads = tuple(canonical_lead_name(n) for n in self.leads)
        if self.input_leads is not None:
            chosen = resolve_leads(self.input_leads)  # presets ('6', '1'), comma lists, any case
            outside = [n for n in chosen if n not in self.leads]
            if outside:
                raise ValueError(f'input_leads {list(chosen)} names leads {outside} that are not among the output '
                                 f'leads {list(self.leads)}; add them to leads or drop them from input_leads.')
            # In the order of ``leads``; all of them is the same as None (one cache, one fingerprint).
            kept = tuple(n for n in self.leads if n in chosen)
            self.input_leads = None if kept == self.leads else kept
        if self.bandpass is not None:
            self.bandpass = tuple(None if b is None else float(b) for b in self.bandpass)
        if not np.isfinite(self.sampling_rate) or self.sampling_rate <= 0:
            raise ValueError(f'sampling_rate must be a positive number of Hz, got {self.sampling_rate!r}.')
        if self.num_samples <= 0:
            raise ValueError(f'num_samples must be positive, got {self.num_samples!r}.')
        if not self.leads or len(set(self.leads)) != len(self.leads):
            raise ValueError(f'leads must be a non-empty list of distinct lead names, got {self.leads!r}.')
        for name, value, allowed in (('normalize', self.normalize, _NORMALIZE), ('crop', self.crop, _CROPS),
                                     ('pad', self.pad, _PADS), ('nan_policy', self.nan_policy, _NAN_POLICIES),
                                     ('empty_lead_policy', self.empty_lead_policy, _EMPTY_POLICIES),
                                     ('missing_leads', self.missing_leads, ('error', 'zero'))):
            if value not in allowed:
                raise ValueError(f'{name}={value!r} is not supported; use one of {allowed}.')
        if self.bandpass is not None:
            if len(self.bandpass) != 2:
                raise ValueError(f'bandpass must be (low_hz, high_hz), got {self.bandpass!r}.')
            bandpass_filter(np.zeros((1, 64)), self.sampling_rate, *self.bandpass, order=self.bandpass_order)
        if self.window_stride is not None and int(self.window_stride) <= 0:
            raise ValueError(f'window_stride must be a positive number of samples, got {self.window_stride!r}.')

    # ---- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every setting (``input_leads`` only when set)."""
        d = dataclasses.asdict(self)
        d['leads'] = list(self.leads)
        d['bandpass'] = None if self.bandpass is None else list(self.bandpass)
        if self.input_leads is None:
            # Left out at its default so every cache, embedding and weights' recorded recipe made before the option
            # existed keeps its fingerprint; a subset is in the dict, so its caches are keyed apart.
            del d['input_leads']
        else:
            d['input_leads'] = list(self.input_leads)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Rebuild from ``to_dict()`` output; unknown keys are an error (they would be silently ignored otherwise).

        Args:
            d: Setting name -> value (a subset: the others keep their defaults).

        Raises:
            ValueError: an unknown setting, or a value the settings' own checks refuse.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f'Unknown Preprocessing settings {unknown}; known settings are {sorted(names)}.')
        return cls(**dict(d))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), stable across runs."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON: equal settings <=> equal fingerprint."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @property
    def input_mask(self) -> np.ndarray:
        """Bool (len(leads),): True for the leads this preprocessing reads (all unless ``input_leads`` is set)."""
        if self.input_leads is None:
            return np.ones(len(self.leads), dtype=bool)
        return np.asarray([n in self.input_leads for n in self.leads], dtype=bool)

    @property
    def read_missing_leads(self) -> str:
        """The ``missing_leads`` policy to read records with: 'zero' when ``input_leads`` is set, so a record that
        lacks only leads outside the subset is read, and this object then applies ``missing_leads`` to the subset."""
        return 'zero' if self.input_leads is not None else self.missing_leads

    @property
    def duration_s(self) -> float:
        """Output window length in seconds."""
        return self.num_samples / self.sampling_rate

    @classmethod
    def from_pretrained_cfg(cls, cfg: Mapping[str, Any] | Any, **overrides) -> Preprocessing:
        """The preprocessing a model was trained with, from its pretrained cfg (a dict such as
        ``model.pretrained_cfg``). Uses the cfg's full ``preprocessing`` dict when present.

        Args:
            cfg: The pretrained cfg, a dict or a dataclass; without a ``preprocessing`` dict, its sampling rate,
                input length, lead names and normalisation are read.
            **overrides: Settings replacing the cfg's (e.g. ``crop='center'``).
        """
        cfg = _cfg_as_dict(cfg)
        if cfg.get('preprocessing'):
            d = dict(cfg['preprocessing'])
        else:
            fs = float(cfg.get('sampling_rate', DEFAULT_SAMPLING_RATE))
            d = {'sampling_rate': fs, 'num_samples': _cfg_num_samples(cfg, fs),
                 'leads': list(cfg.get('lead_names', LEADS))}
            if str(cfg.get('normalization', 'zscore')).startswith('none'):
                d['normalize'] = 'none'
        d.update(overrides)
        return cls.from_dict(d)

    # ---- compatibility with a model
    def check_compatible(self, pretrained_cfg: Mapping[str, Any] | Any) -> None:
        """Raise ``IncompatibleDataError`` if this preprocessing does not produce what the model was trained on.

        When the cfg stores the full ``preprocessing`` its weights were trained with, that is the reference (it is
        the most specific record: a cfg's top-level ``sampling_rate``/``input_size`` may be the architecture's
        defaults); otherwise ``sampling_rate``, ``duration_s``/``input_size``, ``lead_names`` and ``normalization``.

        Args:
            pretrained_cfg: the model's pretrained cfg as a dict (e.g. ``model.pretrained_cfg``).

        Raises:
            IncompatibleDataError: listing every mismatch and the ``Preprocessing`` that fits the model.
        """
        cfg = _cfg_as_dict(pretrained_cfg)
        ref = cfg.get('preprocessing')
        if ref:
            ref = dict(ref)
            fs, n = ref.get('sampling_rate'), ref.get('num_samples')
            lead_names, ref_z = ref.get('leads'), ref.get('normalize', 'zscore') == 'zscore'
            norm = ref.get('normalize', 'zscore')
        else:
            fs = cfg.get('sampling_rate')
            n = _cfg_num_samples(cfg, float(fs if fs is not None else self.sampling_rate)) \
                if fs is not None or cfg.get('input_size') is not None else None
            lead_names, norm = cfg.get('lead_names'), cfg.get('normalization')
            ref_z = None if norm is None else str(norm).lower().startswith('zscore')
        problems = []
        if fs is not None and not np.isclose(float(fs), self.sampling_rate):
            problems.append(f'sampling rate: data {self.sampling_rate:g} Hz, model {float(fs):g} Hz')
        if n is not None and int(n) != self.num_samples:
            problems.append(f'length: data {self.num_samples} samples, model {int(n)} samples')
        if lead_names is not None:
            model_leads = tuple(canonical_lead_name(name) for name in lead_names)
            if model_leads != self.leads:
                problems.append(f'leads: data {list(self.leads)}, model {list(model_leads)}')
        if ref_z is not None and ref_z != (self.normalize == 'zscore'):
            problems.append(f'normalisation: data {self.normalize!r}, model {norm!r}')
        if ref:
            ref_bp = ref.get('bandpass')
            mine = None if self.bandpass is None else list(self.bandpass)
            if (None if ref_bp is None else list(ref_bp)) != mine:
                problems.append(f'band-pass: data {mine}, model {ref_bp}')
        if problems:
            try:
                fix = repr(Preprocessing.from_pretrained_cfg(cfg, crop=self.crop, pad=self.pad))
            except Exception:  # a malformed cfg still deserves the list of problems
                fix = 'the settings in the model cfg'
            raise IncompatibleDataError('Preprocessing does not match the model: ' + '; '.join(problems) +
                                        f'. Fix: build the data with {fix} '
                                        '(Preprocessing.from_pretrained_cfg(model.pretrained_cfg)).')

    # ---- the pipeline
    def __call__(self, record: Record, rng: np.random.Generator | int | None = None, *, return_mask: bool = False):
        """Preprocess one record.

        Args:
            record: a ``Record`` (any lead order, any rate).
            rng: generator or seed for crop='random'.
            return_mask: also return the lead mask: bool (len(leads),), False for a lead that was missing or empty,
                or is not among ``input_leads``, and is therefore all zero in the output.

        Returns:
            float32 array (len(leads), num_samples); for crop='windows' a list of such arrays (at least one). With
            ``return_mask``, a tuple (that, mask).

        Raises:
            RecordError: missing leads, NaNs with nan_policy='error', empty leads with empty_lead_policy='error',
                a record shorter than ``num_samples`` with pad='error', an invalid sampling rate; whatever the
                policies, a record with no usable lead at all or shorter than ``MIN_RECORD_S`` (its output would be
                zeros, not an ECG).
        """
        rid = record.record_id
        if not np.isfinite(record.fs) or record.fs <= 0:
            raise RecordError(rid, f'unknown sampling rate {record.fs!r}; set Record.fs to the rate in Hz.')
        n_in = np.asarray(record.signal).shape[-1]
        if n_in < MIN_RECORD_S * record.fs:
            raise RecordError(rid, f'the record is {n_in} samples at {record.fs:g} Hz ({n_in / record.fs:.3g} s), '
                                   f'shorter than {MIN_RECORD_S:g} s: too short to hold a heartbeat, so padding it '
                                   f'would give an input of zeros. Check the header\'s sample count, or leave the '
                                   f'record out.')
        x, mask = self._select_leads(record)
        x = _fix_nans(x.astype(np.float64), self.nan_policy, rid, self.leads)
        x, mask = self._check_empty(x, mask, rid)
        if mask is not None and not mask.any():
            raise RecordError(rid, f'no usable lead: every lead of {list(self.input_leads or self.leads)} is missing, '
                                   f'all NaN, all zero or constant, so the input would be all zeros. Check the record '
                                   f'(its lead names {list(record.lead_names)} and samples), or leave it out.')
        x = resample(x, record.fs, self.sampling_rate)
        if self.bandpass is not None:
            x = bandpass_filter(x, self.sampling_rate, *self.bandpass, order=self.bandpass_order)
        if mask is not None:
            x[~mask] = 0.0
        windows = self._crop(x, rid, rng)
        out = []
        for w, n_pad in windows:
            if self.normalize == 'zscore':
                w = zscore(w, mask=mask)
            if n_pad:
                w = self._pad(w, n_pad)
            out.append(np.ascontiguousarray(w, dtype=np.float32))
        result = out if self.crop == 'windows' else out[0]
        if return_mask:
            return result, (np.ones(len(self.leads), dtype=bool) if mask is None else np.asarray(mask, dtype=bool))
        return result

    def _select_leads(self, record: Record) -> tuple[np.ndarray, np.ndarray | None]:
        sig = np.asarray(record.signal)
        if sig.ndim != 2 or sig.shape[0] != len(record.lead_names):
            raise RecordError(record.record_id, f'signal shape {sig.shape} does not match {len(record.lead_names)} '
                                                f'lead names; expected (leads, samples).')
        names = tuple(canonical_lead_name(n) for n in record.lead_names)
        wanted = self.leads if self.input_leads is None else self.input_leads
        if names == self.leads and self.input_leads is None:
            src_mask = record.lead_mask
            return sig, (None if src_mask is None or src_mask.all() else np.asarray(src_mask, dtype=bool))
        # With input_leads the reader zero-fills every lead the file lacks (read_missing_leads): a wanted lead it
        # zero-filled (Record.lead_mask False) is as missing as one the record does not name.
        absent = set() if self.input_leads is None or record.lead_mask is None else \
            {n for k, n in enumerate(names) if not record.lead_mask[k]}
        missing = [n for n in wanted if n not in names or n in absent]
        if missing and self.missing_leads == 'error':
            has = [n for n in names if n not in absent]
            raise RecordError(record.record_id, f'missing leads {missing}; the record has {has}. Use '
                                                f"Preprocessing(missing_leads='zero') to zero-fill them, or "
                                                f'{"input_leads" if self.input_leads else "leads"}='
                                                f'{tuple(n for n in wanted if n not in missing)}.')
        # Only the wanted leads are copied: whatever the record holds in the others never reaches the output.
        x = np.zeros((len(self.leads), sig.shape[1]), dtype=sig.dtype)
        mask = np.zeros(len(self.leads), dtype=bool)
        for row, name in enumerate(self.leads):
            if name in wanted and name in names:
                src = names.index(name)
                x[row] = sig[src]
                mask[row] = record.lead_mask is None or bool(record.lead_mask[src])
        return x, (None if mask.all() else mask)

    def _check_empty(self, x: np.ndarray, mask: np.ndarray | None, rid: str):
        live = np.ones(x.shape[0], dtype=bool) if mask is None else mask.copy()
        all_nan = ~np.isfinite(x).any(axis=1)
        with np.errstate(invalid='ignore'):
            flat = np.nanmax(np.where(all_nan[:, None], 0.0, x), axis=1) - np.nanmin(
                np.where(all_nan[:, None], 0.0, x), axis=1) == 0
        empty = live & (all_nan | flat)
        if not empty.any():
            return x, mask
        leads = [self.leads[i] for i in np.flatnonzero(empty)]
        kinds = ['all NaN' if all_nan[i] else 'all zero' if not np.any(x[i]) else 'constant'
                 for i in np.flatnonzero(empty)]
        if self.empty_lead_policy == 'error':
            raise RecordError(rid, f'empty leads {leads} ({", ".join(kinds)}): no signal to learn from. Set '
                                   f"empty_lead_policy='zero' to keep the record with those leads zeroed.")
        live[empty] = False
        x = x.copy()
        x[empty] = 0.0
        return x, live

    def _crop(self, x: np.ndarray, rid: str, rng) -> list[tuple[np.ndarray, int]]:
        n, target = x.shape[1], self.num_samples
        if n < target:
            if self.pad == 'error':
                raise RecordError(rid, f'record is {n} samples at {self.sampling_rate:g} Hz '
                                       f'({n / self.sampling_rate:.2f} s), shorter than the target {target} '
                                       f"({self.duration_s:.2f} s). Set pad='zero' or 'edge' to pad it.")
            return [(x, target - n)]
        if self.crop == 'windows':
            stride = self.window_stride or target
            return [(x[:, s:s + target], 0) for s in range(0, n - target + 1, stride)]
        if self.crop == 'start':
            start = 0
        elif self.crop == 'center':
            start = (n - target) // 2
        else:
            gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            start = int(gen.integers(0, n - target + 1))
        return [(x[:, start:start + target], 0)]

    def _pad(self, x: np.ndarray, n_pad: int) -> np.ndarray:
        left = n_pad // 2
        mode = 'constant' if self.pad == 'zero' else 'edge'
        return np.pad(x, ((0, 0), (left, n_pad - left)), mode=mode)


def _cfg_as_dict(cfg: Mapping[str, Any] | Any) -> dict[str, Any]:
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    if hasattr(cfg, 'to_dict'):
        return dict(cfg.to_dict())
    raise TypeError(f'Expected a pretrained cfg dict (e.g. model.pretrained_cfg), got {type(cfg).__name__}.')


def _cfg_num_samples(cfg: Mapping[str, Any], fs: float) -> int:
    input_size = cfg.get('input_size')
    if input_size:
        return int(input_size[-1])
    duration = cfg.get('duration_s')
    if duration is not None:
        return int(round(float(duration) * fs))
    return DEFAULT_NUM_SAMPLES
