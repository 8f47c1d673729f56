"""The GPU campaign behind benchmarks/gpu_campaign.py: pack (here), run (on the GPU machine), unpack (here)."""

from pathlib import Path


def sha256_file(path: Path) -> str:
    """``ecgvit.weights.sha256_file``, imported on use: ``run`` installs carried wheels before ecgvit imports timm."""
    from ecgvit.weights import sha256_file as digest

    return digest(path)
