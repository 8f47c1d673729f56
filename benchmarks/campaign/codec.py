"""A compact, lossy store for preprocessed ECG windows, so the pretraining pool can travel to a GPU machine.

The pool at the model's rate (360 Hz, 3600 samples, 12 leads) is 86 KB per window as int16, about 210 MB for the
project's pool plus the PTB-XL evaluation folds: more than the 64 MiB a device call carries. Three steps make it about
five times smaller:

1. Quantise the z-scored signals with a fixed step (default 0.02 standard deviations: an rms error of 0.006, below
   the 1 uV resolution of the source files for a typical lead) to int16.
2. Predict what is predictable. The limb leads III, aVR, aVL and aVF are linear in I and II (Einthoven, Goldberger),
   also after per-lead z-scoring, so each is stored as its residual after a per-window least-squares fit on the
   quantised I and II (three float32 coefficients); every lead is then stored as its first difference in time.
3. Byte-shuffle (high bytes apart from low bytes) and compress with LZMA (Python's standard library).

Decoding undoes steps 3-1 exactly: the integer codes are lossless, so ``decode(encode(x))`` is ``x`` rounded to the
step, on any machine (the prediction is elementwise float64 arithmetic, the same on every IEEE machine).
"""
from __future__ import annotations

import lzma

import numpy as np

__all__ = ['QUANT_STEP', 'LIMB_LEADS', 'encode', 'decode', 'quantise']

QUANT_STEP = 0.02
LIMB_LEADS = (2, 3, 4, 5)  # III, aVR, aVL, aVF in the canonical order (ecgvit.constants.LEADS)
_INT16 = 32767


def quantise(x: np.ndarray, step: float) -> tuple[np.ndarray, int]:
    """``x / step`` rounded to int16, clipped to its range; returns the codes and how many values were clipped."""
    q = np.rint(np.asarray(x, dtype=np.float64) / step)
    clipped = int(np.count_nonzero(np.abs(q) > _INT16))
    return np.clip(q, -_INT16, _INT16).astype(np.int16), clipped


def _predict(q: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """Integer prediction of the limb leads from leads I and II: round(a * I + b * II + c), shape (N, 4, L)."""
    c = coefs.astype(np.float64)
    lead1, lead2 = q[:, 0:1].astype(np.float64), q[:, 1:2].astype(np.float64)
    return np.rint(c[:, :, 0:1] * lead1 + c[:, :, 1:2] * lead2 + c[:, :, 2:3])


def _fit_limb(q: np.ndarray) -> np.ndarray:
    """Per-window least-squares coefficients (N, 4, 3) of each limb lead on [I, II, 1], as float32."""
    n, _, length = q.shape
    design = np.stack([q[:, 0].astype(np.float64), q[:, 1].astype(np.float64), np.ones((n, length))], axis=2)
    gram = design.transpose(0, 2, 1) @ design  # (N, 3, 3)
    rhs = design.transpose(0, 2, 1) @ q[:, list(LIMB_LEADS)].astype(np.float64).transpose(0, 2, 1)  # (N, 3, 4)
    # A flat or zero-filled lead makes the normal equations singular: no prediction (coefficients 0) there.
    ok = np.abs(np.linalg.det(gram)) > 1e-6 * np.maximum(1.0, np.abs(gram).max(axis=(1, 2))) ** 3
    coefs = np.zeros((n, len(LIMB_LEADS), 3))
    if ok.any():
        coefs[ok] = np.linalg.solve(gram[ok], rhs[ok]).transpose(0, 2, 1)
    return coefs.astype(np.float32)


def encode(x: np.ndarray, step: float = QUANT_STEP, preset: int = 6) -> tuple[bytes, np.ndarray, dict]:
    """Compress (N, 12, L) float signals.

    Args:
        x: the windows, z-scored per lead (any float dtype).
        step: quantisation step, in the signal's units (standard deviations after z-scoring).
        preset: LZMA preset (0-9; 6 is the library's default, higher is slower for little gain here).

    Returns:
        (compressed bytes, limb-lead coefficients (N, 4, 3) float32, stats: ``clipped`` values, ``rms_error``).

    Raises:
        ValueError: ``x`` is not (N, 12, L).
    """
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1] != 12:
        raise ValueError(f'encode takes (N, 12, L) windows, got shape {x.shape}.')
    q, clipped = quantise(x, step)
    coefs = _fit_limb(q)
    codes = q.astype(np.int32)
    limb = list(LIMB_LEADS)
    residual = codes[:, limb] - _predict(q, coefs).astype(np.int32)
    # A residual outside int16 (a poor fit) is stored unpredicted instead: coefficients 0 predict 0.
    bad = np.abs(residual).max(axis=2) > _INT16
    coefs[bad] = 0.0
    residual = codes[:, limb] - _predict(q, coefs).astype(np.int32)
    codes[:, limb] = residual
    codes = codes.astype(np.int16)
    delta = np.diff(codes, axis=2, prepend=np.zeros((*codes.shape[:2], 1), np.int16))  # int16: wraps, reversibly
    shuffled = np.ascontiguousarray(delta).view(np.uint8).reshape(-1, 2).T.tobytes()
    blob = lzma.compress(shuffled, preset=preset)
    err = q.astype(np.float64) * step - x
    stats = {'clipped': clipped, 'rms_error': float(np.sqrt(np.mean(err ** 2))) if err.size else 0.0}
    return blob, coefs, stats


def decode(blob: bytes, shape: tuple[int, int, int], coefs: np.ndarray, step: float = QUANT_STEP) -> np.ndarray:
    """Invert :func:`encode`: (N, 12, L) float32 signals, each value a multiple of ``step``."""
    n, leads, length = shape
    raw = np.frombuffer(lzma.decompress(blob), dtype=np.uint8)
    if raw.size != 2 * n * leads * length:
        raise ValueError(f'The compressed signals hold {raw.size} bytes, but shape {tuple(shape)} needs '
                         f'{2 * n * leads * length}: the pack is damaged or its shape is wrong; run pack again.')
    delta = raw.reshape(2, -1).T.copy().view(np.int16).reshape(n, leads, length)
    codes = np.cumsum(delta, axis=2, dtype=np.int16)  # wraps exactly as the encoder's diff did
    q = codes.astype(np.int32)
    limb = list(LIMB_LEADS)
    q[:, limb] = codes[:, limb].astype(np.int32) + _predict(q, coefs).astype(np.int32)
    return (q.astype(np.float64) * step).astype(np.float32)
