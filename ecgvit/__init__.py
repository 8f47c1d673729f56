"""ecgvit: ECG Vision Transformers pretrained with hybrid self-supervised learning, as a timm model zoo plugin.

Importing ``ecgvit`` registers its encoders with timm, so ``timm.create_model('ecg_vit_mae_moco')`` works too.
The pretraining, data, training and Hub parts load on first use, which keeps ``import ecgvit`` (and so
``import timm`` users' start-up) light.
"""
import os
import sys
from importlib import import_module
from typing import Any

try:
    from . import models  # noqa: F401  (registers the encoders with timm)
except KeyboardInterrupt:
    # Ctrl-C in the `ecgvit` command's first seconds (importing torch) ends it as Ctrl-C later does, in one line
    # and status 130, not with an import traceback; a program that imports ecgvit gets its KeyboardInterrupt.
    if os.path.basename(sys.argv[0] if sys.argv else '') != 'ecgvit':
        raise
    sys.stderr.write('ecgvit: interrupted\n')
    raise SystemExit(130) from None
from .constants import LEADS
from .factory import UnknownModelError, create_model, list_models
from .version import __version__

# name -> submodule that defines it, imported on first attribute access (PEP 562).
_LAZY = {
    'create_pretrainer': 'ecgvit.pretrain',
    'list_pretrainers': 'ecgvit.pretrain',
    'save_pretrained': 'ecgvit.hub',
    'load_pretrained': 'ecgvit.hub',
    'push_to_hub': 'ecgvit.hub',
    'optimize_for_inference': 'ecgvit.inference',
    'export_onnx': 'ecgvit.export',
}
_SUBMODULES = ('data', 'pretrain', 'train', 'eval', 'hub', 'inference', 'benchmark', 'export', 'cards')


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return import_module(f'ecgvit.{name}')
    raise AttributeError(f'module ecgvit has no attribute {name!r}')


__all__ = ['__version__', 'LEADS', 'UnknownModelError', 'create_model', 'list_models', *_LAZY]
