"""ONNX export: parity with PyTorch under onnxruntime for batch sizes 1 and 3 of one file, the preprocessing in the
metadata and the sidecar, atomic writes, and the ``ecgvit export`` command."""
import json

import numpy as np
import pytest
import torch

import ecgvit
from ecgvit import hub
from ecgvit.cli import main
from ecgvit.export import OnnxParityError, export_onnx

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

ATOL, MIN_COSINE = 1e-4, 0.9999
TINY = dict(embed_dim=32, depth=2, num_heads=2, img_size=500)


def _cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def _ort_vs_torch(path, model, length, batch):
    """Our own check, independent of the module's: onnxruntime vs model(x) and its pre-logits embedding."""
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    x = torch.randn(batch, 12, length)
    with torch.no_grad():
        emb = model.forward_head(model.forward_features(x), pre_logits=True).numpy()
        out = model(x).numpy()
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {'ecg': x.numpy()})))
    return got, emb, out


@pytest.fixture(scope='module')
def tiny_head():
    torch.manual_seed(0)
    return ecgvit.create_model('ecg_vit_tiny', num_classes=5, **TINY).eval()


@pytest.mark.parametrize('exporter', ['dynamo', 'torchscript'])
def test_tiny_export_matches_pytorch_for_batch_1_and_3(tiny_head, tmp_path, exporter, one_thread):
    result = export_onnx(tiny_head, tmp_path / 'model.onnx', exporter=exporter, weights_sha256='ab' * 32)
    for batch in (1, 3):
        got, emb, logits = _ort_vs_torch(result.path, tiny_head, 500, batch)
        assert got['embedding'].shape == (batch, 32) and got['logits'].shape == (batch, 5)
        assert np.abs(got['embedding'] - emb).max() < ATOL and _cosine_min(got['embedding'], emb) > MIN_COSINE
        assert np.abs(got['logits'] - logits).max() < ATOL and _cosine_min(got['logits'], logits) > MIN_COSINE
    # what the module measured itself, for both batch sizes of the one file, is in the sidecar
    parity = json.loads(result.sidecar.read_text())['parity']
    assert set(parity['batches']) == {'1', '3'} and set(parity['batches']['3']) == {'embedding', 'logits'}
    assert 0 <= parity['max_abs_diff'] < ATOL and parity['min_cosine'] > MIN_COSINE
    assert parity == result.parity
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.onnx', 'model.onnx.json'], 'no temp files left'


def test_metadata_carries_the_preprocessing(tiny_head, tmp_path):
    result = export_onnx(tiny_head, tmp_path / 'enc.onnx', exporter='torchscript', weights_sha256='cd' * 32,
                         model_name='ecg_vit_tiny')
    session = ort.InferenceSession(str(result.path), providers=['CPUExecutionProvider'])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta['model'] == 'ecg_vit_tiny' and meta['ecgvit_version'] == ecgvit.__version__
    assert meta['weights_sha256'] == 'cd' * 32
    assert float(meta['sampling_rate']) == 360.0 and int(meta['num_samples']) == 500
    assert json.loads(meta['leads']) == list(ecgvit.LEADS) and meta['normalization'] == 'zscore_per_lead'
    pp = json.loads(meta['preprocessing'])
    assert pp['num_samples'] == 500 and pp['sampling_rate'] == 360.0 and pp['normalize'] == 'zscore'
    assert json.loads(meta['outputs']) == ['embedding', 'logits']
    assert session.get_inputs()[0].shape == ['batch', 12, 500]
    info = json.loads((tmp_path / 'enc.onnx.json').read_text())
    assert info['metadata']['leads'] == list(ecgvit.LEADS) and info['metadata']['preprocessing'] == pp
    assert info['sha256'] == hub.sha256_file(result.path) and info['opset'] == 18
    assert info['inputs'][0]['shape'] == ['batch', 12, 500]


def test_trained_preprocessing_is_what_the_metadata_records(tmp_path):
    model = ecgvit.create_model('ecg_vit_tiny', **dict(TINY, img_size=1000)).eval()
    model.pretrained_cfg = dict(model.pretrained_cfg, preprocessing={'sampling_rate': 100.0, 'num_samples': 1000})
    result = export_onnx(model, tmp_path / 'm.onnx', exporter='torchscript')
    assert result.metadata['sampling_rate'] == '100' and result.metadata['num_samples'] == '1000'
    assert result.metadata['duration_s'] == '10' and result.metadata['weights_sha256'] == 'unknown'
    assert list(result.info['outputs'][0]['shape']) == ['batch', 32]  # no head: the embedding alone


def test_static_batch_when_asked(tiny_head, tmp_path):
    result = export_onnx(tiny_head, tmp_path / 'm.onnx', exporter='torchscript', dynamic_batch=False)
    assert set(result.parity['batches']) == {'1'}
    session = ort.InferenceSession(str(result.path), providers=['CPUExecutionProvider'])
    assert session.get_inputs()[0].shape == [1, 12, 500]


def test_out_of_tolerance_export_is_refused_and_nothing_written(tiny_head, tmp_path):
    with pytest.raises(OnnxParityError, match='nothing was written'):
        export_onnx(tiny_head, tmp_path / 'm.onnx', exporter='torchscript', atol=0.0, min_cosine=1.5)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tiny_head, tmp_path):
    with pytest.raises(ValueError, match='must end in .onnx'):
        export_onnx(tiny_head, tmp_path / 'm.bin')
    with pytest.raises(ValueError, match='Unknown exporter'):
        export_onnx(tiny_head, tmp_path / 'm.onnx', exporter='tflite')
    with pytest.raises(TypeError, match='export an ecgvit encoder'):
        export_onnx(torch.nn.Linear(3, 3), tmp_path / 'm.onnx')


def test_cli_exports_a_checkpoint_with_its_sha256(tiny_head, tmp_path, capsys):
    folder = hub.save_pretrained(tiny_head, tmp_path / 'enc', pretrained_cfg={'pretrain_method': 'mae_moco'})
    out = tmp_path / 'onnx'
    rc = main(['export', '--format', 'onnx', '--checkpoint', str(folder), '--exporter', 'torchscript', '-o', str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert 'parity vs PyTorch' in text and 'batch 1' in text and 'batch 3' in text and 'max abs diff' in text
    info = json.loads((out / 'model.onnx.json').read_text())
    assert info['metadata']['weights_sha256'] == hub.sha256_file(folder / 'model.safetensors')
    assert info['metadata']['model'] == 'ecg_vit_tiny' and info['metadata']['pretrain_method'] == 'mae_moco'
    assert info['parity']['max_abs_diff'] < ATOL
    assert json.loads((out / 'config.json').read_text())['command'] == 'export'


def test_cli_refuses_an_untrained_encoder(tmp_path, capsys):
    rc = main(['export', '--model', 'ecg_vit_tiny', '-o', str(tmp_path / 'x')])
    assert rc == 2 and '--checkpoint PATH or --pretrained' in capsys.readouterr().err


def test_full_size_pretrained_export(tmp_path, capsys):
    """The paper's size (ecg_vit_mae_moco, 12.8M parameters) with its published weights, through the CLI."""
    rc = main(['export', '--format', 'onnx', '--pretrained', '--model', 'ecg_vit_mae_moco', '-o', str(tmp_path)])
    assert rc == 0
    info = json.loads((tmp_path / 'model.onnx.json').read_text())
    model = ecgvit.create_model('ecg_vit_mae_moco', pretrained=True).eval()
    assert info['metadata']['weights_sha256'] == model.pretrained_cfg['sha256']
    assert info['metadata']['num_samples'] == '3600' and info['exporter'] == 'dynamo'
    for batch in (1, 3):
        got, emb, _ = _ort_vs_torch(tmp_path / 'model.onnx', model, 3600, batch)
        assert got['embedding'].shape == (batch, 512)
        assert np.abs(got['embedding'] - emb).max() < ATOL and _cosine_min(got['embedding'], emb) > MIN_COSINE
