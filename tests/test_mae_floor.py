"""The MAE task's training-free floor (benchmarks/mae_floor.py): each predictor on signals whose answer is known, and
the command on a real cache."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

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
