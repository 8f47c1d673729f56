"""Lead-set dropout (ecgvit.data.augment.LeadSetDropout) and the lead-subset lists it draws from."""
import pytest
import torch

from ecgvit.constants import LEADS
from ecgvit.data.augment import Compose, LeadSetDropout, TimeOut
from ecgvit.lead_sets import DEFAULT_LEAD_SETS, parse_lead_sets, resolve_lead_sets

LIMB = LEADS[:6]


def _batch(b: int, seed: int = 0) -> torch.Tensor:
    # No exact zeros in the input, so every zero in the output was put there by the transform.
    x = torch.randn(b, 12, 50, generator=torch.Generator().manual_seed(seed))
    return x + torch.sign(x) * 0.01


def _gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize('spec, expected', [
    (None, (LIMB, ('I',))),
    ('limb,I', (LIMB, ('I',))),
    ('I+II, v1+V2+v3', (('I', 'II'), ('V1', 'V2', 'V3'))),
    ('precordial,1', (LEADS[6:], ('I',))),
    (['6', ['II'], 'I,aVF', 'aVL+I'], (LIMB, ('II',), ('I', 'aVF'), ('I', 'aVL'))),
])
def test_lead_sets_resolve(spec, expected):
    assert resolve_lead_sets(spec) == expected
    assert DEFAULT_LEAD_SETS == (LIMB, ('I',))


@pytest.mark.parametrize('spec, match', [
    ('limb,,I', 'Empty lead subset'), ('limb,I,6', 'named twice'), ('12', 'all 12 leads'), ([], 'empty'),
    ('I+X9', "Unknown lead 'X9'"), ('', 'empty'),
])
def test_lead_sets_refuse_bad_lists(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_lead_sets(spec) if not isinstance(spec, str) else parse_lead_sets(spec)


def test_zeroes_exactly_the_leads_outside_the_drawn_subset():
    x = _batch(64)
    drop = LeadSetDropout(p=0.6, lead_sets=['limb', 'I', 'V1+V2'])
    y, keep = drop(x, generator=_gen(), return_mask=True)
    # The same draws, in the same order, by hand: which records, then which subset.
    g = _gen()
    apply = torch.rand(64, generator=g) < 0.6
    choice = (torch.rand(64, generator=g) * 3).floor().long()
    subsets = [set(LIMB), {'I'}, {'V1', 'V2'}]
    assert 0 < int(apply.sum()) < 64
    for b in range(64):
        kept = subsets[int(choice[b])] if apply[b] else set(LEADS)
        assert keep[b].tolist() == [name in kept for name in LEADS]
        for c, name in enumerate(LEADS):
            if name in kept:
                assert torch.equal(y[b, c], x[b, c])
            else:
                assert torch.all(y[b, c] == 0)
    assert torch.equal(drop(x, generator=_gen()), y)  # the mask is only returned when asked for: same draws


def test_probability_and_uniform_subsets():
    x = _batch(4000)
    _, keep = LeadSetDropout(p=0.3)(x, generator=_gen(5), return_mask=True)
    applied = ~keep.all(dim=1)
    # Binomial(4000, 0.3): sd 29; a wrong p (or a per-lead instead of per-record draw) lands far outside.
    assert abs(int(applied.sum()) - 1200) < 120
    _, keep = LeadSetDropout(p=1.0)(x, generator=_gen(6), return_mask=True)
    n_limb = int((keep.sum(dim=1) == 6).sum())
    n_one = int((keep.sum(dim=1) == 1).sum())
    assert n_limb + n_one == 4000 and abs(n_limb - 2000) < 130  # uniform over the two default subsets
    assert bool(keep[keep.sum(dim=1) == 1][:, 0].all())  # the 1-lead subset is lead I


def test_p_zero_is_identity_and_seeds_reproduce():
    x = _batch(32)
    assert torch.equal(LeadSetDropout(p=0.0)(x, generator=_gen()), x)
    drop = LeadSetDropout(p=0.5)
    assert torch.equal(drop(x, generator=_gen(3)), drop(x, generator=_gen(3)))
    assert not torch.equal(drop(x, generator=_gen(3)), drop(x, generator=_gen(4)))


def test_composes_and_describes_itself():
    drop = LeadSetDropout(p=1.0, lead_sets=['I'])
    y = Compose([TimeOut(p=0.0), drop])(_batch(4), generator=_gen())
    assert torch.all(y[:, 1:] == 0) and torch.all(y[:, 0] != 0)
    assert 'p=1.0, lead_sets=[1-lead (I)]' in repr(drop)
    assert 'p=0.5, lead_sets=[6-lead (limb); 1-lead (I)]' in repr(LeadSetDropout())
    assert drop.state_dict() == {}  # derived from lead_sets: never in a checkpoint


def test_refuses_other_lead_counts_and_bad_probabilities():
    with pytest.raises(ValueError, match='needs the 12 leads'):
        LeadSetDropout()(torch.randn(2, 8, 50))
    with pytest.raises(ValueError, match='probability'):
        LeadSetDropout(p=1.5)


def test_with_lead_masks_wraps_only_sets_that_have_masks():
    from torch.utils.data import TensorDataset

    from ecgvit.data.lead_mask_dataset import WithLeadMask, with_lead_masks

    plain = TensorDataset(torch.zeros(4, 12, 50))
    assert with_lead_masks(plain, plain) == (plain, plain, None)  # nothing was zero-filled: nothing to say
    train, val = TensorDataset(torch.zeros(4, 12, 50)), TensorDataset(torch.zeros(2, 12, 50))
    train.lead_mask = torch.ones(4, 12, dtype=torch.bool)
    train.lead_mask[1, 6:] = False
    val.lead_mask = torch.ones(2, 12, dtype=torch.bool)
    wrapped_train, wrapped_val, missing = with_lead_masks(train, val)
    assert isinstance(wrapped_train, WithLeadMask) and isinstance(wrapped_val, WithLeadMask)
    assert missing == 0.25 and wrapped_train[1]['lead_mask'].tolist() == [True] * 6 + [False] * 6
