"""Self-supervised pretraining of ecgvit encoders: MAE, MoCo, MAE-MoCo, MAE-Nextclip and MAE-Centerclip.

Example:
    >>> import torch
    >>> from ecgvit.pretrain import create_pretrainer
    >>> model = create_pretrainer('mae', 'ecg_vit_tiny')
    >>> model(torch.randn(2, 12, 3600))['loss'].shape
    torch.Size([])
"""
from .centerclip import CenterclipBranch
from .factory import (
    METHODS,
    PAPER_PASSES,
    SHARED_PASS,
    create_pretrainer,
    list_pretrainers,
    method_settings,
    split_method,
)
from .heads import HEADS_NAME, head_state, load_heads, read_heads, save_heads
from .hybrid import HybridPretrainer
from .mae import MaeBranch, MaeDecoder, patchify, random_masking, unpatchify
from .moco import MocoBranch, concat_all_gather, queue_copies_per_record
from .nextclip import ClipDecoder, NextclipBranch

__all__ = [
    'create_pretrainer', 'method_settings', 'list_pretrainers', 'split_method', 'METHODS', 'SHARED_PASS',
    'PAPER_PASSES',
    'HybridPretrainer',
    'HEADS_NAME', 'head_state', 'save_heads', 'read_heads', 'load_heads',
    'MaeBranch', 'MaeDecoder', 'patchify', 'unpatchify', 'random_masking',
    'MocoBranch', 'concat_all_gather', 'queue_copies_per_record',
    'ClipDecoder', 'NextclipBranch', 'CenterclipBranch',
]
