"""The GPU campaign behind benchmarks/gpu_campaign.py: pack (here), run (on the GPU machine), unpack (here)."""
