"""Embed a preprocessed dataset once per encoder and keep the features on disk.

A linear probe never changes the encoder, so the evaluation suite embeds each (encoder, dataset) pair once and fits
every probe on the stored features. A stored embedding is keyed by two fingerprints:

- the **encoder fingerprint**: sha256 over the architecture name, the pooling of the embedding (``global_pool``) and
  every tensor of the state dict (names, shapes, dtypes, bytes), so retrained weights never reuse old features, nor
  does the same encoder asked for another pooling (``reset_classifier(0, 'avg')`` changes no tensor);
- the **data fingerprint**: the cache's own fingerprint (preprocessing + dataset index) and the sha256 of its signals.
  A reduced-lead cache (``Preprocessing(input_leads=...)``) has its own, so each lead subset has its own embeddings;
  its batches are masked to the subset before the encoder.

Files: ``<dir>/<encoder fp[:16]>-<data fp[:16]>.npy`` (float32, N x D, rows in cache order) and a ``.json`` beside it
(record ids, both fingerprints, time taken). Both are written atomically; a pair that does not match is recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecgvit.files import atomic_save_npy, atomic_write_text

__all__ = ['encoder_fingerprint', 'data_fingerprint', 'embed_cached']


def encoder_fingerprint(encoder: nn.Module) -> str:
    """sha256 over the encoder's class, architecture name, pooling and every state-dict tensor (name, shape, dtype,
    bytes).

    Args:
        encoder: The model (its ``pretrained_cfg`` architecture is included when it has one, and its ``global_pool``
            when it is not the [CLS] token, so fingerprints of token-pooled encoders stay as they were).
    """
    h = hashlib.sha256()
    cfg = getattr(encoder, 'pretrained_cfg', None) or {}
    arch = cfg.get('architecture') if isinstance(cfg, dict) else getattr(cfg, 'architecture', None)
    pool = getattr(encoder, 'global_pool', 'token')
    # The pooling picks which tokens the embedding is made of without changing any tensor.
    h.update(f'{type(encoder).__module__}.{type(encoder).__qualname__}|{arch}'
             f'{"" if pool == "token" else f"|pool={pool}"}\n'.encode())
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f'{name}|{tuple(t.shape)}|{t.dtype}\n'.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return h.hexdigest()


def data_fingerprint(cache_dir: str | os.PathLike) -> str:
    """sha256 of a cache's settings fingerprint and signal digest (from its manifest).

    Args:
        cache_dir: A signal cache folder (``ecgvit.data.build_cache``), holding ``manifest.json``.
    """
    manifest = json.loads((Path(cache_dir) / 'manifest.json').read_text())
    return hashlib.sha256(f'{manifest["fingerprint"]}|{manifest["signals_sha256"]}'.encode()).hexdigest()


def embed_cached(
        encoder: nn.Module,
        cache_dir: str | os.PathLike,
        out_dir: str | os.PathLike,
        *,
        encoder_fp: str | None = None,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        amp: str = 'fp32',
        progress: bool = False,
) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Embeddings of every item of a ``build_cache`` folder, computed once and then read from ``out_dir``.

    Args:
        encoder: The frozen encoder (its pre-logits embedding is taken, as by the linear probe).
        cache_dir: A cache written by ``ecgvit.data.build_cache``.
        out_dir: Folder of stored embeddings (created).
        encoder_fp: The encoder's fingerprint if already computed (see :func:`encoder_fingerprint`).
        batch_size: Records per forward pass.
        device: Where to run (default: CUDA when available).
        amp: 'fp32', 'bf16' or 'auto' for the forward pass.
        progress: Show a progress bar while embedding.

    Returns:
        (features float32 (N, D) in cache order, record ids, info dict with ``reused``, ``seconds``, fingerprints).
    """
    from ecgvit.data import CachedECGDataset

    from .linear_probe import extract_features

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    enc_fp = encoder_fp or encoder_fingerprint(encoder)
    dat_fp = data_fingerprint(cache_dir)
    stem = f'{enc_fp[:16]}-{dat_fp[:16]}'
    npy, meta_path = out / f'{stem}.npy', out / f'{stem}.json'
    dataset = CachedECGDataset(cache_dir)
    ids = list(dataset.record_ids)
    if npy.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            feats = np.load(npy)
            if meta.get('encoder_fingerprint') == enc_fp and meta.get('data_fingerprint') == dat_fp and \
                    meta.get('record_ids') == ids and feats.shape[0] == len(ids):
                return feats, ids, {'reused': True, 'seconds': 0.0, 'file': str(npy), 'encoder_fingerprint': enc_fp,
                                    'data_fingerprint': dat_fp}
        except (OSError, ValueError):
            pass  # unreadable or partial: recompute below
    t0 = time.perf_counter()
    dev = torch.device(device) if device is not None else None
    pp = dataset.preprocessing
    mask = None if pp.input_leads is None else torch.from_numpy(pp.input_mask)
    feats, _ = extract_features(encoder, dataset, batch_size=batch_size, device=dev, amp=amp, progress=progress,
                                lead_mask=mask)
    seconds = time.perf_counter() - t0
    atomic_save_npy(npy, feats.astype(np.float32))
    atomic_write_text(meta_path, json.dumps({'encoder_fingerprint': enc_fp, 'data_fingerprint': dat_fp,
                                              'cache_dir': str(cache_dir), 'shape': list(feats.shape),
                                              'input_leads': None if pp.input_leads is None else list(pp.input_leads),
                                              'seconds': round(seconds, 3), 'record_ids': ids}))
    return feats, ids, {'reused': False, 'seconds': seconds, 'file': str(npy), 'encoder_fingerprint': enc_fp,
                        'data_fingerprint': dat_fp}
