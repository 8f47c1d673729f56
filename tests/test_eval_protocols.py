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
    res = linear_probe(enc, tr, va, te, epochs=60, warmup_epochs=2, n_boot=50, output_dir=str(tmp_path))
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
