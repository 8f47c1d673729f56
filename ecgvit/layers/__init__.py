"""Building blocks on torch and timm alone (no other ecgvit import), shared by the models and the training runtime."""
from .attention import EcgAttention, adopt_ecg_attention, cpu_fused_attention_pays
from .pos_embed import sincos_pos_embed_1d

__all__ = ['EcgAttention', 'adopt_ecg_attention', 'cpu_fused_attention_pays', 'sincos_pos_embed_1d']
