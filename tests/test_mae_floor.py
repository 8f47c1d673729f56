"""The MAE task's training-free floor (benchmarks/mae_floor.py): each predictor on signals whose answer is known, and
the command on a real cache."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.mae_floor import floor_losses, main, predict  # noqa: E402

FS = 360.0


def _beats(n_records: int = 3, seconds: float = 10.0, rr_s: float = 0.8, seed: int = 0) -> np.ndarray:
    """Narrow R waves every ``rr_s`` seconds on 12 leads (a lead-specific gain), z-scored per lead."""
    t = np.arange(int(FS * seconds)) / FS
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_records):
        start = rng.uniform(0.1, rr_s)
        wave = sum(np.exp(-0.5 * ((t - c) / 0.012) ** 2) for c in np.arange(start, seconds, rr_s))
        leads = np.stack([g * wave for g in np.linspace(0.5, 1.5, 12)])
        out.append((leads - leads.mean(1, keepdims=True)) / leads.std(1, keepdims=True))
    return np.asarray(out, dtype=np.float32)


def test_predictors_on_signals_with_known_answers():
    x = _beats()
    losses = floor_losses(x, FS)
    # Predicting the mean of a z-scored lead: the mean square of the masked samples, close to the lead's variance 1.
    assert 0.6 < losses['zero'] < 1.4
    # Every beat is the same shape at the same distance from its R peak: copying it back is nearly exact.
    assert losses['beat_copy'] < 0.1 * losses['zero']

    slow = np.sin(2 * np.pi * 0.2 * np.arange(3600) / FS)[None].repeat(12, 0).astype(np.float32)
    kept = np.zeros(3600, bool)
    kept[::50] = True
    kept[-1] = True  # a line through kept samples of a slow wave: close, as long as the ends are kept
    assert np.abs(predict('interpolate', slow, kept, FS) - slow).max() < 0.01
    assert not predict('beat_copy', np.zeros_like(slow), kept, FS).any()  # no R peaks: nothing to copy, the mean
    with pytest.raises(ValueError, match='Unknown predictor'):
        predict('mean', slow, kept, FS)


def test_masks_are_seeded_and_the_command_reads_a_cache(tmp_path, capsys):
    x = _beats(n_records=4, seed=1)
    assert floor_losses(x, FS, seed=3) == floor_losses(x, FS, seed=3) != floor_losses(x, FS, seed=4)
    with pytest.raises(ValueError, match='No records'):
        floor_losses(x[:0], FS)

    from ecgvit.constants import LEADS
    from ecgvit.data import Preprocessing, build_cache, get_dataset

    dataset = get_dataset('arrays', x, sampling_rate=FS, leads=LEADS)
    cache = build_cache(dataset, Preprocessing(sampling_rate=FS, num_samples=3600), tmp_path / 'c', progress=False,
                        num_workers=0)
    assert main(['--cache', str(cache), '--split', 'all', '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['records'] == 4 and set(out['losses']) == {'zero', 'interpolate', 'beat_copy'}
    assert out['losses']['beat_copy'] < out['losses']['zero']


def _mae_run(folder, method='mae', zero_decoder=False):
    """An `ecgvit pretrain` run folder as the CLI leaves it (config.json, best weights), without the training."""
    from ecgvit.pretrain import create_pretrainer
    from ecgvit.train.checkpoint import save_best

    model = create_pretrainer(method, 'ecg_vit_tiny', encoder_kwargs={'img_size': 3600})
    if zero_decoder:  # predicts 0 everywhere: exactly the `zero` floor, if the masks and layout agree
        torch.nn.init.zeros_(model.mae.decoder.decoder_pred.weight)
        torch.nn.init.zeros_(model.mae.decoder.decoder_pred.bias)
    save_best(folder / 'checkpoints', model, {'epoch': 1})
    (folder / 'config.json').write_text(json.dumps({'method': method, 'model': 'ecg_vit_tiny', 'method_kwargs': {},
                                                    'args': {'num_samples': 3600}}))
    return folder


def test_a_trained_mae_branch_is_scored_on_the_floors_own_masks(tmp_path, capsys):
    from benchmarks.mae_floor import load_mae_run, paired_mean_diff, record_losses, run_losses

    x = _beats(n_records=5, seed=2)
    floors = record_losses(x, FS, seed=7)
    zero_run = load_mae_run(_mae_run(tmp_path / 'zero', zero_decoder=True))
    # A decoder that predicts 0 scores the `zero` floor record by record: same masks, same patch layout.
    np.testing.assert_allclose(run_losses(zero_run, x, seed=7, batch_size=2), floors['zero'], rtol=1e-5)
    assert not np.allclose(run_losses(zero_run, x, seed=8), floors['zero'])  # other masks, other losses

    r = paired_mean_diff(floors['zero'] + 1.0, floors['zero'])
    assert r['diff'] == pytest.approx(1.0) and r['lo'] == pytest.approx(1.0) and r['hi'] == pytest.approx(1.0)

    from ecgvit.constants import LEADS
    from ecgvit.data import Preprocessing, build_cache, get_dataset

    cache = build_cache(get_dataset('arrays', x, sampling_rate=FS, leads=LEADS),
                        Preprocessing(sampling_rate=FS, num_samples=3600), tmp_path / 'c', progress=False,
                        num_workers=0)
    other = _mae_run(tmp_path / 'other')
    assert main(['--cache', str(cache), '--split', 'all', '--json', '--run', str(tmp_path / 'zero'),
                 '--run', str(other)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['losses'][str(tmp_path / 'zero')] == pytest.approx(out['losses']['zero'], rel=1e-5)
    # Each run against beat_copy, and every later run against the first, on the same records.
    assert [(p['a'], p['b']) for p in out['paired']] == [
        (str(tmp_path / 'zero'), 'beat_copy'), (str(other), 'beat_copy'), (str(other), str(tmp_path / 'zero'))]

    with pytest.raises(FileNotFoundError, match='no config.json'):
        load_mae_run(tmp_path / 'c')
    with pytest.raises(ValueError, match='no MAE branch'):
        load_mae_run(_mae_run(tmp_path / 'moco', method='moco'))
    with pytest.raises(ValueError, match='3600-sample windows'):
        run_losses(zero_run, x[..., :1800])
