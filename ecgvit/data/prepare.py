"""From a dataset spec to cached train/val/test splits, for every command and the benchmark harness.

``prepare_data('ptbxl:superdiagnostic', 'data/ptbxl', 'cache')`` indexes the dataset (``get_dataset``), builds or
reuses its preprocessed cache (``build_cache``) and opens the official splits (``CachedECGDataset``). Dataset
knowledge needed to go from a spec to a dataset (which PTB-XL copy to read for a model rate, how to generate synthetic
data) lives here, not in the commands. When data meet a model, ``model_data_cfg`` says what the model's weights
expect and ``prepare_data(..., model_cfg=...)`` checks the data against it before anything is built.

Example:
    >>> splits = prepare_data('synthetic', None, 'cache', sampling_rate=100, num_samples=1000)  # doctest: +SKIP
    >>> splits['train'][0][0].shape  # doctest: +SKIP
    torch.Size([12, 1000])
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

from ecgvit.constants import PATCH_SIZE

from .cache import CachedECGDataset, build_cache, cache_folder
from .datasets import DATASETS, ECGDataset, dataset_name, get_dataset
from .datasets.arrays import ARRAY_SUFFIXES
from .preprocess import IncompatibleDataError, Preprocessing

__all__ = ['parse_data_spec', 'dataset_kwargs', 'check_num_samples', 'data_preprocessing', 'resampled_length',
           'check_short_records', 'model_data_cfg', 'check_model_data', 'prepare_data']

_SHORT_RECORDS = ('pad', 'skip', 'error')

_logger = logging.getLogger(__name__)

# Short names the command line accepts besides the registered ones.
_ALIASES = {'cpsc': 'cpsc2018', 'challenge': 'cinc'}


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """``'ptbxl:superdiagnostic'`` -> ``('ptbxl', 'superdiagnostic')``; ``'synthetic'`` -> ``('synthetic', None)``."""
    name, _, label_set = str(spec).partition(':')
    if not name:
        raise ValueError(f'Bad --data {spec!r}: use name[:label_set], e.g. ptbxl:superdiagnostic or synthetic.')
    return name.lower(), (label_set or None)


def check_num_samples(num_samples: int) -> int:
    """Return ``num_samples`` if it is a positive multiple of the patch length, else raise ``ValueError`` naming the
    nearest length that is (the one place this is checked for data; models check their own input)."""
    n = int(num_samples)
    if n <= 0 or n % PATCH_SIZE:
        raise ValueError(f'num_samples (--num-samples) {num_samples} is not a positive multiple of the patch length '
                         f'{PATCH_SIZE}: use {max(PATCH_SIZE, round(n / PATCH_SIZE) * PATCH_SIZE)}.')
    return n


def dataset_kwargs(name: str, label_set: str | None, sampling_rate: float, seed: int = 0,
                   synthetic_records: int = 400, num_samples: int = 1000, labelled: bool = True) -> dict[str, Any]:
    """``get_dataset`` options for a spec at a model rate.

    PTB-XL is read from the stored copy closest above the model rate (100 Hz up to 100 Hz, else 500 Hz, records
    without a 500 Hz file at 100 Hz): downsampling loses nothing the model sees. Synthetic data are generated at the
    model rate and length. ``labelled=False`` (pretraining, embeddings: no label is read) keeps the records a
    dataset would drop for having no label in its set (``drop_empty``; 18 of PTB-XL's first 1,598 records have no
    superdiagnostic one).

    Raises:
        ValueError: unknown dataset, or a label set for a dataset that has none.
    """
    cls = DATASETS.get(_ALIASES.get(name, name))
    if cls is None:
        get_dataset(name, None)  # raises the data layer's "unknown dataset" error with the valid names
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {}
    if label_set is not None:
        if 'label_set' not in params:
            raise ValueError(f'Dataset {name!r} has no label sets, so {name}:{label_set} is not valid: '
                             f'use --data {name}.')
        kwargs['label_set'] = label_set
    if name == 'ptbxl':
        kwargs['sampling_rate'] = 100 if sampling_rate <= 100 else 500
    if not labelled and 'drop_empty' in params:
        kwargs['drop_empty'] = False
    if name == 'synthetic':
        kwargs.update(n_records=synthetic_records, seed=seed, fs=float(sampling_rate),
                      duration_s=num_samples / float(sampling_rate))
    return kwargs


def data_preprocessing(sampling_rate: float, num_samples: int, crop: str = 'windows',
                       window_stride: int | None = None, short_records: str = 'pad',
                       input_leads: Any = None) -> Preprocessing:
    """The preprocessing commands use for a model rate and length: missing or empty leads zero-filled (real
    collections have both: Ningbo records with flat chest leads), records cut into windows (or centre-cropped),
    short records zero-padded or refused (7.3-s CODE-15% exams).

    Args:
        sampling_rate, num_samples: The model input rate and length.
        crop: 'windows' (the whole record as windows of ``num_samples``, ``window_stride`` apart) or 'center'.
        window_stride: Samples between window starts (default ``num_samples``: no overlap).
        short_records: 'pad' (zero-pad a record shorter than one window), 'skip' or 'error' (not padded: the
            cache leaves it out with its reason; :func:`check_short_records` warns or raises first).
        input_leads: Read only these leads (a preset such as '6' or '1', a comma list or a sequence of names); the
            others are zero with a False lead mask (``Preprocessing.input_leads``). None: all 12.
    """
    if short_records not in _SHORT_RECORDS:
        raise ValueError(f'short_records={short_records!r} is not supported; use one of {_SHORT_RECORDS}.')
    if window_stride is not None and crop != 'windows':
        raise ValueError(f"window_stride={window_stride} needs crop='windows' (--crop windows), got crop={crop!r}.")
    return Preprocessing(sampling_rate=sampling_rate, num_samples=check_num_samples(num_samples),
                         pad='zero' if short_records == 'pad' else 'error', empty_lead_policy='zero',
                         missing_leads='zero', crop=crop, window_stride=window_stride, input_leads=input_leads)


def resampled_length(num_samples: int, fs_in: float, fs_out: float) -> int:
    """The length ``resample`` gives a signal of ``num_samples`` at ``fs_in`` resampled to ``fs_out``."""
    if fs_in == fs_out:
        return int(num_samples)
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return -(-int(num_samples) * ratio.numerator // ratio.denominator)


def check_short_records(dataset: ECGDataset, preprocessing: Preprocessing, short_records: str = 'pad') -> list[str]:
    """Find the records shorter than one model window (from their headers; nothing is read) and say so.

    Args:
        dataset: The index (its ``signal_length`` gives each record's length).
        preprocessing: The model rate and window length.
        short_records: 'pad' or 'skip': a ``UserWarning`` naming how many and which (they are zero-padded, or left
            out by the cache); 'error': a ``ValueError`` naming them and the options.

    Returns:
        The ids of the short records.

    Raises:
        ValueError: ``short_records`` is none of 'pad', 'skip', 'error'; or 'error' and some records are short.
    """
    if short_records not in _SHORT_RECORDS:
        raise ValueError(f'short_records={short_records!r} is not supported; use one of {_SHORT_RECORDS}.')
    short = []
    for e in dataset.entries:
        length = dataset.signal_length(e)
        if length is not None and resampled_length(length[0], length[1], preprocessing.sampling_rate) \
                < preprocessing.num_samples:
            short.append(e.record_id)
    if not short:
        return short
    what = (f'{len(short)} of {len(dataset)} records of {dataset.name} are shorter than one model window '
            f'({preprocessing.num_samples} samples = {preprocessing.duration_s:g} s at '
            f'{preprocessing.sampling_rate:g} Hz), e.g. {short[:5]}')
    if short_records == 'error':
        raise ValueError(f'{what}. Use --short-records pad (short_records=\'pad\') to zero-pad them or skip to '
                         f'leave them out.')
    done = 'zero-padded to the window' if short_records == 'pad' else 'left out (the cache manifest lists them)'
    other = 'skip to leave them out' if short_records == 'pad' else 'pad to zero-pad them'
    warnings.warn(f'{what}: {done}. --short-records {other}, error to refuse them.', UserWarning, stacklevel=2)
    return short


def model_data_cfg(encoder: Any, source: Mapping[str, Any]) -> dict[str, Any] | None:
    """What an encoder's weights expect of the data (its pretrained cfg), or None when nothing can be known.

    Args:
        encoder: the model (its ``pretrained_cfg``).
        source: where its weights came from, as ``ecgvit.hub.load_encoder`` describes it: ``checkpoint`` (a path)
            and/or ``pretrained`` (the published weights).

    Returns:
        The cfg to pass to ``Preprocessing.check_compatible``, or None for an encoder at its random initialisation
        (its weights have seen no data) and for a checkpoint that records no preprocessing (logged as a warning
        through ``logging``, not issued as a ``UserWarning``).
    """
    if not source.get('checkpoint') and not source.get('pretrained'):
        return None
    cfg = dict(getattr(encoder, 'pretrained_cfg', None) or {})
    if cfg.get('preprocessing') or source.get('pretrained'):
        return cfg
    # A training checkpoint without recorded preprocessing: the cfg is the architecture's default, not a fact
    # about these weights, so checking against it would reject data the weights were trained on.
    _logger.warning('checkpoint %s records no preprocessing, so the data cannot be checked against it; make sure '
                    'the sampling rate and length are the ones it was trained with', source.get('checkpoint'))
    return None


def check_model_data(preprocessing: Preprocessing, model_cfg: Mapping[str, Any] | None,
                     model: str | None = None) -> None:
    """Raise ``IncompatibleDataError`` when data built with ``preprocessing`` are not what ``model_cfg``'s weights
    were trained on (rate, length, leads, normalisation, band-pass); a no-op for ``model_cfg=None``.

    The message lists every mismatch and the fix, as a ``Preprocessing`` and as command-line options; ``model``
    (e.g. ``'--checkpoint runs/x'``) says which weights it is about.
    """
    if model_cfg is None:
        return
    try:
        preprocessing.check_compatible(model_cfg)
    except IncompatibleDataError as e:
        try:
            want = Preprocessing.from_pretrained_cfg(model_cfg)
            cli = f' On the command line: --sampling-rate {want.sampling_rate:g} --num-samples {want.num_samples}.'
        except (TypeError, ValueError):
            cli = ''
        raise IncompatibleDataError(f'{model + ": " if model else ""}{e}{cli}') from None


def prepare_data(
        data: str,
        data_dir: str | os.PathLike | None,
        cache_dir: str | os.PathLike,
        sampling_rate: float = 100.0,
        num_samples: int = 1000,
        seed: int = 0,
        synthetic_records: int = 400,
        num_workers: int = 0,
        progress: bool = False,
        *,
        crop: str = 'windows',
        window_stride: int | None = None,
        short_records: str = 'pad',
        dataset_options: Mapping[str, Any] | None = None,
        preprocessing: Preprocessing | None = None,
        model_cfg: Mapping[str, Any] | None = None,
        model_name: str | None = None,
        leads: Any = None,
        labelled: bool = True,
) -> dict[str, Any]:
    """Index a dataset, build (or reuse) its preprocessed cache, and open its train/val/test splits.

    Args:
        data: ``name[:label_set]``, e.g. 'ptbxl:superdiagnostic', 'ludb:rhythm', 'code15', 'pool', 'arrays',
            'synthetic'.
        data_dir: Dataset folder (None only for 'synthetic', which generates into ``cache_dir``); for 'arrays' the
            ``.npy``/``.npz``/``.h5`` file (its rate and lead names in the file, in a sidecar ``<stem>.json`` or in
            ``dataset_options``: see ``ecgvit.data.datasets.ArraysDataset``).
        cache_dir: Where the cache (and generated synthetic data) go.
        sampling_rate: Model input rate (records are resampled). The default, 100 Hz, is the benchmark harness's and
            not the registered models' 360 Hz: for a model's own input pass ``model_cfg`` (checked) and its rate.
        num_samples: Model input length, a multiple of the patch length (centre crop / zero pad); default 1000, the
            registered models take 3600.
        seed: Synthetic data seed.
        synthetic_records: Records for 'synthetic'.
        num_workers: Cache-building processes.
        progress: Progress bars.
        crop: 'windows' (every window of a record, one cache item each; the probe, fine-tuning and embed pool them
            per record) or 'center'.
        window_stride: Samples between window starts (default ``num_samples``).
        short_records: 'pad' (zero-pad, with a warning), 'skip' (leave out, with a warning) or 'error'.
        dataset_options: Extra ``get_dataset`` keyword arguments (e.g. ``sampling_rate``/``leads`` for 'arrays').
        preprocessing: The full recipe (e.g. ``Preprocessing.from_pretrained_cfg(model.pretrained_cfg)``); default
            ``data_preprocessing(sampling_rate, num_samples, crop, window_stride, short_records)``. When given,
            its rate, length, crop and padding are used.
        model_cfg: The pretrained cfg of the model that will read the data (``model_data_cfg``); checked with
            ``Preprocessing.check_compatible`` before anything is indexed or built.
        model_name: Names the weights in that check's error (e.g. ``'--checkpoint runs/x'``).
        leads: The lead subset the user's data have (``Preprocessing.input_leads``: a preset such as '6' or '1', a
            comma list or names; None: all 12, or what ``preprocessing`` says). The other leads are zero and masked;
            each subset gets its own cache folder.
        labelled: False when the labels go unused (pretraining): records without a label in the set are kept
            (``dataset_kwargs``).

    Returns:
        ``{'train': CachedECGDataset, 'val': ..., 'test': ..., 'cache_dir': str, 'label_names': [...],
        'multilabel': bool, 'preprocessing': Preprocessing, 'skipped': int, 'skipped_csv': str}``: ``skipped``
        counts the records left out (unreadable, too short, no usable lead, no label, ...), each listed with its
        reason in the file ``skipped_csv`` inside the cache.

    Raises:
        ValueError / FileNotFoundError: unknown dataset, label set not in the dataset, missing folder, empty split,
            a length that is not a multiple of the patch length.
        IncompatibleDataError: the data would not be what ``model_cfg``'s weights were trained on.
    """
    name, label_set = parse_data_spec(data)
    dataset_name(name)  # an unknown name is named as such, before the question of where its files are
    if name in ('arrays', 'array'):
        if not data_dir or not Path(data_dir).is_file() or Path(data_dir).suffix.lower() not in ARRAY_SUFFIXES:
            raise FileNotFoundError(f'--data {data} needs --data-dir <file.npy|.npz|.h5|.hdf5>; {str(data_dir)!r} '
                                    f'is not such a file.')
    elif name != 'synthetic':
        if not data_dir:
            raise ValueError(f'--data {data} needs --data-dir <folder with the {name} files> (only synthetic data '
                             f'is generated on the fly).')
        if not Path(data_dir).is_dir():
            raise FileNotFoundError(f'--data-dir {str(data_dir)!r} does not exist or is not a folder.')
    pp = preprocessing if preprocessing is not None else data_preprocessing(sampling_rate, num_samples, crop,
                                                                            window_stride, short_records)
    if leads is not None:
        pp = dataclasses.replace(pp, input_leads=leads)
    check_num_samples(pp.num_samples)
    check_model_data(pp, model_cfg, model_name)
    if name == 'pool' and label_set is not None:
        raise ValueError(f'The pretraining pool is unlabelled, so --data pool:{label_set} is not valid: use '
                         f'--data pool.')
    rate, length = pp.sampling_rate, pp.num_samples
    kwargs = dataset_kwargs(name, label_set, rate, seed, synthetic_records, length, labelled)
    cache_root = Path(cache_dir)
    # The absolute path: the cache's fingerprint holds it, so 'data/x' and '/home/me/data/x' are one cache.
    root = None if data_dir is None else str(Path(data_dir).resolve())
    if name == 'synthetic' and root is None:
        root = str(cache_root / f'synthetic-{synthetic_records}-{seed}-{rate:g}hz-{length}')
    dataset = get_dataset(name, root, **{**kwargs, **dict(dataset_options or {})})
    if preprocessing is not None and short_records != 'error':  # a given recipe pads (or not) as it says
        short_records = 'pad' if pp.pad != 'error' else 'skip'
    check_short_records(dataset, pp, short_records)
    tag = f'{name}-{label_set or "default"}-{rate:g}hz-{length}'
    if pp.input_leads is not None:  # a folder per subset: switching subsets never rebuilds another one's cache
        tag += '-leads-' + '_'.join(pp.input_leads)
    # Other data under the same name (another --data-dir, crop, stride) get a folder of their own.
    cache = build_cache(dataset, pp, cache_folder(dataset, pp, cache_root, f'cache-{tag}'), num_workers=num_workers,
                        progress=progress)
    splits = {s: CachedECGDataset(cache, split=s) for s in ('train', 'val', 'test')}
    for s, ds in splits.items():
        if len(ds) == 0 and not (name == 'pool' and s == 'test'):  # a pool holds no test split by design
            raise ValueError(f'The {s} split of {data} is empty (the cache at {cache} holds '
                             f'{len(CachedECGDataset(cache))} items); use a larger dataset.')
    skipped = splits['train'].skipped
    return dict(splits, cache_dir=str(cache), label_names=splits['train'].label_names,
                multilabel=splits['train'].multilabel, preprocessing=pp, skipped=len(skipped),
                skipped_csv=str(splits['train'].skipped_csv))
