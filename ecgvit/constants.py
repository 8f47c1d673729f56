"""Constants shared by every layer of ecgvit (models, data, pretraining): lead order and the seed's input geometry."""

from typing import Tuple

__all__ = ['LEADS', 'NUM_LEADS', 'DEFAULT_SAMPLING_RATE', 'DEFAULT_DURATION_S', 'DEFAULT_NUM_SAMPLES', 'PATCH_SIZE',
           'HEADS_NAME', 'GLOBAL_POOLS']

# Canonical 12-lead order (PTB-XL, CPSC2018, Chapman and the PhysioNet challenges all use it).
LEADS: Tuple[str, ...] = ('I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6')
NUM_LEADS = len(LEADS)

# seed: pos-embed of 145 = 144 patches + CLS with 25-sample patches implies 3600 samples; the pretraining sets are
# 10-s records, so 360 Hz x 10 s.
DEFAULT_SAMPLING_RATE = 360.0
DEFAULT_DURATION_S = 10.0
DEFAULT_NUM_SAMPLES = 3600
PATCH_SIZE = 25

# A pretraining run's decoders and heads, saved beside its encoder weights (ecgvit.pretrain.heads; the hub uploads it).
HEADS_NAME = 'heads.safetensors'

# The embeddings a linear probe can read from one set of weights: the [CLS] token (the paper's) or the mean of the
# normed patch tokens (``model.reset_classifier(0, 'avg')``; see benchmarks/pooling_probe.py).
GLOBAL_POOLS: Tuple[str, ...] = ('token', 'avg')
