"""timm's attention with the kernel chosen per call: fused where it is fast, explicit matmuls on CPU in bf16/fp16.

timm's ``Attention`` decides once, at construction, between ``F.scaled_dot_product_attention`` and the explicit
``softmax(q k^T) v``. On CPU the two are not equally fast in every dtype: in fp32 the fused kernel wins on long token
sequences, but in bf16 its flash kernel (forward and, above all, backward) runs several times slower than the same
attention as two bf16 matmuls and a softmax (``benchmarks/README.md``: 3-4x at the seed's 36- and 145-token passes on
an AMD EPYC with AVX512-BF16). So ``EcgAttention`` keeps timm's forward and parameters unchanged and only reads
``fused_attn`` at call time: fused, unless the weights sit on the CPU and the call runs in bf16/fp16 (autocast or
reduced-precision weights). Setting ``fused_attn = False`` still forces the explicit path everywhere, as in timm.
"""
import torch
from timm.layers import Attention
from torch import nn

__all__ = ['EcgAttention', 'adopt_ecg_attention', 'cpu_fused_attention_pays']

_REDUCED = (torch.bfloat16, torch.float16)


# torch >= 2.9 tells FX symbolic tracing apart from export/compile (which handle the weight's device themselves);
# looked up once, not on every attention call.
_symbolic_tracing = getattr(torch.fx._symbolic_trace, 'is_fx_symbolic_tracing', torch.fx._symbolic_trace.is_fx_tracing)


def cpu_fused_attention_pays(weight_dtype: torch.dtype) -> bool:
    """Whether the fused kernel is the faster choice for a CPU call with weights of ``weight_dtype``, in the current
    autocast state (fp32 yes; bf16/fp16, as weights or under CPU autocast, no).

    Args:
        weight_dtype: The dtype of the attention's weights.
    """
    if weight_dtype in _REDUCED:
        return False
    return not (torch.is_autocast_enabled('cpu') and torch.get_autocast_dtype('cpu') in _REDUCED)


class EcgAttention(Attention):
    """timm ``Attention`` whose fused/explicit choice is made per call (see the module docstring).

    TorchScript and FX see a plain bool: scripting reads ``fused_attn`` once, as the constant timm declares it, and
    symbolic tracing takes the constructed setting (no branch on traced values).
    """
    __jit_unused_properties__ = ['fused_attn']

    @property
    def fused_attn(self) -> bool:
        """Whether this call uses the fused kernel: never where timm's setting forbids it, and with float weights on
        CPU only where it is the faster choice (:func:`cpu_fused_attention_pays`)."""
        if not self._fused_allowed:
            return False
        if _symbolic_tracing():
            return True
        weight = getattr(self.qkv, 'weight', None)
        if not isinstance(weight, torch.Tensor):  # e.g. dynamically quantised int8 (weight() is a method): as built
            return True
        return weight.device.type != 'cpu' or cpu_fused_attention_pays(weight.dtype)

    @fused_attn.setter
    def fused_attn(self, value: bool) -> None:
        self._fused_allowed = bool(value)


def adopt_ecg_attention(module: nn.Module) -> nn.Module:
    """Turn every timm ``Attention`` inside ``module`` into an ``EcgAttention``, in place; returns ``module``.

    The class is swapped rather than the block rebuilt, so parameters, buffers, the state dict and any construction
    option of the installed timm version stay as they are; timm's own setting (``TIMM_FUSED_ATTN``) is kept as the
    upper bound.

    Args:
        module: Any module; its own and its descendants' timm ``Attention`` layers are converted.
    """
    for sub in module.modules():
        if type(sub) is Attention:
            allowed = sub.__dict__.pop('fused_attn', True)
            sub.__class__ = EcgAttention
            sub.fused_attn = allowed
    return module
