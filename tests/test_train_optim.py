"""create_adam: torch's fused Adam where the parameters allow it, the same steps as the unfused optimiser."""
import pytest
import torch
from torch import nn

from ecgvit.train.optim import create_adam, fused_supported


def _params(seed: int = 0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
    return net, list(net.parameters())


@pytest.mark.parametrize('decoupled', [False, True])
def test_fused_steps_match_the_unfused_optimiser(decoupled):
    nets = [_params()[0] for _ in range(2)]
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    fused = create_adam(nets[0].parameters(), 1e-2, weight_decay=0.1, decoupled=decoupled)
    plain = cls(nets[1].parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    assert type(fused) is cls and fused.defaults['fused'] is True
    x, y = torch.randn(8, 16), torch.randn(8, 4)
    for _ in range(5):
        for net, opt in zip(nets, (fused, plain)):
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(nets[0][0].weight, _params()[0][0].weight)  # it did train


def test_parameter_groups_keep_their_settings_and_parameters():
    net, _ = _params()
    # Generators, as nn.Module.parameters() returns: each group must still hold its parameters.
    opt = create_adam([{'params': net[0].parameters(), 'lr': 1e-3}, {'params': net[2].parameters()}], 1e-2)
    assert [g['lr'] for g in opt.param_groups] == [1e-3, 1e-2] and opt.defaults['fused'] is True
    assert [len(g['params']) for g in opt.param_groups] == [2, 2]
    assert len(create_adam(net.parameters(), 1e-2).param_groups[0]['params']) == 4


def test_falls_back_to_the_unfused_optimiser_where_torch_has_no_fused_kernel(monkeypatch):
    real = torch.optim.Adam

    def old_torch(params, *args, fused=None, **kwargs):
        if fused:
            raise RuntimeError('`fused=True` requires all the params to be floating point Tensors of supported '
                               'devices: cuda')  # what torch < 2.4 says for CPU parameters
        return real(params, *args, **kwargs)

    monkeypatch.setattr(torch.optim, 'Adam', old_torch)
    net, params = _params()
    opt = create_adam(net.parameters(), 1e-2)
    assert isinstance(opt, real) and not opt.defaults['fused'] and len(opt.param_groups[0]['params']) == 4


def test_unfused_where_the_kernel_cannot_run():
    assert not fused_supported([torch.zeros(2, dtype=torch.long)])
    assert not fused_supported([])
    assert fused_supported([torch.zeros(2)])
    opt = create_adam([nn.Parameter(torch.zeros(3, dtype=torch.float64))], 1e-2)
    assert opt.defaults['fused'] is True  # float64 is a float dtype the kernel takes
