"""Momentum contrast (MoCo v1/v2 style) on the encoder's [CLS] token, as the seed's MAE-MoCo contrastive branch.

Query: an augmented view -> shared encoder (with [CLS], no masking) -> [CLS] -> projection head of three
Linear + BatchNorm1d blocks with ReLU between (seed: hidden 128, output 128). Key: a second, independent augmentation
draw -> momentum encoder + momentum head (EMA of the query side, seed: m = 0.99, no gradient). Keys are L2-normalised
and pushed into a FIFO queue of negatives (seed: 65,536), and the loss is InfoNCE with temperature 0.2 and the positive
at index 0.

The structure follows facebookresearch/moco: ``_momentum_update_key_encoder`` under ``no_grad``,
``_dequeue_and_enqueue``, ``contrastive_loss``, ``_build_mlp`` and ``concat_all_gather``. Under torch.distributed the
keys are all-gathered before they are enqueued, and ``sync_bn=True`` makes the heads' BatchNorm a SyncBatchNorm; a
single process needs no process group.

The seed's views are full records (145 tokens each), so the query pass costs four MAE encoder passes. The shared-pass
MAE-MoCo (:class:`~ecgvit.pretrain.hybrid.HybridPretrainer` with ``shared_pass=True``) instead calls
:meth:`MocoBranch.forward_from_cls` with the [CLS] output of the MAE pass as the query, and sets ``key_mask_ratio`` so
the key view is masked like the MAE input; :meth:`MocoBranch.forward` takes the seed's two full views.

A training step whose keys or loss are not finite (a finite input can overflow inside the model) enqueues nothing and
is rolled back: the momentum update and both heads' BatchNorm statistics return to their values before the step, so
the training loop's skip of that step leaves no NaN behind (:meth:`MocoBranch._commit_or_roll_back`).
"""
import copy
import math
import warnings
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ecgvit.pretrain.mae import encode_masked

SEED_QUEUE_SIZE = 65536  # the seed's MoCo queue length (keys)

__all__ = ['MocoBranch', 'concat_all_gather', 'queue_copies_per_record']


def _build_mlp(num_layers: int, in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """``num_layers`` x (Linear + BatchNorm1d), ReLU between blocks (not after the last).

    The linears have no bias: the BatchNorm right after each one would cancel it.
    """
    if num_layers < 1:
        raise ValueError(f'The projection head needs at least one layer, got num_layers={num_layers}.')
    layers = []
    for i in range(num_layers):
        d_in = in_dim if i == 0 else hidden_dim
        d_out = out_dim if i == num_layers - 1 else hidden_dim
        layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out)]
        if i < num_layers - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class MocoBranch(nn.Module):
    """MoCo around a shared query encoder: projection head, momentum encoder + head, key queue, InfoNCE.

    Args:
        encoder: The query encoder. It is deep-copied once into the momentum encoder (no shared Parameters) and
            otherwise passed to ``forward``, not owned.
        dim: Output (key) dimension (seed: 128).
        hidden_dim: Projection head hidden width (seed: 128).
        num_layers: Linear + BN blocks in the head (seed: 3).
        queue_size: Negatives kept (seed: 65,536).
        momentum: EMA momentum of the key side (seed: 0.99).
        temperature: InfoNCE temperature (seed: 0.2).
        sync_bn: Use SyncBatchNorm in both heads (only synchronises when a process group is running).
        key_mask_ratio: Fraction of the key view's patches dropped before the momentum encoder (seed: 0, the full
            record; the shared-pass hybrid uses the MAE mask ratio).
    """

    def __init__(
            self,
            encoder: nn.Module,
            dim: int = 128,
            hidden_dim: int = 128,
            num_layers: int = 3,
            queue_size: int = SEED_QUEUE_SIZE,
            momentum: float = 0.99,
            temperature: float = 0.2,
            sync_bn: bool = False,
            key_mask_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f'queue_size must be >= 1, got {queue_size} (seed: {SEED_QUEUE_SIZE}).')
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f'momentum must be in [0, 1], got {momentum} (seed: 0.99).')
        if not math.isfinite(temperature) or temperature <= 0:  # NaN would make every loss NaN
            raise ValueError(f'temperature must be > 0, got {temperature} (seed: 0.2).')
        if not 0.0 <= key_mask_ratio < 1.0:
            raise ValueError(f'key_mask_ratio must be in [0, 1), got {key_mask_ratio} (seed: 0, no masking).')
        self.key_mask_ratio = float(key_mask_ratio)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.queue_size = int(queue_size)

        self.head = _build_mlp(num_layers, encoder.embed_dim, hidden_dim, dim)
        if sync_bn:
            self.head = nn.SyncBatchNorm.convert_sync_batchnorm(self.head)
        self.momentum_encoder = copy.deepcopy(encoder)
        self.momentum_head = copy.deepcopy(self.head)
        for p in list(self.momentum_encoder.parameters()) + list(self.momentum_head.parameters()):
            p.requires_grad_(False)

        # Random unit keys to start with, as MoCo: early negatives are noise, and they are all gone after
        # queue_size / batch steps.
        self.register_buffer('queue', F.normalize(torch.randn(queue_size, dim), dim=1))  # (K, dim)
        self.register_buffer('queue_ptr', torch.zeros((), dtype=torch.long))
        # Training steps whose keys or loss were not finite and were rolled back (not saved: a count for this process).
        self.skipped_steps = 0
        self._rollback: Optional[List[torch.Tensor]] = None  # see _save_step_state

    @torch.no_grad()
    def _momentum_update_key_encoder(self, encoder: nn.Module) -> None:
        """key = m * key + (1 - m) * query, for the encoder and the head."""
        q_params = list(encoder.parameters()) + list(self.head.parameters())
        k_params = list(self.momentum_encoder.parameters()) + list(self.momentum_head.parameters())
        if len(q_params) != len(k_params):
            raise RuntimeError(f'The momentum encoder no longer matches the query encoder (parameter count '
                               f'{len(k_params)} vs {len(q_params)}); rebuild the pretrainer after changing it.')
        k_data = [k.data for k in k_params]
        torch._foreach_mul_(k_data, self.momentum)
        torch._foreach_add_(k_data, [q.detach() for q in q_params], alpha=1.0 - self.momentum)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest entries of the queue by ``keys`` ``(B, dim)`` (all ranks' keys when distributed)."""
        self._enqueue(concat_all_gather(keys))

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest entries of the queue by already gathered ``keys``."""
        batch = keys.shape[0]
        if batch >= self.queue_size:  # only the newest queue_size keys fit
            keys, batch = keys[-self.queue_size:], self.queue_size
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(batch, device=keys.device)) % self.queue_size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + batch) % self.queue_size)

    def contrastive_loss(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """InfoNCE over ``[q.k, q.queue]`` / T with the positive at index 0.

        Args:
            q: ``(B, dim)`` L2-normalised queries.
            k: ``(B, dim)`` L2-normalised keys (no gradient).
        """
        # Cross-entropy with label 0 over [l_pos, l_neg] / T, written as logsumexp - l_pos: the same value without
        # building, dividing and log-softmaxing a (B, 1 + K) copy of the logits (K = 65536 by default).
        q = q.float() / self.temperature
        l_pos = (q * k.float()).sum(dim=1)  # (B,)
        l_neg = q @ self.queue.clone().detach().float().t()  # (B, K); clone: the queue changes before backward
        return (torch.logaddexp(l_pos, torch.logsumexp(l_neg, dim=1)) - l_pos).mean()

    def forward_query(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, L)`` -> normalised query ``(B, dim)`` from the [CLS] token.

        Args:
            encoder: The online (query) encoder, which the pretrainer owns.
            x: ``(B, C, L)`` batch (the query view).
        """
        return self.project_query(encoder.forward_features(x)[:, 0])

    def project_query(self, cls: torch.Tensor) -> torch.Tensor:
        """Project an encoded [CLS] to the query.

        Args:
            cls: ``(B, D)`` [CLS] output of the query encoder (any pass).

        Returns:
            ``(B, dim)`` L2-normalised query.
        """
        return F.normalize(self.head(cls), dim=1)

    @torch.no_grad()
    def forward_key(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``(B, C, L)`` -> normalised key ``(B, dim)`` from the momentum encoder (masked if ``key_mask_ratio``).

        Args:
            x: ``(B, C, L)`` batch (the key view).
            generator: Random generator of the key's mask (used only with ``key_mask_ratio > 0``).
        """
        if self.key_mask_ratio > 0:
            cls = encode_masked(self.momentum_encoder, x, self.key_mask_ratio, generator, with_prefix=True)[0][:, 0]
        else:
            cls = self.momentum_encoder.forward_features(x)[:, 0]
        return F.normalize(self.momentum_head(cls), dim=1)

    def forward(
            self,
            encoder: nn.Module,
            x_q: torch.Tensor,
            x_k: torch.Tensor,
            generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One MoCo step on two full views. In training mode this also updates the key side and the queue.

        Args:
            encoder: The query encoder.
            x_q: ``(B, C, L)`` query view.
            x_k: ``(B, C, L)`` key view (an independent augmentation draw of the same records).
            generator: Random generator for the key view's mask (``key_mask_ratio > 0``).

        Returns:
            ``(loss, q, k)``.
        """
        saved = self._save_step_state()  # before the query: its head's BatchNorm updates its statistics
        return self._step(encoder, self.forward_query(encoder, x_q), x_k, generator, saved)

    def forward_from_cls(
            self,
            encoder: nn.Module,
            cls_q: torch.Tensor,
            x_k: torch.Tensor,
            generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One MoCo step whose query is a [CLS] another pass already encoded (the shared-pass hybrid's MAE pass).

        Args:
            encoder: The query encoder (the key side follows it).
            cls_q: ``(B, D)`` the query's encoded [CLS].
            x_k: ``(B, C, L)`` key view.
            generator: Random generator for the key view's mask (``key_mask_ratio > 0``).

        Returns:
            ``(loss, q, k)``.
        """
        saved = self._save_step_state()
        return self._step(encoder, self.project_query(cls_q), x_k, generator, saved)

    def _step_state(self) -> List[torch.Tensor]:
        """What a training step changes in place besides the queue: the key side's weights (momentum update) and
        every buffer of both heads and the momentum encoder (BatchNorm running statistics)."""
        params = list(self.momentum_encoder.parameters()) + list(self.momentum_head.parameters())
        buffers = [b for m in (self.head, self.momentum_head, self.momentum_encoder) for b in m.buffers()]
        return [t.data for t in params] + buffers

    @torch.no_grad()
    def _save_step_state(self) -> Optional[List[torch.Tensor]]:
        """A copy of :meth:`_step_state` to roll a non-finite step back to (None in eval mode: nothing changes).

        The copy goes into buffers kept between steps (not in the state dict): copying into them costs a seed-size
        encoder 9 ms per step on a 2-core CPU, allocating fresh ones 60 ms.
        """
        if not self.training:
            return None
        state = self._step_state()
        kept = self._rollback
        if kept is None or len(kept) != len(state) or any(
                k.shape != t.shape or k.dtype != t.dtype or k.device != t.device for k, t in zip(kept, state)):
            kept = self._rollback = [t.clone() for t in state]  # first step, or the module was moved / cast
        else:
            torch._foreach_copy_(kept, state)
        return kept

    def _step(
            self,
            encoder: nn.Module,
            q: torch.Tensor,
            x_k: torch.Tensor,
            generator: Optional[torch.Generator],
            saved: Optional[List[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.training:
            # Before the keys, as MoCo v1/v2 (the query above used the encoder and head, which this leaves alone).
            self._momentum_update_key_encoder(encoder)
        k = self.forward_key(x_k, generator)
        loss = self.contrastive_loss(q, k)
        if self.training:
            self._commit_or_roll_back(k, loss, saved)
        return loss, q, k

    @torch.no_grad()
    def _commit_or_roll_back(self, k: torch.Tensor, loss: torch.Tensor, saved: Optional[List[torch.Tensor]]) -> None:
        """Enqueue this step's keys, or, when the keys or the loss are not finite, leave no trace of the step.

        A finite input can overflow inside the model (an ECG scaled by 1e30 squares to inf in LayerNorm). The training
        loop skips the optimiser step of a non-finite loss, but by then the forward pass has already changed state in
        place: NaN keys in the queue and NaN BatchNorm running statistics would poison every later step. So the keys
        are checked before they are enqueued, and the momentum update and BatchNorm statistics are rolled back to
        ``saved`` (taken before the query was projected).
        """
        # 0 * loss is NaN for a non-finite loss and +0 otherwise: it marks this rank's keys, so after the gather every
        # rank sees the same keys and takes the same decision without another collective.
        keys = concat_all_gather(k.detach() + 0.0 * loss.detach().to(k.dtype))
        if bool(torch.isfinite(keys).all()):
            self._enqueue(keys)
            return
        self.skipped_steps += 1
        if saved is not None:
            for tensor, old in zip(self._step_state(), saved):
                tensor.copy_(old)


def queue_copies_per_record(queue_size: int, num_records: int, warn: bool = True) -> float:
    """How many keys of each training record a full MoCo queue holds, warning when it is more than one.

    The seed's 65,536-key queue assumes far more records than keys. On a smaller training set the queue fills with
    older keys of the query's own record, used as its negatives. ``benchmarks/moco_queue.py`` measured this on PTB-XL
    (``benchmarks/README.md``): no linear-probe difference shown between 0.2x and 55x the training set, so the
    seed's queue stays the default and this only says so.

    Args:
        queue_size: The MoCo queue length.
        num_records: Records in the training set (all processes together).
        warn: Emit a ``UserWarning`` when the ratio exceeds 1.

    Returns:
        ``queue_size / num_records`` (recorded in every run's config).
    """
    if num_records < 1:
        raise ValueError(f'num_records must be >= 1, got {num_records}.')
    copies = queue_size / num_records
    if warn and copies > 1:
        whose = "This is the seed's queue and no" if queue_size == SEED_QUEUE_SIZE else 'No'
        warnings.warn(f'The MoCo queue ({queue_size} keys) is longer than the training set ({num_records} records): '
                      f'once full it holds about {copies:.1f} older keys of each record, used as negatives of its '
                      f'own query. {whose} effect on the probe was measured (benchmarks/README.md); pass '
                      f'--queue-size / queue_size={num_records} (or fewer) to keep one copy at most.', UserWarning,
                      stacklevel=2)
    return copies


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor, group: Optional[object] = None) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (identity without a multi-process group).

    The result carries no gradient; it is only used for the keys, which have none.

    Args:
        tensor: This rank's tensor; every rank's must have the same shape.
        group: The process group (None: the default one).
    """
    if not _is_distributed():
        return tensor
    tensor = tensor.contiguous()
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, tensor, group=group)
    return torch.cat(gathered, dim=0)
