"""The pretraining loop: one code path for a laptop CPU, one GPU, or ``torchrun --nproc_per_node N``.

The module being trained is anything whose ``forward(batch)`` returns a dict with a scalar ``'loss'`` (and optionally
more scalar parts, which are logged): the pretraining wrappers of :mod:`ecgvit.pretrain`, or a supervised model
wrapped to return its loss. Seed recipe: Adam, lr 2e-4, batch 64, 20 linear warm-up epochs, then ReduceLROnPlateau
(factor 0.9, patience 15) on the validation loss.

Exact resume: the data order of epoch ``e`` is a pure function of ``(seed, e)`` and the position inside the epoch is
saved, so a resumed run sees the same batches; the RNG states, optimiser, schedule and every buffer of the module
(the MoCo queue and pointer included) come back from the checkpoint.
"""
import contextlib
import csv
import io
import json
import logging
import math
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .checkpoint import (
    atomic_write_text,
    clean_partial,
    get_rng_state,
    latest_checkpoint,
    load_best,
    load_checkpoint,
    read_checkpoint_state,
    save_best,
    save_checkpoint,
    set_rng_state,
)
from .cpu_memory import reuse_freed_memory
from .distributed import DistInfo, all_reduce_any, barrier, init_distributed
from .optim import create_adam
from .schedules import create_schedule

__all__ = ['TrainConfig', 'train', 'seed_everything', 'resolve_amp_dtype', 'ResumableSampler', 'autocast_context',
           'batch_inputs', 'batch_kwargs', 'compile_blocks', 'load_best_into']

_logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Settings of a pretraining run (all JSON-serialisable; written to ``config.json`` beside the outputs).

    Attributes:
        output_dir: Run folder (metrics.csv, checkpoints/, config.json, summary.json).
        epochs: Training epochs.
        batch_size: Batch per process (seed: 64); under torchrun the global batch is this times the world size.
        lr: Adam learning rate (seed: 2e-4).
        weight_decay: Adam weight decay (seed: 0).
        warmup_epochs: Linear warm-up epochs (seed: 20); may be fractional for tiny runs.
        schedule: 'plateau' (seed: ReduceLROnPlateau on validation loss) or 'cosine'.
        plateau_factor: ReduceLROnPlateau factor (seed: 0.9).
        plateau_patience: ReduceLROnPlateau patience in epochs (seed: 15).
        clip_grad: Clip the global gradient norm to this value; None disables.
        amp: 'auto' (bf16 where it is faster, measured), 'bf16' or 'fp32'.
        seed: Seed for initialisation, data order, masking and augmentation.
        save_every: Write a resumable checkpoint every this many steps (0: only at the end of the run).
        keep_last: Resumable checkpoints to keep (0 keeps all); the best weights are kept apart.
        log_every: Steps between CSV/TensorBoard rows.
        num_workers: DataLoader workers.
        device: 'cpu', 'cuda' or None (CUDA when available).
        resume: Continue from the newest checkpoint in ``output_dir`` (starts fresh if there is none), or from
            this checkpoint path.
        progress: Show tqdm progress bars (rank 0 only).
        val_seed: Seed for the masks/augmentations of validation passes, so epochs are compared on equal terms.
        find_unused_parameters: DDP option; wrappers whose branches skip some parameters (e.g. MAE without [CLS])
            need it.
        compile: ``torch.compile`` every transformer block in place (:func:`compile_blocks`); the first steps pay the
            compilation (needs a C++ compiler on CPU).
        reuse_cpu_memory: On CPU, let glibc recycle freed tensors instead of page-faulting fresh memory for every
            large activation (:mod:`ecgvit.train.cpu_memory`; 15% off a seed MAE-MoCo step). Off by default because
            it is process-wide and cannot be undone; ``ecgvit pretrain``, a process of its own, turns it on.
    """
    output_dir: str = 'output/pretrain'
    epochs: int = 10
    batch_size: int = 64  # seed
    lr: float = 2e-4  # seed
    weight_decay: float = 0.0
    warmup_epochs: float = 20.0  # seed
    schedule: str = 'plateau'
    plateau_factor: float = 0.9  # seed
    plateau_patience: int = 15  # seed
    clip_grad: Optional[float] = None
    amp: str = 'auto'
    seed: int = 0
    save_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    num_workers: int = 0
    device: Optional[str] = None
    resume: Any = False
    progress: bool = True
    val_seed: int = 12345
    find_unused_parameters: bool = True
    compile: bool = False
    reuse_cpu_memory: bool = False

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'TrainConfig':
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f'Unknown training option(s) {unknown}; valid ones are {sorted(names)}.')
        return cls(**d)


def machine_info(device: torch.device) -> Dict[str, Any]:
    """Where a run ran (CPU model, cores, accelerator, torch), recorded in its config so reports need not guess."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
        cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    gpu = torch.cuda.get_device_name(device) if device.type == 'cuda' else None
    return {'cpu': cpu, 'logical_cores': os.cpu_count(), 'device': device.type, 'gpu': gpu,
            'torch': torch.__version__}


def compile_blocks(model: nn.Module) -> int:
    """``torch.compile`` each timm transformer ``Block`` of ``model`` in place.

    Blocks, not the whole pretrainer: its forward draws masks and augmentations and may detect R peaks in numpy,
    which would break the graph anyway, while the blocks hold nearly all the FLOPs. ``Module.compile`` keeps the
    parameter names, so checkpoints and ``state_dict`` are unchanged. Each distinct token count (the masked MAE pass,
    full-length passes) compiles once, on first use.

    Args:
        model: Any module holding timm ``Block`` s (an encoder, a pretrainer).

    Returns:
        The number of blocks compiled.
    """
    from timm.models.vision_transformer import Block

    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for block in blocks:
        block.compile()
    return len(blocks)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


_AMP_CACHE: Dict[str, Optional[torch.dtype]] = {}


def _probe_cpu_bf16(reps: int = 5) -> bool:
    """Time a small transformer block's forward + backward in fp32 and under bf16 autocast, interleaved.

    True when bf16 is at least 10% faster. A bare matmul is the wrong probe: it favoured bf16 on an AMD EPYC where a
    real seed-size MAE-MoCo step ran 1.5x slower under bf16 autocast (casts, LayerNorm, softmax and the backward all
    count), so the probe runs the same kind of work as training.
    """
    from timm.models.vision_transformer import Block

    gen = torch.Generator().manual_seed(0)
    block = Block(256, num_heads=8, mlp_ratio=2.0, qkv_bias=True)
    x = torch.randn(8, 64, 256, generator=gen)

    def step(enabled: bool) -> float:
        t0 = time.perf_counter()
        # enable_grad: callers may resolve the dtype inside no_grad code (e.g. embedding for a linear probe).
        with torch.enable_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=enabled):
            loss = block(x).float().square().mean()
            loss.backward()
        return time.perf_counter() - t0

    step(False), step(True)  # warm-up: the first bf16 call pays one-off kernel selection
    times = {False: [], True: []}
    for _ in range(reps):  # interleaved, so a busy moment hits both alike
        for enabled in (False, True):
            times[enabled].append(step(enabled))
    return min(times[True]) < 0.9 * min(times[False])


def resolve_amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """Pick the autocast dtype: ``None`` means plain fp32.

    'auto' measures rather than assumes: on CPU bf16 helps only with native bf16 matmul units (AMX/AVX512-BF16) and
    only when they outweigh autocast's casts, so a short transformer-block probe decides; on CUDA bf16 is used where
    the GPU supports it.

    Raises:
        ValueError: unknown ``amp``.
    """
    amp = (amp or 'fp32').lower()
    if amp in ('fp32', 'off', 'none', 'float32'):
        return None
    if amp in ('bf16', 'bfloat16'):
        return torch.bfloat16
    if amp != 'auto':
        raise ValueError(f"Unknown amp setting {amp!r}: use 'auto', 'bf16' or 'fp32'.")
    if device.type == 'cuda':
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if 'cpu' not in _AMP_CACHE:
        _AMP_CACHE['cpu'] = torch.bfloat16 if _probe_cpu_bf16() else None
    return _AMP_CACHE['cpu']


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype``, or a null context for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def batch_inputs(batch: Any) -> torch.Tensor:
    """The signal tensor of a batch: datasets may yield ``x`` alone or ``(x, y, ...)``."""
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        return batch['x']
    return batch


def batch_kwargs(batch: Any, device: torch.device) -> Dict[str, Any]:
    """The model's keyword arguments in a batch, moved to ``device``.

    Args:
        batch: What the DataLoader yields. A dict passes every entry but ``x`` and ``y`` (e.g. ``rr_samples`` from
            :class:`ecgvit.data.rr_dataset.WithRR`); tuples and tensors pass nothing.
        device: Where the model runs.

    Returns:
        Keyword arguments for ``model(x, **kwargs)``.
    """
    if not isinstance(batch, dict):
        return {}
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items() if k not in ('x', 'y')}


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (fixed per-epoch shuffle from ``seed + epoch``) that can start mid-epoch.

    Also used for single-process runs (``num_replicas=1``), so every run has one data order.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's share of the current epoch."""
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _scalar_parts(out: Dict[str, Any]) -> Dict[str, float]:
    parts = {}
    for k, v in out.items():
        if k == 'loss':
            continue
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            parts[k if k.startswith('loss') else f'loss_{k}'] = float(v.detach().float())
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            parts[k if k.startswith('loss') else f'loss_{k}'] = float(v)
    return parts


class _CsvLog:
    """Append-only CSV of training/validation rows; on resume rows past the checkpoint's step are dropped."""

    base = ['kind', 'step', 'epoch', 'lr', 'loss', 'val_loss', 'grad_norm', 'skipped', 'time_s']

    def __init__(self, path: Path, resume_step: Optional[int]) -> None:
        self.path = path
        self.header: Optional[List[str]] = None
        if resume_step is not None and path.is_file():
            with open(path, newline='', encoding='utf-8') as f:
                reader = csv.DictReader(f)
                self.header = list(reader.fieldnames or [])
                rows = [r for r in reader if r.get('step', '') != '' and int(float(r['step'])) <= resume_step]
            # Rewritten atomically: the rows logged after the checkpoint will be produced again.
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=self.header)
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(path, buf.getvalue())
        elif path.exists():
            path.unlink()

    def write(self, row: Dict[str, Any]) -> None:
        if self.header is None:
            parts = sorted(k for k in row if k not in self.base)
            self.header = self.base + parts
        new = not self.path.exists()
        with open(self.path, 'a', newline='', encoding='utf-8') as f:
            w = csv.DictWriter(f, fieldnames=self.header, extrasaction='ignore')
            if new:
                w.writeheader()
            w.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in row.items()})


def _tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional: not installed is the common case
        return None
    return SummaryWriter(str(log_dir))


def _gather_rng(info: DistInfo) -> List[Any]:
    """Every rank's RNG state (rank order), so a distributed resume restores each rank's own stream."""
    mine = get_rng_state()
    if not info.distributed:
        return [mine]
    mine = ({k: v.cpu() for k, v in mine[0].items()}, mine[1])
    gathered: List[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, mine)
    return gathered


def _json_rng(states: List[Any]) -> List[Any]:
    # Other ranks' torch states travel in JSON as byte lists (5 KB each); rank 0's goes to safetensors as usual.
    return [{'torch': {k: v.tolist() for k, v in t.items()}, 'meta': m} for t, m in states[1:]]


@torch.no_grad()
def _validate(model: nn.Module, loader: DataLoader, info: DistInfo, amp_dtype: Optional[torch.dtype],
              val_seed: int) -> float:
    module = _unwrap(model)
    was_training = module.training
    module.eval()
    total = torch.zeros(2, dtype=torch.float64, device=info.device)
    # A fixed seed gives every epoch the same masks/views, and fork_rng keeps the training RNG stream untouched.
    devices = [info.device] if info.device.type == 'cuda' else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(val_seed + info.rank)
        for batch in loader:
            x = batch_inputs(batch).to(info.device, non_blocking=True)
            with autocast_context(info.device, amp_dtype):
                out = module(x, **batch_kwargs(batch, info.device))
            loss = out['loss'].detach().float()
            if torch.isfinite(loss):
                total[0] += loss.double() * x.shape[0]
                total[1] += x.shape[0]
    if info.distributed:
        dist.all_reduce(total)
    module.train(was_training)
    return float(total[0] / total[1]) if total[1] > 0 else math.nan


# Method settings checkpoints did not record at first, with the behaviour they had then.
LEGACY_METHOD_SETTINGS: Dict[str, Any] = {'shared_pass': False}


def check_same_method(state: Dict[str, Any], pretrainer: Optional[Dict[str, Any]]) -> None:
    """Refuse to resume a checkpoint with method settings other than those it was trained with.

    Args:
        state: The checkpoint's JSON state (:func:`~ecgvit.train.checkpoint.read_checkpoint_state`).
        pretrainer: This run's method settings (``run_config['pretrainer']``, a pretrainer's ``config``); None when
            the run records none, which skips the check.

    Raises:
        ValueError: a setting differs, naming each one and its two values.
    """
    saved = (state.get('config') or {}).get('pretrainer')
    if pretrainer is None or saved is None:
        return
    current = json.loads(json.dumps(pretrainer, default=str))  # as the checkpoint stored it
    diffs = []
    for key in sorted(set(saved) | set(current)):
        old = saved.get(key, LEGACY_METHOD_SETTINGS.get(key))
        new = current.get(key, LEGACY_METHOD_SETTINGS.get(key))
        if key in saved and key not in current and key not in LEGACY_METHOD_SETTINGS:
            new = old  # a setting this version no longer has: nothing to compare
        if old != new:
            diffs.append(f'{key}={old!r} there, {key}={new!r} here')
    if diffs:
        shared = any(d.startswith('shared_pass') for d in diffs)
        hint = ' (ecgvit pretrain: --shared-pass / --no-shared-pass)' if shared else ''
        raise ValueError(f'Cannot resume from {state.get("path")}: its method settings differ from this run\'s: '
                         f'{"; ".join(diffs)}. Resume with the settings it was trained with{hint}, or start a new '
                         f'--output.')


def train(
        model: nn.Module,
        train_set: Dataset,
        val_set: Optional[Dataset],
        config: TrainConfig,
        run_config: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Train ``model`` (its forward returns ``{'loss': ..., ...}``) with checkpoints, logging and exact resume.

    Build the model after :func:`seed_everything` so its initialisation follows the seed too.

    Args:
        model: The module to train (on CPU; it is moved to the run's device).
        train_set: Dataset yielding ``x`` or ``(x, y)`` with ``x`` of shape (12, L).
        val_set: Dataset for the validation loss (drives the plateau schedule and the best weights); None uses the
            epoch's training loss instead.
        config: Run settings.
        run_config: Extra JSON-able settings written into ``config.json`` (model name, method, data, ...).

    Returns:
        Summary dict: steps, epochs, best_val_loss, best_epoch, skipped_steps, amp, paths.

    Raises:
        ValueError: the batch is larger than the (per-process share of the) training set, or a bad option.

    Example:
        >>> # ecgvit.train.train(create_pretrainer('mae_moco'), train_ds, val_ds, TrainConfig(epochs=1))
    """
    info = init_distributed(config.device)
    if info.device.type == 'cpu' and config.reuse_cpu_memory:
        reuse_freed_memory()
    out_dir = Path(config.output_dir)
    ckpt_dir = out_dir / 'checkpoints'
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        removed = clean_partial(ckpt_dir)
        if removed:
            _logger.info('removed %d partial checkpoint file(s) left by an interrupted run', len(removed))
    barrier()

    # ---- data: one fixed order per (seed, epoch), resumable mid-epoch
    sampler = ResumableSampler(train_set, info.world_size, info.rank, shuffle=True, seed=config.seed, drop_last=True)
    steps_per_epoch = sampler.num_samples // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f'batch_size {config.batch_size} is larger than the training set ({len(train_set)} records'
                         f'{f" over {info.world_size} processes" if info.distributed else ""}): '
                         f'use --batch-size {max(1, sampler.num_samples)} or less.')
    loader_gen = torch.Generator().manual_seed(config.seed)  # keeps DataLoader's own seed draws off the global RNG
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=True,
                        num_workers=config.num_workers, pin_memory=info.device.type == 'cuda',
                        generator=loader_gen, persistent_workers=False)
    val_loader = None
    if val_set is not None and len(val_set) > 0:
        val_sampler = DistributedSampler(val_set, info.world_size, info.rank, shuffle=False, drop_last=False)
        val_loader = DataLoader(val_set, batch_size=config.batch_size, sampler=val_sampler,
                                num_workers=config.num_workers, generator=torch.Generator().manual_seed(0))

    # ---- model, optimiser, schedule
    model.to(info.device)
    if config.compile:
        _logger.info('torch.compile: %d transformer blocks', compile_blocks(model))
    if info.distributed and info.device.type == 'cuda':
        # seed/architecture: BatchNorm in the MoCo projection head must see the global batch.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    module = model
    optimizer = create_adam([p for p in module.parameters() if p.requires_grad], config.lr, config.weight_decay)
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    schedule = create_schedule(config.schedule, optimizer, warmup_steps, steps_per_epoch * config.epochs,
                               config.plateau_factor, config.plateau_patience)

    # ---- resume
    state: Dict[str, Any] = {'epoch': 0, 'batch_in_epoch': 0, 'global_step': 0, 'optimizer_steps': 0,
                             'skipped_steps': 0, 'best_val_loss': None, 'best_epoch': None, 'amp': None}
    resume_from = None
    if config.resume:
        resume_from = latest_checkpoint(ckpt_dir) if config.resume is True or config.resume == 'auto' \
            else Path(config.resume)
        if resume_from is None:
            if info.is_main:
                _logger.info('--resume: no checkpoint in %s yet, starting fresh', ckpt_dir)
    if resume_from is not None:
        # Before any tensor is loaded: a run that changed method settings would load fine and silently learn
        # something else (e.g. the shared pass has the same parameters as the paper's passes).
        check_same_method(read_checkpoint_state(resume_from), (run_config or {}).get('pretrainer'))
        loaded = load_checkpoint(resume_from, module, optimizer, restore_rng=True)
        for group in optimizer.param_groups:  # the kernel is this run's choice, not the checkpoint's (older: unfused)
            group['fused'], group['foreach'] = optimizer.defaults.get('fused'), optimizer.defaults.get('foreach')
        saved = loaded.get('config') or {}
        if saved.get('steps_per_epoch') not in (None, steps_per_epoch) or \
                saved.get('world_size') not in (None, info.world_size):
            raise ValueError(
                f'Cannot resume from {loaded["path"]}: it was written with {saved.get("steps_per_epoch")} steps per '
                f'epoch on {saved.get("world_size")} process(es), this run has {steps_per_epoch} on '
                f'{info.world_size}. Resume with the same --batch-size, data and number of processes (or start a new '
                f'--output).')
        schedule.load_state_dict(loaded['schedule'])
        for k in state:
            state[k] = loaded.get(k, state[k])
        if info.distributed and info.rank > 0:
            ranks = loaded.get('rng_other_ranks') or []
            if len(ranks) == info.world_size - 1:
                r = ranks[info.rank - 1]
                set_rng_state({k: torch.tensor(v, dtype=torch.uint8) for k, v in r['torch'].items()}, r['meta'])
        if info.is_main:
            _logger.info('resumed from %s at step %d (epoch %d, batch %d)', loaded['path'], state['global_step'],
                         state['epoch'], state['batch_in_epoch'])
    else:
        seed_everything(config.seed + info.rank)

    # The dtype is chosen once per run and kept across resumes: a re-measured choice could differ and break exactness.
    if state['amp'] is None:
        dtype = resolve_amp_dtype(config.amp, info.device)
        state['amp'] = 'bf16' if dtype == torch.bfloat16 else 'fp32'
    amp_dtype = torch.bfloat16 if state['amp'] == 'bf16' else None

    if info.distributed:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[info.local_rank] if info.device.type == 'cuda' else None,
            find_unused_parameters=config.find_unused_parameters,
            # The MoCo queue is a buffer kept identical by gathering keys across ranks; re-broadcasting it every
            # step would cost a queue-sized copy for nothing.
            broadcast_buffers=False)

    # ---- logging
    resolved = {'train': asdict(config), 'world_size': info.world_size, 'steps_per_epoch': steps_per_epoch,
                'warmup_steps': warmup_steps, 'amp_resolved': state['amp'], 'machine': machine_info(info.device),
                **(run_config or {})}
    csv_log = tb = None
    if info.is_main:
        atomic_write_text(out_dir / 'config.json', json.dumps(resolved, indent=2, default=str))
        csv_log = _CsvLog(out_dir / 'metrics.csv', state['global_step'] if resume_from is not None else None)
        tb = _tensorboard(out_dir / 'tensorboard')
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None

    def checkpoint_state() -> Dict[str, Any]:
        return dict(state, schedule=schedule.state_dict(), config=resolved)

    def save(step: int) -> None:
        rng = _gather_rng(info)  # collective: every rank calls it
        if info.is_main:
            st = checkpoint_state()
            st['rng_other_ranks'] = _json_rng(rng)
            save_checkpoint(ckpt_dir, step, module, optimizer, st, keep_last=config.keep_last)
        barrier()

    params = [p for p in module.parameters() if p.requires_grad]
    start = time.time()
    last_saved = state['global_step'] if resume_from is not None else -1
    model.train()
    while state['epoch'] < config.epochs:
        epoch = state['epoch']
        sampler.set_epoch(epoch)
        sampler.set_start(state['batch_in_epoch'] * config.batch_size)
        bar = None
        if tqdm is not None and info.is_main and config.progress:
            bar = tqdm(total=steps_per_epoch, initial=state['batch_in_epoch'], desc=f'epoch {epoch}',
                       leave=False, dynamic_ncols=True)
        acc_loss, acc_n, acc_norm, acc_parts = 0.0, 0, 0.0, {}
        epoch_loss, epoch_n = 0.0, 0
        for batch in loader:
            x = batch_inputs(batch).to(info.device, non_blocking=True)
            # A batch with NaN/inf input is dropped before the forward pass, so it cannot reach the MoCo queue.
            bad = all_reduce_any(not bool(torch.isfinite(x).all()), info.device)
            loss_value, norm_value, parts = math.nan, math.nan, {}
            if not bad:
                with autocast_context(info.device, amp_dtype):
                    out = model(x, **batch_kwargs(batch, info.device))
                loss = out['loss'].float()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # every rank runs backward, so DDP's all-reduce never waits on a skipping rank
                if config.clip_grad:
                    norm = torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
                else:
                    norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
                loss_value, norm_value = float(loss.detach()), float(norm)
                parts = _scalar_parts(out)
                bad = all_reduce_any(not (math.isfinite(loss_value) and math.isfinite(norm_value)), info.device)
                if not bad:
                    optimizer.step()
                    state['optimizer_steps'] += 1
                optimizer.zero_grad(set_to_none=True)
            if bad:
                state['skipped_steps'] += 1
                if info.is_main:
                    _logger.warning('step %d: non-finite input, loss or gradient (loss=%s); step skipped',
                                    state['global_step'] + 1, loss_value)
            schedule.step()
            state['global_step'] += 1
            state['batch_in_epoch'] += 1
            if not bad:
                acc_loss += loss_value
                acc_norm += norm_value
                acc_n += 1
                epoch_loss += loss_value
                epoch_n += 1
                for k, v in parts.items():
                    acc_parts[k] = acc_parts.get(k, 0.0) + v
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f'{loss_value:.4f}', lr=f'{schedule.get_last_lr()[0]:.2e}')
            step = state['global_step']
            if info.is_main and (step % max(1, config.log_every) == 0 or state['batch_in_epoch'] == steps_per_epoch):
                row = {'kind': 'train', 'step': step, 'epoch': epoch, 'lr': schedule.get_last_lr()[0],
                       'loss': acc_loss / acc_n if acc_n else math.nan,
                       'grad_norm': acc_norm / acc_n if acc_n else math.nan, 'skipped': state['skipped_steps'],
                       'time_s': time.time() - start}
                row.update({k: v / acc_n for k, v in acc_parts.items()} if acc_n else {})
                csv_log.write(row)
                if tb is not None:
                    tb.add_scalar('train/loss', row['loss'], step)
                    tb.add_scalar('train/lr', row['lr'], step)
                acc_loss, acc_n, acc_norm, acc_parts = 0.0, 0, 0.0, {}
            if state['batch_in_epoch'] >= steps_per_epoch:
                break
            if config.save_every and step % config.save_every == 0:
                save(step)
                last_saved = step
        if bar is not None:
            bar.close()

        # ---- end of epoch: validation, schedule, best weights; then the epoch-boundary checkpoint if one is due
        if val_loader is not None:
            val_loss = _validate(model, val_loader, info, amp_dtype, config.val_seed)
        else:
            val_loss = epoch_loss / epoch_n if epoch_n else math.nan
        schedule.epoch_end(val_loss)
        state['epoch'] += 1
        state['batch_in_epoch'] = 0
        improved = math.isfinite(val_loss) and (state['best_val_loss'] is None or val_loss < state['best_val_loss'])
        if improved:
            state['best_val_loss'], state['best_epoch'] = val_loss, epoch
        if info.is_main:
            if improved:
                save_best(ckpt_dir, module, {'step': state['global_step'], 'epoch': epoch, 'val_loss': val_loss})
            csv_log.write({'kind': 'val', 'step': state['global_step'], 'epoch': epoch,
                           'lr': schedule.get_last_lr()[0], 'val_loss': val_loss, 'skipped': state['skipped_steps'],
                           'time_s': time.time() - start})
            if tb is not None:
                tb.add_scalar('val/loss', val_loss, state['global_step'])
            if config.progress:
                _logger.info('epoch %d: train loss %.4f, val loss %.4f', epoch,
                             epoch_loss / epoch_n if epoch_n else math.nan, val_loss)
        step = state['global_step']
        if config.save_every and step % config.save_every == 0 and state['epoch'] < config.epochs:
            save(step)
            last_saved = step
    if last_saved != state['global_step']:
        save(state['global_step'])
    if info.is_main and not (ckpt_dir / 'best.safetensors').is_file():
        # No finite validation loss ever: the last weights are the best there are.
        save_best(ckpt_dir, module, {'step': state['global_step'], 'epoch': state['epoch'] - 1, 'val_loss': None})
    summary = {'steps': state['global_step'], 'optimizer_steps': state['optimizer_steps'],
               'epochs': state['epoch'], 'steps_per_epoch': steps_per_epoch,
               'skipped_steps': state['skipped_steps'], 'best_val_loss': state['best_val_loss'],
               'best_epoch': state['best_epoch'], 'amp': state['amp'], 'world_size': info.world_size,
               'time_s': time.time() - start, 'output_dir': str(out_dir),
               'best_checkpoint': str(ckpt_dir / 'best.safetensors'),
               'last_checkpoint': str(latest_checkpoint(ckpt_dir)) if info.is_main else None}
    if info.is_main:
        atomic_write_text(out_dir / 'summary.json', json.dumps(summary, indent=2))
        if tb is not None:
            tb.close()
    barrier()
    return summary


def load_best_into(model: nn.Module, output_dir: os.PathLike) -> Dict[str, Any]:
    """Load a run's best weights into ``model``; returns their info (step, epoch, val_loss)."""
    _, info = load_best(Path(output_dir) / 'checkpoints', model)
    return info
