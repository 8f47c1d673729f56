"""Linear probe and fine-tuning on a small separable task (stand-in data, tiny encoder)."""
import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import ecgvit
from ecgvit.eval import TaskInfo, extract_features, finetune, finetune_param_groups, infer_task, linear_probe

pytestmark = pytest.mark.usefixtures('one_thread')


L = 200


class Labelled(TensorDataset):
    def __init__(self, x, y, names, multilabel=False):
        super().__init__(x, y)
        self.label_names = names
        self.multilabel = multilabel
        self.record_ids = [f'r{i}' for i in range(len(x))]


def _task_data(n, seed, multilabel=False):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.5 * torch.randn(n, 12, L, generator=g)
    t = torch.arange(L) / L
    for c in range(3):  # each class raises a different lead and has its own rhythm: separable even by random features
        x[y == c, c] += 3.0
        x[y == c] += torch.sin(2 * torch.pi * (c + 1) * 3 * t)
    if multilabel:
        yy = torch.nn.functional.one_hot(y, 3).float()
        return Labelled(x, yy, ['a', 'b', 'c'], True)
    return Labelled(x, y, ['a', 'b', 'c'])


def test_infer_task():
    assert infer_task(_task_data(8, 0)) == TaskInfo(3, False, ['a', 'b', 'c'])
    assert infer_task(_task_data(8, 0, multilabel=True)).multilabel
    assert infer_task(TensorDataset(torch.zeros(4, 12, L), torch.tensor([0, 1, 2, 1]))).num_classes == 3


def test_linear_probe_learns_and_folds_head(tmp_path):
    torch.manual_seed(0)
    enc = ecgvit.create_model('ecg_vit_tiny')
    tr, va, te = _task_data(90, 0), _task_data(30, 1), _task_data(30, 2)
    # fp32: the folded head is compared with the encoder's own fp32 forward below.
    res = linear_probe(enc, tr, va, te, epochs=60, warmup_epochs=2, n_boot=50, amp='fp32', output_dir=str(tmp_path))
    assert res['auc_ovo'] > 0.9 and res['auc_ovo_lo'] <= res['auc_ovo'] <= res['auc_ovo_hi']
    assert res['best_epoch'] >= 0 and res['epochs_run'] <= 60
    # The encoder now carries the probe as its head, standardisation folded in: same predictions.
    pred = np.load(tmp_path / 'predictions.npz')
    with torch.no_grad():
        prob = torch.softmax(enc.eval()(te.tensors[0]), -1).numpy()
    np.testing.assert_allclose(prob, pred['prob'], atol=1e-4)
    assert list(pred['ids'][:2]) == ['r0', 'r1']
    assert json.loads((tmp_path / 'results.json').read_text())['protocol'] == 'linear'
    feats, labels = extract_features(enc, te)
    assert feats.shape == (30, 64) and labels.shape == (30,)


def test_finetune_multilabel_with_layer_decay(tmp_path):
    torch.manual_seed(0)
    enc = ecgvit.create_model('ecg_vit_tiny')
    groups = finetune_param_groups(enc, 0.05, 0.5)
    assert len({g['lr_scale'] for g in groups}) > 2  # per-block scales
    tr, va, te = (_task_data(60, s, multilabel=True) for s in (0, 1, 2))
    res = finetune(enc, tr, va, te, epochs=6, batch_size=16, lr=1e-3, warmup_epochs=1, n_boot=30, amp='fp32',
                   output_dir=str(tmp_path))
    assert res['multilabel'] and res['primary_metric'] == 'auroc_macro'
    assert res['auroc_macro'] > 0.7
    assert (tmp_path / 'model.safetensors').is_file()


def test_schedules_follow_the_seed_and_are_written_in_the_results(tmp_path):
    from ecgvit.eval import FinetuneConfig, ProbeConfig

    for cls in (ProbeConfig, FinetuneConfig):  # "same as pretraining": auto warm-up, then plateau 0.9 / 15
        cfg = cls()
        assert (cfg.warmup_epochs, cfg.schedule, cfg.plateau_factor, cfg.plateau_patience) == \
            (None, 'plateau', 0.9, 15)
        assert cfg.early_stop_patience > cfg.plateau_patience and cfg.amp == 'auto'
    assert FinetuneConfig().weight_decay == 0.05 and ProbeConfig().weight_decay == 0.0
    torch.manual_seed(0)
    enc = ecgvit.create_model('ecg_vit_tiny')
    tr, va, te = _task_data(40, 0), _task_data(20, 1), _task_data(20, 2)
    res = linear_probe(enc, tr, va, te, epochs=10, plateau_patience=2, n_boot=0, amp='fp32',
                       output_dir=str(tmp_path))
    written = json.loads((tmp_path / 'results.json').read_text())['config']
    assert written['warmup_epochs'] == 2.0 == res['warmup_epochs']  # auto resolved: 0.2 x 10 epochs
    assert (written['plateau_factor'], written['plateau_patience'], written['epochs']) == (0.9, 2, 10)
    res = finetune(enc, tr, va, te, config=FinetuneConfig(epochs=1, batch_size=8, warmup_epochs=0.5, n_boot=0,
                                                          amp='fp32', progress=False))
    assert res['config']['warmup_epochs'] == 0.5 and res['config']['weight_decay'] == 0.05
    with pytest.raises(ValueError, match=r"Unknown ProbeConfig option\(s\) \['epochz'\]"):
        linear_probe(enc, tr, va, te, epochz=3)


@pytest.mark.parametrize('clip', [-1.0, float('nan')])
def test_finetune_refuses_a_negative_gradient_clip(clip):
    """Issue 18, item 3: a negative clip turned fine-tuning into gradient ascent with exit 0."""
    tr, va, te = (_task_data(20, s) for s in (0, 1, 2))
    with pytest.raises(ValueError, match=r'--clip-grad \(clip_grad\) must be a finite gradient-norm bound'):
        finetune(ecgvit.create_model('ecg_vit_tiny'), tr, va, te, epochs=1, batch_size=8, clip_grad=clip)
