"""reuse_freed_memory: glibc keeps freed tensors for reuse; training results do not depend on it."""
import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from ecgvit.train.cpu_memory import reuse_freed_memory

GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'

# Each probe runs in a fresh interpreter, so it starts from glibc's defaults whatever this process has set.
_PROBE = textwrap.dedent('''
    import resource, sys, torch
    from ecgvit.train.cpu_memory import reuse_freed_memory
    if sys.argv[1] == 'reuse':
        assert reuse_freed_memory() and reuse_freed_memory()  # idempotent
    x = torch.randn(1000, 1000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        y = torch.empty(4096, 4096)  # 64 MiB: above glibc's largest mmap threshold
        y.fill_(1.0)  # touch every page
        del y
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
''')


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, '-c', _PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason='mallopt is a glibc feature')
def test_freed_large_tensors_are_reused_instead_of_page_faulted_again():
    default, reuse = _page_faults('default'), _page_faults('reuse')
    # Defaults: each 64 MiB tensor is a fresh mapping, 16k page faults per fill. Reuse: only the first one faults.
    assert default > 10 * 16384
    assert reuse < default / 5


@pytest.mark.parametrize('reuse', [False, True])
def test_train_applies_it_only_on_request(reuse, monkeypatch, tmp_path):
    import ecgvit.train.loop as loop
    from ecgvit.pretrain import create_pretrainer

    calls = []
    monkeypatch.setattr(loop, 'reuse_freed_memory', lambda: calls.append(1) or True)
    torch.manual_seed(0)
    model = create_pretrainer('mae', 'ecg_vit_tiny', dict(embed_dim=16, depth=1, num_heads=2, img_size=250),
                              decoder_embed_dim=16, decoder_num_heads=2)
    data = [torch.randn(12, 250) for _ in range(8)]
    cfg = loop.TrainConfig(output_dir=str(tmp_path), epochs=1, batch_size=4, warmup_epochs=0.5, amp='fp32',
                           progress=False, save_every=0, reuse_cpu_memory=reuse, device='cpu')
    loop.train(model, data, None, cfg)
    assert len(calls) == int(reuse)


def test_returns_false_off_glibc(monkeypatch):
    import ecgvit.train.cpu_memory as cm

    monkeypatch.setattr(cm, '_applied', False)
    monkeypatch.setattr(cm.platform, 'system', lambda: 'Darwin')
    assert reuse_freed_memory() is False
