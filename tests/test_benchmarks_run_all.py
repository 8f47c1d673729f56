"""benchmarks/run_all.py: the quick run writes every figure (a finite number, or null where the peer is absent)."""
import json
import math

import pytest
import torch

from benchmarks import run_all

FIGURES = ('mfu', 'mae_moco_over_mae_per_flop', 'mae_nextclip_over_mae_per_flop', 'mfu_shared',
           'mae_moco_shared_over_mae', 'mae_nextclip_shared_over_mae', 'speedup_vs_mtae', 'infer_ratio_vs_timm',
           'loader_records_per_s', 'peak_rss_gb', 'peak_rss_gb_grad_ckpt', 'peak_rss_gb_shared', 'gpu_mfu',
           'gpu_epoch_s', 'mfu_fp32', 'mfu_bf16', 'speedup_vs_mtae_fp32', 'speedup_vs_mtae_bf16')


def _check_common(data: dict) -> None:
    assert data['machine']['logical_cores'] >= 1
    assert data['machine']['cpu']
    assert {'avx2', 'avx512_bf16', 'avx512_vnni', 'amx'} <= set(data['machine']['flags'])
    assert data['torch'] == torch.__version__
    assert data['date'] and data['command'].startswith('python benchmarks/run_all.py')
    assert set(data['targets']) == set(FIGURES)


@pytest.mark.slow  # about 25 s on a busy 2-core machine
def test_quick_run_reports_every_figure(tmp_path):
    threads, flush = torch.get_num_threads(), run_all._flush_denormal_on()
    returned = run_all.main(['--quick', '--json', str(tmp_path / 'r.json')])
    data = json.loads((tmp_path / 'r.json').read_text())

    assert data == returned
    assert not data['errors'], data['errors']
    from benchmarks import peer_mtae

    peer_present = (peer_mtae.STMEM_DIR / 'models' / 'mtae.py').is_file()
    for key in FIGURES:
        value = data[key]
        if key.startswith('gpu_'):
            assert value is None and data['notes'][key] == 'skipped (--quick)'  # a CPU smoke test measures no GPU
            continue
        if key.startswith('speedup_vs_mtae') and not peer_present:
            assert value is None  # no ST-MEM checkout: skipped, not a made-up number
            assert data['notes'][key].startswith('skipped')
            continue
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
        # A utilisation above 1 (emulated bf16 outrunning its measured peak) is no verdict, and says so.
        assert data['passed'][key] in (True, False) or data['notes'][key].startswith('invalid'), key
    _check_common(data)
    assert data['dtype'] in ('fp32', 'bf16')
    rss = ('peak_rss_gb', 'peak_rss_gb_grad_ckpt', 'peak_rss_gb_shared')
    assert set(data['raw']) >= {'pretrain_step', 'infer_latency', 'data_throughput', *rss}
    assert not data['raw']['peak_rss_gb']['shared_pass'] and data['raw']['peak_rss_gb_shared']['shared_pass']
    assert data['raw']['peak_rss_gb_grad_ckpt']['grad_checkpointing']
    for key in rss:
        # The figure is the fresh process's own peak, which can never exceed what ru_maxrss (inherited) says.
        assert data['raw'][key]['peak_rss_gb'] <= data['raw'][key]['ru_maxrss_gb'] + 1e-9
    # The shared pass runs one encoder pass where the paper runs three: fewer FLOPs even at the quick size.
    steps = data['raw']['pretrain_step']['results']
    for method in ('mae_moco', 'mae_nextclip'):
        assert steps[f'{method}_shared']['fp32']['gflop_per_step'] < steps[method]['fp32']['gflop_per_step']
    # main() runs inside this process: it must leave the thread count and denormal handling as it found them.
    assert torch.get_num_threads() == threads
    assert run_all._flush_denormal_on() == flush


def test_skipping_every_group_writes_nulls(tmp_path):
    data = run_all.main(['--skip', 'pretrain,peer,infer,loader,rss,gpu', '--json', str(tmp_path / 'r.json')])
    assert json.loads((tmp_path / 'r.json').read_text()) == data
    for key in FIGURES:
        assert data[key] is None and data['passed'][key] is None
        assert data['notes'][key] == 'skipped (--skip)'
    assert data['raw'] == {} and not data['errors']
    _check_common(data)


def test_unknown_skip_name_is_an_error(capsys):
    with pytest.raises(SystemExit, match='^2$'):  # argparse's usage-error status
        run_all.main(['--skip', 'mfu,nonsense'])
    assert 'nonsense' in capsys.readouterr().err


def test_gpu_script_runs_its_code_path_on_the_cpu(tmp_path):
    """benchmarks/gpu_pretrain.py with --device cpu: every step of the GPU row, at a tiny size."""
    from benchmarks import gpu_pretrain as module
    out = module.main(['--device', 'cpu', '--encoder', 'ecg_vit_tiny', '--batch', '4', '--records', '12',
                       '--repeats', '1', '--warmup', '1', '--peak-n', '256', '--workdir', str(tmp_path),
                       '--json', str(tmp_path / 'gpu.json')])
    assert json.loads((tmp_path / 'gpu.json').read_text()) == out
    assert out['device'] == 'cpu' and out['steps'] == 3 and out['records'] == 12
    # Timings on a shared CPU say nothing (an MFU from a busy machine can exceed 1): only that they were measured.
    assert all(math.isfinite(out[k]) and out[k] > 0 for k in ('gpu_mfu', 'gflop_per_step', 'gpu_epoch_s'))
    assert list(tmp_path.iterdir()) == [tmp_path / 'gpu.json']  # the epoch run cleans up after itself
    if not torch.cuda.is_available():
        assert module.main([]) == {}  # no device: nothing measured, nothing made up


def test_a_utilisation_above_one_is_invalid_not_a_pass(capsys):
    """bf16 emulated on an AVX2-only CPU: the step outran the matmul peak measured for it (2.34 in a --quick run)."""
    fig = next(f for f in run_all.FIGURES if f.name == 'mfu_bf16')
    assert run_all._verdict(fig, 2.342) is None and run_all._verdict(fig, 0.55) is True
    run_all.print_table({'mfu_bf16': 2.342}, {})
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith('mfu_bf16'))
    assert 'invalid' in row and 'pass' not in row
