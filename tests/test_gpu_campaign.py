"""benchmarks/gpu_campaign.py: the codec, and pack -> run -> unpack end to end on a CPU at tiny size."""
import json
import re
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import sine_leads, write_ptbxl, write_wfdb

from benchmarks import gpu_campaign
from benchmarks.campaign import codec
from benchmarks.campaign.pack import load_pack, pack
from benchmarks.campaign.run import MAX_FILE_BYTES, MAX_OUT_FILES, _salvage, paired_bootstrap, parse_jobs
from benchmarks.campaign.unpack import unpack


def test_codec_round_trip_is_the_signal_rounded_to_the_step():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 12, 400)).astype(np.float32)
    lead1, lead2 = x[:, 0], x[:, 1]
    # Limb leads derived from I and II as a recorder derives them (then scaled and shifted, as z-scoring does).
    for k, (a, b) in zip(codec.LIMB_LEADS, ((-1, 1), (-0.5, -0.5), (1, -0.5), (-0.5, 1))):
        x[:, k] = 1.7 * (a * lead1 + b * lead2) + 0.3
    x[1, 7] = 0.0  # a zero-filled lead
    x[2, 3] = 400.0 * x[2, 3]  # a lead beyond what int16 holds at this step: clipped, and counted
    blob, coefs, stats = codec.encode(x, step=0.02)
    y = codec.decode(blob, x.shape, coefs, step=0.02)

    expected = np.clip(np.rint(x.astype(np.float64) / 0.02), -32767, 32767) * 0.02
    np.testing.assert_allclose(y, expected, atol=1e-6)
    assert stats['clipped'] == int(np.count_nonzero(np.abs(np.rint(x / 0.02)) > 32767)) > 0
    assert len(blob) < x.size  # under one byte per value: the limb leads cost next to nothing
    with pytest.raises(ValueError, match='damaged'):
        codec.decode(blob, (6, 12, 400), coefs, step=0.02)


def test_paired_bootstrap_and_job_specs():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < 0.3).astype(np.float32)
    good, noise = y + 0.3 * rng.standard_normal(y.shape), rng.random(y.shape)
    better = paired_bootstrap(y, good, noise, n_boot=200)
    assert better['lo'] > 0 and better['diff'] > 0.3
    same = paired_bootstrap(y, good, good, n_boot=50)
    assert same['diff'] == 0 and same['lo'] == same['hi'] == 0
    assert parse_jobs('mae, mae_moco:alpha=20:shared_pass=true,') == [
        ('mae', {}), ('mae_moco', {'alpha': 20, 'shared_pass': True})]
    with pytest.raises(ValueError, match='key=value'):
        parse_jobs('mae_moco:20')


@pytest.mark.slow  # about 40 s on a busy 2-core machine: two job processes, each imports torch
def test_pack_run_unpack_end_to_end(tmp_path):
    data = tmp_path / 'data'
    write_ptbxl(data / 'ptbxl', n=60)  # 500 Hz and 100 Hz WFDB files, superdiagnostic labels
    table = pd.read_csv(data / 'ptbxl' / 'ptbxl_database.csv')
    table['strat_fold'] = (table['ecg_id'] // 6) % 10 + 1  # every fold gets NORM, MI and CD records
    table.to_csv(data / 'ptbxl' / 'ptbxl_database.csv', index=False)
    for i in range(24):  # a second pool source, one patient per record, so the pool has a validation split
        write_wfdb(data / 'extra', f'rec{i:02d}', sine_leads(250.0, 2500, freq=1.0 + 0.1 * i), 250.0)

    # Above 100 Hz both the pool and the evaluation read PTB-XL's 500 Hz files, so folds 1-8 are the same windows.
    desc = pack(data, tmp_path / 'pack', sampling_rate=200.0, num_samples=2000, log=lambda *_: None)
    counts = desc['counts']
    assert counts['eval_test'] == 4 and counts['eval_val'] == 5 and counts['pool_val'] > 0
    # Folds 1-8 of the evaluation are pool windows, stored once; folds 9-10 are held out of the pool, stored apart.
    assert desc['eval']['stored_apart'] == counts['eval_val'] + counts['eval_test']
    assert desc['total_bytes'] < desc['int16_bytes'] / 2
    _, signals, meta = load_pack(tmp_path / 'pack')
    assert signals.shape == (desc['shape'][0], 12, 2000) and np.isfinite(signals).all()
    assert meta['labels_test'].shape == (4, len(desc['label_names'])) and 'NORM' in desc['label_names']

    out, work = tmp_path / 'out', tmp_path / 'work'
    n_params = sum(p.numel() for p in __import__('ecgvit').create_model('ecg_vit_tiny', img_size=2000).parameters())
    shard_mib = (n_params * 2 / 2 + 2 ** 17) / 2 ** 20  # about half the encoder per shard: 2 shards each
    rc = gpu_campaign.main([
        'run', '--data', str(tmp_path / 'pack'), '--out', str(out), '--workdir', str(work), '--device', 'cpu',
        '--seed-encoder', 'ecg_vit_tiny', '--ablation', 'mae', '--ablation-encoder', 'ecg_vit_tiny',
        '--parallel', '3', '--threads', '1', '--batch-size', '8', '--max-epochs', '2', '--warmup-epochs', '1',
        # Budgets far above what 2 epochs need, so that the epoch cap ends each job on a busy machine too (with 2
        # minutes a job beside other work had finished one epoch only).
        '--minutes', '10', '--ablation-minutes', '10', '--total-minutes', '20', '--probe-reserve-s', '5',
        '--probe-epochs', '3', '--n-boot', '20', '--shard-mib', f'{shard_mib:.4f}'])
    assert rc == 0

    files = sorted(p for p in out.iterdir() if not p.name.startswith('.'))
    assert len(files) <= MAX_OUT_FILES and all(p.is_file() and p.stat().st_size <= MAX_FILE_BYTES for p in files)
    assert all(re.fullmatch(r'[A-Za-z0-9._-]+', p.name) for p in files)
    report = json.loads((out / 'results.json').read_text())
    jobs = report['jobs']
    assert set(jobs) == {'random-ecg_vit_tiny', 'seed-mae_moco', 'seed-mae_nextclip', 'small-mae'}
    assert all(j['status'] == 'done' for j in jobs.values()), {n: j.get('error') for n, j in jobs.items()}
    for name in ('seed-mae_moco', 'seed-mae_nextclip', 'small-mae'):
        assert jobs[name]['epochs'] == 2 and jobs[name]['amp'] == 'bf16'
        assert jobs[name]['rel_l2_from_init'] > 0
        assert 0 <= jobs[name]['probe']['auroc_macro'] <= 1
    pairs = {(c['a'], c['b']) for c in report['comparisons']}
    assert ('seed-mae_moco', 'random-ecg_vit_tiny') in pairs and ('seed-mae_moco', 'small-mae') in pairs
    assert set(report['test_predictions']['prob']) == set(jobs)
    assert '| seed-mae_moco |' in (out / 'results.md').read_text()
    assert 'seed-mae_nextclip: done' in (out / 'campaign.log').read_text()
    log = (out / 'campaign.log').read_text().splitlines()
    starts = [i for i, line in enumerate(log) if ': start,' in line]
    first_done = min(i for i, line in enumerate(log) if ': done,' in line)
    assert len(starts) == 4 and max(starts) < first_done  # the random floor took none of the 3 training slots
    encoders = report['encoders']
    assert set(encoders) == {'ecg_vit_tiny-mae_moco', 'ecg_vit_tiny-mae_nextclip'}
    assert all(len(e['shards']) == 2 for e in encoders.values())

    folders = unpack(out, tmp_path / 'weights', log=lambda *_: None)
    from safetensors.torch import load_file

    from ecgvit.hub import load_pretrained
    from ecgvit.pretrain import create_pretrainer
    from ecgvit.pretrain.heads import load_heads, read_heads

    for name, job in (('ecg_vit_tiny-mae_moco', 'seed-mae_moco'), ('ecg_vit_tiny-mae_nextclip', 'seed-mae_nextclip')):
        model = load_pretrained(folders[name])
        trained = load_file(str(work / 'runs' / job / 'encoder' / 'model.safetensors'))
        loaded = model.state_dict()
        assert set(loaded) == set(trained)
        for k, v in trained.items():  # the trained weights, rounded to bf16 once
            assert torch.equal(loaded[k].to(torch.bfloat16), v.to(torch.bfloat16)), k
        cfg = json.loads((folders[name] / 'config.json').read_text())['pretrained_cfg']
        assert cfg['preprocessing']['sampling_rate'] == 200.0 and cfg['weights_dtype'] == 'bfloat16'
        # The pretraining heads came back too (one returned file for both encoders) and fit the unpacked encoder.
        heads = read_heads(folders[name])
        trained_heads = read_heads(work / 'runs' / job / 'encoder')['tensors']
        assert set(heads['tensors']) == set(trained_heads) and heads['method'] == job.split('-')[1]
        for k, v in trained_heads.items():
            assert torch.equal(heads['tensors'][k], v.to(torch.bfloat16) if v.is_floating_point() else v), k
        rate = {'sampling_rate': 200.0} if 'clip' in heads['method'] else {}
        continued = create_pretrainer(heads['method'], model.float(), **rate)
        assert load_heads(continued, folders[name], model='ecg_vit_tiny')['same_encoder'] is True

    # An unpacked encoder carries what a card needs (benchmarks/ship_weights.py reads it like a run folder).
    from benchmarks.ship_weights import _card, run_facts

    facts = run_facts(folders['ecg_vit_tiny-mae_moco'])
    assert facts['epochs_done'] == 2 and facts['steps'] == jobs['seed-mae_moco']['steps'] and facts['seed'] == 0
    assert facts['train']['lr'] == 2e-4 and facts['pretrainer']['alpha'] == 40.0 and facts['data']['n_train'] > 0
    assert len(facts['loss_history']['val']) == 2 and facts['machine']['logical_cores'] >= 1
    facts['rel_l2_from_init'] = jobs['seed-mae_moco']['rel_l2_from_init']
    decision = {'name': 'ecg_vit_tiny', 'facts': facts, 'n_test': 4, 'score': .7, 'ci': [.5, .9], 'random': .6,
                'vs_random': {'diff': .1, 'lo': .01, 'hi': .2}, 'target_met': False}
    gate_dir = tmp_path / 'gate'
    gate_dir.mkdir()
    (gate_dir / 'results.csv').write_text('task,metric,encoder,fraction,headline,mean,ci_lo,ci_hi,n_test\n'
                                          'ptbxl_superdiagnostic,auroc,new_ecg_vit_tiny,1.0,True,0.7,0.5,0.9,4\n')
    card = _card(decision, gate_dir, [], {})
    assert '| epochs | 2 (the whole schedule)' in card and "GPU campaign's pack" in card and 'alpha = 40.0' in card
    assert '| pretraining heads | `heads.safetensors`: the MAE decoder and the MoCo projection head' in card
    from benchmarks.ship_weights import _write_heads  # `ship` publishes the heads `unpack` wrote, as they are
    shipped = _write_heads(folders['ecg_vit_tiny-mae_moco'], gate_dir, facts, model)
    assert shipped.read_bytes() == (folders['ecg_vit_tiny-mae_moco'] / 'heads.safetensors').read_bytes()

    # Weights from elsewhere (here: the unpacked ones) probed on the same records, paired with the run's seed jobs.
    out2 = tmp_path / 'out2'
    rc = gpu_campaign.main([
        'run', '--data', str(tmp_path / 'pack'), '--out', str(out2), '--device', 'cpu', '--parallel', '0',
        '--seed-methods', '', '--ablation', '', '--probe', f'current={folders["ecg_vit_tiny-mae_moco"]}',
        '--pair-with', str(out / 'results.json'), '--probe-epochs', '3', '--n-boot', '20', '--total-minutes', '10',
        '--final-reserve-s', '5'])
    again = json.loads((out2 / 'results.json').read_text())
    assert rc == 0 and again['jobs']['current']['status'] == 'done'
    pairs = {(c['a'], c['b']) for c in again['comparisons']}
    assert pairs == {('current', 'random-ecg_vit_tiny'), ('seed-mae_moco (from results.json)', 'current'),
                     ('seed-mae_nextclip (from results.json)', 'current')}

    # A continuation (--init): the seed job starts from the unpacked encoder and its heads, probes those weights
    # too (start-<method>) and is paired with them; the card says where it started.
    from benchmarks.campaign.run import init_spec
    from benchmarks.campaign.worker import continued_pretrainer
    from ecgvit.pretrain.heads import head_state

    nextclip = folders['ecg_vit_tiny-mae_nextclip']
    method, start = init_spec(f'mae_nextclip={nextclip}', ['mae_nextclip'], 2000)
    assert method == 'mae_nextclip' and start['model'] == 'ecg_vit_tiny' and start['heads_sha256']
    assert start['pretrained'] is None  # not the shipped weights of any name
    continued = continued_pretrainer('mae_nextclip', start, 'ecg_vit_tiny', {'sampling_rate': 200.0})
    saved = load_pretrained(nextclip).float().state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in continued.encoder.state_dict().items())
    saved_heads = read_heads(nextclip)['tensors']
    assert all(torch.equal(v, saved_heads[k].float()) for k, v in head_state(continued.state_dict()).items())
    for bad, message in ((f'mae_moco={nextclip}', 'seed jobs'), (f'mae_nextclip={tmp_path}', 'no config.json')):
        with pytest.raises(SystemExit, match=message):
            init_spec(bad, ['mae_nextclip'], 2000)
    with pytest.raises(SystemExit, match='take 2000 samples'):
        init_spec(f'mae_nextclip={nextclip}', ['mae_nextclip'], 1000)
    out4 = tmp_path / 'out4'
    archive = tmp_path / 'init.tar.xz'  # how the weights travel: about 30 % smaller than the folder
    with tarfile.open(archive, 'w:xz') as tar:
        tar.add(nextclip, arcname=nextclip.name)
    # The pool alone (--no-eval), as a call that carries weights packs it: nothing is probed there.
    lean = pack(data, tmp_path / 'pack-pool', sampling_rate=200.0, num_samples=2000, log=lambda *_: None,
                with_eval=False)
    assert lean['counts'] == {k: counts[k] for k in ('pool_train', 'pool_val')} and lean['label_names'] is None
    assert lean['total_bytes'] < desc['total_bytes']
    rc = gpu_campaign.main([
        'run', '--data', str(tmp_path / 'pack-pool'), '--out', str(out4), '--device', 'cpu', '--parallel', '0',
        '--seed-methods', 'mae_nextclip', '--seed-encoder', 'ecg_vit_tiny', '--init', f'mae_nextclip={archive}',
        '--ablation', '', '--batch-size', '8', '--max-epochs', '1', '--warmup-epochs', '1', '--minutes', '10',
        '--total-minutes', '20', '--shard-mib', f'{shard_mib:.4f}'])
    cont = json.loads((out4 / 'results.json').read_text())
    assert rc == 0 and set(cont['jobs']) == {'seed-mae_nextclip'} and not cont['comparisons']
    job = cont['jobs']['seed-mae_nextclip']
    assert job['status'] == 'done' and 'probe' not in job and job['epochs'] == 1
    assert job['init']['weights_sha256'] == start['weights_sha256'] and job['init']['heads_sha256']
    assert 0 < job['rel_l2_from_start'] < job['rel_l2_from_init']  # one more epoch, on top of what it had moved
    assert 'no probe' in (out4 / 'results.md').read_text()
    with pytest.raises(SystemExit, match='--no-eval'):
        gpu_campaign.main(['run', '--data', str(tmp_path / 'pack-pool'), '--out', str(tmp_path / 'out5'), '--device',
                           'cpu', '--seed-methods', '', '--ablation', '', '--probe', f'x={nextclip}'])
    again = unpack(out4, tmp_path / 'weights4', log=lambda *_: None)['ecg_vit_tiny-mae_nextclip']
    assert 'Continued from' in (again / 'README.md').read_text()
    facts = run_facts(again)
    assert facts['init']['weights_sha256'] == start['weights_sha256'] and facts['heads']['sha256']
    facts['rel_l2_from_init'] = job['rel_l2_from_init']
    card = _card(dict(decision, facts=facts), gate_dir, [], {})
    assert '| started from | the encoder weights of' in card
    assert 'saved beside them (`gpu_campaign.py run --init`' in card

    # A job process killed before it wrote its encoder: the parent makes the encoder from its best checkpoint.
    run_dir = work / 'runs' / 'seed-mae_moco'
    trained = load_file(str(run_dir / 'encoder' / 'model.safetensors'))
    result = json.loads((run_dir / 'result.json').read_text())
    (run_dir / 'result.json').write_text(json.dumps(dict(result, status='running')))
    shutil.rmtree(run_dir / 'encoder')
    salvaged = _salvage(json.loads((run_dir / 'job.json').read_text()))
    assert salvaged['status'].startswith('killed (best checkpoint kept')
    again = load_file(str(run_dir / 'encoder' / 'model.safetensors'))
    assert all(torch.equal(again[k], v) for k, v in trained.items())

    # No time left for a job: it is reported as skipped, the run still writes its report, and says it shipped nothing.
    rc = gpu_campaign.main(['run', '--data', str(tmp_path / 'pack'), '--out', str(tmp_path / 'out3'), '--device',
                            'cpu', '--seed-encoder', 'ecg_vit_tiny', '--ablation', '', '--total-minutes', '0.5',
                            '--final-reserve-s', '25', '--shard-mib', f'{shard_mib:.4f}'])
    skipped = json.loads((tmp_path / 'out3' / 'results.json').read_text())
    assert rc == 1 and {j['status'] for j in skipped['jobs'].values()} == {'skipped (no time left)'}

    heads_file = out / 'heads.safetensors'
    intact = heads_file.read_bytes()
    heads_file.write_bytes(intact[:-1] + b'\0')
    with pytest.raises(ValueError, match='heads.safetensors has sha256'):
        unpack(out, tmp_path / 'weights2', log=lambda *_: None)
    heads_file.write_bytes(intact)
    shard = out / encoders['ecg_vit_tiny-mae_moco']['shards'][0]['file']
    shard.write_bytes(shard.read_bytes()[:-1] + b'\0')
    with pytest.raises(ValueError, match='sha256'):
        unpack(out, tmp_path / 'weights3', log=lambda *_: None)


def test_init_archive_must_hold_one_readable_folder(tmp_path):
    from benchmarks.campaign.run import init_spec

    for name in ('a', 'b'):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'config.json').write_text('{}')
    two = tmp_path / 'two.tar.xz'
    with tarfile.open(two, 'w:xz') as tar:
        tar.add(tmp_path / 'a', arcname='a')
        tar.add(tmp_path / 'b', arcname='b')
    with pytest.raises(SystemExit, match='make it from one folder'):
        init_spec(f'mae_moco={two}', ['mae_moco'], 3600, tmp_path / 'x')
    broken = tmp_path / 'broken.tar.xz'
    broken.write_bytes(two.read_bytes()[:100])
    with pytest.raises(SystemExit, match='not a readable .tar.xz'):
        init_spec(f'mae_moco={broken}', ['mae_moco'], 3600, tmp_path / 'y')


def test_a_continued_job_is_paired_with_the_weights_it_started_from(tmp_path):
    from benchmarks.campaign.run import _comparisons

    rng = np.random.default_rng(0)
    y = (rng.random((60, 2)) < 0.4).astype(np.float32)
    jobs = {}
    for name, role, noise in (('random-t', 'random', 3.0), ('start-mae_nextclip', 'given', 1.0),
                              ('seed-mae_nextclip', 'seed', 0.3)):
        run_dir = tmp_path / name
        (run_dir / 'probe').mkdir(parents=True)
        np.savez(run_dir / 'probe' / 'predictions.npz', y=y, prob=y + noise * rng.standard_normal(y.shape))
        jobs[name] = {'status': 'done', 'run_dir': str(run_dir), 'role': role, 'encoder': 't', 'method_kwargs': {},
                      'method': {'given': 'given', 'random': 'random'}.get(role, 'mae_nextclip'),
                      'init': {'folder': 'x'} if role == 'seed' else None}
    pairs = {(c['a'], c['b']) for c in _comparisons(jobs, n_boot=20, seed=0)}
    assert pairs == {('seed-mae_nextclip', 'random-t'), ('start-mae_nextclip', 'random-t'),
                     ('seed-mae_nextclip', 'start-mae_nextclip')}
    jobs['seed-mae_nextclip']['init'] = None  # a job from a random init is not paired with another's start
    assert ('seed-mae_nextclip', 'start-mae_nextclip') not in {(c['a'], c['b']) for c in _comparisons(jobs, 20, 0)}


def test_gpu_utilisation_reads_nvidia_smi(tmp_path, monkeypatch):
    from benchmarks.campaign.run import _gpu_utilisation, markdown

    fake = tmp_path / 'nvidia-smi'
    fake.write_text('#!/bin/sh\necho "37, 5120"\n')
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', f'{tmp_path}:/usr/bin:/bin')
    assert _gpu_utilisation() == (37.0, 5120.0)
    fake.write_text('#!/bin/sh\necho "[N/A], 5120"\n')
    assert _gpu_utilisation() is None  # unreadable figures are skipped, not fatal
    report = {'jobs': {}, 'comparisons': [], 'encoders': {}, 'gpu_samples': [[5.0, 30.0, 900.0, 2], [9.0, 50.0, 0, 0]]}
    assert 'median 30%, 1 samples' in markdown(report)  # only while jobs ran
