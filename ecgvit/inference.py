"""Fast inference for ECG encoders: bf16, int8 dynamic quantisation or torch.compile, chosen by measurement.

Which is fastest depends on the CPU: bf16 matmuls beat fp32 where the CPU has native bf16 (AVX512-BF16, AMX) and
lose where it is emulated; int8 dynamic quantisation wins where VNNI is present. So nothing is hard-coded: ``'auto'``
times each candidate on an example batch on this machine and keeps the fastest whose embeddings stay within a
cosine similarity of ``min_cosine`` (default 0.999) of fp32.
"""
import copy
import logging
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ['FastEncoder', 'optimize_for_inference', 'INFERENCE_MODES']

_logger = logging.getLogger(__name__)

INFERENCE_MODES = ('fp32', 'bf16', 'int8', 'compile')


class FastEncoder(nn.Module):
    """An inference-only wrapper: runs ``model`` in ``mode`` and always returns float32 outputs.

    Attributes:
        mode: The mode in use ('fp32', 'bf16', 'int8' or 'compile').
        timings_ms: Median batch latency per candidate measured by ``optimize_for_inference('auto')``.
        cosine: Worst cosine similarity to fp32 per candidate on the example batch.
    """

    def __init__(self, model: nn.Module, mode: str, input_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model = model
        self.mode = mode
        self.input_dtype = input_dtype
        self.timings_ms: Dict[str, float] = {}
        self.cosine: Dict[str, float] = {}

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the wrapped model on ``x``, without autograd.

        Args:
            x: A batch, cast to the mode's input dtype first.

        Returns:
            The model's output as float32.
        """
        return self.model(x.to(self.input_dtype)).float()


class _FrozenPerShape(nn.Module):
    """Run ``module`` through TorchScript graphs traced and frozen once per input shape, falling back to eager.

    For batch-1 inference of an int8 dynamically quantised encoder, most of the time outside the quantised matmuls is
    Python and dispatch overhead of some 150 small ops; a frozen graph removes it (outputs bit-identical; the latency
    gain is measured by ``benchmarks/infer_latency.py``). A trace is only valid for the shape it saw (the positional
    embedding's resampling is a Python branch), so each new input shape gets its own trace, a few hundred ms once, and
    holds its own frozen copy of the weights (about 12 MB at seed size in int8). TorchScript is deprecated in torch;
    where tracing fails this runs the module eagerly, with the same results.

    Args:
        module: An eval-mode module taking one tensor.
        max_shapes: Traces kept; beyond that the cache starts afresh (shapes are usually one or two per job).
    """

    def __init__(self, module: nn.Module, max_shapes: int = 8) -> None:
        super().__init__()
        self.module = module
        self.max_shapes = max_shapes
        self._graphs: Dict[Tuple[torch.dtype, Tuple[int, ...]], torch.jit.ScriptModule] = {}
        self._eager = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._eager:
            return self.module(x)
        key = (x.dtype, tuple(x.shape))
        graph = self._graphs.get(key)
        if graph is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')  # the tracer's notes on Python branches, jit's deprecation
                    graph = torch.jit.freeze(torch.jit.trace(self.module, x, check_trace=False))
            except Exception as e:  # noqa: BLE001 - any failure means: run eagerly, as without this wrapper
                # A bad input (wrong length, ...) raises here with the module's own message and changes nothing;
                # only an input the module runs, but TorchScript cannot trace, turns tracing off.
                out = self.module(x)
                _logger.info('TorchScript freezing unavailable (%s: %s); running eagerly', type(e).__name__, e)
                self._eager = True
                return out
            if len(self._graphs) >= self.max_shapes:
                self._graphs.clear()
            self._graphs[key] = graph
        return graph(x)


def _build(model: nn.Module, mode: str) -> FastEncoder:
    model = copy.deepcopy(model).eval()
    if mode == 'fp32':
        return FastEncoder(model.float(), mode)
    if mode == 'bf16':
        return FastEncoder(model.to(torch.bfloat16), mode, torch.bfloat16)
    if mode == 'int8':
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # torch.ao's eager quantisation warns about its planned move to torchao
            quantized = torch.ao.quantization.quantize_dynamic(model.float(), {nn.Linear}, dtype=torch.qint8)
        return FastEncoder(_FrozenPerShape(quantized), mode)
    if mode == 'compile':
        return FastEncoder(torch.compile(model.float(), dynamic=False), mode)
    raise ValueError(f'Unknown inference mode {mode!r}: choose one of {", ".join(INFERENCE_MODES)} or "auto".')


def _median_ms(fn: Callable[[], torch.Tensor], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


@dataclass
class _Candidate:
    mode: str
    module: FastEncoder
    cosine: float = 1.0
    times: List[float] = field(default_factory=list)


def optimize_for_inference(
        model: nn.Module,
        mode: str = 'auto',
        example: Optional[torch.Tensor] = None,
        candidates: Sequence[str] = ('fp32', 'bf16', 'int8'),
        min_cosine: float = 0.999,
        repeats: int = 5,
) -> FastEncoder:
    """Return an inference-only copy of ``model`` in the given (or the measured fastest) mode.

    Args:
        model: Any encoder (its ``forward`` output is compared, e.g. the pooled embedding).
        mode: One of ``INFERENCE_MODES`` or ``'auto'``.
        example: Example batch for ``'auto'`` (default: one random ``(1, 12, seq_len)`` record).
        candidates: Modes ``'auto'`` tries; add ``'compile'`` where a C++ compiler is available and the first-call
            compile time is worth it.
        min_cosine: Smallest per-sample cosine similarity to fp32 a candidate may have, in (0, 1]; fp32 itself, the
            reference, always qualifies, so ``'auto'`` never ends without a mode.
        repeats: Timed repeats per candidate (interleaved round-robin, so drift on a busy machine hits all alike).

    Returns:
        A :class:`FastEncoder`; with ``'auto'``, ``timings_ms`` and ``cosine`` hold what was measured.

    Raises:
        ValueError: an unknown ``mode`` or candidate, or ``min_cosine`` outside (0, 1].

    Example:
        >>> import ecgvit
        >>> fast = optimize_for_inference(ecgvit.create_model('ecg_vit_tiny'), mode='auto', repeats=2)
        >>> fast.mode in ('fp32', 'bf16', 'int8')
        True
    """
    if mode != 'auto':
        return _build(model, mode)
    if not 0.0 < min_cosine <= 1.0:
        raise ValueError(f'min_cosine must be in (0, 1] (a cosine similarity to the fp32 output), got {min_cosine!r}.')
    if example is None:
        seq_len = getattr(model, 'seq_len', 3600)
        example = torch.randn(1, getattr(model, 'in_chans', 12), seq_len)
    cands = [_Candidate(m, _build(model, m)) for m in dict.fromkeys(('fp32',) + tuple(candidates))]
    with torch.inference_mode():
        reference = cands[0].module(example)
        for cand in cands[1:]:  # fp32 is the reference: its cosine is 1 by definition (rounding could say 0.99999994)
            out = cand.module(example)
            cand.cosine = float(torch.nn.functional.cosine_similarity(
                out.flatten(1), reference.flatten(1), dim=1).min())
        for _ in range(repeats):
            for cand in cands:
                cand.times.append(_median_ms(lambda c=cand: c.module(example), repeats=1, warmup=1))
    timings = {c.mode: statistics.median(c.times) for c in cands}
    cosines = {c.mode: c.cosine for c in cands}
    ok = [c for c in cands if c.cosine >= min_cosine]
    best = min(ok, key=lambda c: timings[c.mode])
    _logger.info('inference modes (ms): %s; cosine: %s; chose %s', timings, cosines, best.mode)
    best.module.timings_ms, best.module.cosine = timings, cosines
    return best.module
