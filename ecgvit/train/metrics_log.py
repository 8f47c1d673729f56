"""A run's metrics: ``metrics.csv`` (always) and TensorBoard (when installed), written by rank 0 only."""
import csv
import io
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from .checkpoint import atomic_write_text

__all__ = ['MetricsLog', 'scalar_parts']


def scalar_parts(out: Dict[str, Any]) -> Dict[str, float]:
    """The scalar entries of a model's output dict besides ``loss``, named ``loss_<part>`` for the log.

    Args:
        out: The model's output dict (one-element tensors and plain numbers are kept; other entries are skipped).
    """
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


class MetricsLog:
    """``out_dir/metrics.csv`` plus ``out_dir/tensorboard`` when TensorBoard is installed.

    Args:
        out_dir: The run folder.
        resume_step: The step a resumed run continues from (CSV rows after it are dropped: they will be logged
            again); None for a fresh run, which starts a new CSV.
    """

    def __init__(self, out_dir: Path, resume_step: Optional[int]) -> None:
        self.csv = _CsvLog(out_dir / 'metrics.csv', resume_step)
        self.tb = _tensorboard(out_dir / 'tensorboard')

    def train_row(self, row: Dict[str, Any]) -> None:
        """Log a training step.

        Args:
            row: ``step``, ``loss``, ``lr`` and any other columns; TensorBoard gets the loss and the lr.
        """
        self.csv.write(dict(row, kind='train'))
        if self.tb is not None:
            self.tb.add_scalar('train/loss', row['loss'], row['step'])
            self.tb.add_scalar('train/lr', row['lr'], row['step'])

    def val_row(self, row: Dict[str, Any]) -> None:
        """Log a validation.

        Args:
            row: ``step``, ``val_loss`` and any other columns; TensorBoard gets the loss.
        """
        self.csv.write(dict(row, kind='val'))
        if self.tb is not None:
            self.tb.add_scalar('val/loss', row['val_loss'], row['step'])

    def close(self) -> None:
        """Close the TensorBoard writer (the CSV is written row by row)."""
        if self.tb is not None:
            self.tb.close()
