"""Which encoders of an ablation are compared with which: the questions of issue 15, as pairs (A, B, question).

Shared by the GPU campaign (``run``) and the CPU ablation (``benchmarks/cpu_ablation.py``), so both answer the same
questions:

- every trained encoder against the random init of its architecture (is it pretrained at all?);
- every hybrid (a method that is neither MAE-only nor MoCo-only) against MAE-only and against MoCo-only of the same
  architecture (does the hybrid beat each of its parts?);
- every shared-pass variant against the paper's passes of the same method and settings (does the shared pass lose
  anything?);
- every hybrid with a non-default ``alpha`` against the same method at its default alpha (the MAE weight);
- every job with another setting (e.g. ``mae:decoder_pos_init=sincos``) against the same method without it.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

__all__ = ['Spec', 'comparison_pairs', 'QUESTIONS']

# (name, method, method kwargs, architecture); method 'random' marks an architecture's random-init floor.
Spec = tuple[str, str, dict[str, Any], str]

QUESTIONS = {
    'random': 'vs random init',
    'mae': 'vs MAE-only',
    'moco': 'vs MoCo-only',
    'paper': "vs the paper's passes",
    'alpha': 'vs default alpha',
    'setting': 'vs default settings',
}


def _key(arch: str, method: str, kwargs: dict[str, Any]) -> tuple[str, str, str]:
    return arch, method, json.dumps(kwargs, sort_keys=True)


def comparison_pairs(specs: Iterable[Spec]) -> list[tuple[str, str, str]]:
    """``(a, b, question)`` for every comparison the ablation asks about (keys of :data:`QUESTIONS`).

    Pairs whose reference encoder is not among ``specs`` are left out (e.g. no MoCo-only job ran).
    """
    specs = list(specs)
    by_key = {_key(arch, method, kw): name for name, method, kw, arch in specs}
    pairs: list[tuple[str, str, str]] = []

    def add(a: str, arch: str, method: str, kw: dict[str, Any], question: str) -> None:
        b = by_key.get(_key(arch, method, kw))
        if b is not None and b != a:
            pairs.append((a, b, question))

    for name, method, kw, arch in specs:
        if method == 'random':
            continue
        add(name, arch, 'random', {}, 'random')
        settings = [k for k in kw if k != 'alpha']
        if settings:
            add(name, arch, method, {k: v for k, v in kw.items() if k not in settings}, 'setting')
        base = method.removesuffix('_shared')
        if base in ('mae', 'moco'):
            continue
        add(name, arch, 'mae', {}, 'mae')
        add(name, arch, 'moco', {}, 'moco')
        if method.endswith('_shared'):
            add(name, arch, base, kw, 'paper')
        if 'alpha' in kw:
            add(name, arch, method, {k: v for k, v in kw.items() if k != 'alpha'}, 'alpha')
    return pairs
