"""Where and how a run computes: seeding, mixed precision (measured, not assumed), compiled blocks, machine facts.

Shared by the pretraining loop, the evaluation protocols and the benchmark scripts.
"""
import contextlib
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any, Dict, Optional, Set

import numpy as np
import torch
from torch import nn

from ecgvit.files import atomic_write_text

__all__ = ['seed_everything', 'resolve_amp_dtype', 'autocast_context', 'compile_blocks', 'machine_info',
           'cpu_has_native_bf16', 'cpu_flags', 'amp_cache_file']


def machine_info(device: torch.device) -> Dict[str, Any]:
    """Where a run ran (CPU model, cores, accelerator, torch), recorded in its config so reports need not guess.

    Args:
        device: The run's device (a CUDA device's name is recorded).
    """
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
    """Seed python, numpy and torch (CPU and CUDA) RNGs.

    Args:
        seed: The seed (numpy gets it modulo 2**32).
    """
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


_AMP_CACHE: Dict[str, Optional[torch.dtype]] = {}
_PROBE_VERSION = 2  # 2: the probe block uses ecgvit's attention (explicit matmuls in bf16 on CPU)


def _probe_cpu_bf16(reps: int = 5) -> bool:
    """Time a small transformer block's forward + backward in fp32 and under bf16 autocast, interleaved.

    True when bf16 is at least 10% faster. A bare matmul is the wrong probe: it can favour bf16 on a CPU where a real
    pretraining step runs slower under bf16 autocast (casts, LayerNorm, softmax and the backward all count), so the
    probe runs the same kind of work as training.
    """
    from timm.models.vision_transformer import Block

    from ecgvit.layers import adopt_ecg_attention

    gen = torch.Generator().manual_seed(0)
    # Our models' attention (explicit in bf16 on CPU, where the fused kernel is slow), so the probe times what trains.
    block = adopt_ecg_attention(Block(256, num_heads=8, mlp_ratio=2.0, qkv_bias=True))
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
    only when they outweigh autocast's casts, so a short transformer-block probe decides, once per machine (the answer
    is kept in :func:`amp_cache_file`, so seeded runs repeat exactly); on CUDA bf16 is used where the GPU supports it.

    Args:
        amp: 'auto', 'bf16' (or 'bfloat16') or 'fp32' (or 'off', 'none', 'float32'; None too), any case.
        device: The device the run trains on.

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
        _AMP_CACHE['cpu'] = torch.bfloat16 if _cpu_prefers_bf16() else None
    return _AMP_CACHE['cpu']


def amp_cache_file() -> Path:
    """Where 'auto' keeps its per-machine decision: ``$ECGVIT_CACHE_DIR`` or ``~/.cache/ecgvit``, ``amp.json``."""
    root = os.environ.get('ECGVIT_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'), 'ecgvit')
    return Path(root) / 'amp.json'


def cpu_flags() -> Set[str]:
    """The CPU's instruction-set flags (``/proc/cpuinfo``), e.g. ``{'avx2', 'avx512_bf16', ...}``; empty off Linux."""
    with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
        line = next((ln for ln in f if ln.startswith('flags')), '')
        return set(line.split(':', 1)[1].split()) if ':' in line else set()
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix units (``avx512_bf16`` or AMX); without them bf16 matmuls are emulated, and on
    one AVX2-only machine they ran at 0.3 GFLOP/s against 100 in fp32 (benchmarks/README.md). False off Linux."""
    return bool(cpu_flags() & {'avx512_bf16', 'amx_bf16'})


def _machine_key() -> str:
    """What the bf16-vs-fp32 answer depends on: the CPU model, its bf16 / AMX flags, the core count, torch and the
    probe's version (raised when the timed work changes: decisions of an older probe are measured again)."""
    flags = ','.join(sorted(cpu_flags() & {'avx512_bf16', 'amx_bf16', 'amx_tile', 'avx512f', 'avx2'}))
    info = machine_info(torch.device('cpu'))
    return f"{info['cpu']}|{flags}|{info['logical_cores']} cores|torch {torch.__version__}|probe {_PROBE_VERSION}"


def _cpu_prefers_bf16() -> bool:
    """The probe's answer for this machine, measured once and kept on disk, so seeded runs repeat exactly.

    A timing probe on a busy machine can answer differently from run to run (the same seeded command once picked bf16
    three times and fp32 twice in five runs), and the dtype changes every loss. The first answer for a machine (see
    :func:`_machine_key`) is stored in :func:`amp_cache_file`; delete the file to measure again.
    """
    path, key = amp_cache_file(), _machine_key()
    try:
        decisions = json.loads(path.read_text())
        if not isinstance(decisions, dict):
            decisions = {}
    except (OSError, ValueError):
        decisions = {}
    if isinstance(decisions.get(key), dict) and isinstance(decisions[key].get('bf16'), bool):
        return decisions[key]['bf16']
    prefers = _probe_cpu_bf16()
    decisions[key] = {'bf16': prefers, 'measured': time.strftime('%Y-%m-%d %H:%M:%S')}
    with contextlib.suppress(OSError):  # a read-only home still trains, it just measures again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(decisions, indent=2))
    return prefers


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype``, or a null context for fp32.

    Args:
        device: The device the autocast applies to (its type is read).
        dtype: The autocast dtype (:func:`resolve_amp_dtype`), or None for plain fp32.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
