"""ECG datasets (one module per source) and the ``get_dataset`` factory."""
from __future__ import annotations

import os
from typing import Any

from .arrays import ArraysDataset
from .base import SPLITS, DatasetLayoutError, ECGDataset, Entry, assign_splits
from .challenge import ChallengeDataset, load_dx_mapping
from .chapman import CHAPMAN_CLASSES, ChapmanDataset
from .code15 import CODE15_CLASSES, Code15Dataset
from .cpsc2018 import CPSC2018_CLASSES, CPSC2018Dataset
from .folder import FolderDataset
from .ludb import LUDBDataset
from .pool import PretrainingPool
from .ptbxl import PTBXL_LABEL_SETS, PTBXLDataset
from .synthetic import SyntheticDataset, default_data_dir

__all__ = [
    'ArraysDataset', 'SPLITS', 'DatasetLayoutError', 'ECGDataset', 'Entry', 'assign_splits', 'ChallengeDataset',
    'load_dx_mapping',
    'CHAPMAN_CLASSES', 'ChapmanDataset', 'CODE15_CLASSES', 'Code15Dataset', 'CPSC2018_CLASSES', 'CPSC2018Dataset',
    'FolderDataset', 'LUDBDataset', 'PretrainingPool', 'PTBXL_LABEL_SETS', 'PTBXLDataset', 'SyntheticDataset',
    'dataset_name', 'default_data_dir', 'get_dataset', 'list_datasets', 'DATASETS',
]

DATASETS: dict[str, type[ECGDataset]] = {
    'synthetic': SyntheticDataset,
    'folder': FolderDataset,
    'arrays': ArraysDataset,  # root: an array or a .npy/.npz/.h5 file (sampling_rate=, leads=, or a sidecar JSON)
    'ptbxl': PTBXLDataset,
    'cpsc2018': CPSC2018Dataset,
    'chapman': ChapmanDataset,
    'cinc': ChallengeDataset,
    'ludb': LUDBDataset,
    'code15': Code15Dataset,
    'pool': PretrainingPool,  # built by PretrainingPool.from_folder: root holds dataset folders
}


def list_datasets() -> list[str]:
    """Names accepted by ``get_dataset``."""
    return sorted(DATASETS)


_ALIASES = {'ptbxl': 'ptbxl', 'cpsc': 'cpsc2018', 'cpsc2018': 'cpsc2018', 'chapman': 'chapman',
            'chapmanshaoxing': 'chapman', 'cinc': 'cinc', 'challenge': 'cinc', 'cinc2020': 'cinc', 'cinc2021': 'cinc',
            'ludb': 'ludb', 'code15': 'code15', 'code15%': 'code15', 'folder': 'folder', 'wfdb': 'folder',
            'arrays': 'arrays', 'array': 'arrays', 'synthetic': 'synthetic', 'pool': 'pool'}


def dataset_name(name: str) -> str:
    """The name in ``list_datasets()`` that ``name`` (any case, '-'/'_' ignored, aliases such as 'wfdb') stands for.

    Args:
        name: A dataset name or alias.

    Raises:
        ValueError: an unknown name (the message lists the known ones).

    Example:
        >>> dataset_name('PTB-XL'), dataset_name('wfdb')
        ('ptbxl', 'folder')
    """
    key = str(name).lower().replace('-', '').replace('_', '')
    if key not in _ALIASES:
        raise ValueError(f'Unknown dataset {name!r}; choose one of {list_datasets()} (or PretrainingPool([...]) to '
                         f'merge several).')
    return _ALIASES[key]


def get_dataset(name: str, root: str | os.PathLike | None = None, **kwargs: Any) -> ECGDataset:
    """Build a dataset index by name.

    Args:
        name: one of ``list_datasets()``: 'synthetic' (root optional: generated into a folder), 'folder' (any WFDB
            folder + optional labels CSV), 'arrays' (a numpy array or a .npy/.npz/HDF5 file; rate and lead names as
            arguments, in a sidecar JSON or in the file: ``ArraysDataset``), 'ptbxl', 'cpsc2018', 'chapman', 'cinc'
            (PhysioNet/CinC challenge format),
            'ludb', 'code15' (CODE-15%, Challenge 2025 format, Chagas label), 'pool' (unlabelled
            ``PretrainingPool.from_folder(root)`` over every dataset folder in root).
        root: the dataset folder (for 'pool', the folder of dataset folders; for 'arrays', the array or its file).
        **kwargs: options of the dataset class (e.g. ``sampling_rate=100, label_set='rhythm'`` for 'ptbxl'; for
            'pool', those of ``PretrainingPool.from_folder``, e.g. ``val_fraction=0.05``).

    Returns:
        An ``ECGDataset`` with ``label_names``, ``multilabel``, ``entries`` (record_id, patient_id, split, labels)
        and ``read(i)``.

    Example:
        >>> ds = get_dataset('synthetic', None, n_records=50)  # doctest: +SKIP
        >>> ds = get_dataset('ptbxl', 'data/ptbxl', sampling_rate=100, label_set='superdiagnostic')  # doctest: +SKIP
        >>> pool = get_dataset('pool', 'data')  # doctest: +SKIP
    """
    cls = DATASETS[dataset_name(name)]
    if root is None and cls is not SyntheticDataset:
        raise ValueError(f'Dataset {name!r} needs root=<folder with the data>; only "synthetic" can generate its own.')
    if cls is PretrainingPool:
        if kwargs.get('label_set') is not None:
            raise ValueError(f'The pretraining pool is unlabelled, so label_set={kwargs["label_set"]!r} is not valid: '
                             f'drop it, or pick one source, e.g. get_dataset("ptbxl", ..., label_set=...).')
        kwargs.pop('label_set', None)  # label_set=None: a caller passing the same kwargs to every dataset
        return PretrainingPool.from_folder(root, **kwargs)
    return cls(root, **kwargs)
