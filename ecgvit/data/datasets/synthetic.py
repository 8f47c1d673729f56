"""The built-in synthetic dataset: generated on first use (``make_synthetic``), then read like any WFDB folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Sequence

from ecgvit.constants import LEADS
from ecgvit.staging import staging_dir, sweep_stale

from ..synthetic import SYNTHETIC_CLASSES, make_synthetic
from .base import DatasetLayoutError
from .folder import FolderDataset

__all__ = ['SyntheticDataset', 'default_data_dir']


def default_data_dir() -> Path:
    """Where generated data goes when no root is given: ``$ECGVIT_DATA_DIR`` or ``~/.cache/ecgvit/data``."""
    return Path(os.environ.get('ECGVIT_DATA_DIR', Path.home() / '.cache' / 'ecgvit' / 'data'))


class SyntheticDataset(FolderDataset):
    """Labelled synthetic 12-lead ECGs (classes ``SYNTHETIC_CLASSES``), single-label, patient-wise split.

    Args:
        root: folder to generate into / read from. None: a folder under ``default_data_dir()`` named after the
            settings, so equal settings share one copy.
        n_records: number of records to generate.
        seed: generator seed (the files are identical for a seed).
        fs: sampling rate of the written records (Hz).
        duration_s: record length in seconds.
        classes: subset of ``SYNTHETIC_CLASSES``.
        leads: lead order for reading.
        strict: raise on the first bad record.

    Example:
        >>> ds = SyntheticDataset(n_records=100, seed=0)  # doctest: +SKIP
        >>> ds.label_names  # doctest: +SKIP
        ['NSR', 'SB', 'ST', 'AF', 'BBB']
    """
    name = 'synthetic'

    def __init__(self, root: str | os.PathLike | None = None, *, n_records: int = 500, seed: int = 0,
                 fs: float = 500.0, duration_s: float = 10.0, classes: Sequence[str] = SYNTHETIC_CLASSES,
                 leads: Sequence[str] = LEADS, strict: bool = False):
        settings = {'n_records': int(n_records), 'seed': int(seed), 'fs': float(fs), 'duration_s': float(duration_s),
                    'classes': list(classes)}
        if root is None:
            tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
            root = default_data_dir() / f'synthetic-{tag}'
        root = Path(root)
        settings_file = root / 'synthetic.json'
        if not settings_file.is_file() and not (root / 'labels.csv').is_file():
            _generate_atomically(root, settings)  # safe against a concurrent generation of the same folder
        if settings_file.is_file():
            found = json.loads(settings_file.read_text())
            if found != settings:
                raise DatasetLayoutError(f'synthetic: {root} holds data generated with {found}, not {settings}. '
                                         f'Use another root, or delete the folder to regenerate.')
        else:
            raise DatasetLayoutError(f'synthetic: {root} has labels.csv but no synthetic.json; it is not a synthetic '
                                     f"dataset folder. Use get_dataset('folder', {str(root)!r}) for it.")
        super().__init__(root, labels_csv=root / 'labels.csv', label_names=list(classes), leads=leads, strict=strict)


def _generate_atomically(root: Path, settings: dict) -> None:
    """Generate into a temporary sibling and rename, so an interrupted run leaves no half dataset at ``root``.

    Two processes may generate the same dataset at once (two commands started together on a fresh machine): both
    write their own temporary copy, the first rename wins, and the other accepts the winner's folder when its
    ``synthetic.json`` holds the same settings (generation is deterministic, so the files are identical) and drops
    its own copy. Temporary folders of killed runs are removed by the next run (``staging.sweep_stale``).
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.exists() and any(root.iterdir()):
        if (root / 'synthetic.json').is_file():
            return  # a concurrent run finished first; the caller checks its settings
        raise DatasetLayoutError(f'synthetic: {root} exists and is not empty, but holds no synthetic.json; choose an '
                                 f'empty or new folder.')
    sweep_stale(root)
    tmp = staging_dir(root)
    try:
        make_synthetic(tmp, settings['n_records'], seed=settings['seed'], fs=settings['fs'],
                       duration_s=settings['duration_s'], classes=settings['classes'])
        (tmp / 'synthetic.json').write_text(json.dumps(settings, sort_keys=True))
        try:
            # rename(2) replaces an empty folder (one the user made) atomically, and fails on a non-empty one.
            os.replace(tmp, root)
        except OSError:
            if root.is_dir() and not any(root.iterdir()):  # an empty folder where replacing one is not allowed
                root.rmdir()
                os.replace(tmp, root)
            else:
                _accept_winner(root, settings)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _accept_winner(root: Path, settings: dict) -> None:
    """After losing the rename race: the folder in place must be the same dataset, else it is an error."""
    try:
        found = json.loads((root / 'synthetic.json').read_text())
    except (OSError, ValueError):
        found = None
    if found != settings:
        raise DatasetLayoutError(f'synthetic: while generating {settings} into {root}, another process put '
                                 f'{"a folder without synthetic.json" if found is None else found} there. Use another '
                                 f'root, or delete the folder to regenerate.')
