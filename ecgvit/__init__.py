"""ecgvit: ECG Vision Transformers pretrained with hybrid self-supervised learning, as a timm model zoo plugin.

Importing ``ecgvit`` registers its encoders with timm, so ``timm.create_model('ecg_vit_mae_moco')`` works too.
"""
from . import models  # noqa: F401  (registers the encoders with timm)
from .constants import LEADS
from .factory import UnknownModelError, create_model, list_models
from .version import __version__

__all__ = ['__version__', 'LEADS', 'UnknownModelError', 'create_model', 'list_models']
