"""ecgvit.lead_sets: naming lead subsets, their masks, and refusing subsets a model was never trained on."""
import pytest

from ecgvit.constants import LEADS
from ecgvit.lead_sets import UntrainedLeadsError, check_trained_leads, describe_leads, lead_mask_for, resolve_leads
from ecgvit.models.ecg_vit import to_ecg_pretrained_cfg


@pytest.mark.parametrize('spec, expected', [
    (None, LEADS), ('12', LEADS), ('6', LEADS[:6]), ('limb', LEADS[:6]), ('1', ('I',)),
    ('avr, I', ('I', 'aVR')), ('V1+i', ('I', 'V1')), (['v2', 'II'], ('II', 'V2')), ('precordial', LEADS[6:]),
])
def test_resolve_leads(spec, expected):
    assert resolve_leads(spec) == expected


@pytest.mark.parametrize('spec, match', [('I,X1', "Unknown lead 'X1'"), (['I', 'i'], 'named twice'),
                                         (',', 'empty'), ([], 'empty')])
def test_resolve_leads_refuses_bad_names(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_leads(spec)


def test_mask_and_description():
    assert lead_mask_for('1') == (True,) + (False,) * 11
    assert sum(lead_mask_for('6')) == 6 and lead_mask_for(None) == (True,) * 12
    assert (describe_leads('12'), describe_leads('6'), describe_leads('II')) == ('12-lead', '6-lead (limb)',
                                                                                 '1-lead (II)')


def test_untrained_subsets_are_refused_unless_allowed():
    assert check_trained_leads(None, '12') == LEADS  # every model runs on all 12 leads
    with pytest.raises(UntrainedLeadsError, match=r"ecg_vit_x was not trained to run on 1-lead \(I\).*12-lead"):
        check_trained_leads(None, ['I'], 'ecg_vit_x')
    assert check_trained_leads(None, ['I'], allow_untrained=True) == ('I',)
    trained = (LEADS[:6], ('I',))
    assert check_trained_leads(trained, 'limb') == LEADS[:6] and check_trained_leads(trained, 'i') == ('I',)
    with pytest.raises(UntrainedLeadsError, match=r'1-lead \(II\)'):
        check_trained_leads(trained, 'II')


def test_pretrained_cfg_reads_lead_sets_from_json_lists():
    cfg = to_ecg_pretrained_cfg({'lead_sets': [['I', 'II', 'III', 'aVR', 'aVL', 'aVF'], ['I']]})
    assert cfg.lead_sets == (LEADS[:6], ('I',))
    assert to_ecg_pretrained_cfg({}).lead_sets is None
