"""WithRR: each record's RR interval detected once and served with it, and the loop handing it to the model."""
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ecgvit.data.prepare import prepare_data
from ecgvit.data.rpeaks import median_rr_samples
from ecgvit.data.rr_dataset import WithRR
from ecgvit.pretrain import create_pretrainer
from ecgvit.train.loop import TrainConfig, batch_kwargs, train

FS = 100.0
TINY = dict(embed_dim=32, depth=1, num_heads=2, img_size=500)
CLIP = dict(sampling_rate=FS, clip_len=50, clip_decoder_embed_dim=16, clip_decoder_num_heads=2, decoder_embed_dim=16,
            decoder_num_heads=2)

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def cached(tmp_path_factory):
    """Real cached WFDB records: synthetic ECGs at 100 Hz, 5 s."""
    root = tmp_path_factory.mktemp('rr')
    return prepare_data('synthetic', None, str(root / 'cache'), FS, 500, 0, 24, 0, False)['train']


def test_rr_is_the_detectors_and_items_pass_through(cached):
    ds = WithRR(cached, FS)
    expected = median_rr_samples(np.asarray(cached.signals), FS)
    np.testing.assert_allclose(ds.rr_samples.numpy(), expected.astype(np.float32), equal_nan=True)
    assert ds.found_fraction() > 0.9  # clean synthetic beats
    x, y = cached[3]
    item = ds[3]
    assert torch.equal(item['x'], x) and torch.equal(item['y'], y) and item['rr_samples'] == ds.rr_samples[3]
    assert len(ds) == len(cached)
    assert ds.preprocessing is cached.preprocessing  # attributes of the wrapped dataset stay reachable


def test_plain_items_and_flat_records_give_nan():
    t = np.arange(500) / FS
    beat = np.exp(-((t % 0.8 - 0.4) ** 2) / (2 * 0.01 ** 2)).astype(np.float32)  # 75 bpm: RR 80 samples
    items = [torch.from_numpy(np.repeat(beat[None], 12, 0)), torch.zeros(12, 500)]  # tensors, no labels
    ds = WithRR(items, FS, chunk=1)
    assert ds.rr_samples[0].item() == pytest.approx(80, abs=1)
    assert torch.isnan(ds.rr_samples[1])  # the clip branch's fallback applies, as when it detects in forward
    assert set(ds[1]) == {'x', 'rr_samples'}
    with pytest.raises(ValueError, match='sampling_rate'):
        WithRR(items, 0.0)
    with pytest.raises(ValueError, match='chunk'):
        WithRR(items, FS, chunk=0)


def test_pickles_and_collates_for_dataloader_workers(cached):
    ds = pickle.loads(pickle.dumps(WithRR(cached, FS)))
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch['x'].shape == (4, 12, 500) and batch['rr_samples'].shape == (4,)
    kwargs = batch_kwargs(batch, torch.device('cpu'))
    assert set(kwargs) == {'rr_samples'}  # x is the input and y a label: neither is a model kwarg
    assert batch_kwargs((batch['x'], batch['y']), torch.device('cpu')) == {}


@pytest.mark.parametrize('shared', [False, True])
def test_precomputed_rr_gives_the_losses_of_detection_in_forward(cached, shared):
    torch.manual_seed(0)
    model = create_pretrainer('mae_nextclip', 'ecg_vit_tiny', TINY, shared_pass=shared, **CLIP).eval()
    ds = WithRR(cached, FS)
    x = torch.stack([cached[i][0] for i in range(6)])
    with torch.no_grad():
        detected = model(x, generator=torch.Generator().manual_seed(1))
        given = model(x, rr_samples=ds.rr_samples[:6], generator=torch.Generator().manual_seed(1))
    for key in detected:
        assert torch.equal(detected[key], given[key]), key


def test_train_loop_hands_rr_to_the_model(cached, tmp_path):
    torch.manual_seed(0)
    model = create_pretrainer('mae_nextclip', 'ecg_vit_tiny', TINY, shared_pass=True, **CLIP)
    seen = []
    model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw.get('rr_samples')), with_kwargs=True)
    cfg = TrainConfig(output_dir=str(tmp_path / 'run'), epochs=1, batch_size=8, warmup_epochs=0.5, amp='fp32',
                      progress=False, save_every=0)
    train(model, WithRR(cached, FS), None, cfg)
    assert seen and all(rr is not None and rr.shape == (8,) for rr in seen)
