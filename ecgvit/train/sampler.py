"""The training data order: one shuffle per ``(seed, epoch)``, resumable mid-epoch, the same with or without DDP."""
from typing import Iterator

from torch.utils.data import Dataset, DistributedSampler

__all__ = ['ResumableSampler']


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (fixed per-epoch shuffle from ``seed + epoch``) that can start mid-epoch.

    Also used for single-process runs (``num_replicas=1``), so every run has one data order.

    Args:
        dataset: The training set (only its length is read).
        num_replicas: Processes sharing the epoch (the DDP world size; 1 without DDP).
        rank: This process's index among them.
        shuffle: Shuffle each epoch with ``seed + epoch`` (``set_epoch``); False keeps the dataset's order.
        seed: Seed of the shuffles; the same on every rank.
        drop_last: Drop the tail that does not divide evenly among the ranks (False pads it with repeats instead).
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's share of the current epoch.

        Args:
            start: Indices of this rank's share already consumed (a resume mid-epoch); 0 starts the epoch afresh.
        """
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)
