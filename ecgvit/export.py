"""Exporting encoders for deployment: ONNX with a dynamic batch size, its preprocessing recorded in the file.

:func:`export_onnx` writes ``model.onnx`` whose graph maps a z-scored ECG batch ``ecg`` (float32, ``(batch, leads,
samples)``) to the pre-logits embedding ``embedding`` ((batch, D), the model's pooling: [CLS] for the seed-size
encoders) and, for a model with a classifier head, ``logits``. The batch dimension is dynamic; the length is the one
the weights were trained on. What a deployment needs to build that input (sampling rate, length, lead order,
normalisation, the full ``Preprocessing``), the model name, the ecgvit version and the sha256 of the source weights go
into the ONNX ``metadata_props`` (``onnxruntime``: ``session.get_modelmeta().custom_metadata_map``) and into a JSON
sidecar ``model.onnx.json``, together with the parity check: the largest absolute difference and the smallest cosine
similarity between onnxruntime's and PyTorch's outputs for batch sizes 1 and 3 of one export.

Exporter: torch's ``torch.export``-based exporter (``dynamo=True``, needs ``onnxscript``) is the default; it is the
one torch maintains (the TorchScript-based exporter warns that it will be removed). ``exporter='torchscript'`` selects
the old one as a fallback (both pass the parity check at the seed size with torch 2.14; the old one exports faster).

Example:
    >>> import ecgvit
    >>> from ecgvit.export import export_onnx
    >>> model = ecgvit.create_model('ecg_vit_mae_moco', pretrained=True)  # doctest: +SKIP
    >>> result = export_onnx(model, 'export/model.onnx')  # doctest: +SKIP
    >>> result.parity['max_abs_diff'] < 1e-4  # doctest: +SKIP
    True
"""
import contextlib
import copy
import json
import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ecgvit.options import documented, option
from ecgvit.weights import sha256_file

__all__ = ['ExportConfig', 'OnnxEncoder', 'OnnxExport', 'OnnxParityError', 'export_onnx', 'onnx_metadata',
           'check_onnx_parity', 'EXPORT_FORMATS', 'EXPORTERS']

_logger = logging.getLogger(__name__)

EXPORT_FORMATS = ('onnx',)
EXPORTERS = ('dynamo', 'torchscript')
INPUT_NAME = 'ecg'
_INSTALL_HINT = "pip install 'ecgvit[onnx]' (onnx, onnxscript, onnxruntime)"


@documented
@dataclass
class ExportConfig:
    """How ``ecgvit export`` writes an encoder."""
    format: str = option('onnx', 'Output format.', choices=EXPORT_FORMATS)
    opset: int = option(18, 'ONNX opset version (18: onnxruntime >= 1.14 runs it).')
    dynamic_batch: bool = option(True, 'Dynamic batch dimension (--no-dynamic-batch fixes it at 1).',
                                 help_off='Fix the batch dimension at 1 (default: dynamic).')
    exporter: str = option('dynamo', "torch.onnx exporter: 'dynamo' (torch.export based, maintained; needs "
                                     "onnxscript) or 'torchscript' (the legacy one, deprecated in torch).",
                           choices=EXPORTERS)
    check: bool = option(True, 'Check onnxruntime against PyTorch on batch sizes 1 and 3 (--no-check skips it, '
                               'e.g. where onnxruntime is not installed).',
                         help_off='Skip the onnxruntime-vs-PyTorch check (e.g. where onnxruntime is not installed).')
    atol: float = option(1e-4, 'Largest absolute difference to PyTorch the check accepts (both run fp32).')
    min_cosine: float = option(0.9999, 'Smallest per-record cosine similarity to PyTorch the check accepts.')


class OnnxParityError(RuntimeError):
    """onnxruntime's outputs differ from PyTorch's by more than the tolerance: the export is not written."""


class OnnxEncoder(nn.Module):
    """The exported graph: ECG batch -> pre-logits embedding (and logits when the model has a head).

    ``forward_features`` then ``forward_head(pre_logits=True)`` is timm's contract, so the embedding is the model's
    own pooling (the [CLS] token for ``global_pool='token'``) after its ``fc_norm``; the logits are that embedding
    through the classifier, i.e. exactly ``model(x)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name in ('forward_features', 'forward_head', 'get_classifier'):
            if not hasattr(model, name):
                raise TypeError(f'{type(model).__name__} has no {name}(): export an ecgvit encoder (create_model, '
                                f'or a pretraining wrapper\'s .encoder), not a wrapper around it.')
        self.model = model
        self.has_head = int(getattr(model, 'num_classes', 0) or 0) > 0

    @property
    def output_names(self) -> List[str]:
        return ['embedding', 'logits'] if self.has_head else ['embedding']

    def forward(self, ecg: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        tokens = self.model.forward_features(ecg)  # (B, prefix + N, D)
        embedding = self.model.forward_head(tokens, pre_logits=True)  # (B, D)
        if self.has_head:
            return embedding, self.model.get_classifier()(embedding)  # (B, D), (B, classes)
        return embedding


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: The ``.onnx`` file.
        sidecar: The JSON sidecar (``<path>.json``).
        metadata: The ONNX ``metadata_props`` (strings; JSON for lists and dicts).
        parity: The onnxruntime check (:func:`check_onnx_parity`), empty when skipped.
        info: The whole sidecar content.
    """
    path: Path
    sidecar: Path
    metadata: Dict[str, str]
    parity: Dict[str, Any] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)


def _preprocessing(model: nn.Module, num_samples: Optional[int]) -> Dict[str, Any]:
    """The ``Preprocessing`` (as a dict) that makes this model's input, at the exported length."""
    from ecgvit.data.preprocess import Preprocessing

    cfg = dict(getattr(model, 'pretrained_cfg', None) or {})
    trained = (cfg.get('preprocessing') or {}).get('num_samples')
    length = int(num_samples or trained or getattr(model, 'seq_len', 0) or (cfg.get('input_size') or [3600])[-1])
    if trained and int(trained) != length:
        _logger.warning('exporting at %d samples although the weights were trained on %d: the positional embedding '
                        'is resampled, and the metadata records %d', length, int(trained), length)
    return Preprocessing.from_pretrained_cfg(cfg, num_samples=length).to_dict()


def onnx_metadata(model: nn.Module, preprocessing: Dict[str, Any], *, model_name: Optional[str] = None,
                  weights_sha256: Optional[str] = None, output_names: Sequence[str] = ('embedding',)) -> Dict[str, str]:
    """The ``metadata_props`` of an exported encoder: everything needed to build its input, and where it came from.

    Values are strings (ONNX's type); lists and dicts are JSON.

    Args:
        model: The encoder (its pretrained cfg and pooling are read).
        preprocessing: ``Preprocessing.to_dict()`` of its input.
        model_name: Registered architecture (default: the model's pretrained cfg).
        weights_sha256: sha256 of the weight file the model was loaded from ('unknown' when None).
        output_names: The graph's outputs.
    """
    from ecgvit.version import __version__

    cfg = dict(getattr(model, 'pretrained_cfg', None) or {})
    rate, length = float(preprocessing['sampling_rate']), int(preprocessing['num_samples'])
    leads = list(preprocessing.get('leads') or cfg.get('lead_names') or [])
    normalize = preprocessing.get('normalize', 'zscore')
    pool = getattr(model, 'global_pool', 'token') or 'none'
    meta = {
        'model': model_name or cfg.get('architecture') or type(model).__name__,
        'ecgvit_version': __version__,
        'weights_sha256': weights_sha256 or 'unknown',
        'pretrain_method': cfg.get('pretrain_method') or 'unknown',
        'sampling_rate': f'{rate:g}',
        'num_samples': str(length),
        'duration_s': f'{length / rate:g}',
        'leads': json.dumps(leads),
        'normalization': 'zscore_per_lead' if normalize == 'zscore' else str(normalize),
        'preprocessing': json.dumps(preprocessing, sort_keys=True),
        'input': f'{INPUT_NAME}: float32 (batch, {len(leads)}, {length}) = (batch, leads, samples), leads in the '
                 f'order of "leads", {length / rate:g} s at {rate:g} Hz, '
                 + ('each lead z-scored over the record' if normalize == 'zscore' else f'normalisation {normalize}'),
        'outputs': json.dumps(list(output_names)),
        'embedding': f'pre-logits embedding, global_pool={pool!r}' + (' ([CLS] token)' if pool == 'token' else ''),
    }
    return meta


def _cosine_min(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64).reshape(len(a), -1), np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.min(np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)))


def check_onnx_parity(module: nn.Module, path: Union[str, Path], input_shape: Sequence[int],
                      batch_sizes: Sequence[int] = (1, 3), seed: int = 0) -> Dict[str, Any]:
    """Run the ONNX file with onnxruntime (CPU) and ``module`` with PyTorch on the same random batches.

    Inputs are standard-normal, the scale of z-scored ECGs, drawn with ``seed``; one file serves every batch size,
    which is what shows the batch dimension is dynamic.

    Args:
        module: The exported module (e.g. an :class:`OnnxEncoder`), in eval mode.
        path: The ``.onnx`` file.
        input_shape: ``(leads, samples)`` of one record.
        batch_sizes: Batch sizes to run.
        seed: Seed of the random inputs.

    Returns:
        ``{'onnxruntime': version, 'input': ..., 'batches': {'1': {'embedding': {'max_abs_diff', 'min_cosine'}, ...},
        ...}, 'max_abs_diff': worst over all, 'min_cosine': worst over all}``.
    """
    import numpy as np
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError(f'The parity check needs onnxruntime: {_INSTALL_HINT}, or skip it (check=False, '
                          f'--no-check).') from e

    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    gen = torch.Generator().manual_seed(seed)
    batches: Dict[str, Dict[str, Dict[str, float]]] = {}
    for b in batch_sizes:
        x = torch.randn(int(b), *input_shape, generator=gen)
        with torch.no_grad():
            ref = module(x)
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        outs = session.run(None, {INPUT_NAME: x.numpy()})
        batches[str(b)] = {}
        for name, r, o in zip(names, ref, outs):
            r = r.numpy()
            if o.shape != r.shape:
                raise OnnxParityError(f'{path}: output {name!r} has shape {o.shape} for batch {b}, PyTorch '
                                      f'{r.shape}: the batch dimension is not dynamic.')
            batches[str(b)][name] = {'max_abs_diff': float(np.max(np.abs(o.astype(np.float64) - r))),
                                     'min_cosine': _cosine_min(o, r)}
    flat = [v for per in batches.values() for v in per.values()]
    return {'onnxruntime': ort.__version__, 'input': f'standard normal (z-scored scale), seed {seed}',
            'batches': batches, 'max_abs_diff': max(v['max_abs_diff'] for v in flat),
            'min_cosine': min(v['min_cosine'] for v in flat)}


def _export(module: OnnxEncoder, example: torch.Tensor, path: Path, opset: int, dynamic_batch: bool,
            exporter: str) -> None:
    names = dict(input_names=[INPUT_NAME], output_names=module.output_names, opset_version=int(opset))
    if exporter == 'dynamo':
        try:
            import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter builds the graph with it)
        except ImportError as e:
            raise ImportError(f"exporter='dynamo' needs onnxscript: {_INSTALL_HINT}, or use "
                              f"exporter='torchscript' (--exporter torchscript).") from e
        shapes = ({0: torch.export.Dim('batch', min=1)},) if dynamic_batch else None
        # One INFO line per graph rewrite otherwise; and a failed conversion to an older opset logs a traceback and
        # keeps opset 18, which export_onnx then refuses in one line.
        with _quiet_loggers('onnx_ir', 'onnxscript'), \
                _quiet_loggers('onnxscript.version_converter', 'torch.onnx._internal.exporter._compat',
                               level=logging.ERROR):
            torch.onnx.export(module, (example,), str(path), dynamo=True, external_data=False,
                              dynamic_shapes=shapes, verbose=False, **names)
    elif exporter == 'torchscript':
        axes = {n: {0: 'batch'} for n in [INPUT_NAME] + module.output_names} if dynamic_batch else None
        with warnings.catch_warnings():
            # Its own deprecation notice and the tracer's notes on shape checks that are constant at a fixed length.
            warnings.simplefilter('ignore')
            torch.onnx.export(module, (example,), str(path), dynamo=False, dynamic_axes=axes, **names)
    else:
        raise ValueError(f'Unknown exporter {exporter!r}: choose one of {", ".join(EXPORTERS)}.')


@contextlib.contextmanager
def _quiet_loggers(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise these loggers to ``level`` for the block, unless ecgvit itself logs at DEBUG (``-v``)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    if not _logger.isEnabledFor(logging.DEBUG):
        for lg in loggers:
            lg.setLevel(max(lg.level, level))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(
        model: nn.Module,
        path: Union[str, Path],
        *,
        opset: int = 18,
        dynamic_batch: bool = True,
        num_samples: Optional[int] = None,
        exporter: str = 'dynamo',
        model_name: Optional[str] = None,
        weights_sha256: Optional[str] = None,
        check: bool = True,
        atol: float = 1e-4,
        min_cosine: float = 0.9999,
        batch_sizes: Sequence[int] = (1, 3),
) -> OnnxExport:
    """Export an encoder to ONNX with its preprocessing in the metadata, checked against PyTorch.

    The file is written next to ``path`` under a temporary name, checked, and only then moved into place, so a failed
    export or check leaves no file behind; the sidecar ``<path>.json`` follows.

    Args:
        model: An ecgvit encoder (left unchanged: a float32 eval copy is exported).
        path: Output ``.onnx`` file (its folder is created).
        opset: ONNX opset.
        dynamic_batch: Dynamic batch dimension; False fixes it at 1 (and checks batch 1 only).
        num_samples: Input length (default: the length the weights were trained on, from the pretrained cfg).
        exporter: 'dynamo' (default) or 'torchscript' (see the module docstring).
        model_name: Architecture name for the metadata (default: the model's pretrained cfg).
        weights_sha256: sha256 of the weight file the model was loaded from (``ecgvit.hub.sha256_file``); recorded
            as given (the model cannot tell which file its tensors came from), 'unknown' when None.
        check: Run :func:`check_onnx_parity` (needs onnxruntime) and refuse an export outside the tolerance.
        atol: Largest absolute difference accepted.
        min_cosine: Smallest per-record cosine similarity accepted.
        batch_sizes: Batch sizes of the check (one export serves all).

    Returns:
        :class:`OnnxExport`.

    Raises:
        OnnxParityError: onnxruntime and PyTorch disagree beyond ``atol`` / ``min_cosine``.
        ValueError: an opset out of range, or one the exporter could not produce.
        ImportError: onnx / onnxscript / onnxruntime are missing (``pip install 'ecgvit[onnx]'``).
    """
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f'ONNX export needs onnx: {_INSTALL_HINT}.') from e
    if exporter not in EXPORTERS:
        raise ValueError(f'Unknown exporter {exporter!r}: choose one of {", ".join(EXPORTERS)}.')
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not 7 <= opset <= newest:
        raise ValueError(f'opset must be a whole number from 7 to {newest} (the newest this onnx knows), got '
                         f'{opset!r}; 18 is the default.')
    path = Path(path)
    if path.suffix != '.onnx':
        raise ValueError(f'ONNX output {str(path)!r} must end in .onnx (e.g. {path.with_suffix(".onnx")}).')
    module = OnnxEncoder(copy.deepcopy(model).float().cpu().eval()).eval()
    pp = _preprocessing(model, num_samples)
    leads = int(getattr(getattr(getattr(model, 'patch_embed', None), 'proj', None), 'in_channels', 0)
                or len(pp['leads']))
    if leads != len(pp['leads']):
        raise ValueError(f'The model takes {leads} leads but its preprocessing lists {len(pp["leads"])} '
                         f'({pp["leads"]}): record the lead names it was trained with in its pretrained cfg.')
    input_shape = (leads, int(pp['num_samples']))
    meta = onnx_metadata(model, pp, model_name=model_name, weights_sha256=weights_sha256,
                         output_names=module.output_names)
    sizes = [int(b) for b in batch_sizes] if dynamic_batch else [1]
    # A batch of 2 for tracing: torch.export specialises a dimension of size 1, which would fix the batch.
    example = torch.zeros(2 if dynamic_batch else 1, *input_shape)
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f'.{path.name}.tmp-', dir=path.parent))
    try:
        raw = tmp_dir / 'raw.onnx'
        _export(module, example, raw, opset, dynamic_batch, exporter)
        proto = onnx.load(str(raw))
        written = next((o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx')), None)
        if written != opset:  # the exporter could not convert to the opset asked for and kept its own
            raise ValueError(f'The {exporter} exporter wrote opset {written}, not the {opset} asked for (it could not '
                             f'convert the graph); nothing was written. Use opset {written} (--opset {written}) or '
                             f'the other exporter.')
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = (f'ecgvit {meta["model"]}: z-scored ECG batch -> pre-logits embedding'
                            + (' and logits' if module.has_head else '') + '; preprocessing in metadata_props.')
        onnx.checker.check_model(proto)
        final = tmp_dir / path.name
        onnx.save(proto, str(final))
        parity: Dict[str, Any] = {}
        if check:
            parity = check_onnx_parity(module, final, input_shape, sizes)
            parity.update(atol=atol, min_cosine_required=min_cosine)
            bad = parity['max_abs_diff'] > atol or parity['min_cosine'] < min_cosine or \
                math.isnan(parity['max_abs_diff'])
            if bad:
                raise OnnxParityError(
                    f'onnxruntime differs from PyTorch: max abs diff {parity["max_abs_diff"]:.3g} (allowed {atol:g}), '
                    f'min cosine {parity["min_cosine"]:.6f} (required {min_cosine:g}); nothing was written. Try the '
                    f"other exporter (exporter='torchscript' / 'dynamo') or another opset.")
        info = {
            'format': 'onnx', 'file': path.name, 'sha256': sha256_file(final), 'opset': int(opset),
            'exporter': exporter, 'torch': torch.__version__, 'onnx': onnx.__version__,
            'inputs': [{'name': INPUT_NAME, 'dtype': 'float32',
                        'shape': ['batch' if dynamic_batch else 1, *input_shape]}],
            'outputs': [{'name': n, 'dtype': 'float32', 'shape': ['batch' if dynamic_batch else 1, d]}
                        for n, d in zip(module.output_names, _output_dims(module.model))],
            'metadata': {k: _decoded(v) for k, v in meta.items()},
            'parity': parity,
        }
        sidecar = path.with_name(path.name + '.json')
        (tmp_dir / sidecar.name).write_text(json.dumps(info, indent=2) + '\n')
        for name in (path.name, sidecar.name):
            os.chmod(tmp_dir / name, 0o644)  # mkdtemp's folder is private; an export is meant to be shared
            os.replace(tmp_dir / name, path.parent / name)
    finally:
        for leftover in tmp_dir.glob('*'):
            leftover.unlink()
        tmp_dir.rmdir()
        if created and not any(path.parent.iterdir()):  # a failed export: "nothing was written", not even the folder
            path.parent.rmdir()
    return OnnxExport(path=path, sidecar=sidecar, metadata=meta, parity=parity, info=info)


def _output_dims(model: nn.Module) -> List[int]:
    dims = [int(getattr(model, 'num_features', 0) or getattr(model, 'embed_dim', 0))]
    if int(getattr(model, 'num_classes', 0) or 0) > 0:
        dims.append(int(model.num_classes))
    return dims


def _decoded(value: str) -> Any:
    """A metadata value as JSON when it is a JSON list or object, else the string."""
    if value[:1] in '[{':
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
