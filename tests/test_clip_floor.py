"""The Nextclip task's training-free floor (benchmarks/clip_floor.py): predictors on signals whose next beat is known,
the clips the branch itself draws, a trained branch scored as training scores it, and the command on a real cache."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_mae_floor import FS, _beats, _mae_run  # noqa: E402

from benchmarks.clip_floor import (  # noqa: E402
    default_branch,
    draw_clips,
    load_clip_run,
    main,
    predict,
    record_losses,
    run_losses,
    target_positions,
)


def test_predictors_on_signals_whose_next_beat_is_known():
    x = _beats(n_records=4, seed=3)
    losses = record_losses(x, FS, seeds=(0, 1))
    # The mean of a z-scored lead: the clip's mean square, near the variance 1 (a clip may miss the R wave).
    assert 0.1 < losses['zero'].mean() < 2.0
    # Strictly periodic beats: the half-cycle after any point is the one a beat earlier, so copying it is near exact.
    assert losses['previous_beat'].mean() < 0.05 * losses['zero'].mean()
    assert losses['beat_template'].mean() < 0.05 * losses['zero'].mean()
    assert {k: v.tolist() for k, v in record_losses(x, FS, seeds=(0, 1)).items()} == {
        k: v.tolist() for k, v in losses.items()}  # seeded draws repeat
    assert not np.allclose(record_losses(x, FS, seeds=(2,))['zero'], losses['zero'])

    flat = np.zeros((12, 2000))
    positions = target_positions(2000, 150, 150)
    assert not predict('beat_template', flat, positions, FS).any()  # no R peaks: nothing to copy, the mean
    np.testing.assert_array_equal(positions, np.arange(2000, 2150))  # 150 samples into 150: each sample itself
    with pytest.raises(ValueError, match='Unknown predictor'):
        predict('mean', flat, positions, FS)
    with pytest.raises(ValueError, match='No records'):
        record_losses(x[:0], FS)


def test_the_floors_score_the_clips_the_branch_draws_in_training():
    """The floors' target and hidden record are the branch's own (make_targets with the same generator)."""
    from ecgvit.data.augment import crop_resize
    from ecgvit.data.rpeaks import median_rr_samples

    x = torch.as_tensor(_beats(n_records=3, seed=4))
    branch = default_branch(x.shape[-1], FS)
    rr = torch.as_tensor(median_rr_samples(x.numpy(), FS), dtype=torch.float32)
    start, span = draw_clips(branch, x, rr, seed=5)
    hidden, target, start2, span2 = branch.make_targets(x, rr, torch.Generator().manual_seed(5))
    assert torch.equal(start, start2) and torch.equal(span, span2)
    assert torch.equal(crop_resize(x, start, span, branch.clip_len), target)
    zero = record_losses(x.numpy(), FS, seeds=(5,), branch=branch)['zero']
    np.testing.assert_allclose(zero, target.pow(2).mean(dim=(1, 2)).numpy(), rtol=1e-5)
    assert not hidden[0, :, int(start[0]):].any()  # what the predictors may not see, the encoder does not either


def _nextclip_run(folder):
    from ecgvit.pretrain import create_pretrainer
    from ecgvit.train.checkpoint import save_best

    model = create_pretrainer('mae_nextclip', 'ecg_vit_tiny', encoder_kwargs={'img_size': 3600})
    save_best(folder / 'checkpoints', model, {'epoch': 1})
    (folder / 'config.json').write_text(json.dumps({'method': 'mae_nextclip', 'model': 'ecg_vit_tiny',
                                                    'method_kwargs': {}, 'args': {'num_samples': 3600}}))
    return folder


def test_a_trained_branch_scores_what_its_training_loss_would(tmp_path, capsys):
    x = _beats(n_records=5, seed=6)
    model = load_clip_run(_nextclip_run(tmp_path / 'run'))
    from ecgvit.data.rpeaks import median_rr_samples

    rr = torch.as_tensor(median_rr_samples(x, FS), dtype=torch.float32)
    with torch.no_grad():
        loss, _, _ = model.clip(model.encoder, torch.as_tensor(x), rr, torch.Generator().manual_seed(0))
    per_record = run_losses(model, x, seeds=(0,), batch_size=2)
    assert per_record.shape == (5,) and per_record.mean() == pytest.approx(float(loss), rel=1e-5)

    from ecgvit.constants import LEADS
    from ecgvit.data import Preprocessing, build_cache, get_dataset

    cache = build_cache(get_dataset('arrays', x, sampling_rate=FS, leads=LEADS),
                        Preprocessing(sampling_rate=FS, num_samples=3600), tmp_path / 'c', progress=False,
                        num_workers=0)
    run = str(tmp_path / 'run')
    assert main(['--cache', str(cache), '--split', 'all', '--seeds', '2', '--json', '--run', run]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['records'] == 5 and set(out['losses']) == {'zero', 'previous_beat', 'beat_template', run}
    from ecgvit.data.cache import CachedECGDataset

    cached = CachedECGDataset(cache, split=None).signals  # what the command reads (the cache's own preprocessing)
    assert out['losses'][run] == pytest.approx(run_losses(model, cached, seeds=(0, 1)).mean(), rel=1e-5)
    assert [(p['a'], p['b']) for p in out['paired']] == [
        (run, 'zero'), (run, 'beat_template'), ('beat_template', 'zero')]
    with pytest.raises(ValueError, match='without a Nextclip branch'):
        load_clip_run(_mae_run(tmp_path / 'mae'))
