"""benchmarks/plausibility_check.py: flags and cost of the record plausibility check on a folder, per lead subset."""
from data_fixtures import write_wfdb

from benchmarks import plausibility_check
from ecgvit.data import synthesize_ecg


def test_counts_flags_per_subset_and_names_them(tmp_path, capsys):
    for i in range(3):
        write_wfdb(tmp_path / 'good', f'g{i}', synthesize_ecg('NSR', fs=250.0, rng=i).signal, 250.0)
    # 100 Hz samples declared 50 Hz: the check names the rate, whatever leads are read
    write_wfdb(tmp_path / 'bad', 'b0', synthesize_ecg('NSR', fs=100.0, rng=9).signal, 50.0)
    assert plausibility_check.main(['--data-dir', str(tmp_path), '--repeats', '1']) == 0
    out = capsys.readouterr().out
    assert '4 records from' in out
    for subset in ('12', 'limb 6', 'lead I'):
        assert f'| {subset} | 4 | 1 |' in out
        assert f'{subset}: b0: declared sampling rate 50 Hz is below 100 Hz' in out
    assert 'g0:' not in out and 'g1:' not in out and 'g2:' not in out


def test_misdate_reads_the_folder_at_lower_rates_and_says_what_the_folder_check_finds(tmp_path, capsys):
    for i in range(4):
        write_wfdb(tmp_path, f'g{i}', synthesize_ecg('NSR', fs=500.0, rng=i).signal, 500.0)
    assert plausibility_check.main(['--data-dir', str(tmp_path), '--repeats', '1', '--misdate', '1,4']) == 0
    out = capsys.readouterr().out
    assert '| true / 1 | 4 | 0 |' in out and out.split('| true / 1 |')[1].split('\n')[0].endswith('| no |')
    # 500 Hz samples read as 125 Hz: the folder is flagged (by the autocorrelation median: see test_hostile_data)
    assert out.split('| true / 4 |')[1].split('\n')[0].endswith('| yes |')
