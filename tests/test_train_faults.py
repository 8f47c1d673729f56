"""Faults: SIGKILL a real `ecgvit pretrain` run at random moments, resume each time, and compare with a clean run."""
import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from ecgvit.pretrain import create_pretrainer
from ecgvit.train import list_checkpoints, load_best

ARGS = ['--method', 'mae_moco', '--model', 'ecg_vit_tiny', '--data', 'synthetic', '--synthetic-records', '60',
        '--sampling-rate', '100', '--num-samples', '500', '--epochs', '4', '-b', '8', '--warmup-epochs', '1',
        '--queue-size', '64', '--save-every', '1', '--keep-last', '2', '--amp', 'fp32', '--no-progress',
        '--log-every', '1']


def _cmd(out, cache):
    return [sys.executable, '-m', 'ecgvit.cli', 'pretrain', *ARGS, '--output', str(out), '--cache-dir', str(cache),
            '--resume']


def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')


def _partial_files(root):
    return [p for p in root.rglob('*') if p.name.startswith(('.tmp-', '.trash-')) or '.tmp' in p.name]


@pytest.mark.slow
def test_sigkill_and_resume(tmp_path):
    cache = tmp_path / 'data'
    ref, run = tmp_path / 'ref', tmp_path / 'run'
    subprocess.run(_cmd(ref, cache), check=True, env=_env(), capture_output=True, timeout=300)
    ref_summary = json.loads((ref / 'summary.json').read_text())
    assert ref_summary['steps'] == 20  # 42 train records // 8 = 5 steps x 4 epochs

    rng = random.Random(0)
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(_cmd(run, cache), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ckpt_dir = run / 'checkpoints'
        before = {p.name for p in list_checkpoints(ckpt_dir)}
        deadline = time.time() + 120
        # Wait until this attempt has written a new checkpoint, then kill at a random moment shortly after:
        # mid-step, mid-checkpoint-write or mid-pruning.
        while time.time() < deadline and proc.poll() is None:
            if {p.name for p in list_checkpoints(ckpt_dir)} - before:
                time.sleep(rng.uniform(0.0, 0.4))
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait(timeout=60)
    assert kills >= 2  # the run must really have been interrupted (more than once)

    subprocess.run(_cmd(run, cache), check=True, env=_env(), capture_output=True, timeout=300)
    summary = json.loads((run / 'summary.json').read_text())
    assert summary['steps'] == ref_summary['steps'] and summary['epochs'] == 4
    assert not _partial_files(run)
    assert [p.name for p in list_checkpoints(run / 'checkpoints')] == ['step-00000019', 'step-00000020']
    # The best weights load into a fresh wrapper; the resumed run ends on exactly the uninterrupted run's weights.
    model = create_pretrainer('mae_moco', 'ecg_vit_tiny', encoder_kwargs=dict(img_size=500), queue_size=64)
    _, info = load_best(run / 'checkpoints', model)
    assert info['val_loss'] is not None
    final = load_file(str(run / 'checkpoints' / 'step-00000020' / 'model.safetensors'))
    final_ref = load_file(str(ref / 'checkpoints' / 'step-00000020' / 'model.safetensors'))
    assert final.keys() == final_ref.keys()
    assert all(torch.equal(final[k], final_ref[k]) for k in final)
    with open(run / 'metrics.csv', newline='') as f:
        steps = [int(r['step']) for r in csv.DictReader(f) if r['kind'] == 'train']
    assert steps == list(range(1, 21))  # no duplicated or missing rows after the resumes
    assert (run / 'encoder' / 'model.safetensors').is_file()


@pytest.mark.slow
def test_sigterm_ends_a_real_run_with_a_checkpoint_of_the_last_step_and_a_resume_hint(tmp_path):
    run = tmp_path / 'run'
    cmd = _cmd(run, tmp_path / 'data')
    cmd[cmd.index('--save-every') + 1] = '0'  # no checkpoint until the end: the one found is the stop's
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # stop once the run is into its steps
        if (run / 'metrics.csv').is_file() and len((run / 'metrics.csv').read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, 'the run ended before it could be stopped'
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert 'stopped by SIGTERM after step' in err and '--resume' in err
    stopped_at = int(re.search(r'stopped by SIGTERM after step (\d+);', err).group(1))
    assert [p.name for p in list_checkpoints(run / 'checkpoints')] == [f'step-{stopped_at:08d}']
    assert not _partial_files(run) and not (run / 'summary.json').exists()
    subprocess.run(cmd, check=True, env=_env(), capture_output=True, timeout=300)
    assert json.loads((run / 'summary.json').read_text())['steps'] == 20
