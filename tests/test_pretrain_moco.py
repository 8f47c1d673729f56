"""MoCo branch: momentum update, FIFO queue and InfoNCE against hand-computed values; multi-process key gathering."""
import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ecgvit.pretrain import create_pretrainer
from ecgvit.pretrain.moco import MocoBranch, concat_all_gather

TINY = dict(embed_dim=32, depth=1, num_heads=2, img_size=250)


pytestmark = pytest.mark.usefixtures('one_thread')


def _identity(x, generator=None):
    return x


def _moco(**kw):
    torch.manual_seed(0)
    return create_pretrainer('moco', 'ecg_vit_tiny', TINY, **dict(dict(queue_size=10), **kw))


def test_key_side_starts_as_an_exact_copy():
    model = _moco()
    for q, k in zip(model.encoder.parameters(), model.moco.momentum_encoder.parameters()):
        assert torch.equal(q, k)
    for q, k in zip(model.moco.head.parameters(), model.moco.momentum_head.parameters()):
        assert torch.equal(q, k)


def test_momentum_update_matches_hand_computed_ema():
    model = _moco(momentum=0.9).train()
    with torch.no_grad():  # make the two sides differ, as after some optimiser steps
        for p in list(model.encoder.parameters()) + list(model.moco.head.parameters()):
            p.add_(torch.randn_like(p))
    q_side = [p.detach().clone() for p in list(model.encoder.parameters()) + list(model.moco.head.parameters())]
    k_side = [p.detach().clone() for p in list(model.moco.momentum_encoder.parameters())
              + list(model.moco.momentum_head.parameters())]
    model(torch.randn(4, 12, 250))  # training-mode forward: update first, then keys, then enqueue
    new_k = list(model.moco.momentum_encoder.parameters()) + list(model.moco.momentum_head.parameters())
    assert len(new_k) == len(q_side)
    for k_new, k_old, q in zip(new_k, k_side, q_side):
        torch.testing.assert_close(k_new, 0.9 * k_old + 0.1 * q, rtol=0, atol=1e-6)
    # The query side itself is untouched by the forward pass.
    for p, q in zip(list(model.encoder.parameters()) + list(model.moco.head.parameters()), q_side):
        assert torch.equal(p, q)


def test_no_update_in_eval_mode():
    model = _moco().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(4, 12, 250))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_queue_is_fifo_with_wrap_around():
    branch = _moco().moco
    assert branch.queue.shape == (10, 128) and int(branch.queue_ptr) == 0
    assert torch.allclose(branch.queue.norm(dim=1), torch.ones(10))  # starts with unit keys
    a, b, c = (F.normalize(torch.randn(4, 128), dim=1) for _ in range(3))
    initial = branch.queue.clone()
    branch._dequeue_and_enqueue(a)
    assert torch.equal(branch.queue[:4], a) and torch.equal(branch.queue[4:], initial[4:])
    assert int(branch.queue_ptr) == 4
    branch._dequeue_and_enqueue(b)
    assert torch.equal(branch.queue[4:8], b) and int(branch.queue_ptr) == 8
    branch._dequeue_and_enqueue(c)  # rows 8, 9 then wraps to 0, 1: the oldest (a[:2]) leave first
    assert torch.equal(branch.queue[8:], c[:2]) and torch.equal(branch.queue[:2], c[2:])
    assert torch.equal(branch.queue[2:4], a[2:]) and int(branch.queue_ptr) == 2
    big = F.normalize(torch.randn(13, 128), dim=1)  # more keys than the queue holds: the newest 10 stay
    branch._dequeue_and_enqueue(big)
    assert sorted(map(tuple, branch.queue.tolist())) == sorted(map(tuple, big[3:].tolist()))


def test_forward_enqueues_the_normalised_keys_of_the_key_view():
    model = _moco(augment=_identity).train()
    x = torch.randn(4, 12, 250)
    model(x)
    keys = model.moco.forward_key(x)  # key side unchanged after forward; BN in train mode uses batch stats
    torch.testing.assert_close(model.moco.queue[:4], keys)
    torch.testing.assert_close(keys.norm(dim=1), torch.ones(4))
    assert int(model.moco.queue_ptr) == 4


def test_contrastive_loss_matches_hand_computed_infonce():
    branch = _moco(temperature=0.2).moco
    q = F.normalize(torch.randn(3, 128), dim=1)
    k = F.normalize(torch.randn(3, 128), dim=1)
    loss = branch.contrastive_loss(q, k)
    expected = 0.0
    for i in range(3):
        logits = [float(q[i] @ k[i])] + [float(q[i] @ n) for n in branch.queue]
        logits = torch.tensor(logits) / 0.2
        expected += -(logits[0] - torch.logsumexp(logits, 0)) / 3
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_contrastive_loss_and_gradient_match_cross_entropy_over_the_logits():
    """The loss is written as logsumexp - l_pos; the textbook form builds the (B, 1 + K) logits."""
    branch = _moco(temperature=0.2).moco
    q0 = torch.randn(5, 128)
    k = F.normalize(torch.randn(5, 128), dim=1)
    grads = []
    for textbook in (False, True):
        q_raw = q0.clone().requires_grad_()
        q = F.normalize(q_raw, dim=1)
        if textbook:
            logits = torch.cat([(q * k).sum(1, keepdim=True), q @ branch.queue.t()], 1) / 0.2
            loss = F.cross_entropy(logits, torch.zeros(5, dtype=torch.long))
        else:
            loss = branch.contrastive_loss(q, k)
        loss.backward()
        grads.append((loss.detach(), q_raw.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-7)


def test_query_and_key_views_are_independent_augmentation_draws():
    seen = []

    def recorder(x, generator=None):
        out = x + torch.randn(x.shape, generator=generator)
        seen.append(out)
        return out

    model = _moco(augment=recorder).train()
    model(torch.randn(4, 12, 250), generator=torch.Generator().manual_seed(0))
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])


def test_mae_branch_sees_the_unaugmented_ecg():
    # The paper's passes: the MAE branch runs on its own (the shared pass is checked in test_pretrain_shared.py).
    model = create_pretrainer('mae_moco', 'ecg_vit_tiny', TINY, queue_size=8, shared_pass=False,
                              augment=lambda x, generator=None: torch.zeros_like(x))
    x = torch.randn(4, 12, 250)
    g = torch.Generator().manual_seed(0)
    out = model.eval()(x, generator=g)
    loss_mae, _, _ = model.mae(model.encoder, x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out['loss_mae'], loss_mae)


def test_sync_bn_option_works_without_a_process_group():
    model = _moco(sync_bn=True).train()
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.moco.head.modules())
    assert torch.isfinite(model(torch.randn(4, 12, 250))['loss'])


def test_concat_all_gather_is_identity_without_a_group():
    t = torch.randn(3, 5)
    assert concat_all_gather(t) is t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _rank_keys(rank: int) -> torch.Tensor:
    return F.normalize(torch.randn(2, 128, generator=torch.Generator().manual_seed(rank)), dim=1)


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same init on every rank, as DDP would broadcast
        encoder = __import__('ecgvit').create_model('ecg_vit_tiny', **TINY)
        branch = MocoBranch(encoder, queue_size=8).train()
        keys = _rank_keys(rank)
        branch._dequeue_and_enqueue(keys)
        torch.save({'queue': branch.queue, 'ptr': branch.queue_ptr}, os.path.join(out_dir, f'{rank}.pt'))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_keys_from_all_ranks_are_enqueued(tmp_path):
    world = 2
    mp.start_processes(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, start_method='spawn')
    r0, r1 = (torch.load(tmp_path / f'{r}.pt') for r in range(world))
    assert int(r0['ptr']) == int(r1['ptr']) == 4  # 2 keys x 2 ranks
    torch.testing.assert_close(r0['queue'], r1['queue'])
    torch.testing.assert_close(r0['queue'][:4], torch.cat([_rank_keys(0), _rank_keys(1)]))


def test_queue_longer_than_the_data_is_kept_with_a_warning():
    from ecgvit.pretrain import queue_copies_per_record

    with pytest.warns(UserWarning, match=r"65536 keys\) is longer than the training set \(2000 records\).*32\.8.*"
                                         r"This is the seed's queue.*queue_size=2000 \(or fewer\)"):
        assert queue_copies_per_record(65536, 2000) == pytest.approx(32.768)
    with pytest.warns(UserWarning, match=r'\(64 keys\).*2\.4 older keys.*own query\. No effect.*queue_size=27 '):
        queue_copies_per_record(64, 27)  # a queue the user chose: not called the seed's, a size that does keep one
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert queue_copies_per_record(256, 1195) == pytest.approx(256 / 1195)  # shorter: no warning
    with pytest.raises(ValueError, match='num_records must be >= 1'):
        queue_copies_per_record(256, 0)
