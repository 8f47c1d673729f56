"""The pretraining loop: one code path for a laptop CPU, one GPU, or ``torchrun --nproc_per_node N``.

The module being trained is anything whose ``forward(batch)`` returns a dict with a scalar ``'loss'`` (and optionally
more scalar parts, which are logged): the pretraining wrappers of :mod:`ecgvit.pretrain`, or a supervised model
wrapped to return its loss. Settings and the seed recipe: :class:`~ecgvit.train.config.TrainConfig`.

Exact resume: the data order of epoch ``e`` is a pure function of ``(seed, e)`` and the position inside the epoch is
saved, so a resumed run sees the same batches; the RNG states, optimiser, schedule and every buffer of the module
(the MoCo queue and pointer included) come back from the checkpoint.

:func:`train` reads top to bottom as the run's steps; each helper below does one of them.
"""
import dataclasses
import inspect
import json
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ecgvit.errors import CheckpointError, RunExistsError, RunStopped, TrainingDivergedError
from ecgvit.files import atomic_copy

from .batch import batch_inputs, batch_kwargs
from .checkpoint import (
    BEST_NAME,
    atomic_write_text,
    best_info,
    clean_partial,
    latest_checkpoint,
    list_checkpoints,
    load_best,
    read_checkpoint_state,
    save_best,
    save_checkpoint,
)
from .compat import check_resume_method, check_same_method
from .config import TrainConfig
from .cpu_memory import reuse_freed_memory
from .distributed import DistInfo, all_reduce_any, barrier, init_distributed
from .metrics_log import MetricsLog, scalar_parts
from .optim import create_adam
from .resume import checkpoint_to_resume, gather_rng, json_rng, resume_or_seed, run_warmup_epochs
from .run_lock import RunLock
from .runtime import (
    autocast_context,
    compile_blocks,
    cpu_has_native_bf16,
    machine_info,
    resolve_amp_dtype,
    seed_everything,
)
from .sampler import ResumableSampler
from .schedules import create_schedule
from .stop import StopRequests
from .validate import validate_train_config

# Re-exported: callers and tests import these from the loop module.
__all__ = ['TrainConfig', 'train', 'seed_everything', 'resolve_amp_dtype', 'ResumableSampler', 'autocast_context',
           'batch_inputs', 'batch_kwargs', 'compile_blocks', 'load_best_into', 'check_same_method', 'machine_info']

_logger = logging.getLogger(__name__)


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
        ValueError: the batch is larger than the (per-process share of the) training set, a bad option, or a
            checkpoint to resume that does not fit this run.
        RunExistsError: a fresh run (``resume=False``) into a folder that holds a run.
        RunInUseError: another live process is training into ``config.output_dir``.
        RunStopped: SIGTERM or Ctrl-C (main thread only) asked the run to stop; it did so at the next step
            boundary, after a checkpoint that ``resume=True`` continues exactly. A second signal stops at once.

    Example:
        >>> # ecgvit.train.train(create_pretrainer('mae_moco'), train_ds, val_ds, TrainConfig(epochs=1))
    """
    validate_train_config(config)
    info = _start_process(config)
    if not config.resume:  # every rank: each must stop, not wait at a barrier; read-only, so before the lock
        _refuse_existing_run(Path(config.output_dir))
    # Rank 0 writes the folder, so it holds the lock; it is taken before the partial-file sweep, which would
    # otherwise delete the files a live run is writing.
    with RunLock(Path(config.output_dir), enabled=info.is_main):
        return _train(model, train_set, val_set, config, run_config, info)


def _train(model: nn.Module, train_set: Dataset, val_set: Optional[Dataset], config: TrainConfig,
           run_config: Optional[Dict[str, Any]], info: DistInfo) -> Dict[str, Any]:
    out_dir, ckpt_dir = _prepare_output(Path(config.output_dir), info)
    resume_from = checkpoint_to_resume(config, ckpt_dir, info)
    saved = read_checkpoint_state(resume_from) if resume_from is not None else None
    if saved is not None:
        # The step folder it resolved to: given a folder of checkpoints, loading it again would re-resolve (and
        # repeat any warning about a damaged newer checkpoint).
        resume_from = Path(saved['path'])
        # Before any tensor is loaded: a run that changed method settings would load fine and silently learn
        # something else (e.g. the shared pass has the same parameters as the paper's passes).
        check_resume_method(saved, run_config)
        check_same_method(saved, (run_config or {}).get('pretrainer'))
    # A checkpoint of another run continues into this folder, which must end with its own best weights and checkpoint.
    foreign = resume_from is not None and resume_from.parent.resolve() != ckpt_dir.resolve()
    if foreign and info.is_main:
        _carry_best(resume_from.parent, ckpt_dir, saved)
    config = dataclasses.replace(config, warmup_epochs=run_warmup_epochs(config, saved))
    data = _make_loaders(train_set, val_set, config, info)
    module, optimizer, schedule = _make_optimisation(model, config, data.steps_per_epoch, info)
    state = resume_or_seed(resume_from, module, optimizer, schedule, data.steps_per_epoch, config, info)
    if resume_from is not None and state['epoch'] >= config.epochs and info.is_main:
        _logger.info('the checkpoint has trained %d epochs, --epochs (epochs) asks for %d: nothing left to train '
                     '(a larger --epochs continues it)', state['epoch'], config.epochs)
    amp_dtype = _run_amp(state, config, info)
    model = _wrap_ddp(module, config, info)
    resolved = {'train': dataclasses.asdict(config), 'world_size': info.world_size,
                'steps_per_epoch': data.steps_per_epoch, 'warmup_steps': schedule.warmup_steps,
                'amp_resolved': state['amp'], 'machine': machine_info(info.device), **(run_config or {})}
    log = None
    if info.is_main:
        atomic_write_text(out_dir / 'config.json', json.dumps(resolved, indent=2, default=str))
        log = MetricsLog(out_dir, state['global_step'] if resume_from is not None else None)
    with StopRequests() as stop:
        run = _Run(model, module, optimizer, schedule, data, config, info, state, amp_dtype, resolved, ckpt_dir, log,
                   last_saved=state['global_step'] if resume_from is not None and not foreign else -1, stop=stop)
        while state['epoch'] < config.epochs:
            epoch_loss = run.train_epoch()
            run.end_epoch(epoch_loss)
            if state['epoch'] < config.epochs:  # after the last epoch the run is done: it finishes as usual
                run.check_stop()
    summary = run.finish(out_dir)
    _check_trained(module, summary, config)
    return summary


def _carry_best(source_dir: Path, ckpt_dir: Path, saved: Dict[str, Any]) -> None:
    """Copy the best weights of the run a checkpoint came from, when they are the ones that checkpoint's state counts
    as best (not weights of a later epoch than it), into this run's checkpoint folder that has none yet."""
    source, target = source_dir / BEST_NAME, ckpt_dir / BEST_NAME
    if target.exists() or not source.is_file():
        return
    try:
        best = best_info(source)
    except CheckpointError:  # a damaged file: this run's own validation writes new best weights
        best = {}
    if best.get('epoch') is not None and best.get('epoch') == saved.get('best_epoch') and \
            (best.get('step') or 0) <= saved.get('global_step', 0):
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_copy(source, target)
        _logger.info('best weights so far (epoch %s) copied from %s', best['epoch'], source)
    else:
        _logger.warning('%s holds best weights of another epoch than the resumed checkpoint counts as best; this '
                        'run\'s best weights come from its own epochs', source)


def _check_trained(module: nn.Module, summary: Dict[str, Any], config: TrainConfig) -> None:
    """A run that only skipped steps, or ended with non-finite weights, must not look like a success (exit 0)."""
    bad = [n for n, t in module.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    steps, skipped = summary['steps'], summary['skipped_steps']
    if bad or (steps and skipped * 2 > steps):
        what = (f'{len(bad)} tensors hold non-finite values (e.g. {bad[0]})' if bad else
                f'{skipped} of {steps} steps were skipped as non-finite')
        raise TrainingDivergedError(
            f'Training diverged: {what}. Lower the learning rate (lr={config.lr:g}), clip gradients (clip_grad, '
            f'--clip-grad), or check the inputs for values that overflow. The checkpoints and metrics.csv in '
            f'{summary["output_dir"]} are kept for inspection; do not use its weights.')


def load_best_into(model: nn.Module, output_dir: os.PathLike) -> Dict[str, Any]:
    """Load a run's best weights into ``model``, the module :func:`train` trained (for pretraining: the pretrainer,
    not its encoder; ``ecgvit.hub.load_encoder(output_dir)`` gives the encoder alone).

    Args:
        model: The module the run trained.
        output_dir: The run folder (its ``checkpoints/best.safetensors`` is read).

    Returns:
        The weights' info (step, epoch, val_loss).

    Raises:
        CheckpointError: no best weights yet, a damaged file, or weights that do not fit ``model``.
    """
    _, info = load_best(Path(output_dir) / 'checkpoints', model)
    return info


# ---------------------------------------------------------------------------------------------------------------------
# Setting up a run


def _start_process(config: TrainConfig) -> DistInfo:
    info = init_distributed(config.device)
    if info.device.type == 'cpu' and config.reuse_cpu_memory:
        reuse_freed_memory()
    return info


def existing_run_files(out_dir: os.PathLike) -> List[Path]:
    """The files of a training run in ``out_dir`` (metrics, summary, best weights, checkpoints); empty: none there.

    Args:
        out_dir: A run's output folder (it need not exist).
    """
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / 'checkpoints'
    found = [p for p in (out_dir / 'metrics.csv', out_dir / 'summary.json', ckpt_dir / BEST_NAME) if p.exists()]
    return found + (list_checkpoints(ckpt_dir) if ckpt_dir.is_dir() else [])


def _refuse_existing_run(out_dir: Path) -> None:
    """A fresh start must not write over a run already in ``out_dir`` (its metrics, best weights, checkpoints)."""
    found = existing_run_files(out_dir)
    if found:
        raise RunExistsError(f'{out_dir} already holds a training run ({", ".join(p.name for p in found[:4])}'
                             f'{", ..." if len(found) > 4 else ""}); starting a new one there would overwrite it. '
                             f'Resume it (resume=True, ecgvit pretrain --resume), or write the new run to another '
                             f'output folder. Nothing was changed.')


def _prepare_output(out_dir: Path, info: DistInfo) -> Tuple[Path, Path]:
    """Create the run folder and sweep partial checkpoint files an interrupted run left (rank 0; others wait)."""
    ckpt_dir = out_dir / 'checkpoints'
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        removed = clean_partial(ckpt_dir)
        if removed:
            _logger.info('removed %d partial checkpoint file(s) left by an interrupted run', len(removed))
    barrier()
    return out_dir, ckpt_dir


@dataclass
class _Data:
    loader: DataLoader
    sampler: ResumableSampler
    val_loader: Optional[DataLoader]
    steps_per_epoch: int


def _make_loaders(train_set: Dataset, val_set: Optional[Dataset], config: TrainConfig, info: DistInfo) -> _Data:
    """One fixed data order per (seed, epoch), resumable mid-epoch; validation in a fixed order."""
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
    return _Data(loader, sampler, val_loader, steps_per_epoch)


def _make_optimisation(model: nn.Module, config: TrainConfig, steps_per_epoch: int, info: DistInfo):
    """The model on its device (compiled, SyncBatchNorm under DDP on GPU), Adam and the warm-up schedule."""
    model.to(info.device)
    if config.compile:
        _logger.info('torch.compile: %d transformer blocks', compile_blocks(model))
    if info.distributed and info.device.type == 'cuda':
        # seed/architecture: BatchNorm in the MoCo projection head must see the global batch.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = create_adam([p for p in model.parameters() if p.requires_grad], config.lr, config.weight_decay)
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    schedule = create_schedule(config.schedule, optimizer, warmup_steps, steps_per_epoch * config.epochs,
                               config.plateau_factor, config.plateau_patience)
    return model, optimizer, schedule


def _run_amp(state: Dict[str, Any], config: TrainConfig, info: DistInfo) -> Optional[torch.dtype]:
    # The dtype is chosen once per run and kept across resumes: a re-measured choice could differ and break exactness.
    resumed = state['amp'] is not None
    if not resumed:
        dtype = resolve_amp_dtype(config.amp, info.device)
        state['amp'] = 'bf16' if dtype == torch.bfloat16 else 'fp32'
    # bf16 kept from a resumed run, or asked for by name ('auto' measures, and picks fp32 where bf16 is emulated).
    chosen = resumed or str(config.amp).lower() in ('bf16', 'bfloat16')
    if state['amp'] == 'bf16' and chosen and info.device.type == 'cpu' and not cpu_has_native_bf16():
        _logger.warning(
            'This run started in bf16 and continues in bf16 (a run keeps its dtype, so that it repeats exactly), but '
            'this CPU has no bf16 matrix units (avx512_bf16 / AMX): its steps may be 10-20x slower than in fp32. '
            'Continue it on a CPU that has them, or start a new run here (fp32).' if resumed else
            'amp=bf16 on a CPU without bf16 matrix units (avx512_bf16 / AMX): its steps may be 10-20x slower than in '
            'fp32. Use --amp auto or fp32 here.')
    return torch.bfloat16 if state['amp'] == 'bf16' else None


def _wrap_ddp(module: nn.Module, config: TrainConfig, info: DistInfo) -> nn.Module:
    if not info.distributed:
        return module
    # The MoCo queue is a buffer kept identical by gathering keys across ranks; re-broadcasting it every step would
    # cost a queue-sized copy for nothing. torch 2.14 renamed the switch (the old name warns on every rank).
    no_sync = {'forward_sync_buffers': False} if 'forward_sync_buffers' in inspect.signature(
        nn.parallel.DistributedDataParallel.__init__).parameters else {'broadcast_buffers': False}
    find_unused = config.find_unused_parameters
    if find_unused is None:  # a module that cannot say is assumed to skip some (the safe setting)
        find_unused = bool(getattr(module, 'skips_parameters', True))
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[info.local_rank] if info.device.type == 'cuda' else None,
        find_unused_parameters=find_unused, **no_sync)


# ---------------------------------------------------------------------------------------------------------------------
# Running it


class _Run:
    """A run under way: its epochs, steps, validation, checkpoints and log rows."""

    def __init__(self, model: nn.Module, module: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
                 data: _Data, config: TrainConfig, info: DistInfo, state: Dict[str, Any],
                 amp_dtype: Optional[torch.dtype], resolved: Dict[str, Any], ckpt_dir: Path,
                 log: Optional[MetricsLog], last_saved: int, stop: Optional[StopRequests] = None) -> None:
        self.model, self.module, self.optimizer, self.schedule = model, module, optimizer, schedule
        self.data, self.config, self.info, self.state = data, config, info, state
        self.amp_dtype, self.resolved, self.ckpt_dir, self.log = amp_dtype, resolved, ckpt_dir, log
        self.last_saved, self.stop = last_saved, stop
        self.params = [p for p in module.parameters() if p.requires_grad]
        # time_s in the log and the summary counts the whole run, resumed segments included (up to each one's last
        # checkpoint: work after it is redone, not counted twice).
        self.start = time.time() - float(state.get('elapsed_s') or 0.0)
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            tqdm = None
        self.tqdm = tqdm
        model.train()

    # -- one epoch of steps

    def train_epoch(self) -> float:
        """Run the rest of the current epoch; returns its mean training loss."""
        state, config = self.state, self.config
        steps_per_epoch = self.data.steps_per_epoch
        epoch = state['epoch']
        self.data.sampler.set_epoch(epoch)
        self.data.sampler.set_start(state['batch_in_epoch'] * config.batch_size)
        bar = None
        if self.tqdm is not None and self.info.is_main and config.progress:
            bar = self.tqdm(total=steps_per_epoch, initial=state['batch_in_epoch'], desc=f'epoch {epoch}',
                            leave=False, dynamic_ncols=True)
        acc = _Mean()  # since the last log row
        epoch_mean = _Mean()
        for batch in self.data.loader:
            loss_value, norm_value, parts, bad = self._step(batch)
            self.schedule.step()
            state['global_step'] += 1
            state['batch_in_epoch'] += 1
            if not bad:
                acc.add(loss_value, norm_value, parts)
                epoch_mean.add(loss_value, norm_value, {})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f'{loss_value:.4f}', lr=f'{self.schedule.get_last_lr()[0]:.2e}')
            step = state['global_step']
            if self.info.is_main and (step % max(1, config.log_every) == 0 or
                                      state['batch_in_epoch'] == steps_per_epoch):
                self.log.train_row({'step': step, 'epoch': epoch, 'lr': self.schedule.get_last_lr()[0],
                                    'grad_norm': acc.norm(), 'skipped': state['skipped_steps'],
                                    'time_s': time.time() - self.start, **acc.parts(), 'loss': acc.loss()})
                acc = _Mean()
            if state['batch_in_epoch'] >= steps_per_epoch:
                break  # a stop asked for now waits for the epoch's validation and best weights
            if config.save_every and step % config.save_every == 0:
                self.save(step)
            self.check_stop()
        if bar is not None:
            bar.close()
        return epoch_mean.loss()

    def _step(self, batch: Any) -> Tuple[float, float, Dict[str, float], bool]:
        """One optimiser step, skipped on every rank when any rank sees a non-finite input, loss or gradient."""
        info, state = self.info, self.state
        x = batch_inputs(batch).to(info.device, non_blocking=True)
        # A batch with NaN/inf input is dropped before the forward pass, so it cannot reach the MoCo queue.
        bad = all_reduce_any(not bool(torch.isfinite(x).all()), info.device)
        loss_value, norm_value, parts = math.nan, math.nan, {}
        if not bad:
            with autocast_context(info.device, self.amp_dtype):
                out = self.model(x, **batch_kwargs(batch, info.device))
            loss = out['loss'].float()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # every rank runs backward, so DDP's all-reduce never waits on a skipping rank
            if self.config.clip_grad:
                norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_grad)
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
            loss_value, norm_value = float(loss.detach()), float(norm)
            parts = scalar_parts(out)
            bad = all_reduce_any(not (math.isfinite(loss_value) and math.isfinite(norm_value)), info.device)
            if not bad:
                self.optimizer.step()
                state['optimizer_steps'] += 1
            self.optimizer.zero_grad(set_to_none=True)
        if bad:
            state['skipped_steps'] += 1
            if info.is_main:
                _logger.warning('step %d: non-finite input, loss or gradient (loss=%s); step skipped',
                                state['global_step'] + 1, loss_value)
        return loss_value, norm_value, parts, bad

    # -- the end of an epoch

    def end_epoch(self, epoch_loss: float) -> None:
        """Validation, the schedule's epoch step, best weights; then the epoch-boundary checkpoint if one is due."""
        state, config, info = self.state, self.config, self.info
        epoch = state['epoch']
        if self.data.val_loader is not None:
            val_loss = _validate(self.model, self.data.val_loader, info, self.amp_dtype, config.val_seed)
        else:
            val_loss = epoch_loss
        self.schedule.epoch_end(val_loss)
        state['epoch'] += 1
        state['batch_in_epoch'] = 0
        improved = math.isfinite(val_loss) and (state['best_val_loss'] is None or val_loss < state['best_val_loss'])
        if improved:
            state['best_val_loss'], state['best_epoch'] = val_loss, epoch
        if info.is_main:
            if improved:
                save_best(self.ckpt_dir, self.module, {'step': state['global_step'], 'epoch': epoch,
                                                       'val_loss': val_loss})
            self.log.val_row({'step': state['global_step'], 'epoch': epoch, 'lr': self.schedule.get_last_lr()[0],
                              'val_loss': val_loss, 'skipped': state['skipped_steps'],
                              'time_s': time.time() - self.start})
            if config.progress:
                _logger.info('epoch %d: train loss %.4f, val loss %.4f', epoch, epoch_loss, val_loss)
        step = state['global_step']
        due = ((config.save_every and step % config.save_every == 0) or
               (config.save_every_epochs and state['epoch'] % config.save_every_epochs == 0))
        if due and state['epoch'] < config.epochs:
            self.save(step)

    def check_stop(self) -> None:
        """End the run here if a stop was asked for (SIGTERM, Ctrl-C): a checkpoint of this step, then
        :class:`RunStopped`. Every rank stops at the same step, whichever received the signal."""
        if self.stop is None or not all_reduce_any(self.stop.signum is not None, self.info.device):
            return
        step = self.state['global_step']
        if self.last_saved != step:
            self.save(step)
        raise RunStopped(self.stop.signum or signal.SIGTERM, step, str(self.ckpt_dir))

    def save(self, step: int) -> None:
        """A resumable checkpoint (collective: every rank calls it, rank 0 writes)."""
        rng = gather_rng(self.info)
        self.state['elapsed_s'] = time.time() - self.start
        if self.info.is_main:
            st = dict(self.state, schedule=self.schedule.state_dict(), config=self.resolved)
            st['rng_other_ranks'] = json_rng(rng)
            save_checkpoint(self.ckpt_dir, step, self.module, self.optimizer, st, keep_last=self.config.keep_last)
        barrier()
        self.last_saved = step

    def finish(self, out_dir: Path) -> Dict[str, Any]:
        """The final checkpoint, best weights if validation never gave a finite loss, and summary.json."""
        state, info, ckpt_dir = self.state, self.info, self.ckpt_dir
        if self.last_saved != state['global_step']:
            self.save(state['global_step'])
        if info.is_main and not (ckpt_dir / 'best.safetensors').is_file():
            # No finite validation loss ever: the last weights are the best there are.
            save_best(ckpt_dir, self.module, {'step': state['global_step'], 'epoch': state['epoch'] - 1,
                                              'val_loss': None})
        summary = {'steps': state['global_step'], 'optimizer_steps': state['optimizer_steps'],
                   'epochs': state['epoch'], 'steps_per_epoch': self.data.steps_per_epoch,
                   'skipped_steps': state['skipped_steps'], 'best_val_loss': state['best_val_loss'],
                   'best_epoch': state['best_epoch'], 'amp': state['amp'], 'world_size': info.world_size,
                   'time_s': time.time() - self.start, 'output_dir': str(out_dir),
                   'best_checkpoint': str(ckpt_dir / 'best.safetensors'),
                   'last_checkpoint': str(latest_checkpoint(ckpt_dir)) if info.is_main else None}
        if info.is_main:
            atomic_write_text(out_dir / 'summary.json', json.dumps(summary, indent=2))
            self.log.close()
        barrier()
        return summary


class _Mean:
    """Running means of the loss, gradient norm and loss parts over the steps that were not skipped."""

    def __init__(self) -> None:
        self.n, self.loss_sum, self.norm_sum, self.part_sums = 0, 0.0, 0.0, {}

    def add(self, loss: float, norm: float, parts: Dict[str, float]) -> None:
        self.n += 1
        self.loss_sum += loss
        self.norm_sum += norm
        for k, v in parts.items():
            self.part_sums[k] = self.part_sums.get(k, 0.0) + v

    def loss(self) -> float:
        return self.loss_sum / self.n if self.n else math.nan

    def norm(self) -> float:
        return self.norm_sum / self.n if self.n else math.nan

    def parts(self) -> Dict[str, float]:
        return {k: v / self.n for k, v in self.part_sums.items()} if self.n else {}


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


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
