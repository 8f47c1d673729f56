"""The command line against a hostile user: wrong types in config files, contradictory or out-of-range options,
output folders that belong to another command, and results that must land whole or not at all."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import sine_leads, write_wfdb

from ecgvit.cli import _parse, build_parser, main

pytestmark = pytest.mark.usefixtures('one_thread')


def _run(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.err.strip(), captured.out


def _one_line_error(argv, capsys, expected):
    rc, err, _ = _run(argv, capsys)
    assert rc == 2, err
    assert expected in err, err
    assert len(err.splitlines()) == 1 and 'Traceback' not in err
    return err


@pytest.fixture
def wfdb_folder(tmp_path):
    folder = tmp_path / 'records'
    folder.mkdir()
    for i in range(6):
        write_wfdb(folder, f'r{i}', sine_leads(100, 1000, freq=1 + i) + 0.1 * i, 100)
    return folder


# ---------------------------------------------------------------------------------------------------------------------
# --config values are checked as the command line checks them


CONFIG_VALUES = [
    ({'pretrained': 'false'}, 'pretrained must be true or false'),  # text 'false' would have turned it on
    ({'epochs': 1.7}, 'epochs must be a whole number, got 1.7'),
    ({'threads': 0.5}, 'threads must be a whole number'),
    ({'batch_size': None}, 'batch_size is null'),  # embed's -b has a default of its own (probe's: null = not given)
    ({'lr': 'fast'}, 'lr must be a number'),
    ({'amp': 'fp8'}, 'amp must be one of auto, bf16, fp32'),
    ({'method_arg': 3}, 'is not KEY=VALUE'),  # a scalar: one KEY=VALUE item, refused for its missing '='
]


@pytest.mark.parametrize('values, expected', CONFIG_VALUES)
def test_config_values_are_type_checked(values, expected, tmp_path, capsys):
    path = tmp_path / 'c.json'
    path.write_text(json.dumps(values))
    argv = ['pretrain', '--method', 'mae', '--config', str(path)] if 'method_arg' in values else \
        ['embed', '--input', '.', '--config', str(path)] if 'batch_size' in values else ['probe', '--config', str(path)]
    _one_line_error(argv + ['-o', str(tmp_path / 'o')], capsys, expected)


def test_config_method_args_as_a_mapping(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('method: mae\nmethod_arg:\n  decoder_pos_init: sincos\n  mask_ratio: 0.5\nprogress: false\n')
    args = _parse(['pretrain', '--config', str(path)])
    assert args.method_arg == ['decoder_pos_init="sincos"', 'mask_ratio=0.5'] and args.progress is False


def test_config_values_a_user_writes_naturally(tmp_path):
    """YAML reads 1e-3 as text (the command line takes it); comma options as lists; a key named after the flag."""
    path = tmp_path / 'c.yaml'
    path.write_text('lr: 1e-3\nn_boot: "50"\n')
    args = _parse(['probe', '--config', str(path)])
    assert args.lr == 0.001 and args.n_boot == 50
    path.write_text('seeds: [0, 1]\nfractions: [0.1, 1]\ncheckpoint: [mae_moco=runs/x]\n')
    args = _parse(['benchmark', '--config', str(path)])
    assert (args.seeds, args.fractions, args.checkpoints) == ('0,1', '0.1,1', ['mae_moco=runs/x'])
    # Options whose flag reads a comma list itself (--methods mae,moco) take a YAML list as well.
    path.write_text('methods: [mae, moco]\nprotocols: [linear]\n')
    args = _parse(['benchmark', '--config', str(path)])
    assert (args.methods, args.protocols) == (['mae', 'moco'], ['linear'])


def test_config_file_errors_name_the_line_and_the_encoding(tmp_path, capsys):
    path = tmp_path / 'c.yaml'
    path.write_text('epochs: 3\nlr: [1\n')
    err = _one_line_error(['probe', '--config', str(path)], capsys, 'is not valid YAML (line')
    assert err.startswith('ecgvit probe: error:')
    path.write_bytes(b'epochs: \xff\xfe\n')
    _one_line_error(['probe', '--config', str(path)], capsys, 'is not UTF-8 text')


# ---------------------------------------------------------------------------------------------------------------------
# Contradictory, ignored and out-of-range options end before any work


BAD_OPTIONS = [
    (['probe', '--model', 'ecg_vit_tiny', '--n-boot', '-1'], '--n-boot (n_boot) must be 0 (no confidence intervals)'),
    (['probe', '--model', 'ecg_vit_tiny', '--early-stop-patience', '-1'], '--early-stop-patience'),
    (['finetune', '--model', 'ecg_vit_tiny', '--layer-decay', '2'], '--layer-decay (layer_decay) must be a factor'),
    (['finetune', '--model', 'ecg_vit_tiny', '--layer-decay', '0'], '--layer-decay (layer_decay) must be a factor'),
    (['finetune', '--model', 'ecg_vit_tiny', '--weight-decay', '-1'], '--weight-decay (weight_decay) must be'),
    (['finetune', '--model', 'ecg_vit_tiny', '--drop-path', '1.5'], '--drop-path must be a rate in [0, 1)'),
    (['probe', '--model', 'ecg_vit_tiny', '--schedule', 'cosine', '--plateau-factor', '0.5'],
     '--plateau-factor: option(s) of the plateau schedule, which --schedule cosine ignores'),
    (['pretrain', '--method', 'mae', '--schedule', 'cosine', '--plateau-patience', '3'],
     '--plateau-patience: option(s) of the plateau schedule'),
    (['benchmark', '--fractions', '0.1'], '--fractions: option(s) of the evaluation suite (--suite real)'),
    (['benchmark', '--global-pool', 'avg'], '--global-pool: option(s) of the evaluation suite (--suite real)'),
    (['benchmark', '--seeds', '0,1', '--tasks', 'ptbxl_form'], '--seeds, --tasks: option(s) of the evaluation suite'),
    (['benchmark', '--quick', '--n-boot', '-1'], '--n-boot must be 0 (no confidence intervals) or more'),
    (['embed', '--model', 'ecg_vit_tiny', '--input', '.', '--fast', 'bf16', '--amp', 'bf16'],
     '--fast bf16 sets the precision itself'),
    (['embed', '--model', 'ecg_vit_tiny', '--input', '.', '-b', '0'], '--batch-size must be positive'),
    (['embed', '--model', 'ecg_vit_tiny', '--input', '.', '-j', '-1'], '-j/--num-workers must be 0 or more'),
    (['embed', '--checkpoint', 'x', '--pretrained', '--input', '.'], '--pretrained and --checkpoint both name'),
    (['probe', '--checkpoint', 'x', '--pretrained'], '--pretrained and --checkpoint both name'),
    (['export', '--pretrained', '--min-cosine', '2'], '--min-cosine must be at most 1'),
    (['push', '--repo-id', 'org/name'], 'give the weights to upload'),
    (['push'], '--repo-id org/name is required'),
    (['probe', '--device', 'gpu'], "--device 'gpu' is not a device: use cpu, cuda or cuda:N"),
    (['probe', '--seed', '-1'], '--seed must be from 0 to 4294967295, got -1'),
    (['embed', '--input', '.', '--seed', str(2 ** 70)], '--seed must be from 0 to 4294967295'),
    (['probe', '--data', 'ptbxll'], "Unknown dataset 'ptbxll'"),
    (['pretrain', '--method', 'mae', '--method-arg', 'queue_size=8'],
     '--method-arg queue_size=8: mae has no setting queue_size. Its settings (--method-arg KEY=VALUE): '),
    (['pretrain', '--method', 'mae', '--mask-ratio', '1'], '--mask-ratio 1.0: mask_ratio must be in [0, 1)'),
    (['pretrain', '--method', 'mae_moco', '--method-arg', 'temperature=0'], '--method-arg temperature=0: '),
    (['benchmark', '--suite', 'real', '--data-dir', '.', '--methods', 'mae', '--resume'],
     '--methods, --resume: option(s) of the methods x protocols benchmark, which the evaluation suite'),
]


@pytest.mark.parametrize('argv, expected', BAD_OPTIONS)
def test_bad_options_end_in_one_line(argv, expected, tmp_path, capsys):
    _one_line_error(argv + ['-o', str(tmp_path / 'out')], capsys, expected)
    assert not (tmp_path / 'out' / 'config.json').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
@pytest.mark.parametrize('command', [['benchmark', '--quick'], ['embed', '--input', '.'], ['probe']])
def test_device_cuda_without_a_gpu_is_one_line(command, tmp_path, capsys):
    _one_line_error(command + ['--device', 'cuda', '-o', str(tmp_path / 'o')], capsys,
                    'this machine has no usable CUDA GPU')


def test_unknown_flag_names_the_command(capsys):
    _one_line_error(['probe', '--bogus'], capsys, 'ecgvit probe: error: unrecognized arguments: --bogus')


def test_export_output_is_a_folder(tmp_path, capsys):
    _one_line_error(['export', '--pretrained', '-o', str(tmp_path / 'model.onnx')], capsys,
                    'names the folder that receives model.onnx')


def test_export_refuses_an_opset_out_of_range(tmp_path):
    pytest.importorskip('onnx')
    import ecgvit
    from ecgvit.export import export_onnx

    with pytest.raises(ValueError, match='opset must be a whole number from 7 to'):
        export_onnx(ecgvit.create_model('ecg_vit_tiny', img_size=500), tmp_path / 'm.onnx', opset=3, check=False)
    assert not list(tmp_path.iterdir())


def test_export_refuses_an_opset_it_could_not_convert_to(tmp_path, capfd):
    """The dynamo exporter falls back to opset 18 when it cannot convert (LayerNormalization has no older version):
    that file was recorded as opset 7, with a logged traceback and exit 0."""
    pytest.importorskip('onnxscript')
    import ecgvit
    from ecgvit.export import export_onnx

    with pytest.raises(ValueError, match='wrote opset 18, not the 7 asked for'):
        export_onnx(ecgvit.create_model('ecg_vit_tiny', img_size=500), tmp_path / 'new' / 'm.onnx', opset=7,
                    check=False)
    assert not list(tmp_path.iterdir())  # not even the folder the call made
    assert 'Traceback' not in capfd.readouterr().err


def test_help_of_switches_that_turn_something_off():
    helps = {}
    for command in ('probe', 'export'):
        sub = build_parser()._subparsers._group_actions[0].choices[command]
        helps.update({a.option_strings[0]: a.help for a in sub._actions if a.option_strings})
    assert helps['--no-progress'] == 'Hide progress bars.'
    assert helps['--no-check'].startswith('Skip the onnxruntime-vs-PyTorch check')
    assert helps['--no-dynamic-batch'].startswith('Fix the batch dimension at 1')


# ---------------------------------------------------------------------------------------------------------------------
# Output folders: one command's results are never overwritten by another's


OTHER_OUTPUTS = [
    ({'command': 'pretrain'}, ['embed', '--model', 'ecg_vit_tiny', '--input', '.'], 'the results of `ecgvit pretrain`'),
    ({'command': 'embed'}, ['probe', '--model', 'ecg_vit_tiny'], 'the results of `ecgvit embed`'),
    ({'command': 'linear'}, ['finetune', '--model', 'ecg_vit_tiny'], 'the results of `ecgvit probe`'),
    ({'architecture': 'ecg_vit_tiny'}, ['export', '--pretrained'], 'a saved encoder (save_pretrained)'),
    ({'methods': ['random'], 'protocols': ['linear']}, ['pretrain', '--method', 'mae'],
     'the results of `ecgvit benchmark`'),
    ({'something': 'else'}, ['benchmark', '--quick'], 'a config.json ecgvit did not write'),
]


@pytest.mark.parametrize('owner, argv, expected', OTHER_OUTPUTS)
def test_a_command_refuses_another_commands_folder(owner, argv, expected, tmp_path, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'config.json').write_text(json.dumps(owner))
    _one_line_error(argv + ['-o', str(out)], capsys, expected)
    assert json.loads((out / 'config.json').read_text()) == owner
    assert sorted(p.name for p in out.iterdir()) == ['config.json']


def test_output_that_is_a_file(tmp_path, capsys):
    (tmp_path / 'f').write_text('x')
    _one_line_error(['probe', '--model', 'ecg_vit_tiny', '-o', str(tmp_path / 'f')], capsys, 'is a file')


def test_embed_rerun_replaces_its_own_outputs_and_no_stale_file(wfdb_folder, tmp_path, capsys):
    common = ['embed', '--model', 'ecg_vit_tiny', '--input', str(wfdb_folder), '--sampling-rate', '100',
              '--num-samples', '500', '--no-progress', '-o', str(tmp_path / 'e')]
    assert _run(common + ['--pooling', 'none'], capsys)[0] == 0
    assert (tmp_path / 'e' / 'windows.csv').is_file()
    rc, _, out = _run(common + ['--pooling', 'mean'], capsys)
    assert rc == 0 and 'a random-init encoder (seed 0)' in out
    # The mean-pooled rows are one per record: the windows.csv of the run before would describe rows that are gone.
    names = sorted(p.name for p in (tmp_path / 'e').iterdir() if not p.name.startswith('.'))
    assert names == ['cache', 'config.json', 'embeddings.npy', 'ids.txt', 'skipped.csv']
    assert np.load(tmp_path / 'e' / 'embeddings.npy').shape[0] == 6


def test_embed_that_fails_while_writing_leaves_no_config(wfdb_folder, tmp_path, capsys, monkeypatch):
    """A config.json vouches for the files beside it: one run's, complete. A run that dies between two files
    (a full disk) must not leave the previous run's config.json beside a new embeddings.npy."""
    import ecgvit.files

    argv = ['embed', '--model', 'ecg_vit_tiny', '--input', str(wfdb_folder), '--sampling-rate', '100',
            '--num-samples', '500', '--no-progress', '-o', str(tmp_path / 'e')]
    assert _run(argv, capsys)[0] == 0
    old_ids = (tmp_path / 'e' / 'ids.txt').read_text()

    def disk_full(path, text):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(ecgvit.files, 'atomic_write_text', disk_full)
    rc, err, _ = _run(argv + ['--seed', '5'], capsys)
    assert rc == 2 and 'No space left on device' in err
    assert not (tmp_path / 'e' / 'config.json').exists()
    assert (tmp_path / 'e' / 'ids.txt').read_text() == old_ids  # whole, not truncated


def test_resume_from_another_folder_reads_the_same_data(wfdb_folder, tmp_path, capsys, monkeypatch):
    """A relative --data-dir was recorded as typed: a resume from another folder trained on that folder's data."""
    monkeypatch.chdir(wfdb_folder.parent)
    common = ['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', '--sampling-rate', '100', '--num-samples',
              '500', '-b', '2', '--warmup-epochs', '0', '--amp', 'fp32', '--no-progress', '-o', str(tmp_path / 'run')]
    assert _run(common + ['--data', 'folder', '--data-dir', wfdb_folder.name, '--epochs', '1', '--cache-dir',
                          'cache'], capsys)[0] == 0
    saved = json.loads((tmp_path / 'run' / 'config.json').read_text())['args']['data_dir']
    assert saved == str(wfdb_folder.resolve())
    elsewhere = tmp_path / 'elsewhere'
    (elsewhere / wfdb_folder.name).mkdir(parents=True)  # a folder of the same name holding nothing
    monkeypatch.chdir(elsewhere)
    assert _run(common + ['--epochs', '2', '--resume'], capsys)[0] == 0
    cfg = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert cfg['args']['data_dir'] == saved and cfg['data']['n_train'] > 0
    # --cache-dir carries over too (it was rebuilt under the run folder), recorded absolute.
    assert Path(cfg['data']['cache_dir']).parent == wfdb_folder.parent / 'cache'
    assert not (tmp_path / 'run' / 'data').exists()
    # The same options reading other records (the folder gained some) are not the run's data: refused.
    for i in range(6, 12):
        write_wfdb(wfdb_folder, f'r{i}', sine_leads(100, 1000, freq=1 + i / 4), 100)
    rc, err, _ = _run(common + ['--epochs', '3', '--resume'], capsys)
    assert rc == 2 and 'continues a run trained on' in err and 'not the data it was trained on' in err
    assert json.loads((tmp_path / 'run' / 'summary.json').read_text())['epochs'] == 2


def test_seed_fixes_a_random_init_encoder(wfdb_folder, tmp_path, capsys):
    def embed(seed, name):
        argv = ['embed', '--model', 'ecg_vit_tiny', '--input', str(wfdb_folder), '--sampling-rate', '100',
                '--num-samples', '500', '--no-progress', '--seed', str(seed), '-o', str(tmp_path / name)]
        assert _run(argv, capsys)[0] == 0
        return np.load(tmp_path / name / 'embeddings.npy')

    a, b, c = embed(1, 'a'), embed(1, 'b'), embed(2, 'c')
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_a_failed_probe_keeps_the_folders_previous_config(wfdb_folder, tmp_path, capsys, monkeypatch):
    import ecgvit.eval

    out = tmp_path / 'probe'
    out.mkdir()
    previous = {'command': 'linear', 'note': 'the good run'}
    (out / 'config.json').write_text(json.dumps(previous))

    def broken(*args, **kwargs):
        raise RuntimeError('out of memory half-way')

    monkeypatch.setattr(ecgvit.eval, 'linear_probe', broken)
    argv = ['probe', '--model', 'ecg_vit_tiny', '--data', 'synthetic', '--synthetic-records', '40', '--sampling-rate',
            '100', '--num-samples', '500', '--no-progress', '-b', '8', '-o', str(out)]
    rc, err, _ = _run(argv, capsys)
    assert rc == 2 and 'out of memory half-way' in err
    assert json.loads((out / 'config.json').read_text()) == previous


def test_records_of_a_six_lead_device_are_a_lead_subset(tmp_path, capsys):
    """6-lead records read as 12 leads were embedded by 12-lead weights with a warning and recorded as 12 leads,
    while --leads 6 was refused: now both are the same subset, checked against the weights alike."""
    folder = tmp_path / 'six'
    folder.mkdir()
    for i in range(3):
        write_wfdb(folder, f'r{i}', sine_leads(360, 3600, freq=1 + i / 3, n_leads=6), 360,
                   lead_names=['I', 'II', 'III', 'aVR', 'aVL', 'aVF'])
    argv = ['embed', '--pretrained', '--model', 'ecg_vit_mae_moco', '--input', str(folder), '--no-progress']
    err = _one_line_error(argv + ['-o', str(tmp_path / 'a')], capsys, 'holds V1, V2, V3, V4, V5, V6, so the input is')
    assert '--allow-untrained-leads' in err
    with pytest.warns(UserWarning, match='not trained to run on 6-lead'):
        assert _run(argv + ['--allow-untrained-leads', '-o', str(tmp_path / 'b')], capsys)[0] == 0
    cfg = json.loads((tmp_path / 'b' / 'config.json').read_text())
    assert cfg['leads_used'] == ['I', 'II', 'III', 'aVR', 'aVL', 'aVF'] and cfg['leads_trained'] is False


def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path):
    """Ctrl-C during the first seconds of `ecgvit` (importing torch) printed an import traceback."""
    import subprocess
    import sys

    script = tmp_path / 'ecgvit'  # the console script's name, as pip installs it
    script.write_text(
        'import builtins, sys\n'
        'real = builtins.__import__\n'
        'def interrupted(name, *args, **kwargs):\n'
        '    if name == "torch":\n'
        '        raise KeyboardInterrupt\n'
        '    return real(name, *args, **kwargs)\n'
        'builtins.__import__ = interrupted\n'
        'from ecgvit.cli import main\n')
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and done.stderr.strip() == 'ecgvit: interrupted'



def cli_cases() -> list:
    """The parametrised cases above as rows of docs/hostile_input.md (tests/test_hostile_data.py writes it)."""
    rows = [{'kind': '--config value', 'input': json.dumps(values), 'expected': expected}
            for values, expected in CONFIG_VALUES]
    rows += [{'kind': 'option', 'input': 'ecgvit ' + ' '.join(argv), 'expected': expected}
             for argv, expected in BAD_OPTIONS]
    rows += [{'kind': 'output folder of another command', 'input': f'ecgvit {argv[0]} -o DIR, DIR/config.json = '
              f'{json.dumps(owner)}', 'expected': expected} for owner, argv, expected in OTHER_OUTPUTS]
    return rows


def test_our_warnings_are_one_line_and_the_format_is_restored(capsys):
    import warnings

    from ecgvit import cli

    line = cli._warning_line('ecgvit pretrain', warnings.formatwarning, 'The MoCo queue is long', UserWarning,
                            cli.__file__, 788, 'code()')
    assert line == 'ecgvit pretrain: warning: The MoCo queue is long\n'
    # Another library's warning keeps Python's format (its file and line say where to look).
    other = cli._warning_line('ecgvit pretrain', warnings.formatwarning, 'old API', FutureWarning, warnings.__file__,
                             3, None)
    assert other.startswith(f'{warnings.__file__}:3: FutureWarning: old API')
    before = warnings.formatwarning
    assert main(['probe', '--seed', '-1']) == 2
    capsys.readouterr()
    assert warnings.formatwarning is before
