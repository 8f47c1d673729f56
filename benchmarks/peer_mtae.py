"""Our MAE-only pretraining step against the public ST-MEM repository's MTAE at the same configuration.

The peer code runs as published, imported from a git-ignored checkout (never copied into ecgvit; it is CC BY-NC
licensed): clone it with

    git clone https://github.com/bakqui/ST-MEM third_party/ST-MEM     # or set ECGVIT_STMEM_DIR

Both models are configured like the seed: 3600 samples, patch 25, 512 dim, 6 blocks, 16 heads, MLP ratio 2, decoder
256 dim / 1 block / 8 heads, mask ratio 0.75, batch 64, and both step the same optimiser (Adam, fused where torch has
it, as ``ecgvit.train`` does). Steps alternate between the two in one process so machine drift hits both alike; the
figure is the ratio of median step times (peer / ours, > 1 means we are faster).

    python benchmarks/peer_mtae.py --batch 64 --repeats 5
"""
import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

import ecgvit.pretrain
from ecgvit.train.optim import create_adam

STMEM_DIR = Path(os.environ.get('ECGVIT_STMEM_DIR', Path(__file__).resolve().parents[1] / 'third_party' / 'ST-MEM'))


def load_mtae() -> Optional[torch.nn.Module]:
    """The peer MTAE at the seed configuration, or None when its checkout is absent."""
    if not (STMEM_DIR / 'models' / 'mtae.py').is_file():
        return None
    sys.path.insert(0, str(STMEM_DIR))
    try:
        from models.mtae import MTAE  # the peer's own package name, importable only from its checkout
    finally:
        sys.path.remove(str(STMEM_DIR))
    return MTAE(seq_len=3600, patch_size=25, num_leads=12, embed_dim=512, depth=6, num_heads=16,
                decoder_embed_dim=256, decoder_depth=1, decoder_num_heads=8, mlp_ratio=2)


def _step_fn(model: torch.nn.Module, loss_of: Callable, x: torch.Tensor, dtype: torch.dtype) -> Callable[[], None]:
    # The same optimiser for both (fused where torch has it, as ecgvit.train does): the models are what differ.
    opt = create_adam([p for p in model.parameters() if p.requires_grad], 2e-4)
    autocast = (torch.autocast('cpu', dtype=torch.bfloat16) if dtype == torch.bfloat16
                else contextlib.nullcontext())

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_of(model, x)
        loss.backward()
        opt.step()
    return step


def measure(batch: int = 64, repeats: int = 5, dtype: torch.dtype = torch.float32) -> Dict[str, float]:
    """Median step times (s) of ours and the peer's MAE, and peer/ours; empty dict when the peer is absent."""
    peer = load_mtae()
    if peer is None:
        return {}
    torch.manual_seed(0)
    ours = ecgvit.pretrain.create_pretrainer('mae', encoder='ecg_vit_mae_moco', mask_ratio=0.75).train()
    peer.train()
    x = torch.randn(batch, 12, 3600)
    steps = {
        'ours': _step_fn(ours, lambda m, b: m(b)['loss'], x, dtype),
        'peer': _step_fn(peer, lambda m, b: m(b, mask_ratio=0.75)['loss'], x, dtype),
    }
    times: Dict[str, list] = {k: [] for k in steps}
    for fn in steps.values():
        fn()  # warm-up: allocator, autocast caches
    for _ in range(repeats):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {'ours_step_s': med['ours'], 'mtae_step_s': med['peer'], 'speedup_vs_mtae': med['peer'] / med['ours'],
            'ours_samples_per_s': batch / med['ours'], 'mtae_samples_per_s': batch / med['peer']}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--dtype', choices=('fp32', 'bf16'), default='fp32')
    args = parser.parse_args()
    res = measure(args.batch, args.repeats, torch.bfloat16 if args.dtype == 'bf16' else torch.float32)
    if not res:
        print(f'ST-MEM checkout not found at {STMEM_DIR}: skipped (see this script\'s docstring to fetch it).')
        return
    for key, value in res.items():
        print(f'{key:>20}: {value:.3f}')


if __name__ == '__main__':
    main()
