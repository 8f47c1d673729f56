"""What a MoCo queue longer than the training set does: measured, to choose the default (issue 13, recipe defaults).

MoCo's queue (seed: 65,536 keys) assumes a data set far larger than the queue (ImageNet: 1.28M images, so the queue
holds 5% of it and never the same image twice). Our pretraining pool has a few thousand records: a 65,536-key queue
then holds each record's older keys many times over as negatives of its own query (once it has filled: for short runs
most of it is still the random unit vectors it starts with). This script pretrains MoCo (the paper's full views) on
PTB-XL folds 1-8 with several queue lengths and seeds, and reports for each:

- ``self_copies``: older keys of the query's own record in the queue, per query (mean over the last epoch);
- ``random_left``: the fraction of the queue still holding its random initial vectors at the end;
- ``cos_pos`` / ``cos_self_neg`` / ``cos_other_neg``: mean query similarity to its positive key, to its own older keys,
  and to other records' keys, at the end;
- ``auroc``: linear-probe macro AUROC on fold 10 (superdiagnostic; logistic regression on [CLS] of folds 1-8).

Usage::

    python benchmarks/moco_queue.py --data-dir ../shared/data/ptbxl --epochs 30 --seeds 0 1 2 --json out.json
"""
import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any, Dict, List

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from ecgvit.data import CachedECGDataset, Preprocessing, build_cache, get_dataset
from ecgvit.pretrain import create_pretrainer
from ecgvit.train.optim import create_adam

FS, N = 100.0, 1000  # PTB-XL's 100 Hz files, 10 s


def load(data_dir: str, cache_root: str) -> Dict[str, CachedECGDataset]:
    ds = get_dataset('ptbxl', data_dir, sampling_rate=100, label_set='superdiagnostic')
    cache = build_cache(ds, Preprocessing(sampling_rate=FS, num_samples=N), os.path.join(cache_root, 'ptbxl100'),
                        progress=False)
    return {s: CachedECGDataset(cache, split=s) for s in ('train', 'test')}


def signals(ds: CachedECGDataset) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(ds.signals)).float()


def labels(ds: CachedECGDataset) -> np.ndarray:
    return np.stack([np.asarray(ds[i][1]) for i in range(len(ds))])


@torch.no_grad()
def features(encoder: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    encoder.eval()
    return torch.cat([encoder.forward_features(x[i:i + 256])[:, 0] for i in range(0, len(x), 256)]).numpy()


def probe_auroc(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray) -> float:
    scaler = StandardScaler().fit(f_train)
    a, b = scaler.transform(f_train), scaler.transform(f_test)
    aucs = []
    for c in range(y_train.shape[1]):
        if y_train[:, c].min() == y_train[:, c].max() or y_test[:, c].min() == y_test[:, c].max():
            continue
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(a, y_train[:, c])
        aucs.append(roc_auc_score(y_test[:, c], clf.predict_proba(b)[:, 1]))
    return float(np.mean(aucs))


def run(x: torch.Tensor, queue: int, seed: int, epochs: int, batch: int, lr: float, model: str) -> Dict[str, Any]:
    torch.manual_seed(seed)
    pre = create_pretrainer('moco', model, {'img_size': N}, queue_size=queue).train()
    opt = create_adam([p for p in pre.parameters() if p.requires_grad], lr)
    owner = torch.full((queue,), -1, dtype=torch.long)  # which record each queue slot holds (-1: random init)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    copies: List[float] = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for s in range(n // batch):
            idx = order[s * batch:(s + 1) * batch]
            if epoch == epochs - 1:
                copies.append(float((owner.unsqueeze(0) == idx.unsqueeze(1)).sum(1).float().mean()))
            ptr = int(pre.moco.queue_ptr)
            loss = pre(x[idx], generator=gen)['loss']
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            owner[(ptr + torch.arange(len(idx))) % queue] = idx
    # similarities at the end, on one batch of training records (un-augmented views: what the probe sees)
    pre.eval()
    with torch.no_grad():
        idx = torch.arange(min(256, n))
        q = pre.moco.project_query(pre.encoder.forward_features(x[idx])[:, 0])
        k = pre.moco.forward_key(x[idx])
        sim = q @ pre.moco.queue.t()
        own = owner.unsqueeze(0) == idx.unsqueeze(1)
        other = (owner.unsqueeze(0) >= 0) & ~own
        cos_self = float(sim[own].mean()) if own.any() else float('nan')
        cos_other = float(sim[other].mean()) if other.any() else float('nan')
    return {'queue': queue, 'seed': seed, 'self_copies': statistics.fmean(copies) if copies else 0.0,
            'random_left': float((owner < 0).float().mean()), 'cos_pos': float((q * k).sum(1).mean()),
            'cos_self_neg': cos_self, 'cos_other_neg': cos_other, 'encoder': pre.encoder}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data-dir', required=True, help='PTB-XL folder (ptbxl_database.csv, records100/).')
    ap.add_argument('--queues', type=int, nargs='+', default=None,
                    help='Queue lengths [default: 65536, 8x, 1x and 1/4x the training set, rounded to the batch].')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--epochs', type=int, default=30)
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--model', default='ecg_vit_tiny')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--json', default=None, help='Write the rows here.')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = load(args.data_dir, tmp)
        x_train, x_test = signals(data['train']), signals(data['test'])
        y_train, y_test = labels(data['train']), labels(data['test'])
    n, b = len(x_train), args.batch_size
    queues = args.queues or [65536, 8 * n // b * b, n // b * b, n // 4 // b * b]
    print(f'training records {n}, test records {len(x_test)}, queues {queues}, {args.epochs} epochs of {n // b} steps')
    rows = []
    for queue in queues:
        for seed in args.seeds:
            t0 = time.time()
            row = run(x_train, queue, seed, args.epochs, b, args.lr, args.model)
            enc = row.pop('encoder')
            row['auroc'] = probe_auroc(features(enc, x_train), y_train, features(enc, x_test), y_test)
            row['time_s'] = time.time() - t0
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    print('\n| queue | x training set | self copies / query | random left | cos pos | cos own old keys | '
          'cos other keys | probe AUROC (mean +- sd) |')
    print('|---|---|---|---|---|---|---|---|')
    for queue in queues:
        r = [row for row in rows if row['queue'] == queue]
        auc = [row['auroc'] for row in r]
        sd = statistics.stdev(auc) if len(auc) > 1 else 0.0

        def mean(key: str, r: List[Dict[str, Any]] = r) -> float:
            return statistics.fmean(row[key] for row in r)

        print(f'| {queue} | {queue / n:.2f} | {mean("self_copies"):.2f} | {mean("random_left"):.2f} | '
              f'{mean("cos_pos"):.3f} | {mean("cos_self_neg"):.3f} | {mean("cos_other_neg"):.3f} | '
              f'{statistics.fmean(auc):.3f} +- {sd:.3f} |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'args': vars(args), 'n_train': n, 'rows': rows}, f, indent=2)


if __name__ == '__main__':
    main()
