"""compile_blocks: torch.compile every transformer block in place, with the same losses and parameter names."""
import shutil

import pytest
import torch

from ecgvit.pretrain import create_pretrainer
from ecgvit.train.loop import compile_blocks

TINY = dict(embed_dim=32, depth=1, num_heads=2, img_size=500)

pytestmark = pytest.mark.usefixtures('one_thread')


def _losses(compiled: bool):
    torch.manual_seed(0)
    model = create_pretrainer('mae_moco', 'ecg_vit_tiny', TINY, shared_pass=True, queue_size=16,
                              decoder_embed_dim=16, decoder_num_heads=2).train()
    names = list(model.state_dict())
    count = compile_blocks(model) if compiled else 0
    x = torch.randn(4, 12, 500, generator=torch.Generator().manual_seed(1))
    out = model(x, generator=torch.Generator().manual_seed(2))
    out['loss'].backward()
    grad = model.encoder.cls_token.grad.clone()
    assert list(model.state_dict()) == names  # checkpoints keep their keys
    return count, {k: v.item() for k, v in out.items()}, grad


@pytest.mark.slow  # compiles three blocks, forward and backward: ~20 s on 2 cores
@pytest.mark.skipif(shutil.which('cc') is None and shutil.which('gcc') is None, reason='inductor needs a C compiler')
def test_compiled_blocks_give_the_same_losses_and_gradients():
    _, eager, eager_grad = _losses(False)
    count, compiled, compiled_grad = _losses(True)
    assert count == 3  # encoder, momentum encoder and MAE decoder: one block each
    for key in eager:
        assert compiled[key] == pytest.approx(eager[key], rel=1e-4), key
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-3, atol=1e-6)
