"""ecgvit.data.prepare: from a dataset spec to cached splits, and the check where data meet a model."""
import pytest
import torch
from data_fixtures import sine_leads, write_ptbxl, write_wfdb

from ecgvit.data import IncompatibleDataError, Preprocessing, get_dataset
from ecgvit.data.prepare import (
    check_model_data,
    check_num_samples,
    data_preprocessing,
    dataset_kwargs,
    model_data_cfg,
    parse_data_spec,
    prepare_data,
)


def test_parse_data_spec():
    assert parse_data_spec('ptbxl:superdiagnostic') == ('ptbxl', 'superdiagnostic')
    assert parse_data_spec('Synthetic') == ('synthetic', None)
    with pytest.raises(ValueError, match='name\\[:label_set\\]'):
        parse_data_spec(':rhythm')


def test_check_num_samples_is_the_patch_length_check():
    assert check_num_samples(1000) == 1000
    for bad, fix in ((510, 'use 500'), (0, 'use 25'), (-25, 'use 25')):
        with pytest.raises(ValueError, match=f'multiple of the patch length 25: {fix}'):
            check_num_samples(bad)
    with pytest.raises(ValueError, match='multiple of the patch length'):
        data_preprocessing(100.0, 1010)


def test_dataset_kwargs_know_each_source():
    assert dataset_kwargs('ptbxl', 'rhythm', 100.0) == {'label_set': 'rhythm', 'sampling_rate': 100}
    assert dataset_kwargs('ptbxl', None, 360.0)['sampling_rate'] == 500  # the copy closest above the model rate
    assert dataset_kwargs('code15', None, 400.0) == {}
    assert dataset_kwargs('synthetic', None, 100.0, seed=3, synthetic_records=10, num_samples=500) == {
        'n_records': 10, 'seed': 3, 'fs': 100.0, 'duration_s': 5.0}
    with pytest.raises(ValueError, match='has no label sets'):
        dataset_kwargs('synthetic', 'rhythm', 100.0)
    with pytest.raises(ValueError, match='Unknown dataset'):
        dataset_kwargs('nosuch', None, 100.0)


def test_pretraining_keeps_the_records_a_label_set_has_no_label_for(tmp_path):
    root = write_ptbxl(tmp_path / 'ptbxl', n=20)  # every 4th record has no superdiagnostic statement
    assert dataset_kwargs('ptbxl', None, 100.0, labelled=False) == {'sampling_rate': 100, 'drop_empty': False}
    assert dataset_kwargs('code15', None, 400.0, labelled=False) == {}  # a dataset that drops none
    labelled = prepare_data('ptbxl', str(root), str(tmp_path / 'cache'), 100.0, 1000)
    unlabelled = prepare_data('ptbxl', str(root), str(tmp_path / 'cache'), 100.0, 1000, labelled=False)
    count = lambda splits: sum(len(splits[s]) for s in ('train', 'val', 'test'))  # noqa: E731
    assert count(labelled) == 15 and count(unlabelled) == 20
    assert unlabelled['cache_dir'] != labelled['cache_dir']  # two indexes, two caches


def test_prepare_data_pool_gives_train_and_val_and_rejects_labels(tmp_path):
    for i in range(40):
        write_wfdb(tmp_path / 'data' / 'mine', f'r{i}', sine_leads(100.0, 1000, freq=1 + i / 20), 100.0)
    splits = prepare_data('pool', str(tmp_path / 'data'), str(tmp_path / 'cache'), 100.0, 1000)
    assert len(splits['train']) + len(splits['val']) == 40 and len(splits['val']) > 0 and len(splits['test']) == 0
    pool = get_dataset('pool', tmp_path / 'data')  # the data layer's pool is what the benchmark caches
    assert len(splits['val']) == sum(e.split == 'val' for e in pool)
    assert splits['train'][0][0].shape == (12, 1000)
    assert splits['preprocessing'] == data_preprocessing(100.0, 1000)
    with pytest.raises(ValueError, match='unlabelled'):
        prepare_data('pool:rhythm', str(tmp_path / 'data'), str(tmp_path / 'cache'), 100.0, 1000)


def test_prepare_data_reads_ptbxl_at_500hz_with_the_100hz_fallback(tmp_path):
    root = write_ptbxl(tmp_path / 'ptbxl', n=20, hr_upto=12)
    with pytest.warns(UserWarning, match='have no 500 Hz file'):
        splits = prepare_data('ptbxl:all', str(root), str(tmp_path / 'cache'), 250.0, 2500)
    assert sum(len(splits[s]) for s in ('train', 'val', 'test')) == 20  # none lost to the missing files
    assert splits['train'][0][0].shape == (12, 2500)


MODEL_CFG = {'input_size': (12, 1, 3600), 'sampling_rate': 360.0, 'duration_s': 10.0,
             'normalization': 'zscore_per_lead'}


def test_check_compatible_trusts_the_stored_recipe_over_architecture_defaults():
    # A save_pretrained cfg of a model trained at 100 Hz x 500 whose top-level fields kept the architecture's defaults.
    cfg = dict(MODEL_CFG, preprocessing=data_preprocessing(100.0, 500).to_dict())
    data_preprocessing(100.0, 500).check_compatible(cfg)
    with pytest.raises(IncompatibleDataError, match='sampling rate: data 360 Hz, model 100 Hz'):
        Preprocessing().check_compatible(cfg)


def test_check_model_data_names_the_fix_and_the_options():
    cfg = dict(MODEL_CFG, preprocessing=data_preprocessing(100.0, 500).to_dict())
    check_model_data(data_preprocessing(200.0, 1000), None)  # nothing known: nothing to check
    with pytest.raises(IncompatibleDataError) as err:
        check_model_data(data_preprocessing(200.0, 1000), cfg, 'checkpoint runs/x')
    msg = str(err.value)
    for part in ('checkpoint runs/x', 'sampling rate: data 200 Hz, model 100 Hz', 'length: data 1000 samples, model '
                 '500', 'Preprocessing(sampling_rate=100.0, num_samples=500', '--sampling-rate 100 --num-samples 500'):
        assert part in msg


class _Encoder(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.pretrained_cfg = cfg


def test_model_data_cfg_knows_when_the_weights_have_a_recipe(caplog):
    with_pp = dict(MODEL_CFG, preprocessing=data_preprocessing(100.0, 500).to_dict())
    assert model_data_cfg(_Encoder(MODEL_CFG), {'model': 'ecg_vit_tiny', 'pretrained': False}) is None  # random init
    assert model_data_cfg(_Encoder(MODEL_CFG), {'model': 'm', 'pretrained': True}) == MODEL_CFG  # published weights
    assert model_data_cfg(_Encoder(with_pp), {'checkpoint': 'runs/x'}) == with_pp
    with caplog.at_level('WARNING'):  # a checkpoint without its recipe: the architecture default is no evidence
        assert model_data_cfg(_Encoder(MODEL_CFG), {'checkpoint': 'runs/old'}) is None
    assert 'runs/old records no preprocessing' in caplog.text


def test_prepare_data_checks_the_model_before_building(tmp_path):
    cfg = dict(MODEL_CFG, preprocessing=data_preprocessing(100.0, 500).to_dict())
    with pytest.raises(IncompatibleDataError, match='--sampling-rate 100 --num-samples 500'):
        prepare_data('synthetic', None, str(tmp_path / 'cache'), 200.0, 1000, synthetic_records=20, model_cfg=cfg)
    assert not (tmp_path / 'cache').exists()  # refused before generating or caching anything
    splits = prepare_data('synthetic', None, str(tmp_path / 'cache'), 100.0, 500, synthetic_records=20,
                          model_cfg=cfg)
    assert splits['train'][0][0].shape == (12, 500)


def test_caches_of_other_settings_get_their_own_folder(tmp_path):
    """Two runs sharing a cache folder with different crops (or data folders) keep both caches instead of
    rebuilding each other's in turn; each is found again on the next call."""
    kwargs = dict(sampling_rate=100, num_samples=500, synthetic_records=40)
    windows = prepare_data('synthetic', None, tmp_path, crop='windows', **kwargs)['cache_dir']
    center = prepare_data('synthetic', None, tmp_path, crop='center', **kwargs)['cache_dir']
    assert windows != center and center.startswith(windows + '-')
    assert prepare_data('synthetic', None, tmp_path, crop='windows', **kwargs)['cache_dir'] == windows
    assert prepare_data('synthetic', None, tmp_path, crop='center', **kwargs)['cache_dir'] == center
    odd = prepare_data('synthetic', None, tmp_path, **dict(kwargs, sampling_rate=100.5))['cache_dir']
    assert '100.5hz' in odd
