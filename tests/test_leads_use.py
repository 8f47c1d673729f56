"""Running a 12-lead checkpoint on the leads a user has: the data read only the subset (absent leads exactly 0 and
masked, present leads as in the 12-lead recipe), the mask reaches the encoder in the probe, fine-tuning, embed and the
suite (nothing in an absent lead leaks), a model never trained on a subset refuses unless told, and each subset has
its own caches and embeddings. Tiny models, synthetic WFDB files."""
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import sine_leads, write_wfdb
from torch.utils.data import TensorDataset

import ecgvit
from ecgvit.cli import main
from ecgvit.constants import LEADS
from ecgvit.data import CachedECGDataset, Preprocessing, build_cache, get_dataset, read_record
from ecgvit.data.prepare import data_preprocessing, prepare_data
from ecgvit.eval import extract_features, finetune, linear_probe
from ecgvit.eval.leads import (
    apply_lead_mask,
    check_encoder_leads,
    lead_mask_tensor,
    parse_lead_subsets,
    resolve_data_leads,
)
from ecgvit.lead_sets import UntrainedLeadsError

pytestmark = pytest.mark.usefixtures('one_thread')

LIMB = LEADS[:6]
FS, N = 100.0, 500  # the tiny encoders take 5 s at 100 Hz


def _record_signal(seed: int, seconds: float = 8.0, fs: float = 250.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    x = sine_leads(fs, n, freq=1.0 + 0.1 * (seed % 7)) + 0.05 * rng.normal(size=(12, n))  # 60-96 beats a minute
    return np.round(x * 1000) / 1000  # on the WFDB grid, so the file holds exactly these values


def _garbage(x: np.ndarray, rows, seed: int = 0, scale: float = 5.0) -> np.ndarray:
    """``x`` with ``rows`` replaced by loud noise, a NaN stretch and a flat line: nothing an encoder should see.
    (5 mV keeps the samples inside a 16-bit WFDB file at 1000 adu/mV.)"""
    g = x.copy()
    rng = np.random.default_rng(seed)
    for k, r in enumerate(rows):
        g[r] = np.round(scale * rng.normal(size=x.shape[-1]), 3)
        if k == 0:
            g[r, 10:60] = np.nan
        if k == 1:
            g[r] = 7.0
    return g


# ---------------------------------------------------------------------------------------------------------------------
# Data: Preprocessing(input_leads=...)


def test_subset_preprocessing_is_the_12_lead_recipe_with_absent_leads_exactly_zero(tmp_path):
    path = write_wfdb(tmp_path, 'r1', _record_signal(1), 250.0)
    rec = read_record(path)
    kw = dict(sampling_rate=FS, num_samples=N, bandpass=(0.5, 40.0))  # resample + filter + crop + z-score
    full, full_mask = Preprocessing(**kw)(rec, return_mask=True)
    for spec, present in (('6', LIMB), ('1', ('I',)), ('V2,avr', ('aVR', 'V2')), (['v6', 'I'], ('I', 'V6'))):
        pp = Preprocessing(**kw, input_leads=spec)
        assert pp.input_leads == present  # canonical names in the 12-lead order
        out, mask = pp(rec, return_mask=True)
        rows = np.array([n in present for n in LEADS])
        np.testing.assert_array_equal(mask, rows)
        np.testing.assert_array_equal(out[rows], full[rows])  # bit for bit: every step is per lead
        assert not out[~rows].any()  # exactly 0
    assert full_mask.all()
    assert Preprocessing(**kw, input_leads='12').input_leads is None  # all 12 is the default
    with pytest.raises(ValueError, match='Unknown lead'):
        Preprocessing(input_leads='I,X1')
    with pytest.raises(ValueError, match='not among the output leads'):
        Preprocessing(leads=('I', 'II'), input_leads='V1')


def test_garbage_in_absent_leads_never_reaches_the_output(tmp_path):
    clean = _record_signal(2)
    dirty = _garbage(clean, range(6, 12))  # noise, NaNs and a flat lead in V1-V6
    rec_clean = read_record(write_wfdb(tmp_path, 'clean', clean, 250.0))
    rec_dirty = read_record(write_wfdb(tmp_path, 'dirty', np.nan_to_num(dirty, nan=0.0), 250.0))
    rec_dirty.signal[6:7, 10:60] = np.nan  # WFDB cannot store NaN in format 16: put it back in memory
    pp = Preprocessing(sampling_rate=FS, num_samples=N, input_leads='6', nan_policy='error')
    np.testing.assert_array_equal(pp(rec_dirty), pp(rec_clean))
    # The same record through the 12-lead recipe: the NaNs are an error, and masking the output would not help.
    with pytest.raises(Exception, match='NaN'):
        Preprocessing(sampling_rate=FS, num_samples=N, nan_policy='error')(rec_dirty)


def test_records_lacking_a_lead_of_the_subset_are_skipped_extra_leads_are_masked(tmp_path):
    src = tmp_path / 'wfdb'
    write_wfdb(src, 'twelve', np.nan_to_num(_garbage(_record_signal(3), range(6, 12))), 250.0)  # garbage extras
    write_wfdb(src, 'limb_only', _record_signal(4)[:6], 250.0, lead_names=LIMB)  # a 6-lead device
    write_wfdb(src, 'no_lead_II', _record_signal(5)[[0, 2, 3, 4, 5]], 250.0, lead_names=['I', 'III', 'aVR', 'aVL',
                                                                                          'aVF'])
    ds = get_dataset('folder', src, labels_csv=False)
    pp = Preprocessing(sampling_rate=FS, num_samples=N, input_leads='6')  # missing_leads='error' for the subset
    with pytest.warns(UserWarning, match='left out'):
        cache = build_cache(ds, pp, tmp_path / 'c6', num_workers=0, progress=False, plausibility='off')
    data = CachedECGDataset(cache)
    assert sorted(data.record_ids) == ['limb_only', 'twelve']
    assert data.lead_mask.tolist() == [[n in LIMB for n in LEADS]] * 2
    assert not np.asarray(data.signals)[:, 6:].any()
    skipped = {s['record_id']: s['reason'] for s in data.skipped}
    assert list(skipped) == ['no_lead_II'] and "missing leads ['II']" in skipped['no_lead_II']
    manifest = json.loads((cache / 'manifest.json').read_text())
    assert manifest['n_partial_leads'] == 0  # masked by design is not "partial"
    # The 12-lead recipe on the same folder: the 6-lead records lack leads and are errors there.
    with pytest.warns(UserWarning):
        full = build_cache(ds, Preprocessing(sampling_rate=FS, num_samples=N, empty_lead_policy='zero'),
                           tmp_path / 'c12', num_workers=0, progress=False, plausibility='off')
    assert CachedECGDataset(full).record_ids == ['twelve']


def test_cache_keys_and_folders_differ_per_subset(tmp_path):
    pp12, pp6 = data_preprocessing(FS, N), data_preprocessing(FS, N, input_leads='6')
    assert pp12.fingerprint() != pp6.fingerprint() != data_preprocessing(FS, N, input_leads='1').fingerprint()
    assert 'input_leads' not in pp12.to_dict()  # caches made before the option keep their fingerprints
    assert Preprocessing.from_dict(json.loads(json.dumps(pp6.to_dict()))) == pp6
    kw = dict(synthetic_records=30, num_workers=0, crop='center')
    s12 = prepare_data('synthetic', None, tmp_path, FS, N, **kw)
    s6 = prepare_data('synthetic', None, tmp_path, FS, N, leads='6', **kw)
    assert s12['cache_dir'] != s6['cache_dir'] and s6['cache_dir'].endswith('-leads-I_II_III_aVR_aVL_aVF')
    m12 = json.loads((tmp_path / s12['cache_dir'] / 'manifest.json').read_text())
    built = (tmp_path / s12['cache_dir'] / 'manifest.json').stat().st_mtime_ns
    m6 = json.loads((tmp_path / s6['cache_dir'] / 'manifest.json').read_text())
    assert m12['fingerprint'] != m6['fingerprint'] and m6['preprocessing']['input_leads'] == list(LIMB)
    x12, x6 = np.asarray(s12['train'].signals), np.asarray(s6['train'].signals)
    np.testing.assert_array_equal(x6[:, :6], x12[:, :6])
    assert not x6[:, 6:].any() and s12['train'].lead_mask.all()
    # Asking the 12-lead cache again reuses it: the 6-lead build did not replace it.
    again = prepare_data('synthetic', None, tmp_path, FS, N, **kw)
    assert again['cache_dir'] == s12['cache_dir']
    assert (tmp_path / again['cache_dir'] / 'manifest.json').stat().st_mtime_ns == built


# ---------------------------------------------------------------------------------------------------------------------
# The mask reaches the encoder


def _tiny(lead_sets=None, seed=0):
    torch.manual_seed(seed)
    model = ecgvit.create_model('ecg_vit_tiny', img_size=N)
    model.pretrained_cfg = dict(model.pretrained_cfg, lead_sets=lead_sets)
    return model


def _splits(n=24, seed=0, garbage=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3 * n, 12, N, generator=g)
    y = (x[:, 0, :50].mean(1) > 0).long()
    if garbage:
        x[:, 6:] = 1e4 * torch.randn(3 * n, 6, N, generator=g)
        x[:, 7, :20] = float('nan')
        x[:, 8] = float('inf')
    return [TensorDataset(x[i * n:(i + 1) * n], y[i * n:(i + 1) * n]) for i in range(3)]


def test_apply_lead_mask_zeroes_absent_leads_even_nan_and_inf():
    x = torch.randn(3, 12, 50)
    x[:, 7] = float('nan')
    x[:, 0, 0] = float('inf')
    out = apply_lead_mask(x, lead_mask_tensor('6'))
    assert torch.equal(out[:, :6], x[:, :6]) and bool((out[:, 6:] == 0).all())
    assert apply_lead_mask(x, None) is x and lead_mask_tensor('12') is None
    per_item = torch.zeros(3, 12, dtype=torch.bool)
    per_item[1, 2] = True
    out = apply_lead_mask(x, per_item)
    assert torch.equal(out[1, 2], x[1, 2]) and int((out != 0).sum()) == int((x[1, 2] != 0).sum())
    with pytest.raises(ValueError, match='does not fit'):
        apply_lead_mask(torch.randn(2, 6, 50), lead_mask_tensor('1'))


def test_garbage_in_an_absent_lead_does_not_change_the_embedding():
    enc = _tiny()
    clean, dirty = _splits()[0], _splits(garbage=True)[0]
    mask = lead_mask_tensor('6')
    a, _ = extract_features(enc, clean, batch_size=8, device=torch.device('cpu'), amp='fp32', lead_mask=mask)
    b, _ = extract_features(enc, dirty, batch_size=8, device=torch.device('cpu'), amp='fp32', lead_mask=mask)
    np.testing.assert_array_equal(a, b)
    c, _ = extract_features(enc, dirty, batch_size=8, device=torch.device('cpu'), amp='fp32')
    assert not np.isfinite(c).all() or np.abs(c - a).max() > 1e-3  # without the mask the garbage gets in


def test_probe_refuses_an_untrained_subset_and_runs_when_allowed():
    train, val, test = _splits()
    opts = dict(epochs=2, batch_size=8, n_boot=0, amp='fp32', device='cpu', progress=False)
    with pytest.raises(UntrainedLeadsError, match="was not trained to run on 1-lead \\(I\\) input.*12-lead"):
        linear_probe(_tiny(), train, val, test, leads='1', **opts)
    with pytest.warns(UserWarning, match='running anyway'):
        res = linear_probe(_tiny(), train, val, test, leads='1', allow_untrained_leads=True, **opts)
    assert res['leads'] == ['I'] and res['leads_trained'] is False and res['config']['leads'] == '1'
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='.*running anyway')  # trained on lead I alone: no warning
        trained = linear_probe(_tiny(lead_sets=(('I',),)), train, val, test, leads='i', **opts)
        assert trained['leads'] == ['I'] and trained['leads_trained'] is True
        linear_probe(_tiny(), train, val, test, leads='1', random_init=True, **opts)  # nothing to contradict
        full = linear_probe(_tiny(), train, val, test, **opts)
    assert full['leads'] == list(LEADS) and full['leads_trained'] is True
    # The garbage of absent leads changes nothing the probe computes.
    dirty = linear_probe(_tiny(lead_sets=(('I',),)), *_splits(garbage=True), leads='1', **opts)
    assert dirty['test_loss'] == trained['test_loss'] and dirty['best_val_loss'] == trained['best_val_loss']


def test_finetune_masks_every_batch_and_refuses_an_untrained_subset():
    opts = dict(epochs=1, batch_size=8, n_boot=0, amp='fp32', device='cpu', progress=False, warmup_epochs=0)
    with pytest.raises(UntrainedLeadsError):
        finetune(_tiny(), *_splits(), leads='6', **opts)
    clean = finetune(_tiny(lead_sets=[list(LIMB)]), *_splits(), leads='6', **opts)
    dirty = finetune(_tiny(lead_sets=[list(LIMB)]), *_splits(garbage=True), leads='6', **opts)
    assert clean['leads'] == list(LIMB) and clean['leads_trained'] is True
    assert np.isfinite(dirty['test_loss']) and dirty['test_loss'] == pytest.approx(clean['test_loss'], abs=1e-6)


def test_data_leads_come_from_the_cache_and_bound_what_can_be_asked(tmp_path):
    s6 = prepare_data('synthetic', None, tmp_path, FS, N, leads='6', synthetic_records=30, num_workers=0)
    assert resolve_data_leads(None, s6['train'], s6['test']) == LIMB
    assert resolve_data_leads('1', s6['train']) == ('I',)
    assert resolve_data_leads(None, TensorDataset(torch.zeros(2, 12, N))) == LEADS
    with pytest.raises(ValueError, match="asks for \\['V1'"):
        resolve_data_leads('I,V1', s6['train'])
    with pytest.raises(UntrainedLeadsError):  # the probe takes the subset from the data when not told
        linear_probe(_tiny(), s6['train'], s6['val'], s6['test'], epochs=1, n_boot=0, device='cpu', progress=False)
    assert check_encoder_leads(_tiny(lead_sets=[list(LIMB)]), '6') == (LIMB, True)


def test_parse_lead_subsets():
    assert parse_lead_subsets('12,6,1') == [LEADS, LIMB, ('I',)]
    assert parse_lead_subsets(['12', 'I+ii', '6', 'limb']) == [LEADS, ('I', 'II'), LIMB]
    assert parse_lead_subsets('6,V1+V2') == [LIMB, ('V1', 'V2')]  # the syntax of pretrain --lead-sets
    assert parse_lead_subsets([['V1', 'I']]) == [('I', 'V1')]
    assert parse_lead_subsets(None) == [LEADS]
    with pytest.raises(ValueError, match='Empty lead subset'):
        parse_lead_subsets(['6,,I'])


# ---------------------------------------------------------------------------------------------------------------------
# Command line


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """Two tiny encoders with a 100 Hz x 500 recipe: one trained on 12 leads only, one also on the limb leads."""
    from ecgvit.hub import save_pretrained

    root = tmp_path_factory.mktemp('leads_weights')
    recipe = {'preprocessing': data_preprocessing(FS, N).to_dict()}
    torch.manual_seed(0)
    model = ecgvit.create_model('ecg_vit_tiny', img_size=N)
    save_pretrained(model, root / 'twelve', pretrained_cfg=recipe)
    save_pretrained(model, root / 'limb', pretrained_cfg=dict(recipe, lead_sets=[list(LIMB)]))
    return root


def test_a_run_folder_passes_its_lead_sets_to_the_check(tmp_path):
    from safetensors.torch import save_file

    from ecgvit.hub import load_encoder

    run = tmp_path / 'run'
    (run / 'checkpoints').mkdir(parents=True)
    weights = {k: v.contiguous() for k, v in _tiny().state_dict().items()}
    save_file(weights, str(run / 'checkpoints' / 'best.safetensors'))
    (run / 'config.json').write_text(json.dumps({'model': 'ecg_vit_tiny',
                                                 'pretrainer': {'lead_dropout': 0.5, 'lead_sets': [['I']]},
                                                 'preprocessing': data_preprocessing(FS, N).to_dict()}))
    enc, _ = load_encoder(run, None, N)
    assert check_encoder_leads(enc, '1') == (('I',), True)
    (run / 'config.json').write_text(json.dumps({'model': 'ecg_vit_tiny'}))
    with pytest.raises(UntrainedLeadsError):
        check_encoder_leads(load_encoder(run, None, N)[0], '1')


TINY = ['--data', 'synthetic', '--synthetic-records', '30', '--no-progress', '--epochs', '1', '-b', '8', '--n-boot',
        '0', '--amp', 'fp32']


def _fails_with(capsys, argv, *parts):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    for part in parts:
        assert part in err, err


def test_cli_probe_leads_refusal_override_and_results(weights, capsys, tmp_path):
    cache = tmp_path / 'cache'
    _fails_with(capsys, ['probe', '--checkpoint', str(weights / 'twelve'), *TINY, '--leads', '6', '--cache-dir',
                         str(cache), '--output', str(tmp_path / 'refused')],
                f'--checkpoint {weights / "twelve"} was not trained to run on 6-lead (limb) input',
                '--allow-untrained-leads')
    assert not cache.exists()  # refused before any data were generated or cached
    with pytest.warns(UserWarning, match='running anyway'):
        assert main(['probe', '--checkpoint', str(weights / 'twelve'), *TINY, '--leads', '6',
                     '--allow-untrained-leads', '--cache-dir', str(cache), '--output', str(tmp_path / 'p6')]) == 0
    res = json.loads((tmp_path / 'p6' / 'results.json').read_text())
    assert res['leads'] == list(LIMB) and res['leads_trained'] is False and res['config']['leads'] == '6'
    cfg = json.loads((tmp_path / 'p6' / 'config.json').read_text())
    assert cfg['leads_used'] == list(LIMB) and cfg['allow_untrained_leads'] is True
    assert cfg['cache_dir'].endswith('-leads-I_II_III_aVR_aVL_aVF')
    assert not np.load(f'{cfg["cache_dir"]}/lead_mask.npy')[:, 6:].any()
    # Weights trained on the limb leads: no flag needed, no warning.
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='.*running anyway')
        assert main(['probe', '--checkpoint', str(weights / 'limb'), *TINY, '--leads', 'I,II,III,aVR,aVL,aVF',
                     '--cache-dir', str(cache), '--output', str(tmp_path / 'limb')]) == 0
    assert json.loads((tmp_path / 'limb' / 'results.json').read_text())['leads_trained'] is True
    # An untrained --model takes any subset.
    assert main(['probe', '--model', 'ecg_vit_tiny', '--sampling-rate', '100', '--num-samples', '500', *TINY,
                 '--leads', '1', '--cache-dir', str(cache), '--output', str(tmp_path / 'random')]) == 0
    assert json.loads((tmp_path / 'random' / 'results.json').read_text())['leads'] == ['I']
    _fails_with(capsys, ['probe', '--checkpoint', str(weights / 'limb'), *TINY, '--leads', 'I,Z9', '--output',
                         str(tmp_path / 'bad')], "Unknown lead 'Z9'")


def test_cli_finetune_takes_leads(weights, tmp_path):
    assert main(['finetune', '--checkpoint', str(weights / 'limb'), *TINY, '--leads', '6', '--warmup-epochs', '0',
                 '--cache-dir', str(tmp_path / 'cache'), '--output', str(tmp_path / 'ft')]) == 0
    res = json.loads((tmp_path / 'ft' / 'results.json').read_text())
    assert res['leads'] == list(LIMB) and res['leads_trained'] is True


def test_cli_embed_masks_absent_leads_and_refuses_untrained_subsets(weights, capsys, tmp_path):
    clean, dirty = tmp_path / 'clean', tmp_path / 'dirty'
    for i in range(3):
        x = _record_signal(10 + i, seconds=5.0, fs=FS)
        write_wfdb(clean, f'r{i}', x, FS)
        write_wfdb(dirty, f'r{i}', np.nan_to_num(_garbage(x, range(6, 12), seed=i), nan=0.0), FS)
    write_wfdb(clean, 'limb_device', _record_signal(20, seconds=5.0, fs=FS)[:6], FS, lead_names=LIMB)
    write_wfdb(dirty, 'limb_device', _record_signal(20, seconds=5.0, fs=FS)[:6], FS, lead_names=LIMB)
    base = ['embed', '--checkpoint', str(weights / 'limb'), '--no-progress', '--leads', '6']
    assert main([*base, '--input', str(clean), '--output', str(tmp_path / 'e1')]) == 0
    assert main([*base, '--input', str(dirty), '--output', str(tmp_path / 'e2')]) == 0
    e1, e2 = np.load(tmp_path / 'e1' / 'embeddings.npy'), np.load(tmp_path / 'e2' / 'embeddings.npy')
    assert e1.shape == (4, 64)
    np.testing.assert_array_equal(e1, e2)
    cfg = json.loads((tmp_path / 'e1' / 'config.json').read_text())
    assert cfg['leads_used'] == list(LIMB) and cfg['leads_trained'] is True
    assert cfg['preprocessing']['input_leads'] == list(LIMB)
    # A cache as input: its subset is the default; a narrower one is masked further, a wider one refused.
    cache = tmp_path / 'e1' / 'cache'
    assert main(['embed', '--checkpoint', str(weights / 'limb'), '--no-progress', '--input', str(cache), '--output',
                 str(tmp_path / 'e3')]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / 'e3' / 'embeddings.npy'), e1)
    _fails_with(capsys, ['embed', '--checkpoint', str(weights / 'limb'), '--input', str(cache), '--leads', '12',
                         '--output', str(tmp_path / 'e4')], 'which the data do not hold')
    _fails_with(capsys, ['embed', '--checkpoint', str(weights / 'twelve'), '--input', str(clean), '--leads', '1',
                         '--output', str(tmp_path / 'e5')], 'was not trained to run on 1-lead (I) input')
    assert not (tmp_path / 'e5' / 'cache').exists()
    with pytest.warns(UserWarning, match='running anyway'):
        assert main(['embed', '--checkpoint', str(weights / 'twelve'), '--input', str(clean), '--no-progress',
                     '--leads', '1', '--allow-untrained-leads', '--output', str(tmp_path / 'e6')]) == 0
    assert json.loads((tmp_path / 'e6' / 'config.json').read_text())['leads_trained'] is False


# ---------------------------------------------------------------------------------------------------------------------
# The suite


def _write_ptbxl(root, n=40):
    ptb = root / 'ptbxl'
    stmts = pd.DataFrame({'description': ['normal', 'inferior MI', 'LBBB', 'sinus rhythm'],
                          'diagnostic': [1.0, 1.0, 1.0, None], 'form': [None, None, None, None],
                          'rhythm': [None, None, None, 1.0], 'diagnostic_class': ['NORM', 'MI', 'CD', None],
                          'diagnostic_subclass': ['NORM', 'IMI', 'CLBBB', None]},
                         index=pd.Index(['NORM', 'IMI', 'CLBBB', 'SR']))
    ptb.mkdir(parents=True)
    stmts.to_csv(ptb / 'scp_statements.csv')
    codes = ["{'NORM': 100.0, 'SR': 0.0}", "{'IMI': 80.0, 'SR': 0.0}", "{'CLBBB': 100.0}", "{'NORM': 50.0}"]
    rows = []
    for i in range(1, n + 1):
        fold = 9 if i % 5 == 1 else 10 if i % 5 == 2 else (i % 8) + 1
        write_wfdb(ptb / 'records100/00000', f'{i:05d}_lr', _record_signal(i, seconds=6.0, fs=FS), FS)
        rows.append({'ecg_id': i, 'patient_id': float(500 + i), 'age': 50.0, 'sex': i % 2, 'scp_codes': codes[i % 4],
                     'strat_fold': fold, 'filename_lr': f'records100/00000/{i:05d}_lr',
                     'filename_hr': f'records500/00000/{i:05d}_hr'})
    pd.DataFrame(rows).to_csv(ptb / 'ptbxl_database.csv', index=False)
    return root


def test_suite_runs_ptbxl_once_per_subset_with_its_own_caches(tmp_path):
    from ecgvit.eval.suite import SuiteConfig, run_suite

    data = _write_ptbxl(tmp_path / 'data')
    enc = _tiny(seed=1)  # not the random floor's seed-0 initialisation
    enc.pretrained_cfg = dict(enc.pretrained_cfg, sampling_rate=FS, duration_s=N / FS, input_size=(12, 1, N))
    cfg = SuiteConfig(data_dir=str(data), out=str(tmp_path / 'out'), encoders={'tiny': enc}, seeds=(0,),
                      fractions=(1.0,), tasks=('ptbxl_superdiagnostic', 'sex'), n_boot=20,
                      cache_dir=str(tmp_path / 'cache'), device='cpu', leads=('12,6', 'I'))
    with pytest.raises(UntrainedLeadsError, match="Encoder 'tiny' was not trained to run on 6-lead"):
        run_suite(cfg)
    assert not (tmp_path / 'cache').exists()  # refused before anything was cached
    cfg.allow_untrained_leads = True
    with pytest.warns(UserWarning, match='running anyway'):
        summary = run_suite(cfg)
    res = pd.read_csv(tmp_path / 'out' / 'results.csv', dtype={'leads': str})
    assert set(res.leads) == {'12', '6', '1'}
    assert set(res[res.leads == '12'].task) == {'ptbxl_superdiagnostic', 'sex'}
    assert set(res[res.leads != '12'].task) == {'ptbxl_superdiagnostic'}  # reduced subsets: the PTB-XL tasks
    checks = {(r.leads, r.encoder): r.lead_check for r in res.itertuples()}
    assert checks[('12', 'tiny')] == 'trained' and checks[('1', 'tiny')] == 'untrained'
    assert checks[('6', 'random')] == 'random init'
    # The same records, different input: the embeddings (and so the scores) differ per subset.
    pred = pd.read_csv(tmp_path / 'out' / 'predictions.csv', dtype={'leads': str})
    assert list(pred.columns)[-1] == 'leads'
    sup = pred[(pred.task == 'ptbxl_superdiagnostic') & (pred.encoder == 'tiny')]
    by = {k: g.sort_values(['record_id', 'label']).score.to_numpy() for k, g in sup.groupby('leads')}
    assert len(by['12']) == len(by['1']) > 0 and not np.allclose(by['12'], by['1'])
    pair = pd.read_csv(tmp_path / 'out' / 'pairwise.csv', dtype={'leads': str})
    assert set(pair.leads) == {'12', '6', '1'}
    stored = list((tmp_path / 'cache' / 'embeddings').glob('*.npy'))
    assert len(stored) == 2 * (1 + 2)  # 2 encoders x (12 leads: ptbxl; 6 and 1: ptbxl)
    assert len({p.name.split('-')[1] for p in stored}) == 3  # one data fingerprint per subset
    signals = [json.loads((p / 'manifest.json').read_text())['preprocessing'].get('input_leads')
               for p in (tmp_path / 'cache' / 'signals').iterdir() if not p.name.startswith('.')]
    assert sorted(map(str, signals)) == sorted(map(str, [None, list(LIMB), ['I']]))
    assert set(summary['leads']) == {'12', '6', '1'}
    assert summary['encoders']['tiny']['leads']['1']['lead_check'] == 'untrained'
    md = (tmp_path / 'out' / 'results.md').read_text()
    assert '# 1-lead (I) input' in md and 'Not trained on this subset (run with allow_untrained_leads): tiny' in md


def test_cli_suite_leads_flags_reach_the_config(monkeypatch, tmp_path):
    import ecgvit.eval.suite as suite

    seen = {}

    def fake_run(cfg):
        seen['cfg'] = cfg
        return {'results': [{'task': 'ptbxl_all', 'metric': 'auroc', 'encoder': 'random', 'fraction': 1.0,
                             'mean': 0.7, 'sd': 0.0, 'leads': '1'}], 'wall_time_s': 1.0}

    monkeypatch.setattr(suite, 'run_suite', fake_run)
    assert main(['benchmark', '--suite', 'real', '--data-dir', str(tmp_path), '--leads', '12,6', 'I+II',
                 '--allow-untrained-leads', '--out', str(tmp_path / 'o')]) == 0
    assert seen['cfg'].leads == ('12,6', 'I+II') and seen['cfg'].allow_untrained_leads is True
    assert parse_lead_subsets(seen['cfg'].leads) == [LEADS, LIMB, ('I', 'II')]
    assert main(['benchmark', '--suite', 'real', '--data-dir', str(tmp_path), '--out', str(tmp_path / 'o2')]) == 0
    assert seen['cfg'].leads == ('12',) and seen['cfg'].allow_untrained_leads is False
    assert main(['benchmark', '--quick', '--leads', '6', '--out', str(tmp_path / 'q')]) == 2  # a suite option
