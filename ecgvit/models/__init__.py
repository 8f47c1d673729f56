"""ecgvit models: importing this registers every ECG ViT with timm's registry."""
from .ecg_vit import EcgPretrainedCfg, EcgVisionTransformer, checkpoint_filter_fn, resample_pos_embed_1d

__all__ = ['EcgPretrainedCfg', 'EcgVisionTransformer', 'checkpoint_filter_fn', 'resample_pos_embed_1d']
