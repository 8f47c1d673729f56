"""benchmarks/paired_predictions.py: paired comparisons from kept prediction files, and its refusals."""
import csv
import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.paired_predictions import compare, main, read_predictions  # noqa: E402
from ecgvit.eval.metrics import paired_bootstrap_diff  # noqa: E402

COLS = ['task', 'encoder', 'seed', 'fraction', 'record_id', 'label', 'y', 'score', 'leads']


def _write(path, encoder, y, scores, records=None, gz=True):
    records = records or [f'ptbxl/{i}' for i in range(len(y))]
    opener = gzip.open if gz else open
    with opener(path, 'wt', newline='') as f:
        w = csv.writer(f)
        w.writerow(COLS)
        for seed, s in enumerate(scores):
            for i, rec in enumerate(records):
                for j in range(y.shape[1]):
                    w.writerow(['t', encoder, seed, 1.0, rec, f'L{j}', f'{y[i, j]:g}', f'{s[i, j]:.6g}', '12'])


def test_two_files_pair_on_their_records_with_the_suites_resamples(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random((60, 3)) < 0.4).astype(float)
    good = [y + rng.normal(0, 0.6, y.shape) for _ in range(2)]
    bad = [rng.normal(0, 1, y.shape)]
    _write(tmp_path / 'a.csv.gz', 'good', y, good)
    backwards = [f'ptbxl/{i}' for i in range(59, -1, -1)]  # another file, the records in another order
    _write(tmp_path / 'b.csv', 'bad', y[::-1], [s[::-1] for s in bad], records=backwards, gz=False)
    records, labels, y_read, s_read = read_predictions(tmp_path / 'a.csv.gz', 'good', 't')
    assert labels == ['L0', 'L1', 'L2'] and len(s_read) == 2 and np.array_equal(y_read, y)
    r = compare((tmp_path / 'a.csv.gz', 'good'), (tmp_path / 'b.csv', 'bad'), 't', n_boot=200)
    from ecgvit.eval.metrics import bootstrap_weights
    from ecgvit.eval.suite import bootstrap_seed

    direct = paired_bootstrap_diff('auroc', y, [np.round(s, 5) for s in good], [np.round(bad[0], 5)],
                                   weights=bootstrap_weights(60, 200, bootstrap_seed('t', 1.0)))
    assert r['diff'] == pytest.approx(direct['diff'], abs=1e-4) and r['diff_lo'] > 0.1  # clearly better, paired
    assert r['diff_lo'] == pytest.approx(direct['diff_lo'], abs=1e-4) and r['n_test'] == 60
    out = main(['--a', f'{tmp_path / "a.csv.gz"}:good', '--b', f'{tmp_path / "b.csv"}:bad', '--task', 't',
                '--n-boot', '200'])
    assert out['diff'] == r['diff']


def test_refusals_say_what_the_files_hold(tmp_path):
    y = np.eye(2)[[0, 1] * 10]
    _write(tmp_path / 'a.csv.gz', 'x', y, [y])
    _write(tmp_path / 'b.csv.gz', 'z', y[:19], [y[:19]])
    with pytest.raises(SystemExit, match=r"holds no predictions of encoder 'nope'.*encoders \['x'\]"):
        read_predictions(tmp_path / 'a.csv.gz', 'nope', 't')
    with pytest.raises(SystemExit, match='not tested on the same records'):
        compare((tmp_path / 'a.csv.gz', 'x'), (tmp_path / 'b.csv.gz', 'z'), 't')
    with pytest.raises(SystemExit, match='choose from'):
        compare((tmp_path / 'a.csv.gz', 'x'), (tmp_path / 'a.csv.gz', 'x'), 't', metric='auroc_within')


def test_markdown_keeps_one_row_per_pair_for_the_cards(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.random((50, 2)) < 0.5).astype(float)
    _write(tmp_path / 'a.csv.gz', 'good', y, [y + rng.normal(0, 0.5, y.shape)])
    _write(tmp_path / 'b.csv.gz', 'bad', y, [rng.normal(0, 1, y.shape)])
    md = tmp_path / 'paired.md'
    args = ['--a', f'{tmp_path / "a.csv.gz"}:good', '--b', f'{tmp_path / "b.csv.gz"}:bad', '--task', 't',
            '--n-boot', '100', '--markdown', str(md), '--title', 'Good against bad']
    r = main(args)
    text = md.read_text()
    assert text.startswith('# Good against bad\n\n| A | B | task (metric) |') and 'not evidence of equality' in text
    row = next(ln for ln in text.splitlines() if ln.startswith('| good | bad |'))
    assert f"{r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}] | better |" in row and '| 50 |' in row
    main(args)  # the same pair again: its row is replaced, not repeated
    assert md.read_text() == text
    main(['--a', f'{tmp_path / "b.csv.gz"}:bad', '--b', f'{tmp_path / "a.csv.gz"}:good', '--task', 't',
          '--n-boot', '100', '--markdown', str(md), '--title', 'another title'])
    lines = md.read_text().splitlines()
    pairs = [ln.split(' | ')[:2] for ln in lines if ln.startswith(('| good', '| bad'))]
    assert lines[0] == '# Good against bad' and pairs == [['| good', 'bad'], ['| bad', 'good']]
    assert '| worse |' in lines[5]
