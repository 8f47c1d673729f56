"""Options declared once: flags, types, defaults and docs generated from config dataclasses."""
import argparse
from dataclasses import dataclass
from typing import List, Optional

import pytest

from ecgvit.options import add_options, documented, model_input_defaults, option, options_from_args


@documented
@dataclass
class _Demo:
    """A demo config."""
    batch_size: int = option(64, 'Batch.', short='-b')
    rate: Optional[float] = option(None, 'Rate in Hz.')
    methods: List[str] = option(default_factory=lambda: ['a', 'b'], help='Methods.')
    fast: bool = option(False, 'Go fast.')
    mode: str = option('x', 'Mode.', choices=('x', 'y'))
    hidden: int = option(1, 'Not on the command line.', cli=False)


def _parser(**kw):
    p = argparse.ArgumentParser()
    add_options(p, _Demo, **kw)
    return p


def test_flags_types_and_only_given_values():
    p = _parser()
    args = p.parse_args(['-b', '8', '--rate', '100', '--methods', 'mae, moco', '--fast', '--mode', 'y'])
    assert options_from_args(args, _Demo) == {'batch_size': 8, 'rate': 100.0, 'methods': ['mae', 'moco'],
                                              'fast': True, 'mode': 'y'}
    assert options_from_args(p.parse_args([]), _Demo) == {}  # nothing given: the dataclass's defaults apply
    with pytest.raises(SystemExit, match='^2$'):  # off by default: --fast is the one flag
        p.parse_args(['--no-fast'])
    with pytest.raises(SystemExit, match='^2$'):
        p.parse_args(['--hidden', '2'])
    with pytest.raises(SystemExit, match='^2$'):
        p.parse_args(['--mode', 'z'])
    assert '[default: 64]' in p.format_help() and '[default: a,b]' in p.format_help()


def test_prefix_and_only():
    p = _parser(prefix='probe', only=('batch_size',))
    args = p.parse_args(['--probe-batch-size', '4'])
    assert options_from_args(args, _Demo, prefix='probe', only=('batch_size',)) == {'batch_size': 4}
    with pytest.raises(ValueError, match=r"_Demo has no option\(s\) \['nope'\]"):
        _parser(only=('nope',))


def test_docs_are_generated_from_the_fields():
    assert 'Attributes:' in _Demo.__doc__ and 'batch_size: Batch. Default: 64.' in _Demo.__doc__


def test_model_input_defaults_come_from_the_pretrained_cfg():
    import ecgvit

    assert model_input_defaults('ecg_vit_tiny') == (360.0, 3600)
    model = ecgvit.create_model('ecg_vit_tiny')
    model.pretrained_cfg = dict(model.pretrained_cfg, preprocessing={'sampling_rate': 100.0, 'num_samples': 500})
    assert model_input_defaults(model) == (100.0, 500)  # weights pretrained by ecgvit record their preprocessing


def test_parse_key_value_reads_json_else_text():
    from ecgvit.options import parse_key_value

    assert parse_key_value('alpha=20') == ('alpha', 20)
    assert parse_key_value('shared_pass=true') == ('shared_pass', True)
    assert parse_key_value('lead_sets=["limb", "I"]') == ('lead_sets', ['limb', 'I'])
    assert parse_key_value('augment=default_ecg_augment') == ('augment', 'default_ecg_augment')
    assert parse_key_value('x=a=b') == ('x', 'a=b')
    with pytest.raises(ValueError, match="'alpha' is not KEY=VALUE"):
        parse_key_value('alpha')
