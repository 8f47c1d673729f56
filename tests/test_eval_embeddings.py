"""Stored embeddings: reused for the same encoder and data, recomputed when anything that shapes them changes."""
import copy

import numpy as np
import pytest
import torch

import ecgvit
from ecgvit.constants import LEADS
from ecgvit.data import CachedECGDataset, Preprocessing, build_cache, get_dataset
from ecgvit.eval.embeddings import embed_cached, encoder_fingerprint

FS, N = 360, 1800


@pytest.fixture()
def cache(tmp_path):
    x = np.random.default_rng(0).standard_normal((4, 12, N)).astype(np.float32)
    return build_cache(get_dataset('arrays', x, sampling_rate=FS, leads=LEADS),
                       Preprocessing(sampling_rate=FS, num_samples=N), tmp_path / 'c', progress=False, num_workers=0)


@pytest.mark.filterwarnings('ignore:arrays. the median heart rate')  # noise has no heart rate
def test_same_weights_other_pooling_is_not_reused(cache, tmp_path):
    torch.manual_seed(0)
    token = ecgvit.create_model('ecg_vit_tiny', img_size=N).eval()
    avg = copy.deepcopy(token)
    avg.reset_classifier(0, 'avg')  # no tensor changes, only which tokens the embedding is made of
    assert encoder_fingerprint(avg) != encoder_fingerprint(token)
    assert encoder_fingerprint(copy.deepcopy(token)) == encoder_fingerprint(token)

    out = tmp_path / 'emb'
    first, ids, info = embed_cached(token, cache, out, device='cpu')
    assert not info['reused'] and first.shape == (4, token.num_features) and len(ids) == 4
    again, _, info = embed_cached(copy.deepcopy(token), cache, out, device='cpu')
    assert info['reused'] and np.array_equal(again, first)

    pooled, _, info = embed_cached(avg, cache, out, device='cpu')
    assert not info['reused'] and not np.allclose(pooled, first)
    x = torch.from_numpy(np.asarray(CachedECGDataset(cache).signals))
    with torch.no_grad():
        expected = avg.forward_head(avg.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(pooled, expected, rtol=1e-4, atol=1e-5)


def test_the_suite_floor_pools_as_the_encoder_it_is_the_floor_of():
    from ecgvit.eval.suite import resolve_encoders

    torch.manual_seed(1)
    avg = ecgvit.create_model('ecg_vit_tiny', img_size=N)
    avg.reset_classifier(0, 'avg')
    floor = resolve_encoders({'mine': avg})['random'][0]
    torch.manual_seed(0)
    seed0 = ecgvit.create_model('ecg_vit_tiny', img_size=N)
    assert floor.global_pool == 'avg' and seed0.global_pool == 'token'
    for k, v in seed0.state_dict().items():
        assert torch.equal(floor.state_dict()[k], v)
    token = ecgvit.create_model('ecg_vit_tiny', img_size=N)
    assert resolve_encoders({'mine': token})['random'][0].global_pool == 'token'


def test_suite_global_pool_reads_every_encoder_and_the_floor_through_it():
    from ecgvit.eval.suite import resolve_encoders

    mine = ecgvit.create_model('ecg_vit_tiny', img_size=N)
    out = resolve_encoders({'mine': mine}, global_pool='avg')
    assert out['mine'][0].global_pool == 'avg' and out['random'][0].global_pool == 'avg'
    assert out['mine'][1]['global_pool'] == 'avg'
    assert mine.global_pool == 'token', "the caller's module keeps its pooling"
