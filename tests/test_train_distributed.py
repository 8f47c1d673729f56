"""torchrun-style DDP on CPU: two gloo processes train the real MAE-MoCo wrapper and must stay in sync."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

L = 500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, method: str = 'mae_moco') -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from ecgvit.pretrain import create_pretrainer
    from ecgvit.train import TrainConfig, cleanup_distributed, train
    from ecgvit.train.loop import seed_everything

    seed_everything(0)
    kwargs = dict(queue_size=64) if 'moco' in method else {}
    model = create_pretrainer(method, 'ecg_vit_tiny', encoder_kwargs=dict(img_size=L), **kwargs)
    data = TensorDataset(torch.randn(32, 12, L, generator=torch.Generator().manual_seed(0)))
    cfg = TrainConfig(output_dir=out, epochs=2, batch_size=4, warmup_epochs=1, amp='fp32', progress=False,
                      save_every=3, device='cpu', seed=0)
    summary = train(model, data, None, cfg)
    # DDP looks for parameters without a gradient only where the pretrainer says a step leaves some (MAE alone).
    summary['find_unused'] = model.skips_parameters
    state = {k: v for k, v in model.state_dict().items()}
    torch.save({'state': state, 'summary': summary}, os.path.join(out, f'rank{rank}.pt'))
    cleanup_distributed()


@pytest.mark.slow
def test_two_gloo_ranks_stay_in_sync(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    r1 = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    assert r0['summary']['world_size'] == 2 and r0['summary']['find_unused'] is False
    assert r0['summary']['steps'] == 8  # 32 records / 2 ranks / batch 4, two epochs
    for k, v in r0['state'].items():
        # Parameters, the momentum encoder and the MoCo queue (keys gathered across ranks) match exactly.
        if k.endswith(('running_mean', 'running_var', 'num_batches_tracked')):
            continue  # per-rank BatchNorm statistics (SyncBatchNorm is CUDA-only)
        assert torch.equal(v, r1['state'][k]), k
    assert not torch.equal(r0['state']['moco.queue'][:16], torch.zeros_like(r0['state']['moco.queue'][:16]))
    # Only rank 0 wrote the run's files.
    assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir())[-1] == 'step-00000008'


@pytest.mark.slow
def test_mae_alone_trains_under_ddp_with_its_unused_cls_token(tmp_path):
    # MAE never uses [CLS]: DDP must be told to look for unused parameters, or its first backward fails.
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), 'mae'), nprocs=2, join=True)
    r0 = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    r1 = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    assert r0['summary']['find_unused'] is True and r0['summary']['steps'] == 8
    assert all(torch.equal(v, r1['state'][k]) for k, v in r0['state'].items())
