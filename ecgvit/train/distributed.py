"""torch.distributed helpers for runs launched with ``torchrun`` (DDP; gloo on CPU, nccl on GPU).

A plain ``python`` launch is a world of one: every helper then degrades to a no-op, so the training loop has a
single code path whether or not it runs under ``torchrun --nproc_per_node N``.
"""
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

__all__ = ['DistInfo', 'init_distributed', 'cleanup_distributed', 'is_main_process', 'barrier', 'all_reduce_any']


@dataclass
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank (0 writes checkpoints and logs).
        world_size: Number of processes.
        local_rank: Rank on this node (picks the GPU).
        device: The device this process trains on.
        backend: 'gloo', 'nccl' or '' when not distributed.
    """
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')
    backend: str = ''

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes the run's files."""
        return self.rank == 0


def init_distributed(device: Optional[str] = None) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Args:
        device: 'cpu', 'cuda' or None (CUDA when available). Under torchrun each rank takes GPU ``LOCAL_RANK``.

    Returns:
        This process's :class:`DistInfo`.

    Raises:
        ValueError: ``device='cuda'`` was asked for on a machine without CUDA.
    """
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f'device={device!r} but CUDA is not available here; pass --device cpu.')
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if world_size <= 1:
        dev = torch.device('cuda', torch.cuda.current_device()) if device == 'cuda' else torch.device(device)
        return DistInfo(0, 1, 0, dev, '')
    is_cuda = device.startswith('cuda')
    # nccl only speaks CUDA tensors; gloo is the CPU backend (and what the tests use).
    backend = 'nccl' if is_cuda else 'gloo'
    if is_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device('cuda', local_rank)
    else:
        dev = torch.device('cpu')
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, dev, backend)


def cleanup_distributed() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """True on rank 0, and always outside a distributed run."""
    return not _active() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op outside a distributed run)."""
    if _active():
        dist.barrier()


def all_reduce_any(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank: ranks must agree on skipping a step or they fall out of sync.

    Args:
        flag: This rank's flag.
        device: The device of the reduction's tensor (the process group's: CUDA for NCCL).
    """
    if not _active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
