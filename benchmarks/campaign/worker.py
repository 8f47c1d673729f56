"""One campaign job in its own process: pretrain one method under a deadline, save its encoder, probe it.

A job is a JSON file (written by :mod:`benchmarks.campaign.run`); the job writes ``result.json`` into its run folder
when it ends, whatever happened. Pretraining is ``ecgvit.train.train`` in chunks of whole epochs, each chunk resuming
the previous one's checkpoint exactly (``resume=True``), so the time budget is met between chunks and a process killed
mid-chunk leaves the last chunk's checkpoint and the best weights so far (``checkpoints/best.safetensors``).
"""
from __future__ import annotations

import json
import math
import statistics
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ['ArrayDataset', 'train_one', 'train_one_from_file', 'probe', 'relative_distance', 'atomic_json']


class ArrayDataset(Dataset):
    """Windows of a (N, 12, L) array (a memmap is read per item), with multi-hot labels when given."""

    def __init__(self, signals: np.ndarray, labels: np.ndarray | None = None,
                 label_names: list[str] | None = None) -> None:
        self.signals = signals  # named as a cache's, so WithRR reads it in slices
        self.labels = labels
        self.label_names = label_names
        self.multilabel = labels is not None

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, i: int):
        row = self.signals[i]
        # A view of an in-memory array costs nothing; a read-only memmap row is copied (torch wants writable memory).
        x = torch.from_numpy(row if row.flags.writeable else np.array(row, dtype=np.float32))
        if self.labels is None:
            return x
        return x, torch.from_numpy(np.asarray(self.labels[i], dtype=np.float32))


def atomic_json(path: Path, obj: Any) -> None:
    """Write JSON so a reader never sees half a file (``ecgvit.train.checkpoint.atomic_write_text``)."""
    from ecgvit.train.checkpoint import atomic_write_text  # on use: run installs carried wheels before ecgvit loads

    atomic_write_text(path, json.dumps(obj, indent=2, default=float))


def relative_distance(state: dict[str, torch.Tensor], init: dict[str, torch.Tensor]) -> float:
    """||w - w0|| / ||w0|| over all floating-point tensors (the issue's "moved from init" figure)."""
    num = den = 0.0
    for k, w0 in init.items():
        if not torch.is_floating_point(w0):
            continue
        w = state[k].detach().float().cpu()
        num += float(((w - w0.float()) ** 2).sum())
        den += float((w0.float() ** 2).sum())
    return math.sqrt(num / den) if den > 0 else math.nan


def _arrays(folder: Path, name: str) -> np.ndarray:
    # Read into memory (a few hundred MB per job): batches are then views, collated without per-item copies, which
    # matters when a GPU step takes milliseconds and the loader runs in the training process.
    return np.load(folder / f'{name}.npy')


def _step_seconds(build, x: torch.Tensor, rr: torch.Tensor | None, device: torch.device, amp: str,
                  steps: int = 3, warmup: int = 2) -> float:
    """Median time of a full optimiser step of a throwaway copy of the pretrainer (to size the warm-up and chunks)."""
    from ecgvit.train.optim import create_adam
    from ecgvit.train.runtime import autocast_context, resolve_amp_dtype

    model = build().to(device).train()
    opt = create_adam([p for p in model.parameters() if p.requires_grad], 2e-4)
    dtype = resolve_amp_dtype(amp, device)
    x = x.to(device)
    kwargs = {} if rr is None else {'rr_samples': rr.to(device)}
    times = []
    for i in range(warmup + steps):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with autocast_context(device, dtype):
            loss = model(x, **kwargs)['loss']
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    del model, opt
    return statistics.median(times)


def probe(encoder: torch.nn.Module, arrays: Path, label_names: list[str], job: dict[str, Any],
          out: Path) -> dict[str, Any]:
    """Linear probe on PTB-XL folds 1-8 / 9 / 10 (ecgvit.eval.linear_probe); predictions go to ``out``."""
    from ecgvit.eval import ProbeConfig, linear_probe

    sets = {s: ArrayDataset(_arrays(arrays, f'eval_{s}'), np.load(arrays / f'labels_{s}.npy'), label_names)
            for s in ('train', 'val', 'test')}
    cfg = ProbeConfig(device=job['device'], amp=job['amp'], epochs=job['probe_epochs'], n_boot=job['n_boot'],
                      seed=job['seed'], progress=False)
    res = linear_probe(encoder, sets['train'], sets['val'], sets['test'], config=cfg, output_dir=str(out))
    keep = ('auroc_macro', 'auroc_macro_lo', 'auroc_macro_hi', 'f1_macro', 'accuracy', 'n_test', 'n_boot',
            'best_epoch', 'epochs_run', 'time_s', 'embed_time_s')
    return {k: res[k] for k in keep if k in res}


def loss_history(metrics_csv: Path, max_train_rows: int = 400) -> dict[str, list[list[float]]]:
    """A run's loss curve, small enough for ``results.json``: every validation row and at most ``max_train_rows``
    training rows, as ``[step, loss]`` pairs."""
    import csv

    if not metrics_csv.is_file():
        return {'train': [], 'val': []}
    with open(metrics_csv, newline='') as f:
        rows = list(csv.DictReader(f))
    train = [[int(r['step']), float(r['loss'])] for r in rows if r['kind'] == 'train' and r['loss']]
    val = [[int(r['step']), float(r['val_loss'])] for r in rows if r['kind'] == 'val' and r['val_loss']]
    every = max(1, -(-len(train) // max_train_rows))
    return {'train': train[::every], 'val': val}


def _recipe(run_dir: Path) -> dict[str, Any]:
    """The resolved training recipe ``ecgvit.train.train`` recorded in the run's config.json."""
    try:
        return json.loads((run_dir / 'config.json').read_text()).get('train', {})
    except (OSError, ValueError):
        return {}


def seed_init(job: dict[str, Any], length: int) -> torch.nn.Module:
    """The seed's random init of the job's encoder: the random-init floor, and what a continued job's distance from
    init is measured against."""
    import ecgvit
    from ecgvit.train import seed_everything

    seed_everything(job['seed'])
    return ecgvit.create_model(job['encoder'], img_size=length)


def continued_pretrainer(method: str, start: dict[str, Any], model: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    """A pretrainer whose encoder starts from ``--init``'s folder (:func:`benchmarks.campaign.run.init_spec`), and
    its decoders and heads from the heads saved beside it when there, as ``ecgvit pretrain --pretrained --heads``."""
    from ecgvit.hub import load_pretrained
    from ecgvit.pretrain import create_pretrainer
    from ecgvit.pretrain.heads import load_heads

    # float32 like a fresh start (the shipped weights are stored in bf16); the momentum encoder copies this one.
    pretrainer = create_pretrainer(method, load_pretrained(start['folder']).float(), **kwargs)
    if start.get('heads_sha256'):
        load_heads(pretrainer, start['folder'], method=method, model=model)
    return pretrainer


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job (see :mod:`benchmarks.campaign.run` for its fields); returns and writes ``result.json``."""
    from ecgvit.hub import save_pretrained
    from ecgvit.pretrain import create_pretrainer, save_heads, split_method
    from ecgvit.train import TrainConfig, load_best_into, seed_everything, train

    run_dir = Path(job['run_dir'])
    run_dir.mkdir(parents=True, exist_ok=True)
    arrays = Path(job['arrays'])
    pack = job['pack']
    rate, length = pack['sampling_rate'], pack['num_samples']
    device = torch.device(job['device'])
    result: dict[str, Any] = {k: job[k] for k in ('name', 'role', 'method', 'method_kwargs', 'encoder', 'ship_as')}
    result.update(status='running', started=time.time())
    t_start = time.time()
    try:
        if job['role'] == 'random':
            encoder = seed_init(job, length)
            result.update(epochs=0, steps=0, train_s=0.0)
        elif job['role'] == 'given':  # weights from elsewhere (e.g. the shipped ones), probed on the same records
            from ecgvit.hub import load_pretrained

            encoder = load_pretrained(job['source'])
            result.update(source=job['source'], epochs=None)
        else:
            base, kwargs = split_method(job['method'])
            kwargs.update(job['method_kwargs'])
            if 'clip' in base:
                kwargs.setdefault('sampling_rate', rate)

            start = job.get('init')  # --init: a continuation of saved weights (and heads)

            def build():
                if start is not None:
                    return continued_pretrainer(base, start, job['encoder'], kwargs)
                return create_pretrainer(base, job['encoder'], {'img_size': length}, **kwargs)

            train_set = ArrayDataset(_arrays(arrays, 'pool_train'))
            val_set = ArrayDataset(_arrays(arrays, 'pool_val'))
            if 'clip' in base and kwargs.get('cycle', 'rpeak') == 'rpeak':
                from ecgvit.data.rr_dataset import WithRR  # R peaks once per window, as `ecgvit pretrain` does

                train_set, val_set = WithRR(train_set, rate), WithRR(val_set, rate)
            batch = min(job['batch_size'], len(train_set))
            steps_per_epoch = len(train_set) // batch
            x = torch.from_numpy(np.array(train_set.signals[:batch], dtype=np.float32))
            rr = train_set.rr_samples[:batch].nan_to_num(288.0) if hasattr(train_set, 'rr_samples') else None
            seed_everything(job['seed'])
            step_s = _step_seconds(build, x, rr, device, job['amp'])
            epoch_s = step_s * steps_per_epoch * 1.15 + 0.5  # validation, loader, checkpoints: measured per chunk
            budget = job['train_deadline'] - time.time()
            planned = max(1, min(job['max_epochs'], int(budget // epoch_s)))
            # The seed's 20 warm-up epochs, or a fifth of a shorter run (ecgvit's auto rule), fixed for all chunks.
            warmup = min(float(job['warmup_epochs']), 0.2 * planned)
            result.update(step_s_calibration=step_s, planned_epochs=planned, warmup_epochs=warmup,
                          steps_per_epoch=steps_per_epoch, batch_size=batch, seed=job['seed'],
                          n_train=len(train_set), n_val=len(val_set))
            seed_everything(job['seed'])
            pretrainer = build()
            first = {k: v.detach().clone() for k, v in pretrainer.encoder.state_dict().items()}
            init = first
            if start is not None:  # "moved from init" is from the seed's random init (the random-init floor's)
                init = seed_init(job, length).state_dict()
                result['init'] = start
            out = run_dir / 'train'
            run_config = {'command': 'gpu_campaign', 'method': base, 'model': job['encoder'], 'init': start,
                          'method_kwargs': kwargs, 'pretrainer': getattr(pretrainer, 'config', {}),
                          'data': {'spec': 'pool (campaign pack)', 'n_train': len(train_set), 'n_val': len(val_set)},
                          'preprocessing': pack}
            epochs, chunks, train_s = 0, [], 0.0
            while epochs < job['max_epochs']:
                left = job['train_deadline'] - time.time()
                n = min(job['max_epochs'] - epochs, int(left // epoch_s), max(1, int(job['chunk_s'] // epoch_s)))
                if not chunks:  # a short first chunk measures the epoch as it runs (beside the other jobs)
                    n = min(n, 2)
                if n < 1:
                    break
                cfg = TrainConfig(output_dir=str(out), epochs=epochs + n, batch_size=batch, lr=job['lr'],
                                  warmup_epochs=warmup, amp=job['amp'], device=job['device'], save_every=0,
                                  save_every_epochs=0, keep_last=1, log_every=steps_per_epoch, resume=True,
                                  progress=False, seed=job['seed'], num_workers=0, compile=bool(job.get('compile')))
                t0 = time.time()
                summary = train(pretrainer, train_set, val_set, cfg, run_config=run_config)
                dt = time.time() - t0
                train_s += dt
                done = summary['epochs'] - epochs
                epochs = summary['epochs']
                epoch_s = dt / max(1, done)
                chunks.append({'epochs': epochs, 's': round(dt, 2)})
                result.update(epochs=epochs, steps=summary['steps'], best_epoch=summary['best_epoch'],
                              best_val_loss=summary['best_val_loss'], skipped_steps=summary['skipped_steps'],
                              amp=summary['amp'], train_s=train_s, epoch_s=epoch_s, chunks=chunks)
                atomic_json(run_dir / 'result.json', result)  # progress, for a parent that has to kill us
            if epochs == 0:
                raise TimeoutError(f'no time for one epoch ({epoch_s:.1f} s estimated, {left:.1f} s left)')
            if device.type == 'cuda':
                result['cuda_peak_gib'] = torch.cuda.max_memory_allocated(device) / 2 ** 30
            load_best_into(pretrainer, out)
            # What a card needs that the weights do not say: the recipe, the method's settings, the loss curve.
            result.update(pretrainer=getattr(pretrainer, 'config', {}), train=_recipe(out),
                          loss_history=loss_history(out / 'metrics.csv'))
            encoder = pretrainer.encoder.cpu()
            result['rel_l2_from_init'] = relative_distance(encoder.state_dict(), init)
            if start is not None:
                result['rel_l2_from_start'] = relative_distance(encoder.state_dict(), first)
            save_pretrained(encoder, run_dir / 'encoder', pretrained_cfg={
                'pretrain_method': job['method'], 'preprocessing': pack})
            save_heads(pretrainer.state_dict(), run_dir / 'encoder', method=base, model=job['encoder'],
                       extra={'epochs': None if result.get('best_epoch') is None else result['best_epoch'] + 1})
            result['encoder_dir'] = str(run_dir / 'encoder')
        if job.get('probe', True):  # not with a --no-eval pack (the CPU gate probes what comes back)
            result['probe'] = probe(encoder, arrays, job['label_names'], job, run_dir / 'probe')
        result['status'] = 'done'
    except Exception as e:  # the parent reports it and carries on with the other jobs
        result.update(status='failed', error=f'{type(e).__name__}: {e}', traceback=traceback.format_exc())
    result['wall_s'] = time.time() - t_start
    atomic_json(run_dir / 'result.json', result)
    return result


def train_one_from_file(path: str) -> int:
    """``gpu_campaign.py train-one --job FILE``: the job's process entry point (exit 0 when it is done)."""
    job = json.loads(Path(path).read_text())
    # Process-wide settings, so only in a job's own process (--parallel 0 runs jobs in the caller's).
    torch.set_num_threads(max(1, int(job.get('threads', 1))))
    torch.set_flush_denormal(True)  # Adam's tiny second moments: denormals are ~100x slower on x86 CPUs
    return 0 if train_one(job)['status'] == 'done' else 1
