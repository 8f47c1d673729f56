"""What the tests of continued pretraining share: tiny synthetic data options, and a training loop that only looks."""
import ecgvit.train

TINY_DATA = ['--data', 'synthetic', '--synthetic-records', '24', '--sampling-rate', '100', '--num-samples', '500',
             '--no-progress']
COMMON = [*TINY_DATA, '-b', '8', '--warmup-epochs', '1', '--amp', 'fp32', '--threads', '1', '--save-every', '2']


def capture_pretrainer(monkeypatch):
    """Replace the training loop by one that keeps the pretrainer it is given (its weights as training starts) and
    the run config; the returned dict fills when ``ecgvit pretrain`` runs."""
    seen = {}

    def fake_train(pretrainer, train_set, val_set, cfg, run_config=None):
        seen['pretrainer'], seen['run_config'] = pretrainer, run_config
        return {}

    monkeypatch.setattr(ecgvit.train, 'train', fake_train)
    monkeypatch.setattr(ecgvit.train, 'load_best_into', lambda *a, **k: None)
    monkeypatch.setattr('ecgvit.pretrain.heads.save_heads', lambda *a, **k: None)
    return seen
