"""The evaluation suite's data: the four sources, uniform demographics, splits and the task definitions.

Sources (sub-folders of the suite's data folder; a missing one is reported, not an error):

- ``ptbxl/``: PTB-XL at 100 Hz (``records100``), official folds: ``strat_fold`` 1-8 train, 9 val, 10 test;
- ``ludb/``: LUDB (rhythm from ``ludb.csv``);
- ``cinc2021_samples/`` (or ``cinc/``): PhysioNet/CinC 2020-2021 records with SNOMED-CT ``# Dx`` codes;
- ``code15_samples/`` (or ``code15/``): CODE-15% exams in WFDB form (age, sex, patient id in the header).

Every source but PTB-XL is split by patient with a fixed seed (``split_by_patient``); the splits are written into the
suite's output. Age and sex are read from ``Entry.meta`` through one adapter (:func:`demographics`), whatever the
reader's spelling: PTB-XL codes sex 0 = male, 1 = female and (v1.0.3) ages over 89 as 300, which is read as 90.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ecgvit.data.datasets.base import ECGDataset, Entry
from ecgvit.data.datasets.challenge import ptbxl_copy_id
from ecgvit.data.datasets.demographics import parse_age, parse_sex
from ecgvit.data.datasets.ptbxl import statement_classes

__all__ = ['SuiteSource', 'Task', 'load_sources', 'build_tasks', 'demographics', 'subsample_train', 'TASK_NAMES',
           'SOURCE_FOLDERS']

SOURCE_FOLDERS: Dict[str, Tuple[str, ...]] = {
    'ptbxl': ('ptbxl', 'ptb-xl'),
    'ludb': ('ludb',),
    'cinc': ('cinc2021_samples', 'cinc2021', 'cinc'),
    'code15': ('code15_samples', 'code15'),
}
TASK_NAMES = ('ptbxl_superdiagnostic', 'ptbxl_form', 'ptbxl_rhythm', 'ptbxl_all', 'sex', 'age_ge60', 'age',
              'cinc_scored', 'ludb_rhythm')
POOLED_SOURCES = ('ptbxl', 'ludb', 'code15', 'cinc')


class SuiteSource(ECGDataset):
    """One source's records as an unlabelled index (labels and splits live in the tasks), ready for ``build_cache``.

    Attributes:
        entries: every readable record; ``meta`` holds ``age`` (years or None), ``sex`` ('F', 'M' or None) and what
            the tasks need (PTB-XL ``strat_fold``/``scp_codes``, LUDB ``rhythms``, CinC ``dx_labels``).
        skipped: records the reader left out, with reasons.
        label_names: CinC's scored classes (empty for the other sources).
    """

    def __init__(self, name: str, root: Path, entries: List[Entry], skipped: List[Tuple[str, str]],
                 label_names: Sequence[str] = ()):
        super().__init__(root)
        self.name = name
        self.entries = entries
        self.skipped = list(skipped)
        self.source_label_names = list(label_names)
        self._finalize()


_MAX_AGE = 120.0  # older is a data error, not an age


def demographics(entry: Entry, source: str) -> Tuple[Optional[float], Optional[str]]:
    """(age in years or None, sex 'F'/'M'/None) of an entry, from ``entry.meta['age']`` / ``entry.meta['sex']``.

    The readers already parse both (``ecgvit.data.datasets.demographics``); this reads them with the same parsers,
    so entries made elsewhere work too, and leaves out ages no record can have.

    Args:
        entry: A dataset entry (its ``meta``).
        source: The source's name; PTB-XL codes sex as 0 = male, 1 = female, which only it is read with.
    """
    age = parse_age(entry.meta.get('age'))
    sex = parse_sex(entry.meta.get('sex'), numeric=source == 'ptbxl')  # PTB-XL's 0 = male, 1 = female
    return (age if math.isfinite(age) and age <= _MAX_AGE else None), sex


def _find(data_dir: Path, source: str) -> Optional[Path]:
    for name in SOURCE_FOLDERS[source]:
        if (data_dir / name).is_dir():
            return data_dir / name
    return None


def _copy(entry: Entry, source: str, **meta: Any) -> Entry:
    age, sex = demographics(entry, source)
    m = dict(entry.meta)
    m.update(meta)
    m['age'], m['sex'] = age, sex
    # One pseudo split for the cache index: the tasks assign the real splits.
    return Entry(record_id=entry.record_id, patient_id=f'{source}:{entry.patient_id}', split='train', labels=None,
                 path=entry.path, meta=m)


def _load_ptbxl(root: Path) -> SuiteSource:
    from ecgvit.data import PTBXLDataset

    ds = PTBXLDataset(root, sampling_rate=100, label_set='all', drop_empty=False)
    return SuiteSource('ptbxl', root, [_copy(e, 'ptbxl') for e in ds.entries], ds.skipped)


def _load_ludb(root: Path) -> SuiteSource:
    from ecgvit.data import LUDBDataset

    ds = LUDBDataset(root, label_set='rhythm')
    return SuiteSource('ludb', root, [_copy(e, 'ludb') for e in ds.entries], ds.skipped)


def _load_cinc(root: Path) -> SuiteSource:
    from ecgvit.data import ChallengeDataset

    ds = ChallengeDataset(root, label_set='scored')
    entries = [_copy(e, 'cinc', dx_labels=np.asarray(e.labels, dtype=np.float32)) for e in ds.entries]
    return SuiteSource('cinc', root, entries, ds.skipped, ds.label_names)


def _load_code15(root: Path) -> SuiteSource:
    from ecgvit.data import Code15Dataset, DatasetLayoutError

    try:
        ds = Code15Dataset(root, label_set=None)  # unlabelled: the suite reads only age, sex and patient
    except DatasetLayoutError:  # a folder without headers contributes no record, as any empty source
        return SuiteSource('code15', root, [], [])
    return SuiteSource('code15', root, [_copy(e, 'code15') for e in ds.entries], ds.skipped)


_LOADERS = {'ptbxl': _load_ptbxl, 'ludb': _load_ludb, 'cinc': _load_cinc, 'code15': _load_code15}


def load_sources(data_dir: str | Path, sources: Sequence[str] = tuple(SOURCE_FOLDERS)) -> Tuple[Dict[str, SuiteSource],
                                                                                                  Dict[str, str]]:
    """Index every source found under ``data_dir``.

    Args:
        data_dir: The folder holding the sources' folders (ptbxl/, ludb/, cinc2021_samples/, code15_samples/).
        sources: The sources to look for (default: all four).

    Returns:
        (source name -> ``SuiteSource``, source name -> why it is absent, for the sources not found).

    Raises:
        FileNotFoundError: ``data_dir`` does not exist, or holds none of the sources.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f'Suite data folder {str(data_dir)!r} does not exist; pass the folder holding '
                                f'ptbxl/, ludb/, cinc2021_samples/ and code15_samples/.')
    found, missing = {}, {}
    for name in sources:
        root = _find(data_dir, name)
        if root is None:
            missing[name] = f'no folder {" or ".join(SOURCE_FOLDERS[name])} under {data_dir}'
            continue
        found[name] = _LOADERS[name](root)
    if not found:
        raise FileNotFoundError(f'No suite source under {data_dir}: expected one of the folders '
                                f'{sorted(n for v in SOURCE_FOLDERS.values() for n in v)}.')
    return found, missing


# ---------------------------------------------------------------------------------------------------------------------
# Tasks


@dataclass
class Task:
    """One prediction task over records of one or several sources.

    Attributes:
        name: Task name (``TASK_NAMES``).
        kind: 'multilabel', 'binary', 'multiclass' or 'regression'.
        metrics: Metric names (``ecgvit.eval.metrics.weighted_metric``); the first is the headline. Pooled tasks
            lead with the within-source metrics: sources differ in sex ratio and age, so a probe that only recognises
            the source would score on the pooled AUROC / R2 but not on these.
        label_names: Labels (multilabel), classes (multiclass), the positive class (binary) or the target (regression).
        keys: ``source/record_id`` per record.
        split: 'train' / 'val' / 'test' per record.
        y: (N, L) multi-hot, (N,) 0/1, (N,) class index or (N,) float target.
        dropped_labels: labels left out, with the reason.
        excluded: (key, reason) of records left out of this task.
        description: One line for the report.
    """
    name: str
    kind: str
    metrics: Tuple[str, ...]
    label_names: List[str]
    keys: List[str]
    split: np.ndarray
    y: np.ndarray
    dropped_labels: List[Dict[str, Any]] = field(default_factory=list)
    excluded: List[Tuple[str, str]] = field(default_factory=list)
    description: str = ''

    @property
    def groups(self) -> np.ndarray:
        """The source of each record (for the within-source metrics of pooled tasks)."""
        return np.asarray([k.split('/', 1)[0] for k in self.keys])

    @property
    def headline(self) -> str:
        """The metric a task is summarised by (its first; higher is better for every headline)."""
        return self.metrics[0]

    def indices(self, split: str) -> np.ndarray:
        """Positions of the records of one split.

        Args:
            split: 'train', 'val' or 'test'.
        """
        return np.flatnonzero(self.split == split)

    def counts(self) -> Dict[str, int]:
        """Records per split."""
        return {s: int((self.split == s).sum()) for s in ('train', 'val', 'test')}


_METRICS = {'multilabel': ('auroc', 'auprc'), 'binary': ('auroc', 'auprc'), 'multiclass': ('auc_ovo',),
            'regression': ('mae', 'r2')}


def assign_record_splits(sources: Dict[str, SuiteSource], seed: int,
                         fractions: Tuple[float, float, float]) -> Dict[str, str]:
    """``source/record_id`` -> split: PTB-XL by ``strat_fold`` (1-8/9/10), every other source by patient, seeded."""
    from ecgvit.data.datasets.ptbxl import fold_to_split
    from ecgvit.data.synthetic import split_by_patient

    out = {}
    for name, src in sources.items():
        if name == 'ptbxl':
            for e in src.entries:
                out[f'{name}/{e.record_id}'] = fold_to_split(e.meta['strat_fold'])
            continue
        by_patient = split_by_patient([e.patient_id for e in src.entries], seed=seed, fractions=fractions)
        for e in src.entries:
            out[f'{name}/{e.record_id}'] = by_patient[e.patient_id]
    return out


def _ptbxl_statements(root: Path):
    import pandas as pd

    return pd.read_csv(root / 'scp_statements.csv', index_col=0)


def _keep_labels(task_name: str, names: List[str], y: np.ndarray, split: np.ndarray, min_positives: int = 1,
                 need: Sequence[str] = ('train', 'test')) -> Tuple[np.ndarray, List[str], List[Dict[str, Any]]]:
    """Drop labels with fewer than ``min_positives`` positive records (or no negative one) in a split of ``need``:
    they cannot be learnt or tested."""
    keep, dropped = [], []
    for j, n in enumerate(names):
        pos = {s: int(y[split == s, j].sum()) for s in ('train', 'val', 'test')}
        neg = {s: int((split == s).sum()) - pos[s] for s in ('train', 'val', 'test')}
        reasons = [(f'no positive record in {s}' if pos[s] == 0 else f'{pos[s]} positive(s) in {s} < {min_positives}')
                   for s in need if pos[s] < max(1, min_positives)] + \
            [f'no negative record in {s}' for s in need if neg[s] == 0]
        if reasons:
            dropped.append({'task': task_name, 'label': n, 'positives': pos, 'reason': '; '.join(reasons)})
        else:
            keep.append(j)
    return y[:, keep], [names[j] for j in keep], dropped


def _ptbxl_tasks(src: SuiteSource, splits: Dict[str, str], min_positives: int) -> List[Task]:
    stmts = _ptbxl_statements(src.root)
    tasks = []
    for label_set in ('superdiagnostic', 'form', 'rhythm', 'all'):
        names, mapping = statement_classes(stmts, label_set)  # the PTB-XL reader's own label sets
        index = {n: i for i, n in enumerate(names)}
        keys, ys, excluded = [], [], []
        for e in src.entries:
            codes = e.meta.get('scp_codes')
            if isinstance(codes, str):
                codes = ast.literal_eval(codes)
            y = np.zeros(len(names), dtype=np.float32)
            for code in codes or {}:
                for cls in mapping.get(code, ()):
                    y[index[cls]] = 1.0
            key = f'ptbxl/{e.record_id}'
            if not y.any():  # the PTB-XL benchmark's convention: records without a statement of the set are left out
                excluded.append((key, f'no {label_set} statement among scp_codes'))
                continue
            keys.append(key)
            ys.append(y)
        name = f'ptbxl_{label_set}'
        split = np.asarray([splits[k] for k in keys])
        y = np.stack(ys) if ys else np.zeros((0, len(names)), np.float32)
        y, kept, dropped = _keep_labels(name, names, y, split, min_positives)
        tasks.append(Task(name, 'multilabel', _METRICS['multilabel'], kept, keys, split, y, dropped, excluded,
                          f'PTB-XL 100 Hz, {label_set} statements (multi-label), official folds'))
    return tasks


def _duplicate_of_ptbxl(key: str, entry: Entry, ptbxl_ids: set) -> Optional[str]:
    # CinC's PTB-XL copies are named HR<ecg_id>; the same recording must not sit in two splits of a pooled task.
    ecg_id = ptbxl_copy_id(entry.record_id)
    if ecg_id is not None and str(ecg_id) in ptbxl_ids:
        return f'copy of PTB-XL ecg_id {ecg_id} (already in the pooled task from ptbxl/)'
    return None


def _pooled_tasks(sources: Dict[str, SuiteSource], splits: Dict[str, str]) -> List[Task]:
    ptbxl_ids = {e.record_id for e in sources['ptbxl'].entries} if 'ptbxl' in sources else set()
    rows, excluded = [], []
    for name in POOLED_SOURCES:
        if name not in sources:
            continue
        for e in sources[name].entries:
            key = f'{name}/{e.record_id}'
            dup = _duplicate_of_ptbxl(key, e, ptbxl_ids) if name == 'cinc' else None
            if dup:
                excluded.append((key, dup))
                continue
            rows.append((key, e.meta.get('age'), e.meta.get('sex')))
    tasks = []
    where = '+'.join(n for n in POOLED_SOURCES if n in sources)
    specs = [('sex', 'binary', ['female'], lambda age, sex: None if sex is None else float(sex == 'F'), 'sex'),
             ('age_ge60', 'binary', ['age>=60'], lambda age, sex: None if age is None else float(age >= 60), 'age'),
             ('age', 'regression', ['age_years'], lambda age, sex: age, 'age')]
    for task_name, kind, labels, fn, field_name in specs:
        keys, ys, excl = [], [], list(excluded)
        for key, age, sex in rows:
            v = fn(age, sex)
            if v is None:
                excl.append((key, f'no {field_name} in the record\'s metadata'))
                continue
            keys.append(key)
            ys.append(v)
        split = np.asarray([splits[k] for k in keys])
        y = np.asarray(ys, dtype=np.float64 if kind == 'regression' else np.float32)
        what = {'sex': 'sex (female vs male)', 'age_ge60': 'age >= 60 years', 'age': 'age in years (regression; '
                'PTB-XL 300 = 90)'}[task_name]
        metrics = ('auroc_within', 'auroc', 'auprc') if kind == 'binary' else ('r2_within', 'r2', 'mae')
        tasks.append(Task(task_name, kind, metrics, labels, keys, split, y, [], excl,
                          f'{what}, pooled over {where}; PTB-XL by fold, the others by patient'))
    return tasks


def _cinc_task(src: SuiteSource, splits: Dict[str, str], min_positives: int) -> Task:
    keys = [f'cinc/{e.record_id}' for e in src.entries]
    y = np.stack([e.meta['dx_labels'] for e in src.entries]) if keys else np.zeros((0, len(src.source_label_names)))
    split = np.asarray([splits[k] for k in keys])
    y, kept, dropped = _keep_labels('cinc_scored', list(src.source_label_names), y, split, min_positives)
    return Task('cinc_scored', 'multilabel', _METRICS['multilabel'], kept, keys, split, y, dropped, [],
                'PhysioNet/CinC 2020-21 scored SNOMED-CT classes (multi-label), split by patient')


def _ludb_task(src: SuiteSource, splits: Dict[str, str], min_positives: int) -> Task:
    rhythm = {f'ludb/{e.record_id}': (e.meta.get('rhythms') or [None])[0] for e in src.entries}
    split_of = {k: splits[k] for k in rhythm}
    classes = sorted({r for r in rhythm.values() if r is not None})
    keep, dropped = [], []
    for c in classes:
        n = {s: sum(1 for k, r in rhythm.items() if r == c and split_of[k] == s) for s in ('train', 'val', 'test')}
        short = [s for s in ('train', 'test') if n[s] < max(1, min_positives)]
        if not short:
            keep.append(c)
        else:
            dropped.append({'task': 'ludb_rhythm', 'label': c, 'positives': n,
                            'reason': '; '.join(f'{n[s]} record(s) in {s}' for s in short)})
    index = {c: i for i, c in enumerate(keep)}
    keys, ys, excluded = [], [], []
    for k, r in rhythm.items():
        if r in index:
            keys.append(k)
            ys.append(index[r])
        else:
            excluded.append((k, f'rhythm {r!r} has too few records in train or test (class dropped)'))
    split = np.asarray([split_of[k] for k in keys])
    return Task('ludb_rhythm', 'multiclass', _METRICS['multiclass'], keep, keys, split, np.asarray(ys, np.int64),
                dropped, excluded, 'LUDB rhythm (single-label, OvO macro AUC: the seed\'s metric), split by patient')


def build_tasks(sources: Dict[str, SuiteSource], splits: Dict[str, str], names: Optional[Sequence[str]] = None,
                min_positives: int = 1) -> Tuple[List[Task], Dict[str, str]]:
    """The suite's tasks over the sources present.

    Args:
        sources: From :func:`load_sources`.
        splits: From :func:`assign_record_splits`.
        names: Tasks to build (default: all).
        min_positives: A label (class) needs at least this many positive records in train and in test to stay.

    Returns:
        (tasks, task name -> why it was not built).
    """
    wanted = list(names or TASK_NAMES)
    unknown = sorted(set(wanted) - set(TASK_NAMES))
    if unknown:
        raise ValueError(f'Unknown suite tasks {unknown}; choose from {list(TASK_NAMES)}.')
    tasks, not_built = [], {}
    if 'ptbxl' in sources:
        tasks += [t for t in _ptbxl_tasks(sources['ptbxl'], splits, min_positives) if t.name in wanted]
    if any(n in sources for n in POOLED_SOURCES):
        tasks += [t for t in _pooled_tasks(sources, splits) if t.name in wanted]
    if 'cinc' in sources and 'cinc_scored' in wanted:
        tasks.append(_cinc_task(sources['cinc'], splits, min_positives))
    if 'ludb' in sources and 'ludb_rhythm' in wanted:
        tasks.append(_ludb_task(sources['ludb'], splits, min_positives))
    built = {t.name for t in tasks}
    for n in wanted:
        if n not in built:
            not_built[n] = 'its source is not in the data folder'
    usable = []
    for t in tasks:
        c = t.counts()
        if not len(t.label_names):
            not_built[t.name] = 'no label has positives in both train and test'
        elif min(c['train'], c['test']) == 0:
            not_built[t.name] = f'empty split (records per split: {c})'
        else:
            usable.append(t)
    return usable, not_built


# ---------------------------------------------------------------------------------------------------------------------
# Label fractions


def subsample_train(y: np.ndarray, kind: str, fraction: float, seed: int) -> np.ndarray:
    """Positions (into ``y``, the training targets) of a label-fraction subset, stratified where possible.

    Exactly ``ceil(fraction * N)`` records: at least one per class (multiclass, binary; the rest in proportion) or per
    label (multi-label: one random positive of each label not yet covered, rarest first, then random records) as far
    as that many fit; regression draws at random.
    ``fraction >= 1`` returns every record. The draw depends only on (targets, fraction, seed), so every encoder is
    probed on the same records.

    Args:
        y: The training targets: class indices, or multi-hot (N, L) for 'multilabel', or values for regression.
        kind: 'binary', 'multiclass', 'multilabel' or 'regression' (drawn at random).
        fraction: Share of the records to keep, in (0, 1]; 1 or more keeps all.
        seed: Seed of the draw.

    Returns:
        Sorted positions into ``y``.

    Raises:
        ValueError: ``fraction`` is 0 or below (or NaN).
    """
    n = len(y)
    if fraction >= 1.0:
        return np.arange(n)
    if not 0 < fraction < 1:
        raise ValueError(f'A label fraction must be in (0, 1], got {fraction}.')
    rng = np.random.default_rng(seed)
    size = min(n, max(1, math.ceil(fraction * n)))
    chosen: List[int] = []
    if kind in ('binary', 'multiclass'):
        classes, inverse = np.unique(np.asarray(y).astype(np.int64), return_inverse=True)
        per = np.bincount(inverse)
        quota = np.maximum(1, np.floor(size * per / n)).astype(int)
        for c in range(len(classes)):
            members = np.flatnonzero(inverse == c)
            chosen += list(rng.choice(members, size=min(quota[c], len(members)), replace=False))
    elif kind == 'multilabel':
        y = np.asarray(y) > 0.5
        for j in np.argsort(y.sum(0), kind='mergesort'):
            members = np.flatnonzero(y[:, j])
            if len(chosen) < size and len(members) and not y[chosen, j].any():
                chosen.append(int(rng.choice(members)))
    chosen = list(dict.fromkeys(int(i) for i in chosen))
    if len(chosen) > size:  # more classes than records: one record each for a random subset of the classes
        chosen = [int(i) for i in rng.choice(chosen, size=size, replace=False)]
    rest = np.setdiff1d(np.arange(n), chosen)
    extra = max(0, size - len(chosen))
    if extra:
        chosen += list(rng.choice(rest, size=min(extra, len(rest)), replace=False))
    return np.sort(np.asarray(chosen, dtype=np.int64))
