"""The release gate and release of new weights (benchmarks/ship_weights.py): the decision rule, a run's facts across
resumes, and gate -> ship on a tiny encoder with real files (suite fixture folders, a real pretraining run)."""
import json
import sys
from pathlib import Path

import pytest
import torch
from data_fixtures import sine_leads, write_suite_folders, write_wfdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ecgvit  # noqa: E402
from benchmarks import release_weights  # noqa: E402
from benchmarks.release_weights import TABLE_END, TABLE_START  # noqa: E402
from benchmarks.ship_weights import gate_decision, main, run_facts, training_seconds  # noqa: E402
from ecgvit.cli import main as ecgvit_main  # noqa: E402
from ecgvit.hub import encoder_weights_file, load_pretrained, save_pretrained, sha256_file  # noqa: E402

TASK = 'ptbxl_superdiagnostic'


def _rows(scores, pairs):
    results = [{'task': TASK, 'metric': 'auroc', 'fraction': '1.0', 'encoder': e, 'mean': m, 'ci_lo': m - .04,
                'ci_hi': m + .04, 'n_test': 198} for e, m in scores.items()]
    results.append({'task': 'ptbxl_form', 'metric': 'auroc', 'fraction': '1.0', 'encoder': 'new', 'mean': .99,
                    'ci_lo': .9, 'ci_hi': 1, 'n_test': 5})
    pairwise = [{'task': TASK, 'metric': 'auroc', 'fraction': 1.0, 'encoder_a': a, 'encoder_b': b, 'diff': d,
                 'diff_lo': lo, 'diff_hi': hi} for a, b, d, lo, hi in pairs]
    return results, pairwise


def test_gate_passes_only_when_both_cis_exclude_zero():
    scores = {'random': .795, 'new': .86, 'cur': .824}
    # the suite stores each pair once, in either order
    res, pw = _rows(scores, [('random', 'new', -.065, -.09, -.04), ('new', 'cur', .036, .012, .06)])
    d = gate_decision(res, pw, 'new', 'cur')
    assert d['passed'] and d['reasons'] == [] and not d['target_met']
    assert d['vs_random'] == {'other': 'random', 'diff': .065, 'lo': .04, 'hi': .09}
    assert d['score'] == .86 and d['current'] == .824 and d['n_test'] == 198
    res, pw = _rows(scores, [('random', 'new', -.065, -.09, -.04), ('new', 'cur', .036, -.002, .06)])
    d = gate_decision(res, pw, 'new', 'cur')
    assert not d['passed'] and len(d['reasons']) == 1 and 'vs cur' in d['reasons'][0]
    assert d['reasons'][0].endswith('the CI does not exclude 0')
    # Worse than the current weights is said as such (it read "the CI does not exclude 0" for [-0.091, -0.034]).
    res, pw = _rows(scores, [('random', 'new', -.065, -.09, -.04), ('new', 'cur', -.061, -.091, -.034)])
    assert gate_decision(res, pw, 'new', 'cur')['reasons'] == [
        'vs cur: -0.061 [-0.091, -0.034], worse: the CI lies below 0']
    res, pw = _rows({'random': .80, 'new': .89, 'cur': .82}, [('new', 'random', .09, .06, .12),
                                                             ('new', 'cur', .07, .04, .1)])
    assert gate_decision(res, pw, 'new', 'cur')['target_met']
    with pytest.raises(ValueError, match='does not pair'):
        gate_decision(res, pw[:1], 'new', 'cur')
    with pytest.raises(ValueError, match='no ptbxl_superdiagnostic'):
        gate_decision(res, pw, 'other', 'cur')


def _pool(folder, n=24):
    for i in range(n):
        write_wfdb(folder / 'mine', f'r{i:02d}', sine_leads(100.0, 1000, freq=1 + i / 10), 100.0)
    return folder


def _pretrain(data, run, epochs, cache):
    args = ['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', '--data', 'pool', '--data-dir', str(data),
            '--cache-dir', str(cache), '--sampling-rate', '100', '--num-samples', '1000', '--epochs', str(epochs),
            '--batch-size', '8', '--save-every', '2', '--amp', 'fp32', '--no-progress', '--resume', '-o', str(run)]
    assert ecgvit_main(args) == 0


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ship')
    data, run = _pool(tmp / 'data'), tmp / 'run'
    _pretrain(data, run, 1, tmp / 'cache')
    _pretrain(data, run, 2, tmp / 'cache')  # a resumed second segment
    return run


def test_run_facts_and_a_resumed_runs_clock(tiny_run):
    rows = (tiny_run / 'metrics.csv').read_text().splitlines()
    times = [float(r.split(',')[8]) for r in rows[1:]]
    # time_s counts the whole run: the resumed segment starts from the time its checkpoint recorded
    assert times == sorted(times) and len({r.split(',')[2] for r in rows[1:]}) == 2
    f = run_facts(tiny_run)
    assert f['train_hours'] == pytest.approx(times[-1] / 3600)
    assert f['epochs_done'] == 2 and f['finished'] and f['method'] == 'mae' and f['model'] == 'ecg_vit_tiny'
    assert f['best_epoch'] in (0, 1) and f['steps'] == 4 and f['machine']['logical_cores'] >= 1


def test_snapshot_freezes_a_run_and_ship_refuses_weights_the_gate_did_not_see(tiny_run, tmp_path):
    snap = tmp_path / 'snap'
    assert main(['snapshot', '--run', str(tiny_run), '--out', str(snap)]) == 0
    f, g = run_facts(tiny_run), run_facts(snap)
    assert {k: v for k, v in g.items() if k != 'run'} == {k: v for k, v in f.items() if k != 'run'}
    assert g['weights_sha256'] == sha256_file(encoder_weights_file(snap)) == \
        sha256_file(encoder_weights_file(tiny_run))
    assert not (tmp_path / 'snap.partial').exists()
    with pytest.raises(SystemExit, match='exists'):
        main(['snapshot', '--run', str(tiny_run), '--out', str(snap)])
    # a gate decision on the snapshot, then the folder's best weights are replaced, as a live run does
    gate_dir, weights = tmp_path / 'gate', tmp_path / 'weights'
    gate_dir.mkdir()
    (gate_dir / 'gate.json').write_text(json.dumps({'decisions': {'ecg_vit_tiny': {
        'passed': True, 'reasons': [], 'facts': dict(g, loss_history=None)}}}))
    from safetensors.torch import load_file, save_file
    best = encoder_weights_file(snap)
    state = load_file(best)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + 1
    save_file(state, best, metadata={'ecgvit': json.dumps({'epoch': 5})})
    with pytest.raises(SystemExit, match='changed since the gate.*snapshot --run'):
        main(['ship', '--gate', str(gate_dir), '--weights', str(weights), '--registry', str(tmp_path / 'reg.py'),
              '--readme', str(tmp_path / 'README.md')])
    assert not weights.exists() and not (tmp_path / 'reg.py').exists()


def test_snapshot_of_the_last_epochs_weights_says_so_everywhere(tiny_run, tmp_path):
    """`snapshot --weights last`: the newest epoch-end checkpoint's weights, not the best validation loss's, frozen as
    the candidate; its facts and card say which weights they are; a run with no epoch-end checkpoint is refused."""
    import shutil

    from safetensors.torch import load_file

    from benchmarks.ship_weights import _weights_row
    from ecgvit.train.checkpoint import best_info, list_checkpoints

    snap = tmp_path / 'last'
    assert main(['snapshot', '--run', str(tiny_run), '--out', str(snap), '--weights', 'last']) == 0
    newest = list_checkpoints(tiny_run / 'checkpoints')[-1]
    assert newest.name == 'step-00000004'
    frozen, expected = load_file(encoder_weights_file(snap)), load_file(newest / 'model.safetensors')
    assert frozen.keys() == expected.keys() and all(torch.equal(frozen[k], expected[k]) for k in expected)
    f = run_facts(snap)
    val = [float(r.split(',')[5]) for r in (tiny_run / 'metrics.csv').read_text().splitlines()[1:]
           if r.startswith('val,') and r.split(',')[2] == '1']
    assert f['weights_rule'] == 'last' and f['best_epoch'] == 1 and f['best_step'] == 4
    assert f['best_val_loss'] == pytest.approx(val[-1])
    assert best_info(snap / 'checkpoints')['checkpoint'] == 'step-00000004'
    assert "the last epoch's (after epoch 2, step 4; validation loss" in _weights_row(f, 2)
    assert _weights_row(run_facts(tiny_run), 2).startswith('best validation loss')
    assert run_facts(tiny_run)['weights_rule'] == 'best'
    # Only a mid-epoch checkpoint left (a run stopped inside its first epoch): nothing an epoch's validation measured.
    run = tmp_path / 'run'
    shutil.copytree(tiny_run, run)
    for ckpt in list_checkpoints(run / 'checkpoints'):
        state = json.loads((ckpt / 'state.json').read_text())
        (ckpt / 'state.json').write_text(json.dumps(dict(state, batch_in_epoch=1)))
    with pytest.raises(SystemExit, match='no intact checkpoint written at the end of an epoch'):
        main(['snapshot', '--run', str(run), '--out', str(tmp_path / 'none'), '--weights', 'last'])
    assert not (tmp_path / 'none').exists() and not (tmp_path / 'none.partial').exists()


def test_readme_table_lists_every_shipped_name_when_one_is_released(tmp_path):
    from benchmarks.ship_weights import _readme_table
    gate_dir, weights = tmp_path / 'gate', tmp_path / 'weights'
    gate_dir.mkdir()
    cols = 'task,metric,fraction,encoder,mean,ci_lo,ci_hi,diff_vs_random,diff_lo,diff_hi'
    (gate_dir / 'results.csv').write_text(f'{cols}\n{TASK},auroc,1,ecg_vit_mae_nextclip,0.792,0.75,0.83,-0.003,-0.02,'
                                          f'0.014\n{TASK},auroc,0.1,ecg_vit_mae_nextclip,0.5,0.4,0.6,0,0,0\n')
    (weights / 'ecg_vit_mae_nextclip').mkdir(parents=True)
    (weights / 'ecg_vit_mae_nextclip' / 'README.md').write_text(
        '| data | pretraining pool: 1037 training + 60 validation windows of 10 s |\n'
        '| epochs / optimiser steps | 8 / 128 (the seed paper: 710 epochs) |\n')
    d = {'ecg_vit_mae_moco': {'score': .846, 'ci': [.808, .882], 'vs_random': {'diff': .051, 'lo': .030, 'hi': .072},
                              'vs_current': {'diff': .021, 'lo': .001, 'hi': .046},
                              'facts': {'data': {'n_train': 1917, 'n_val': 106}, 'epochs_done': 57,
                                        'best_epoch': 55}}}
    rows = _readme_table(d, gate_dir, weights).splitlines()[2:]
    assert rows == ['| `ecg_vit_mae_moco` | pool of 2023 10-s windows | 56 | 12.8M | 0.846 [0.808, 0.882] | '
                    '+0.051 [+0.030, +0.072] | +0.021 [+0.001, +0.046] |',
                    '| `ecg_vit_mae_nextclip` | pool of 1097 10-s windows | 8 | 12.8M | 0.792 [0.750, 0.830] | '
                    '-0.003 [-0.020, +0.014] | - (unchanged in this release) |']
    # a gate that measured the supervised floor: one more column, each row's paired difference to it
    (gate_dir / 'results.csv').write_text(f'{cols}\n{TASK},auroc,1,ecg_vit_mae_nextclip,0.792,0.75,0.83,-0.003,-0.02,'
                                          f'0.014\n{TASK},auroc,1,supervised,0.85,0.81,0.89,0.055,0.03,0.08\n')
    (gate_dir / 'pairwise.csv').write_text(
        'task,metric,fraction,leads,encoder_a,encoder_b,diff,diff_lo,diff_hi\n'
        f'{TASK},auroc,1.0,12,supervised,new_ecg_vit_mae_moco,0.004,-0.02,0.03\n'
        f'{TASK},auroc,1.0,12,ecg_vit_mae_nextclip,supervised,-0.058,-0.09,-0.03\n')
    table = _readme_table(d, gate_dir, weights).splitlines()
    assert table[0].endswith('| minus supervised floor (0.850) [95% CI] |') and table[1].count('---') == 8
    assert table[2].endswith('| +0.021 [+0.001, +0.046] | -0.004 [-0.030, +0.020] |')
    assert table[3].endswith('| - (unchanged in this release) | -0.058 [-0.090, -0.030] |')
    (gate_dir / 'results.csv').write_text(f'{cols}\n')  # a gate that did not measure the other name
    with pytest.raises(SystemExit, match='no ptbxl_superdiagnostic row for ecg_vit_mae_nextclip'):
        _readme_table(d, gate_dir, weights)


def test_training_seconds_adds_segments_of_runs_whose_clock_restarted():
    """Runs written before time_s counted across resumes restart it at 0 in each segment."""
    rows = [{'time_s': t} for t in ('1.0', '5.0', '9.0', '2.0', '4.0', '', '7.5')]
    assert training_seconds(rows) == pytest.approx(9.0 + 7.5)
    assert training_seconds([{'time_s': t} for t in ('1', '3', '6')]) == 6.0


def test_gate_then_ship_a_tiny_encoder(tiny_run, tmp_path):
    suite = write_suite_folders(tmp_path / 'suite')
    # "current" weights of the name: another init, as a save_pretrained folder
    torch.manual_seed(5)
    cur = ecgvit.create_model('ecg_vit_tiny', img_size=1000)
    cur.pretrained_cfg = dict(cur.pretrained_cfg, sampling_rate=100.0, input_size=(12, 1, 1000))
    weights = tmp_path / 'weights'
    save_pretrained(cur, weights / 'ecg_vit_tiny')
    gate_dir = tmp_path / 'gate'
    rc = main(['gate', '--run', f'ecg_vit_tiny={tiny_run}', '--current', f'ecg_vit_tiny={weights / "ecg_vit_tiny"}',
               '--data-dir', str(suite), '--out', str(gate_dir), '--cache-dir', str(tmp_path / 'cache'),
               '--tasks', 'sex', '--n-boot', '100'])
    g = json.loads((gate_dir / 'gate.json').read_text())['decisions']['ecg_vit_tiny']
    assert rc == (0 if g['passed'] else 3)
    assert g['vs_current']['other'] == 'ecg_vit_tiny' and g['facts']['epochs_done'] == 2
    assert 0 < g['facts']['rel_l2_from_init'] < 1
    # beside the decision, the gate task paired at each C of the grid: one row per C, where each probe's choice is
    # marked; where both chose the same C, the difference is the decision's own
    fixed = g['at_fixed_c']
    assert set(fixed) == {'ecg_vit_tiny', 'random'} and [r['C'] for r in fixed['random']] == [1e-3, 1e-2, 1e-1, 1.0]
    for rows in fixed.values():
        assert sum(r['chosen'][0] for r in rows) == 1 and sum(r['chosen'][1] for r in rows) == 1
        assert all(r['lo'] <= r['diff'] <= r['hi'] for r in rows)
    both = [r for r in fixed['random'] if r['chosen'] == [True, True]]
    if both:
        assert both[0]['diff'] == pytest.approx(g['vs_random']['diff'])
    assert (gate_dir / 'c_sensitivity.csv').is_file()
    assert g['facts']['weights_sha256'] == sha256_file(tiny_run / 'checkpoints' / 'best.safetensors')
    registry, readme = tmp_path / 'weights_sha256.py', tmp_path / 'README.md'
    readme.write_text(f'# x\n{TABLE_START}\nold\n{TABLE_END}\n')
    ship = ['ship', '--gate', str(gate_dir), '--weights', str(weights), '--registry', str(registry),
            '--readme', str(readme)]
    if not g['passed']:
        with pytest.raises(SystemExit, match='Not shipped'):
            main(ship)
        assert not registry.exists()
        # what ship does with a candidate that passed: mark this one as passed
        data = json.loads((gate_dir / 'gate.json').read_text())
        data['decisions']['ecg_vit_tiny'].update(passed=True, reasons=[])
        (gate_dir / 'gate.json').write_text(json.dumps(data))
    old_sha = sha256_file(weights / 'ecg_vit_tiny' / 'model.safetensors')
    assert main(ship) == 0
    folder = weights / 'ecg_vit_tiny'
    new_sha = sha256_file(folder / 'model.safetensors')
    assert new_sha != old_sha and f"'ecg_vit_tiny': '{new_sha}'" in registry.read_text()
    model = load_pretrained(folder)
    from ecgvit.hub import load_encoder
    best, _ = load_encoder(str(tiny_run))
    for k, v in best.state_dict().items():  # shipped = the run's best weights in bf16
        assert torch.equal(model.state_dict()[k].float(), v.to(torch.bfloat16).float()), k
    card = (folder / 'README.md').read_text()
    epochs = ('| epochs | 2 (the whole schedule)' if g['facts']['best_epoch'] == 1 else
              '| epochs | 1 (the best validation loss among the whole 2-epoch schedule)')
    for text in (epochs, 'distance from init', 'Release gate', 'minus the previous weights',
                 old_sha[:12], '### Ablation', 'Not run to the end yet', '<!-- suite-table:start -->',
                 '| sex | auroc_within |', 'Licences and attributions', 'model-index'):
        assert text in card, text
    assert (folder / 'loss_curve.png').is_file()
    # The run's decoder ships beside the weights (bf16), fingerprinted with the shipped encoder, and loads into a run
    # that starts from those weights.
    from ecgvit.pretrain import create_pretrainer
    from ecgvit.pretrain.heads import load_heads, read_heads
    heads = read_heads(folder)
    assert heads['method'] == 'mae' and heads['extra'] == {'epochs': int(g['facts']['best_epoch']) + 1}
    assert heads['tensors']['mae.decoder.decoder_pos_embed'].dtype == torch.bfloat16
    # (The folder stores the encoder at its default 3600 samples; the run's decoder keeps its 40 positions.)
    continued = create_pretrainer('mae', load_pretrained(folder).float(), decoder_num_patches=40)
    assert load_heads(continued, folder, method='mae', model='ecg_vit_tiny')['same_encoder'] is True
    assert '| pretraining heads | `heads.safetensors`: the MAE decoder' in card
    # the Hub metadata comes from the card's own suite table: regenerating it changes nothing
    assert 'name: macro AUROC (linear probe)' not in card and 'AUROC within source (linear probe)' in card
    release_weights.refresh_cards(weights, shipped={'mae': 'ecg_vit_tiny'})
    assert (folder / 'README.md').read_text() == card
    assert 'old' in readme.read_text()  # the README table lists the shipped names only: untouched here
    # several ablation reports (the first ablation, then later questions): each under its own title, in order
    from benchmarks.ship_weights import _card, _previous
    reports = []
    for i, question in enumerate(('Ablation at `ecg_vit_small`', 'Decoder position start')):
        reports.append(tmp_path / f'ablation{i}' / 'ablation.md')
        reports[-1].parent.mkdir()
        reports[-1].write_text(f'# {question}\n\n| encoder | AUROC |\n|---|---|\n| job{i} | 0.8{i} |\n')
    decision = json.loads((gate_dir / 'gate.json').read_text())['decisions']['ecg_vit_tiny']
    card = _card(decision, gate_dir, reports, _previous(weights, 'ecg_vit_tiny'))
    sections = card.split('### Ablation', 1)[1].split('## Limitations')[0]
    assert 'Not run to the end yet' not in sections and '# Ablation at' not in sections.replace('####', '')
    assert (sections.index('#### Ablation at `ecg_vit_small`') < sections.index('| job0 | 0.80 |')
            < sections.index('#### Decoder position start') < sections.index('| job1 | 0.81 |'))
    assert sections.count('From `') == 2


def test_gate_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='not an `ecgvit pretrain` run folder.*metrics.csv'):
        main(['gate', '--run', f'ecg_vit_mae_moco={tmp_path / "empty"}', '--data-dir', str(tmp_path),
              '--out', str(tmp_path / 'out')])
    with pytest.raises(SystemExit, match='NAME=FOLDER'):
        main(['gate', '--run', 'ecg_vit_mae_moco', '--data-dir', str(tmp_path), '--out', str(tmp_path / 'out')])


def test_a_continued_runs_card_says_where_it_started(tiny_run, tmp_path):
    """A run started from existing weights (`ecgvit pretrain --pretrained / --checkpoint`) says so in its facts and
    card: its epochs count that run only."""
    import shutil

    from benchmarks.ship_weights import _init_rows

    run = tmp_path / 'run'
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / 'config.json').read_text())
    assert run_facts(run)['init'] is None and _init_rows(run_facts(run)) == []
    cfg['init'] = {'pretrained': 'ecg_vit_mae_moco', 'weights_sha256': 'ab' * 32}
    (run / 'config.json').write_text(json.dumps(cfg))
    (row,) = _init_rows(run_facts(run))
    assert row.startswith('| started from | the published `ecg_vit_mae_moco` weights (sha256 `abababababab...`)')
    assert "this run's only" in row and 'a fresh decoder, heads' in row
    cfg['heads'] = {'path': 'weights/ecg_vit_mae_moco/heads.safetensors', 'sha256': 'cd' * 32, 'method': 'mae_moco'}
    (run / 'config.json').write_text(json.dumps(cfg))  # continued with `--heads pretrained`: its decoders were not new
    (row,) = _init_rows(run_facts(run))
    assert 'with the pretraining heads saved beside them (`--heads`, sha256 `cdcdcdcdcdcd...`)' in row
    assert 'fresh decoder' not in row and "this run's only" in row


def test_a_run_continued_from_the_shipped_weights_counts_their_epochs_too(tmp_path):
    """Continued from the weights shipped now, the card and the README table count both runs' epochs, and the next
    release reads the total back from the card; from any other weights they count this run's only."""
    from benchmarks.ship_weights import _previous, continued_epochs

    folder = tmp_path / 'ecg_vit_mae_moco'
    folder.mkdir()
    (folder / 'model.safetensors').write_bytes(b'weights')
    (folder / 'README.md').write_text('| epochs | 56 (the best validation loss among 57 run so far) |\n')
    previous = _previous(tmp_path, 'ecg_vit_mae_moco')
    assert previous['epochs'] == '56'
    facts = {'init': {'pretrained': 'ecg_vit_mae_moco', 'weights_sha256': previous['sha256']}}
    assert continued_epochs(facts, previous) == 56
    assert continued_epochs({'init': None}, previous) is None
    assert continued_epochs({'init': {'weights_sha256': 'ab' * 32}}, previous) is None
    (folder / 'README.md').write_text('| epochs | 115 (the best validation loss among the 116 run so far), after the '
                                      '56 of the weights it started from: 171 in all; the seed paper: 710 |\n')
    assert _previous(tmp_path, 'ecg_vit_mae_moco')['epochs'] == '171'


_FIRST_RELEASE_BODY = """# ecg_vit_tiny

## Pretraining

| field | value |
|---|---|
| epochs / optimiser steps | 8 / 128 |
| stored as | bfloat16 |

## Evaluation

Test-set point estimates with 95% bootstrap CIs over test records.

| task | method | protocol | macro AUROC [95% CI] | OvO macro AUC [95% CI] | macro F1 | n test |
|---|---|---|---|---|---|---|
| ptbxl_superdiagnostic | random | linear | 0.770 [0.695, 0.840] | - | 0.494 [0.397, 0.579] | 64 |

**What the numbers say**: every 95% CI overlaps, so no difference is shown.

<!-- suite-table:start -->
### Evaluation suite (linear probe on frozen embeddings, 100% of the training labels)

| task | metric | this encoder [95% CI] | random init | difference [95% CI] | verdict | n test |
|---|---|---|---|---|---|---|
| ptbxl_superdiagnostic | auroc | 0.792 [0.744, 0.840] | 0.795 | -0.003 [-0.021, +0.014] | no difference shown | 198 |
| ludb_rhythm | auc_ovo | 0.597 [0.379, 0.841] | 0.560 | +0.037 [-0.065, +0.145] | no difference shown | 40 |
<!-- suite-table:end -->

## Limitations

- Pretrained for 8 epochs.
- The evaluation test sets are small (tens of records), so the CIs are wide; differences inside them are not evidence.
- **Not for clinical use.**
"""


def test_cards_rewrites_the_ablation_section_and_brings_a_first_release_card_up_to_the_suite(tmp_path):
    from benchmarks.ship_weights import ABLATION_TITLE, _ablation_lines, refresh_card_body

    reports = []
    for i, question in enumerate(('Ablation at `ecg_vit_small`', 'MoCo-only against MAE-MoCo')):
        reports.append(tmp_path / f'r{i}.md')
        reports[-1].write_text(f'# {question}\n\n| encoder | AUROC |\n|---|---|\n| job{i} | 0.8{i} |\n')
    card = refresh_card_body(_FIRST_RELEASE_BODY, reports[:1], distance=0.0304)
    # the unpaired evaluation is gone, the paired suite block stays, and the limits say what the suite tested
    assert '| task | method | protocol |' not in card and 'every 95% CI overlaps' not in card
    assert card.index('## Evaluation') < card.index('<!-- suite-table:start -->') < card.index('### Ablation')
    assert '(40-198 records per task in the suite table)' in card and 'tens of records' not in card
    assert '| distance from init | 3.0 % (relative L2' in card.split('| stored as |')[0].split('| epochs /')[1]
    assert card.endswith('- **Not for clinical use.**\n')
    # again with the same reports: unchanged (no second distance row); with more: only the ablation section moves
    assert refresh_card_body(card, reports[:1], distance=0.5) == card
    both = refresh_card_body(card, reports)
    assert both.count(ABLATION_TITLE) == 1 and both.count('| job0 | 0.80 |') == 1 and '| job1 | 0.81 |' in both
    assert both.replace('\n'.join(_ablation_lines(reports)), '') == card.replace('\n'.join(_ablation_lines(
        reports[:1])), '')
    with pytest.raises(ValueError, match='Limitations'):
        refresh_card_body('# a card\n', reports)
    with pytest.raises(ValueError, match='suite block'):
        refresh_card_body(_FIRST_RELEASE_BODY.replace('<!-- suite-table:start -->', ''), reports)


def test_cards_step_on_a_shipped_folder(tiny_run, tmp_path):
    """`ship_weights.py cards` on a save_pretrained folder with a first-release card: the body is refreshed, the
    distance is measured from the weights, the Hub metadata comes from the suite block, the weights are untouched."""
    from benchmarks.init_distance import distance_from_init
    from ecgvit.cards import split_front_matter
    from ecgvit.hub import load_encoder

    encoder, _ = load_encoder(str(tiny_run))
    folder = tmp_path / 'weights' / 'ecg_vit_tiny'
    save_pretrained(encoder, folder, card_extra=_FIRST_RELEASE_BODY.split('\n', 2)[2])
    sha = sha256_file(folder / 'model.safetensors')
    report = tmp_path / 'ablation.md'
    report.write_text('# Ablation\n\n| encoder | AUROC |\n|---|---|\n| small-moco | 0.85 |\n')
    assert main(['cards', '--ablation', str(report), '--weights', str(tmp_path / 'weights'),
                 '--name', 'ecg_vit_tiny']) == 0
    front, body = split_front_matter((folder / 'README.md').read_text())
    assert sha256_file(folder / 'model.safetensors') == sha
    distance = distance_from_init(load_pretrained(folder).float(), 'ecg_vit_tiny', seed=0)
    assert f'| distance from init | {100 * distance:.1f} % ' in body and '| small-moco | 0.85 |' in body
    assert 'value: 0.792' in front and 'ptb-xl' in front and body.count('## Limitations') == 1
    before = (folder / 'README.md').read_text()
    main(['cards', '--ablation', str(report), '--weights', str(tmp_path / 'weights'), '--name', 'ecg_vit_tiny'])
    assert (folder / 'README.md').read_text() == before  # a second call changes nothing


def test_heads_for_the_shipped_weights_from_a_frozen_encoder_run(tiny_run, tmp_path):
    from ecgvit.hub import load_encoder
    from ecgvit.pretrain import create_pretrainer
    from ecgvit.pretrain.heads import load_heads, read_heads
    weights, folder = tmp_path / 'weights', tmp_path / 'weights' / 'ecg_vit_tiny'
    encoder, _ = load_encoder(str(tiny_run), None, 1000)
    save_pretrained(encoder.to(torch.bfloat16), folder)  # "the shipped weights": the run's, in bf16
    card = folder / 'README.md'
    card.write_text('| field | value |\n|---|---|\n| stored as | bfloat16 |\n| run | x |\n')
    before = sha256_file(folder / 'model.safetensors')
    # A run that trained its encoder is refused.
    with pytest.raises(SystemExit, match='trained its encoder'):
        main(['heads', '--name', 'ecg_vit_tiny', '--run', str(tiny_run), '--weights', str(weights)])
    frozen = tmp_path / 'frozen'
    data = Path(json.loads((tiny_run / 'config.json').read_text())['args']['data_dir'])
    args = ['pretrain', '--method', 'mae', '--checkpoint', str(folder), '--freeze-encoder', '--data', 'pool',
            '--data-dir', str(data), '--cache-dir', str(tmp_path / 'cache'), '--sampling-rate', '100',
            '--num-samples', '1000', '--epochs', '1', '--batch-size', '8', '--amp', 'fp32', '--no-progress',
            '-o', str(frozen)]
    assert ecgvit_main(args) == 0
    for _ in range(2):  # a second call replaces the row, it does not add one
        assert main(['heads', '--name', 'ecg_vit_tiny', '--run', str(frozen), '--weights', str(weights)]) == 0
    assert sha256_file(folder / 'model.safetensors') == before  # the weights themselves are untouched
    text = card.read_text()
    assert text.count('| pretraining heads |') == 1
    assert text.index('| stored as |') < text.index('| pretraining heads |') < text.index('| run |')
    assert 'trained afterwards for 1 epochs on the same pool with these weights frozen' in text
    heads = read_heads(folder)
    assert heads['extra'] == {'epochs': 1, 'frozen_encoder': True}
    continued = create_pretrainer('mae', load_encoder(str(folder), None, 1000)[0])
    assert load_heads(continued, folder, method='mae', model='ecg_vit_tiny')['same_encoder'] is True
    # Once the shipped weights are others, the run's heads are refused.
    torch.manual_seed(3)
    save_pretrained(ecgvit.create_model('ecg_vit_tiny', img_size=1000), folder)
    with pytest.raises(SystemExit, match='is not the one in'):
        main(['heads', '--name', 'ecg_vit_tiny', '--run', str(frozen), '--weights', str(weights)])


def test_the_card_names_settings_a_run_changed_from_the_methods_defaults():
    """A run with a non-default setting (here the MAE decoder's position start) says so in its own card row, not only
    inside the command; a run on the defaults gets no row."""
    from benchmarks.ship_weights import _off_default_rows
    from ecgvit.pretrain.factory import method_settings

    defaults = method_settings('mae_nextclip')
    assert _off_default_rows('mae_nextclip', defaults) == []
    assert _off_default_rows('mae_nextclip', dict(defaults, alpha=0.5)) == []  # alpha has the method row
    assert _off_default_rows('supervised', {'lr': 1.0}) == []  # the supervised floor's run: no method defaults
    (row,) = _off_default_rows('mae_nextclip', dict(defaults, decoder_pos_init='sincos', queue_size=1))
    assert row == "| settings off the method's defaults | `decoder_pos_init='sincos'` (default `'normal'`) |"
    (row,) = _off_default_rows('mae_moco_shared', dict(method_settings('mae_moco'), queue_size=1917, mask_ratio=.5))
    assert '`mask_ratio=0.5` (default `0.75`)' in row and '`queue_size=1917` (default `65536`)' in row


def test_the_cards_command_repeats_a_repeatable_option_and_quotes_what_a_shell_would_split():
    from benchmarks.ship_weights import _command_line

    line = _command_line({'command': 'pretrain', 'method': 'mae_nextclip', 'pretrained': True, 'resume': True,
                          'method_arg': ['decoder_pos_init="sincos"', 'alpha=0.5'], 'lead_sets': None,
                          'epochs': 200, 'threads': 2})
    assert line == ("ecgvit pretrain --method mae_nextclip --pretrained --method-arg 'decoder_pos_init=\"sincos\"' "
                    "--method-arg alpha=0.5 --epochs 200")
