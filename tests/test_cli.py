"""The `ecgvit` command line: help, config files, one-line errors, and the pretrain -> probe/embed/push path."""
import json

import numpy as np
import pytest
import torch

from ecgvit.cli import build_parser, main, train_config_from_args

pytestmark = pytest.mark.usefixtures('one_thread')


TINY_DATA = ['--data', 'synthetic', '--synthetic-records', '40', '--sampling-rate', '100', '--num-samples', '500',
             '--no-progress']


@pytest.fixture(scope='module')
def pretrain_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    out = root / 'pt'
    threads = torch.get_num_threads()
    rc = main(['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', *TINY_DATA, '--cache-dir', str(root / 'data'),
               '--epochs', '2', '-b', '8', '--warmup-epochs', '1', '--save-every', '2', '--amp', 'fp32',
               '--threads', '1', '--output', str(out)])
    torch.set_num_threads(threads)  # main() sets the process-wide count, as the console script should
    assert rc == 0
    return root, out


@pytest.mark.parametrize('command', ['pretrain', 'probe', 'finetune', 'benchmark', 'embed', 'push', 'export'])
def test_help_explains_each_command(command, capsys):
    with pytest.raises(SystemExit, match='^0$') as e:
        main([command, '--help'])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert '--config' in text and len(text.splitlines()) > 10
    # push and export train nothing: they take no seed, device or threads
    runs = command not in ('push', 'export')
    assert ('--seed' in text) == runs and ('--threads' in text) == runs


def test_console_script_entry_point(capsys):
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group='console_scripts')}
    assert scripts.get('ecgvit') == 'ecgvit.cli:main'
    with pytest.raises(SystemExit, match='^0$') as e:
        main(['--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ('pretrain', 'probe', 'finetune', 'benchmark', 'embed', 'push', 'export'):
        assert command in out


@pytest.mark.parametrize('argv, expected', [
    (['pretrain', '--method', 'simclr'], "Unknown --method 'simclr'"),
    (['pretrain', '--method', 'mae', '--data', 'ptbxl', '--data-dir', '/nonexistent/ptbxl'], 'does not exist'),
    (['pretrain', '--method', 'mae', '--data', 'ptbxl'], 'needs --data-dir'),
    (['probe', '--model', 'ecg_vit_tiny', '--data', 'synthetic:rhythm'], 'has no label sets'),
    (['benchmark', '--methods', 'random,byol'], "Unknown method(s) ['byol']"),
    (['benchmark', '--protocols', 'knn'], "Unknown protocol(s) ['knn']"),
    (['finetune', '--model', 'ecg_vit_huge'], "Unknown model 'ecg_vit_huge'"),
    (['pretrain', '--method', 'mae', '--num-samples', '510'], 'multiple of the patch length 25'),
    (['pretrain', '--method', 'mae', '--epochs', '0'], '--epochs must be positive'),
    (['pretrain', '--method', 'mae', '--warmup-epochs', 'nan'], '--warmup-epochs (warmup_epochs) must be a finite'),
    (['pretrain', '--method', 'mae', '--plateau-factor', '1.5'], '--plateau-factor (plateau_factor) must be'),
    # 0 is not "not given": it must not silently become the model's own rate or length
    (['pretrain', '--method', 'mae', '--sampling-rate', '0'], '--sampling-rate must be positive, got 0.0'),
    (['pretrain', '--method', 'mae', '--num-samples', '0'], '--num-samples must be positive, got 0'),
    (['probe', '--model', 'ecg_vit_tiny', '--sampling-rate', 'nan'], '--sampling-rate must be positive, got nan'),
    (['embed', '--input', '/nonexistent', '--sampling-rate', '-5'], '--sampling-rate must be positive, got -5.0'),
    (['benchmark', '--sampling-rate', '0'], '--sampling-rate must be positive, got 0.0'),
    (['pretrain', '--method', 'mae', '--no-such-flag'], 'unrecognized arguments: --no-such-flag'),
    (['push', '--repo-id', 'noslash'], 'must be org/name'),
    (['embed', '--input', '/nonexistent/folder'], 'does not exist'),
])
def test_bad_arguments_give_one_line(argv, expected, capsys, tmp_path):
    try:
        rc = main(argv + ['--output', str(tmp_path)] if '--no-such-flag' not in argv else argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert expected in err and len(err.splitlines()) == 1 and 'Traceback' not in err


def test_label_set_not_in_dataset_and_batch_too_large(pretrain_run, capsys, tmp_path):
    root, _ = pretrain_run
    rc = main(['probe', '--data', 'ptbxl:nosuch', '--data-dir', str(tmp_path), '--model', 'ecg_vit_tiny',
               '--output', str(tmp_path / 'x')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Unknown PTB-XL label_set 'nosuch'" in err and len(err.splitlines()) == 1
    rc = main(['probe', '--model', 'ecg_vit_tiny', *TINY_DATA, '--cache-dir', str(root / 'data'), '-b', '4096',
               '--output', str(tmp_path / 'p')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and '--batch-size 4096 is larger than the training split' in err and len(err.splitlines()) == 1
    # Not given: the default batch shrinks to a small training split, with a note, and is recorded.
    assert main(['probe', '--model', 'ecg_vit_tiny', *TINY_DATA, '--cache-dir', str(root / 'data'), '--epochs', '2',
                 '--n-boot', '0', '--output', str(tmp_path / 'small')]) == 0
    assert 'fewer than the default --batch-size 128' in capsys.readouterr().err
    assert json.loads((tmp_path / 'small' / 'config.json').read_text())['batch_size'] < 128
    assert main(['probe', '--model', 'ecg_vit_tiny', *TINY_DATA, '--cache-dir', str(root / 'data'), '--epochs', '2',
                 '--n-boot', '0', '--global-pool', 'avg', '--output', str(tmp_path / 'avg')]) == 0
    assert json.loads((tmp_path / 'avg' / 'config.json').read_text())['encoder']['global_pool'] == 'avg'
    rc = main(['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', *TINY_DATA, '--cache-dir',
               str(root / 'data'), '-b', '4096', '--output', str(tmp_path / 'q')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and 'batch_size 4096 is larger than the training set' in err


def test_pretrain_outputs_and_resolved_config(pretrain_run):
    _, out = pretrain_run
    cfg = json.loads((out / 'config.json').read_text())
    assert cfg['method'] == 'mae' and cfg['model'] == 'ecg_vit_tiny' and cfg['train']['epochs'] == 2
    assert cfg['preprocessing']['num_samples'] == 500
    assert (out / 'encoder' / 'model.safetensors').is_file() and (out / 'metrics.csv').is_file()
    assert (out / 'checkpoints' / 'best.safetensors').is_file()


def test_shared_pass_flags_and_resume(pretrain_run, tmp_path, capsys):
    root, _ = pretrain_run
    common = ['--model', 'ecg_vit_tiny', *TINY_DATA, '--cache-dir', str(root / 'data'), '-b', '8',
              '--warmup-epochs', '1', '--amp', 'fp32', '--threads', '1', '--queue-size', '64', '--save-every', '2']

    def shared_pass(out):
        cfg = json.loads((out / 'config.json').read_text())
        return cfg['pretrainer']['shared_pass']

    # The hybrids are the paper's passes by default; --grad-checkpointing rides along.
    rc = main(['pretrain', '--method', 'mae_moco', *common, '--epochs', '1', '--grad-checkpointing',
               '--output', str(tmp_path / 'default')])
    assert rc == 0 and shared_pass(tmp_path / 'default') is False
    data = json.loads((tmp_path / 'default' / 'config.json').read_text())['data']
    assert data['queue_copies_per_record'] == pytest.approx(64 / data['n_train'])  # the queue used, recorded
    assert json.loads((tmp_path / 'default' / 'config.json').read_text())['args']['grad_checkpointing'] is True
    # A shared-pass run, resumed with the plain method name and no flag, continues with the shared pass.
    shared = tmp_path / 'shared'
    assert main(['pretrain', '--method', 'mae_moco', *common, '--epochs', '1', '--shared-pass',
                 '--output', str(shared)]) == 0
    assert shared_pass(shared) is True
    assert main(['pretrain', '--method', 'mae_moco', *common, '--epochs', '2', '--resume',
                 '--output', str(shared)]) == 0
    assert shared_pass(shared) is True
    capsys.readouterr()
    # Asking for the other setting on resume is refused, naming the setting, in one line.
    rc = main(['pretrain', '--method', 'mae_moco', *common, '--epochs', '3', '--resume', '--no-shared-pass',
               '--output', str(shared)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert 'the method differs: the checkpoint was trained with mae_moco_shared, this run asks for mae_moco' in err
    assert shared_pass(shared) is True  # nothing was overwritten
    rc = main(['pretrain', '--method', 'mae', *common, '--epochs', '1', '--shared-pass',
               '--output', str(tmp_path / 'bad')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and 'shared_pass' in err and len(err.splitlines()) == 1
    # --method mae_moco_shared is --shared-pass by name (as in ecgvit benchmark); with --no-shared-pass it is refused.
    assert main(['pretrain', '--method', 'mae_moco_shared', *common, '--epochs', '1',
                 '--output', str(tmp_path / 'named')]) == 0
    cfg = json.loads((tmp_path / 'named' / 'config.json').read_text())
    assert cfg['method'] == 'mae_moco' and cfg['pretrainer']['shared_pass'] is True
    rc = main(['pretrain', '--method', 'mae_moco_shared', *common, '--epochs', '1', '--no-shared-pass',
               '--output', str(tmp_path / 'both')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and 'contradicts --no-shared-pass' in err


def test_resume_keeps_the_runs_method_settings(pretrain_run, tmp_path, capsys):
    """--method-arg, --mask-ratio and the like carry over to --resume when not given again; a different one is
    refused, naming it."""
    root, _ = pretrain_run
    out = tmp_path / 'run'
    common = ['--method', 'mae', '--model', 'ecg_vit_tiny', *TINY_DATA, '--cache-dir', str(root / 'data'), '-b', '8',
              '--warmup-epochs', '1', '--amp', 'fp32', '--threads', '1', '--save-every', '2', '--output', str(out)]

    def settings():
        cfg = json.loads((out / 'config.json').read_text())
        return cfg['pretrainer']['decoder_pos_init'], cfg['pretrainer']['mask_ratio'], cfg['train']['epochs']

    assert main(['pretrain', *common, '--epochs', '1', '--method-arg', 'decoder_pos_init=sincos',
                 '--mask-ratio', '0.5']) == 0
    assert settings() == ('sincos', 0.5, 1)
    assert main(['pretrain', *common, '--epochs', '2', '--resume']) == 0
    assert settings() == ('sincos', 0.5, 2)
    capsys.readouterr()
    rc = main(['pretrain', *common, '--epochs', '3', '--resume', '--method-arg', 'decoder_pos_init=normal'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "decoder_pos_init='sincos' there" in err
    assert settings() == ('sincos', 0.5, 2)  # nothing was overwritten
    # The data too: another rate is refused before anything is built; the rate not given again carries over.
    rc = main(['pretrain', *[c for c in common if c not in ('--sampling-rate', '100')], '--sampling-rate', '200',
               '--epochs', '3', '--resume'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and 'trained with --sampling-rate 100.0, not 200.0' in err
    without_rate = [c for i, c in enumerate(common) if c != '--sampling-rate' and common[i - 1] != '--sampling-rate']
    assert main(['pretrain', *without_rate, '--epochs', '3', '--resume', str(out)]) == 0  # the run folder itself
    assert settings() == ('sincos', 0.5, 3)
    assert json.loads((out / 'config.json').read_text())['preprocessing']['sampling_rate'] == 100


def test_config_file_with_cli_override(pretrain_run, tmp_path, capsys):
    root, out = pretrain_run
    conf = tmp_path / 'probe.yaml'
    conf.write_text('epochs: 3\nbatch-size: 8\nn_boot: 20\nlr: 0.01\n')
    rc = main(['probe', '--config', str(conf), '--checkpoint', str(out), *TINY_DATA, '--cache-dir',
               str(root / 'data'), '--lr', '0.002', '--output', str(tmp_path / 'probe')])
    assert rc == 0
    resolved = json.loads((tmp_path / 'probe' / 'config.json').read_text())
    assert resolved['epochs'] == 3 and resolved['batch_size'] == 8 and resolved['lr'] == 0.002
    assert resolved['encoder']['model'] == 'ecg_vit_tiny'  # read from the pretraining run's config
    result = json.loads((tmp_path / 'probe' / 'results.json').read_text())
    assert result['protocol'] == 'linear' and 'auc_ovo_lo' in result
    assert '| linear |' in capsys.readouterr().out
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'epochz': 3}))
    assert main(['probe', '--config', str(bad)]) == 2
    assert "unknown option(s) ['epochz']" in capsys.readouterr().err


def test_embed_wfdb_folder_and_cache(pretrain_run, tmp_path):
    root, out = pretrain_run
    wfdb_dir = next((root / 'data').glob('synthetic-*'))
    rc = main(['embed', '--checkpoint', str(out), '--input', str(wfdb_dir), '--sampling-rate', '100',
               '--num-samples', '500', '--no-progress', '--output', str(tmp_path / 'e1')])
    assert rc == 0
    emb = np.load(tmp_path / 'e1' / 'embeddings.npy')
    ids = (tmp_path / 'e1' / 'ids.txt').read_text().split()
    assert emb.shape == (40, 64) and ids == [f'syn{i:05d}' for i in range(40)]  # the folder's order, not by split
    cache = next((root / 'data').glob('cache-*'))
    assert main(['embed', '--checkpoint', str(out / 'encoder'), '--input', str(cache), '--no-progress',
                 '--output', str(tmp_path / 'e2')]) == 0
    cache_ids = (tmp_path / 'e2' / 'ids.txt').read_text().split()
    assert sorted(cache_ids) == ids and cache_ids != ids  # a cache's rows keep its own order (split blocks)
    emb = emb[[ids.index(i) for i in cache_ids]]
    np.testing.assert_allclose(np.load(tmp_path / 'e2' / 'embeddings.npy'), emb, atol=1e-4)
    assert json.loads((tmp_path / 'e2' / 'config.json').read_text())['embedding_dim'] == 64
    # The same weights read through the mean of their normed patch tokens: other features, recorded as such.
    assert main(['embed', '--checkpoint', str(out / 'encoder'), '--input', str(cache), '--no-progress',
                 '--global-pool', 'avg', '--amp', 'fp32', '--output', str(tmp_path / 'avg')]) == 0
    from ecgvit.data import CachedECGDataset
    from ecgvit.hub import load_encoder
    model = load_encoder(str(out / 'encoder'))[0].eval()
    with torch.no_grad():
        tokens = model.forward_features(torch.from_numpy(np.asarray(CachedECGDataset(cache).signals)))
    np.testing.assert_allclose(np.load(tmp_path / 'avg' / 'embeddings.npy'), tokens[:, 1:].mean(1).numpy(),
                               atol=1e-4)
    assert json.loads((tmp_path / 'avg' / 'config.json').read_text())['encoder']['global_pool'] == 'avg'
    # The switchable fast path (int8 dynamic quantisation here) stays close to the fp32 embeddings.
    assert main(['embed', '--checkpoint', str(out / 'encoder'), '--input', str(cache), '--no-progress', '--fast',
                 'int8', '--output', str(tmp_path / 'e3')]) == 0
    fast = np.load(tmp_path / 'e3' / 'embeddings.npy')
    cos = (fast * emb).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(emb, axis=1)
    assert fast.shape == emb.shape and cos.min() > 0.99
    assert json.loads((tmp_path / 'e3' / 'config.json').read_text())['encoder']['fast_mode'] == 'int8'


def test_push_goes_through_hub(pretrain_run, tmp_path, monkeypatch):
    import ecgvit.hub

    _, out = pretrain_run
    calls = {}

    def fake_push(model, repo_id, **kw):
        calls.update(model=model, repo_id=repo_id, **kw)
        return f'https://huggingface.co/{repo_id}/commit/abc'

    monkeypatch.setattr(ecgvit.hub, 'push_to_hub', fake_push)
    assert main(['push', '--checkpoint', str(out), '--repo-id', 'org/ecg_vit_test', '--private',
                 '--output', str(tmp_path)]) == 0
    assert calls['repo_id'] == 'org/ecg_vit_test' and calls['private'] is True
    assert calls['model'].embed_dim == 64


def test_parser_defaults_follow_the_seed():
    # Flags come from TrainConfig's fields and take its defaults (warm-up: auto, the seed's 20 from 100 epochs on).
    cfg = train_config_from_args(build_parser().parse_args(['pretrain', '--method', 'mae_moco']))
    assert (cfg.lr, cfg.batch_size, cfg.warmup_epochs, cfg.plateau_factor, cfg.plateau_patience) == \
        (2e-4, 64, None, 0.9, 15)
    cfg = train_config_from_args(build_parser().parse_args(
        ['pretrain', '--method', 'mae', '--plateau-factor', '0.5', '--keep-last', '1', '--no-progress']))
    assert (cfg.plateau_factor, cfg.keep_last, cfg.progress, cfg.epochs) == (0.5, 1, False, 10)


def test_one_default_everywhere():
    from ecgvit.benchmark import BenchmarkConfig
    from ecgvit.eval import FinetuneConfig, ProbeConfig
    from ecgvit.options import options_from_args

    parser = build_parser()
    args = parser.parse_args(['finetune'])
    assert FinetuneConfig(**options_from_args(args, FinetuneConfig)).weight_decay == 0.05  # was 0.0 from the CLI
    assert ProbeConfig().amp == FinetuneConfig().amp == BenchmarkConfig().amp == 'auto'  # probe was fp32
    assert BenchmarkConfig().sampling_rate is None  # the model's own rate (was 100 Hz here, 360 Hz in the CLI)
    assert BenchmarkConfig().probe == ProbeConfig() and BenchmarkConfig().finetune == FinetuneConfig()
    # Nested recipe fields get prefixed flags; options not given leave the preset alone.
    args = parser.parse_args(['benchmark', '--pretrain-epochs', '3', '--finetune-layer-decay', '1'])
    assert (args.pretrain_epochs, args.finetune_layer_decay, args.probe_epochs) == (3, 1.0, None)


def test_pretrain_without_resume_into_a_finished_run_is_refused(pretrain_run, capsys):
    """Issue 18, item 1: the finished run's metrics, best weights and checkpoints stay as they were."""
    root, out = pretrain_run
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob('*') if p.is_file() and 'data' not in p.parts}
    capsys.readouterr()
    rc = main(['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', *TINY_DATA, '--cache-dir', str(root / 'data'),
               '--epochs', '3', '-b', '8', '--amp', 'fp32', '--threads', '1', '--output', str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and 'already holds a training run' in err and '--resume' in err and len(err.splitlines()) == 1
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob('*') if p.is_file() and 'data' not in p.parts}
    assert after == before


def test_a_warm_up_longer_than_the_run_is_said_once_per_command(pretrain_run, tmp_path, caplog):
    root, out = pretrain_run
    data = [*TINY_DATA, '--cache-dir', str(root / 'data'), '--amp', 'fp32', '--threads', '1']
    with caplog.at_level('WARNING', logger='ecgvit.train.validate'):
        assert main(['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', *data, '--epochs', '1', '-b', '8',
                     '--warmup-epochs', '2', '--output', str(tmp_path / 'pt')]) == 0
        assert main(['finetune', '--checkpoint', str(out), *data, '--epochs', '1', '--warmup-epochs', '3',
                     '--n-boot', '0', '--output', str(tmp_path / 'ft')]) == 0
    said = [r.getMessage() for r in caplog.records if 'longer than the run' in r.getMessage()]
    assert [m.split(' is ')[1].split(',')[0] for m in said] == ['2 epochs', '3 epochs'], said
