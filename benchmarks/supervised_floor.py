"""The supervised floor of the release gate: the shipped architecture trained from scratch with the gate task's labels.

Issue 15 reports the shipped weights against a random init, the previous weights and a supervised baseline. This
script makes that baseline. It trains a seed-0 random init of the shipped architecture end to end, with a linear head
on [CLS], on the training split of one suite task (default: PTB-XL superdiagnostic, folds 1-8). It selects the best
weights on the validation split (fold 9), so fold 10, the gate's test set, is never seen.

The run uses the records, preprocessing and cache of the evaluation suite, and the training loop of ``ecgvit
pretrain``: the seed recipe (Adam 2e-4, batch 64, automatic warm-up, ReduceLROnPlateau 0.9/15 on the validation
loss), a checkpoint every epoch, ``--resume`` after an interruption. Its folder is a run folder that
``ecgvit.hub.load_encoder`` reads (its best weights, head dropped). So the suite and the gate probe it like any other
encoder (``ship_weights.py gate --supervised RUN``).

The probe then fits a new linear layer on its frozen [CLS] embedding. That makes it the same protocol as every other
row: the question is how good an encoder is once its labels are used, not which head was fitted.

Usage:
    python benchmarks/supervised_floor.py --data-dir /work/shared/data --out ~/.cache/ecgvit-runs/supervised \\
        --cache-dir ~/.cache/ecgvit-runs/suite_shipped/cache --epochs 50 --amp bf16 --threads 1 [--resume]
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/supervised_floor.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ['SupervisedClassifier', 'TaskRecords', 'task_datasets', 'train_floor', 'main']

DEFAULT_TASK = 'ptbxl_superdiagnostic'  # the gate task (ship_weights.GATE_TASK)


class SupervisedClassifier(nn.Module):
    """An encoder with its classification head, whose forward returns the loss (what ``ecgvit.train.train`` takes).

    Args:
        encoder: An ecgvit encoder built with ``num_classes`` outputs.
        kind: The task kind: 'multilabel' or 'binary' (binary cross-entropy per output), 'multiclass' (cross-entropy).
    """

    def __init__(self, encoder: nn.Module, kind: str):
        from ecgvit.eval.common import TaskInfo, make_loss

        super().__init__()
        if kind not in ('multilabel', 'binary', 'multiclass'):
            raise ValueError(f'A supervised floor needs a classification task, not {kind!r}.')
        self.encoder = encoder
        # A binary task has one output and is scored like one label of a multi-label task.
        self.multilabel = kind != 'multiclass'
        self.loss_fn = make_loss(TaskInfo(encoder.num_classes, self.multilabel))  # the probe's and fine-tuning's loss

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits = self.encoder(x).float()  # the loss in fp32 under autocast
        target = target.float().view_as(logits) if self.multilabel else target.long()
        return {'loss': self.loss_fn(logits, target)}


class TaskRecords(Dataset):
    """Records of one split of a suite task, read from the suite's signal cache with the task's labels.

    Yields ``{'x': (12, L) float32, 'target': label}``: the training loop passes every key but ``x`` and ``y`` to the
    model, so the label reaches :class:`SupervisedClassifier` as ``target``. The signals come from the cache's own
    dataset, which maps its file once per process (DataLoader workers reopen it instead of receiving a copy).

    Args:
        cache: The source's ``CachedECGDataset`` (all items).
        rows: The cache item of each record of the split.
        labels: The task's label of each record of the split.
    """

    def __init__(self, cache: Dataset, rows: np.ndarray, labels: np.ndarray):
        self.cache, self.rows, self.labels = cache, np.asarray(rows), np.asarray(labels)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        x, _ = self.cache[int(self.rows[i])]  # the cache's labels are not the task's: the task's are used
        return {'x': x, 'target': torch.as_tensor(self.labels[i])}


def task_datasets(data_dir: str, task_name: str, encoder: nn.Module, cache_dir: Path, workers: int = 0,
                  progress: bool = False) -> Tuple[Any, Dict[str, TaskRecords], Dict[str, Any]]:
    """The suite's task ``task_name`` as train/val/test datasets for ``encoder``'s input format.

    Returns:
        (task, {'train', 'val', 'test'} -> dataset, facts: preprocessing, record counts, records left out).

    Raises:
        ValueError: the task cannot be built from ``data_dir`` or has an empty training or validation split.
    """
    from ecgvit.data import CachedECGDataset
    from ecgvit.eval.suite import SuiteConfig, preprocessing_for, source_caches
    from ecgvit.eval.suite_data import assign_record_splits, build_tasks, load_sources

    defaults = SuiteConfig(data_dir=data_dir, out='')
    sources, _ = load_sources(data_dir)
    splits = assign_record_splits(sources, defaults.split_seed, tuple(defaults.split_fractions))
    tasks, not_built = build_tasks(sources, splits, [task_name], defaults.min_positives)
    if not tasks:
        raise ValueError(f'The task {task_name!r} cannot be built from {data_dir}: {not_built}.')
    task = tasks[0]
    needed = {k.split('/', 1)[0] for k in task.keys}
    if task.kind not in ('multilabel', 'binary', 'multiclass') or len(needed) > 1:
        raise ValueError(f'{task_name} is a {task.kind} task over {sorted(needed)}: the supervised floor takes a '
                         f'classification task of one source (e.g. {DEFAULT_TASK}).')
    pp = preprocessing_for(encoder)
    source = needed.pop()
    cache = CachedECGDataset(source_caches({source: sources[source]}, pp, cache_dir, workers, progress)[source])
    where = {f'{source}/{rid}': i for i, rid in enumerate(cache.record_ids)}
    out, counts, unreadable = {}, {}, []
    for split in ('train', 'val', 'test'):
        idx = [i for i in task.indices(split) if task.keys[i] in where]
        unreadable += [task.keys[i] for i in task.indices(split) if task.keys[i] not in where]
        out[split] = TaskRecords(cache, np.array([where[task.keys[i]] for i in idx], dtype=np.int64),
                                 task.y[idx].astype(np.float32 if task.kind != 'multiclass' else np.int64))
        counts[split] = len(idx)
    for split in ('train', 'val'):
        if counts[split] == 0:
            raise ValueError(f'{task_name} has no readable {split} records in {data_dir}.')
    facts = {'task': task_name, 'kind': task.kind, 'labels': list(task.label_names), 'records': counts,
             'unreadable_records': sorted(unreadable), 'preprocessing': pp.to_dict(),
             'splits': "the evaluation suite's (PTB-XL: strat_fold 1-8 train, 9 val, 10 test; other sources by "
                       'patient); the test split is never read in training'}
    return task, out, facts


def train_floor(args: argparse.Namespace) -> Dict[str, Any]:
    """Train the supervised floor into ``args.out`` (resumable); returns the training summary."""
    import ecgvit
    from ecgvit.train import TrainConfig, seed_everything, train

    probe_model = ecgvit.create_model(args.model)
    task, data, facts = task_datasets(args.data_dir, args.task, probe_model, Path(args.cache_dir).expanduser(),
                                      args.workers, args.progress)
    n_out = len(task.label_names) if task.kind != 'binary' else 1
    seed_everything(args.seed)
    encoder = ecgvit.create_model(args.model, num_classes=n_out)
    model = SupervisedClassifier(encoder, task.kind)
    cfg = TrainConfig(output_dir=str(Path(args.out).expanduser()), epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, amp=args.amp, save_every=0, save_every_epochs=1, keep_last=2,
                      log_every=5, resume=args.resume, progress=args.progress, device=args.device,
                      num_workers=args.workers)
    run_config = {'method': 'supervised', 'model': args.model, 'preprocessing': facts['preprocessing'],
                  'data': dict(facts, n_train=len(data['train']), n_val=len(data['val']), data_dir=args.data_dir),
                  'command': ' '.join(['python', 'benchmarks/supervised_floor.py'] + (args.argv or []))}
    return train(model, data['train'], data['val'], cfg, run_config=run_config)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-dir', required=True, help='the suite data (ptbxl/, ...)')
    p.add_argument('--out', required=True, help='the run folder (outside the repository; resumable)')
    p.add_argument('--cache-dir', required=True, help="the suite's cache folder (its signal caches are reused)")
    p.add_argument('--task', default=DEFAULT_TASK, help=f'a one-source classification task of the suite '
                                                        f'(default: the gate task, {DEFAULT_TASK})')
    p.add_argument('--model', default='ecg_vit_mae_moco', help='the architecture (default: the shipped one)')
    p.add_argument('--epochs', type=int, default=50)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--lr', type=float, default=2e-4)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--amp', default='auto', help="'auto', 'bf16' or 'fp32'")
    p.add_argument('--device', default=None)
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--workers', type=int, default=0)
    p.add_argument('--resume', action='store_true', help='continue from the newest checkpoint in --out')
    p.add_argument('--no-progress', dest='progress', action='store_false')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    import sys

    from ecgvit.errors import RunStopped

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    try:
        summary = train_floor(args)
    except RunStopped as e:  # `kill PID` stops at a step boundary after a checkpoint: a message, not a traceback
        print(f'supervised_floor.py: {e}', file=sys.stderr)
        return e.exit_code
    print(f"{args.out}: {summary.get('epochs')} epochs, best validation loss {summary.get('best_val_loss'):.4f} "
          f"after epoch {summary.get('best_epoch')}")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
