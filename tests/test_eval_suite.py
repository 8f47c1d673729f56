"""The evaluation suite: AUPRC and the paired bootstrap, label fractions, and a whole run on synthetic WFDB folders
laid out like PTB-XL, LUDB, CinC and CODE-15% (real files, tiny encoders)."""
import copy
import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import write_suite_folders
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

import ecgvit
from ecgvit.eval.metrics import (
    average_precision,
    bootstrap_weights,
    multilabel_macro_auprc,
    paired_bootstrap_diff,
    verdict,
    weighted_auroc,
    weighted_average_precision,
    weighted_metric,
)
from ecgvit.eval.suite import SuiteConfig, run_suite
from ecgvit.eval.suite_data import demographics, subsample_train

FS_MODEL, N_MODEL = 100.0, 500  # the test encoders take 5 s at 100 Hz


# ---------------------------------------------------------------------------------------------------------------------
# Metrics


def test_auprc_matches_sklearn_plain_weighted_and_resampled():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(bool)
    s = np.round(rng.random(300) + 0.4 * y, 1)  # rounding makes ties
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    w = bootstrap_weights(300, 4, seed=3)
    ap = weighted_average_precision(y, s, w)
    auc = weighted_auroc(y, s, w)
    for k in range(4):
        assert ap[k] == pytest.approx(average_precision_score(y, s, sample_weight=w[k]), abs=1e-12)
        assert auc[k] == pytest.approx(roc_auc_score(y, s, sample_weight=w[k]), abs=1e-12)
        idx = np.repeat(np.arange(300), w[k].astype(int))  # the resample as explicit records
        assert ap[k] == pytest.approx(average_precision_score(y[idx], s[idx]), abs=1e-12)
    ym = rng.integers(0, 2, (200, 4))
    ym[:, 3] = 0  # a label without positives is skipped, as by the macro AUROC
    pm = rng.random((200, 4)) + 0.5 * ym
    expected = np.mean([average_precision_score(ym[:, j], pm[:, j]) for j in range(3)])
    assert multilabel_macro_auprc(ym, pm) == pytest.approx(expected, abs=1e-12)
    assert weighted_metric('auprc', ym, pm, np.ones((1, 200)))[0] == pytest.approx(expected, abs=1e-12)
    assert math.isnan(average_precision(np.zeros(5, bool), np.arange(5.0)))


def test_weighted_ovo_and_regression_match_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 150)
    p = rng.random((150, 3)) + 0.7 * np.eye(3)[y]
    p /= p.sum(1, keepdims=True)
    assert weighted_metric('auc_ovo', y, p, np.ones((1, 150)))[0] == pytest.approx(
        roc_auc_score(y, p, multi_class='ovo'), abs=1e-12)
    t, pred = rng.normal(60, 15, 150), rng.normal(60, 15, 150)
    from sklearn.metrics import mean_absolute_error, r2_score
    assert weighted_metric('mae', t, pred, np.ones((1, 150)))[0] == pytest.approx(mean_absolute_error(t, pred))
    assert weighted_metric('r2', t, pred, np.ones((1, 150)))[0] == pytest.approx(r2_score(t, pred))


def test_within_source_metrics_ignore_telling_sources_apart():
    # Source A is mostly positive, source B mostly negative; a score that only knows the source looks good pooled.
    rng = np.random.default_rng(4)
    groups = np.repeat(['A', 'B'], 100)
    y = np.r_[rng.random(100) < 0.8, rng.random(100) < 0.2].astype(float)
    source_only = (groups == 'A').astype(float) + 1e-9 * rng.random(200)  # no information within a source
    ones = np.ones((1, 200))
    assert weighted_metric('auroc', y, source_only, ones)[0] > 0.75
    assert weighted_metric('auroc_within', y, source_only, ones, groups)[0] == pytest.approx(0.5, abs=0.1)
    within_a = roc_auc_score(y[:100], source_only[:100])
    assert 0.3 < within_a < 0.7
    ages = np.r_[rng.normal(40, 5, 100), rng.normal(70, 5, 100)]
    pred = np.r_[np.full(100, 40.0), np.full(100, 70.0)]  # the source mean: pooled R2 high, within-source R2 ~ 0
    assert weighted_metric('r2', ages, pred, ones)[0] > 0.8
    assert abs(weighted_metric('r2_within', ages, pred, ones, groups)[0]) < 0.1
    w = bootstrap_weights(200, 3, 0)
    for k in range(3):  # the stratified AUROC is the pair-weighted mean of the per-source AUROCs
        idx = np.repeat(np.arange(200), w[k].astype(int))
        num = den = 0.0
        for g in ('A', 'B'):
            m = groups[idx] == g
            pos, neg = y[idx][m].sum(), (1 - y[idx][m]).sum()
            num += roc_auc_score(y[idx][m], source_only[idx][m]) * pos * neg
            den += pos * neg
        assert weighted_metric('auroc_within', y, source_only, w[k:k + 1], groups)[0] == pytest.approx(num / den)
    with pytest.raises(ValueError, match='groups'):
        weighted_metric('auroc_within', y, source_only, ones)


def _noisy_scores(seed, n=200, signal=1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, y * signal + rng.normal(size=n)


def test_paired_bootstrap_identical_methods_give_zero():
    y, s = _noisy_scores(0)
    r = paired_bootstrap_diff('auroc', y, [s, s + 0.0], [s.copy()], n_boot=300)
    assert r['diff'] == 0.0 and r['diff_lo'] == 0.0 and r['diff_hi'] == 0.0
    assert r['diff_lo'] <= 0.0 <= r['diff_hi'] and verdict(r['diff_lo'], r['diff_hi'], 'auroc') == 'no difference shown'


def test_paired_bootstrap_separates_informative_from_uninformative():
    y, good = _noisy_scores(1, signal=2.0)
    bad = np.random.default_rng(9).normal(size=len(y))
    r = paired_bootstrap_diff('auroc', y, [good], [bad], n_boot=500)
    assert r['diff_lo'] > 0 and verdict(r['diff_lo'], r['diff_hi'], 'auroc') == 'better'
    back = paired_bootstrap_diff('auroc', y, [bad], [good], n_boot=500)
    assert back['diff_hi'] < 0 and verdict(back['diff_lo'], back['diff_hi'], 'auroc') == 'worse'
    assert verdict(-0.5, -0.1, 'mae') == 'better'  # lower MAE is better


def test_paired_bootstrap_resamples_and_pairs():
    # Without resampling the interval would collapse onto the point estimate; without pairing (independent resamples
    # per method) it would be much wider than the paired one for two strongly correlated methods.
    y, a = _noisy_scores(2, signal=1.0)
    b = a + np.random.default_rng(3).normal(scale=0.3, size=len(y))
    r = paired_bootstrap_diff('auroc', y, [a], [b], n_boot=400, seed=0)
    assert r['diff_lo'] < r['diff'] < r['diff_hi'] and r['n_boot'] == 400
    assert r['a_lo'] < r['a'] < r['a_hi']
    w1, w2 = bootstrap_weights(len(y), 400, 1), bootstrap_weights(len(y), 400, 2)
    unpaired = weighted_metric('auroc', y, a, w1) - weighted_metric('auroc', y, b, w2)
    unpaired_width = np.subtract(*np.quantile(unpaired, [0.975, 0.025]))
    assert r['diff_hi'] - r['diff_lo'] < 0.6 * unpaired_width
    # The seeds of a method are averaged inside each resample.
    r2 = paired_bootstrap_diff('auroc', y, [a, b], [b], n_boot=400, seed=0)
    assert r2['a'] == pytest.approx(0.5 * (r['a'] + r['b']))


# ---------------------------------------------------------------------------------------------------------------------
# Label fractions and demographics


def test_subsample_train_fractions_stratified_and_seeded():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.1).astype(np.float32)  # 10% positives
    sub = subsample_train(y, 'binary', 0.01, seed=0)
    assert len(sub) == 5 and y[sub].any() and not y[sub].all()  # both classes even at 1%
    assert np.array_equal(sub, subsample_train(y, 'binary', 0.01, seed=0))
    assert not np.array_equal(sub, subsample_train(y, 'binary', 0.01, seed=1))
    assert len(subsample_train(y, 'binary', 0.1, seed=0)) == 50
    assert np.array_equal(subsample_train(y, 'binary', 1.0, seed=5), np.arange(500))
    ym = (rng.random((400, 6)) < [0.5, 0.2, 0.05, 0.02, 0.01, 0.005]).astype(np.float32)
    subm = subsample_train(ym, 'multilabel', 0.01, seed=0)
    assert len(subm) == 4 and (ym[subm].sum(0) > 0).sum() >= 4  # each draw brings a label not yet covered
    assert ym[subm, 5].any()  # the rarest label is there even at 1%
    yc = rng.integers(0, 4, 300)
    assert set(yc[subsample_train(yc, 'multiclass', 0.02, seed=0)]) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match='fraction'):
        subsample_train(y, 'binary', 0.0, seed=0)


def test_demographics_adapter():
    from ecgvit.data import Entry

    def entry(age, sex):
        return Entry('r', 'p', 'train', None, 'x', meta={'age': age, 'sex': sex})

    assert demographics(entry(300.0, 1), 'ptbxl') == (90.0, 'F')  # v1.0.3 codes > 89 as 300; PTB-XL 1 = female
    assert demographics(entry('51', 0), 'ptbxl') == (51.0, 'M')
    assert demographics(entry('NaN', 'Female'), 'cinc') == (None, 'F')
    assert demographics(entry(None, 'M'), 'ludb') == (None, 'M')
    assert demographics(entry(40, 1), 'cinc') == (40.0, None)  # a bare number is only PTB-XL's code


# ---------------------------------------------------------------------------------------------------------------------
# A whole run on synthetic folders


class SpectralEncoder(nn.Module):
    """Log power spectrum of lead I: knows each record's frequency, so it knows the (synthetic) sex."""

    def __init__(self, cfg):
        super().__init__()
        self.pretrained_cfg = dict(cfg)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.log1p(torch.fft.rfft(x[:, 0].float(), dim=-1).abs()[:, :60])


class ConstantEncoder(nn.Module):
    """The same features for every record: nothing to learn from."""

    def __init__(self, cfg):
        super().__init__()
        self.pretrained_cfg = dict(cfg)

    def forward(self, x):
        return torch.ones(x.shape[0], 8)


def _tiny():
    torch.manual_seed(1)
    model = ecgvit.create_model('ecg_vit_tiny', img_size=N_MODEL)
    model.pretrained_cfg = dict(model.pretrained_cfg, sampling_rate=FS_MODEL, duration_s=N_MODEL / FS_MODEL,
                                input_size=(12, 1, N_MODEL))
    return model


@pytest.fixture(scope='module')
def suite_run(tmp_path_factory):
    root = write_suite_folders(tmp_path_factory.mktemp('suite_data'))
    tiny = _tiny()
    spectral = SpectralEncoder(tiny.pretrained_cfg)
    encoders = {'tiny': tiny, 'tiny_copy': copy.deepcopy(tiny), 'spectral': spectral,
                'constant': ConstantEncoder(tiny.pretrained_cfg)}
    out = tmp_path_factory.mktemp('suite_out')
    cache = tmp_path_factory.mktemp('suite_cache')
    cfg = SuiteConfig(data_dir=str(root), out=str(out), encoders=encoders, seeds=(0, 1, 2), fractions=(0.1, 1.0),
                      n_boot=200, cache_dir=str(cache), batch_size=32, device='cpu')
    summary = run_suite(cfg)
    return {'root': root, 'out': out, 'cache': cache, 'summary': summary, 'encoders': encoders, 'cfg': cfg}


def _read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_suite_writes_every_output_with_its_columns(suite_run):
    out = suite_run['out']
    for name in ('predictions.csv', 'results.csv', 'results.md', 'pairwise.csv', 'differences.png', 'splits.csv',
                 'skipped.csv', 'suite_config.json'):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    res = _read_csv(out / 'results.csv')
    for col in ('task', 'metric', 'encoder', 'fraction', 'n_seeds', 'n_train', 'n_test', 'mean', 'sd', 'ci_lo', 'ci_hi',
                'diff_vs_random', 'diff_lo', 'diff_hi', 'verdict_vs_random', 'vs_others'):
        assert col in res[0], col
    tasks = {r['task'] for r in res}
    assert {'ptbxl_superdiagnostic', 'ptbxl_form', 'ptbxl_rhythm', 'ptbxl_all', 'sex', 'age_ge60', 'age',
            'cinc_scored', 'ludb_rhythm'} <= tasks
    assert {r['encoder'] for r in res} == {'random', 'tiny', 'tiny_copy', 'spectral', 'constant'}
    assert {r['metric'] for r in res if r['task'] == 'ptbxl_superdiagnostic'} == {'auroc', 'auprc'}
    assert {r['metric'] for r in res if r['task'] == 'ludb_rhythm'} == {'auc_ovo'}
    assert {r['metric'] for r in res if r['task'] == 'age'} == {'mae', 'r2', 'r2_within'}
    assert {r['metric'] for r in res if r['task'] == 'sex' and r['headline'] == 'True'} == {'auroc_within'}
    # one row per task x metric x encoder x fraction; the random floor has no difference to itself
    assert len(res) == len({(r['task'], r['metric'], r['encoder'], r['fraction']) for r in res})
    assert all(r['verdict_vs_random'] == '' for r in res if r['encoder'] == 'random')
    assert all(r['verdict_vs_random'] in ('better', 'worse', 'no difference shown', 'not computable')
               for r in res if r['encoder'] != 'random')
    pred = pd.read_csv(out / 'predictions.csv')
    assert list(pred.columns) == ['task', 'encoder', 'seed', 'fraction', 'record_id', 'label', 'y', 'score', 'leads']
    assert (pred['leads'] == 12).all() and {r['leads'] for r in res} == {'12'}  # all 12 leads by default
    assert {r['lead_check'] for r in res} == {'trained', 'random init'}
    pair = _read_csv(out / 'pairwise.csv')
    assert {'encoder_a', 'encoder_b', 'diff', 'diff_lo', 'diff_hi', 'p_value', 'verdict'} <= set(pair[0])
    n_enc = 5
    per_cell = {(r['task'], r['metric'], r['fraction']) for r in pair}
    assert len(pair) == len(per_cell) * n_enc * (n_enc - 1) // 2
    md = (out / 'results.md').read_text()
    assert '## sex' in md and 'diff vs random' in md
    from PIL import Image
    assert Image.open(out / 'differences.png').size[0] > 400


def test_suite_seeds_fractions_and_splits(suite_run):
    out, summary = suite_run['out'], suite_run['summary']
    pred = pd.read_csv(out / 'predictions.csv')
    sex = pred[(pred.task == 'sex') & (pred.encoder == 'tiny')]
    assert sorted(sex[sex.fraction == 0.1].seed.unique()) == [0, 1, 2]
    assert sorted(sex[sex.fraction == 1.0].seed.unique()) == [0]  # deterministic at 1.0: one fit
    res = pd.read_csv(out / 'results.csv')
    r = res[(res.task == 'sex') & (res.metric == 'auroc') & (res.encoder == 'tiny')].set_index('fraction')
    assert r.loc[0.1, 'n_seeds'] == 3 and r.loc[1.0, 'n_seeds'] == 1 and r.loc[1.0, 'sd'] == 0
    counts = summary['tasks']['sex']['records']
    assert r.loc[1.0, 'n_train'] == counts['train'] and r.loc[0.1, 'n_train'] == math.ceil(0.1 * counts['train'])
    # every encoder is probed on the same label-fraction draw: same training count, same test records
    sub = res[(res.task == 'sex') & (res.metric == 'auroc') & (res.fraction == 0.1)]
    assert sub.n_train.nunique() == 1 and sub.n_test.nunique() == 1
    splits = pd.read_csv(out / 'splits.csv', dtype=str)
    assert set(splits.columns) == {'source', 'record_id', 'patient_id', 'split'}
    ptb = splits[splits.source == 'ptbxl'].set_index('record_id')
    assert ptb.loc['6', 'split'] == 'val' and ptb.loc['7', 'split'] == 'test'  # official folds 9 and 10
    assert splits.groupby(['source', 'patient_id']).split.nunique().max() == 1  # patients never cross splits
    cfg = json.loads((out / 'suite_config.json').read_text())
    assert cfg['seeds'] == [0, 1, 2] and cfg['fractions'] == [0.1, 1.0] and cfg['wall_time_s'] > 0
    assert cfg['sources']['code15']['with_sex'] == 12 and cfg['sources']['ptbxl']['with_age'] == 60
    assert any(d['label'] == 'HYP' for d in cfg['tasks']['ptbxl_superdiagnostic']['dropped_labels'])


def test_suite_lists_skipped_records(suite_run):
    skipped = pd.read_csv(suite_run['out'] / 'skipped.csv', dtype=str)
    unreadable = skipped[skipped.stage == 'read/preprocess']
    assert list(unreadable.record_id) == ['9011'] and 'truncated' in unreadable.reason.iloc[0]
    assert ((skipped.task == 'sex') & (skipped.record_id == '9011')).any()  # and it is out of every task
    dup = skipped[(skipped.task == 'sex') & (skipped.record_id == 'ptb-xl/HR00001')]
    assert len(dup) == 1 and 'ecg_id 1' in dup.reason.iloc[0]
    no_form = skipped[(skipped.task == 'ptbxl_form')]
    assert len(no_form) == 15 and no_form.reason.str.contains('no form statement').all()
    assert json.loads((suite_run['out'] / 'suite_config.json').read_text())['unreadable_records'] == 1


def test_suite_paired_verdicts(suite_run):
    pair = pd.read_csv(suite_run['out'] / 'pairwise.csv')
    same = pair[(pair.encoder_a == 'tiny') & (pair.encoder_b == 'tiny_copy')]
    assert len(same) and (same['diff'] == 0).all() and (same.diff_lo <= 0).all() and (same.diff_hi >= 0).all()
    assert (same.verdict == 'no difference shown').all()
    informative = pair[(pair.task == 'sex') & (pair.metric == 'auroc') & (pair.fraction == 1.0) &
                       (pair.encoder_a == 'spectral') & (pair.encoder_b == 'constant')]
    assert len(informative) == 1
    row = informative.iloc[0]
    assert row.diff_lo > 0 and row.verdict == 'better' and row.a > 0.9 and row.b == pytest.approx(0.5)


def test_suite_second_run_reuses_embeddings(suite_run, tmp_path):
    spectral = suite_run['encoders']['spectral']
    calls = spectral.calls
    assert calls > 0
    cfg = copy.copy(suite_run['cfg'])
    cfg.out = str(tmp_path / 'again')
    cfg.tasks = ('sex',)
    cfg.n_boot = 50
    summary = run_suite(cfg)
    assert all(e['embeddings_reused'] for e in summary['encoders'].values())
    assert spectral.calls == calls  # no forward pass the second time
    first = pd.read_csv(suite_run['out'] / 'predictions.csv')
    second = pd.read_csv(tmp_path / 'again' / 'predictions.csv')
    a = first[first.task == 'sex'].reset_index(drop=True)
    assert np.allclose(a.score, second.score)  # same features, same draws, same probes


def test_c_sensitivity_pairs_encoders_at_every_c(suite_run, tmp_path):
    cfg = copy.copy(suite_run['cfg'])
    cfg.out, cfg.tasks, cfg.n_boot, cfg.c_sensitivity = str(tmp_path / 'c'), ('sex',), 50, ('sex',)
    summary = run_suite(cfg)
    rows = pd.read_csv(tmp_path / 'c' / 'c_sensitivity.csv', keep_default_na=False)
    assert len(rows) == len(summary['c_sensitivity']) and set(rows.task) == {'sex'}
    rows['chosen_a'] = rows.chosen_a.astype(str) == 'True'
    assert set(rows.metric) == {'auroc_within'} and sorted(set(rows.C)) == sorted(cfg.c_grid)
    single = rows[rows.encoder_b == '']
    encoders = {'random', 'tiny', 'tiny_copy', 'spectral', 'constant'}
    assert set(single.encoder_a) == encoders and len(single) == len(encoders) * len(cfg.c_grid)
    assert (single.groupby('encoder_a').chosen_a.sum() == 1).all()
    # at the C validation chose, an encoder scores what results.csv says it scores
    res = pd.read_csv(tmp_path / 'c' / 'results.csv')
    res = res[(res.metric == 'auroc_within') & (res.fraction == 1.0)].set_index('encoder')
    for _, r in single[single.chosen_a].iterrows():
        assert float(r.a) == pytest.approx(res.loc[r.encoder_a, 'mean']), r.encoder_a
        assert float(r.C) == pytest.approx(float(res.loc[r.encoder_a, 'C']))
    pairs = rows[rows.encoder_b != '']
    assert len(pairs) == len(cfg.c_grid) * len(encoders) * (len(encoders) - 1) // 2
    same = pairs[(pairs.encoder_a == 'tiny') & (pairs.encoder_b == 'tiny_copy')]
    assert len(same) == len(cfg.c_grid) and (same['diff'].astype(float) == 0).all()
    informative = pairs[(pairs.encoder_a == 'spectral') & (pairs.encoder_b == 'constant')]
    assert (informative.diff_lo.astype(float) > 0).all()  # informative beats constant whatever the C
    assert json.loads((tmp_path / 'c' / 'suite_config.json').read_text())['outputs'][-1] == 'c_sensitivity.csv'
    assert not (suite_run['out'] / 'c_sensitivity.csv').exists()  # off by default
    cfg.c_sensitivity = ('age',)  # not among the run's tasks: nothing to report, so say so
    with pytest.raises(ValueError, match=r"does not probe: \['age'\]"):
        run_suite(cfg)
    cfg.c_sensitivity, cfg.fractions = ('sex',), (0.1,)
    with pytest.raises(ValueError, match='fraction 1.0'):
        run_suite(cfg)


def test_cli_suite_flags_reach_the_config(monkeypatch, tmp_path, capsys):
    import ecgvit.eval.suite as suite
    from ecgvit.cli import main

    seen = {}

    def fake_run(cfg):
        seen['cfg'] = cfg
        return {'results': [{'task': 'sex', 'kind': 'binary', 'metric': 'auroc', 'encoder': 'mine', 'fraction': 1.0,
                             'mean': 0.7, 'sd': 0.0, 'diff_vs_random': 0.1, 'diff_lo': 0.05, 'diff_hi': 0.15,
                             'verdict_vs_random': 'better'}], 'wall_time_s': 1.0}

    monkeypatch.setattr(suite, 'run_suite', fake_run)
    rc = main(['benchmark', '--suite', 'real', '--data-dir', str(tmp_path), '--checkpoint', f'mine={tmp_path}',
               '--model', 'ecg_vit_mae_moco', '--seeds', '0,1,2,3', '--fractions', '0.1,1', '--tasks', 'sex,age',
               '--n-boot', '50', '--out', str(tmp_path / 'o')])
    assert rc == 0
    cfg = seen['cfg']
    assert cfg.encoders == {'mine': str(tmp_path), 'ecg_vit_mae_moco': 'ecg_vit_mae_moco'}
    assert cfg.seeds == (0, 1, 2, 3) and cfg.fractions == (0.1, 1.0) and cfg.tasks == ('sex', 'age')
    assert cfg.n_boot == 50 and cfg.out == str(tmp_path / 'o') and cfg.data_dir == str(tmp_path)
    assert cfg.global_pool is None and cfg.c_sensitivity == ()
    assert 'better' in capsys.readouterr().out
    assert main(['benchmark', '--suite', 'real', '--data-dir', str(tmp_path), '--global-pool', 'avg', '--out',
                 str(tmp_path / 'avg')]) == 0
    assert seen['cfg'].global_pool == 'avg'
    assert main(['benchmark', '--suite', 'real', '--data-dir', str(tmp_path), '--c-sensitivity',
                 'ptbxl_superdiagnostic,sex', '--out', str(tmp_path / 'c')]) == 0
    assert seen['cfg'].c_sensitivity == ('ptbxl_superdiagnostic', 'sex')
    assert main(['benchmark', '--c-sensitivity', 'sex', '--out', str(tmp_path / 'b')]) == 2  # a suite option only
    assert main(['benchmark', '--suite', 'real', '--data-dir', str(tmp_path), '--checkpoint', 'nopath']) == 2
    assert main(['benchmark', '--suite', 'real']) == 2  # no --data-dir
    assert 'data-dir' in capsys.readouterr().err


def test_labels_without_enough_positives_are_dropped_and_said_so():
    from ecgvit.eval.suite_data import _keep_labels

    split = np.array(['train'] * 6 + ['test'] * 4)
    y = np.zeros((10, 4), np.float32)
    y[[0, 1, 6], 0] = 1  # 2 train / 1 test positive
    y[[0, 1, 2, 6, 7], 1] = 1  # 3 / 2
    y[[0, 1], 2] = 1  # none in test
    y[:, 3] = 1  # no negative anywhere
    kept_y, kept, dropped = _keep_labels('t', ['a', 'b', 'c', 'd'], y, split)
    assert kept == ['a', 'b'] and kept_y.shape == (10, 2)
    reasons = {d['label']: d['reason'] for d in dropped}
    assert reasons == {'c': 'no positive record in test',
                       'd': 'no negative record in train; no negative record in test'}
    _, kept2, dropped2 = _keep_labels('t', ['a', 'b', 'c', 'd'], y, split, min_positives=2)
    assert kept2 == ['b'] and '1 positive(s) in test < 2' in dropped2[0]['reason']


def test_suite_refuses_non_finite_embeddings(suite_run, tmp_path):
    class NanEncoder(ConstantEncoder):
        def forward(self, x):
            return torch.full((x.shape[0], 4), float('nan'))

    cfg = copy.copy(suite_run['cfg'])
    cfg.out, cfg.tasks = str(tmp_path / 'nan'), ('sex',)
    cfg.encoders = {'tiny': suite_run['encoders']['tiny'], 'broken': NanEncoder(suite_run['encoders']['tiny']
                                                                                .pretrained_cfg)}
    with pytest.raises(ValueError, match="'broken' gives non-finite embeddings"):
        run_suite(cfg)
