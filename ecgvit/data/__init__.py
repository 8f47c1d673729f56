"""ECG data layer: records, preprocessing, datasets, a synthetic generator and a memmap cache.

Files -> ``read_record`` (a ``Record``: float32 (leads, samples) mV, canonical lead order) -> ``Preprocessing``
(resample, optional band-pass, crop/pad, per-lead z-score) -> ``build_cache`` (memmap + labels + manifest) ->
``CachedECGDataset`` (a torch Dataset with zero-copy reads). Datasets (``get_dataset``) index the official splits and
labels of each source; ``prepare_data`` goes from a spec such as 'ptbxl:superdiagnostic' to cached splits, for every
command and the benchmark harness.
"""
from .cache import (
    CACHE_VERSION,
    CacheBuildError,
    CachedECGDataset,
    CacheError,
    ImplausibleDataError,
    build_cache,
    signal_sha256,
)
from .datasets import (
    CHAPMAN_CLASSES,
    CPSC2018_CLASSES,
    PTBXL_LABEL_SETS,
    SPLITS,
    ArraysDataset,
    ChallengeDataset,
    ChapmanDataset,
    Code15Dataset,
    CPSC2018Dataset,
    DatasetLayoutError,
    ECGDataset,
    Entry,
    FolderDataset,
    LUDBDataset,
    PretrainingPool,
    PTBXLDataset,
    SyntheticDataset,
    get_dataset,
    list_datasets,
)
from .prepare import (
    check_model_data,
    check_num_samples,
    check_short_records,
    model_data_cfg,
    parse_data_spec,
    prepare_data,
)
from .preprocess import IncompatibleDataError, Preprocessing
from .records import (
    ChecksumError,
    MissingLeadsError,
    Record,
    RecordError,
    RecordFileNotFoundError,
    UnsafePathError,
    canonical_lead_name,
    read_record,
)
from .synthetic import SYNTHETIC_CLASSES, SyntheticECG, make_synthetic, split_by_patient, synthesize_ecg

__all__ = [
    'Record', 'RecordError', 'RecordFileNotFoundError', 'MissingLeadsError', 'ChecksumError', 'UnsafePathError',
    'read_record', 'canonical_lead_name',
    'Preprocessing', 'IncompatibleDataError',
    'prepare_data', 'parse_data_spec', 'check_num_samples', 'check_short_records', 'model_data_cfg', 'check_model_data',
    'SYNTHETIC_CLASSES', 'SyntheticECG', 'make_synthetic', 'synthesize_ecg', 'split_by_patient',
    'SPLITS', 'ECGDataset', 'Entry', 'DatasetLayoutError', 'get_dataset', 'list_datasets', 'PTBXLDataset',
    'PTBXL_LABEL_SETS', 'CPSC2018Dataset', 'CPSC2018_CLASSES', 'ChapmanDataset', 'CHAPMAN_CLASSES', 'ChallengeDataset',
    'Code15Dataset', 'LUDBDataset', 'FolderDataset', 'ArraysDataset', 'SyntheticDataset', 'PretrainingPool',
    'build_cache', 'CachedECGDataset', 'CacheBuildError', 'CacheError', 'ImplausibleDataError', 'signal_sha256',
    'CACHE_VERSION',
]
