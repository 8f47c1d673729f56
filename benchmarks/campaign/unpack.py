"""``unpack``: the shards the GPU run returned, checked and reassembled into loadable encoder folders.

For each encoder in ``results.json`` (``encoders``), every shard's sha256 is checked against the report, the shards
are merged into one state dict, loaded into a fresh ``ecgvit.create_model(architecture)`` (strict: every tensor must
be there) and written with ``ecgvit.hub.save_pretrained`` as bf16 weights, as the shipped weights are stored. The
folder then loads with ``ecgvit.hub.load_pretrained(folder)`` or ``ecgvit.create_model('local-dir:folder',
pretrained=True)``; ``campaign.json`` beside the weights is that encoder's run record from the report, and
``heads.safetensors`` its pretraining heads when the run returned them (``ecgvit pretrain --heads`` starts from them).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import sha256_file

__all__ = ['unpack']


def _start_lines(job: dict[str, Any]) -> list[str]:
    """Where a continued job (``run --init``) started; nothing for a job from a random init."""
    start = job.get('init')
    if not start:
        return []
    where = f"the published `{start['pretrained']}` weights" if start.get('pretrained') else f"`{start['folder']}`"
    heads = 'and the pretraining heads saved beside them' if start.get('heads_sha256') else 'with fresh heads'
    return [f"Continued from {where} (sha256 `{start['weights_sha256'][:12]}...`) {heads}, with a fresh optimiser "
            f"and schedule; the epochs and steps above are this run's only. Relative L2 distance from those weights: "
            f"{job.get('rel_l2_from_start', float('nan')):.3f}."]


def _card(name: str, enc: dict[str, Any], job: dict[str, Any], report: dict[str, Any]) -> str:
    probe = job.get('probe') or {}
    m = report.get('machine', {})
    auroc = (f"{probe['auroc_macro']:.3f} [{probe.get('auroc_macro_lo', float('nan')):.3f}, "
             f"{probe.get('auroc_macro_hi', float('nan')):.3f}]" if 'auroc_macro' in probe else 'not measured')
    return '\n'.join([
        '## GPU campaign', '',
        f"Pretrained by `benchmarks/gpu_campaign.py` (job `{enc['job']}`, method `{enc['method']}`) on "
        f"{m.get('gpu') or m.get('cpu')}: {job.get('epochs')} epochs, {job.get('steps')} steps, "
        f"{job.get('train_s', 0):.0f} s of training, bf16. Data: the campaign pack's "
        f"{report.get('pack', {}).get('counts', {}).get('pool_train')} pool windows (PTB-XL folds 9-10 held out).",
        *_start_lines(job),
        f"Relative L2 distance from the initialisation: {job.get('rel_l2_from_init', float('nan')):.3f}.",
        f'PTB-XL fold 10 superdiagnostic linear probe, macro AUROC [95% CI]: {auroc}.', ''])


def _write_heads(results: Path, report: dict[str, Any], name: str, heads: dict[str, Any], model: Any,
                 folder: Path) -> None:
    """The encoder's pretraining heads from the run's one heads file (sha256 checked), as ``heads.safetensors``
    beside it, fingerprinted with the unpacked bf16 encoder (so `ecgvit pretrain --heads` knows they fit it)."""
    from safetensors.torch import load_file

    from ecgvit.pretrain.heads import save_heads

    path = results / heads['file']
    if not path.is_file():
        raise FileNotFoundError(f'{heads["file"]} (the heads of {name}) is missing from {results}.')
    digest = sha256_file(path)
    if digest != report.get('heads_sha256'):
        raise ValueError(f'{path} has sha256 {digest}, the report says {report.get("heads_sha256")}: the copy is '
                         f'damaged; fetch the files again.')
    prefix = f'{name}/'
    state = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    if len(state) != heads['tensors']:
        raise ValueError(f'{path} holds {len(state)} tensors of {name}, the report says {heads["tensors"]}.')
    save_heads(state, folder, method=heads['method'], model=heads['model'], encoder=model, extra=heads['extra'])


def unpack(results: str | os.PathLike, out: str | os.PathLike, log=print) -> dict[str, Path]:
    """Reassemble every exported encoder of a campaign run.

    Args:
        results: the folder the run wrote (``results.json`` and the shards).
        out: where to write one folder per encoder (named as the report names it, e.g. ``ecg_vit_mae_moco``).
        log: where progress lines go.

    Returns:
        Encoder name -> its folder.

    Raises:
        FileNotFoundError: no ``results.json``, or a shard it lists is missing.
        ValueError: a shard's sha256 differs from the report, or the shards do not make the whole encoder.
    """
    import torch
    from safetensors.torch import load_file

    import ecgvit
    from ecgvit.hub import load_pretrained, save_pretrained

    results, out = Path(results), Path(out)
    if not (results / 'results.json').is_file():
        raise FileNotFoundError(f'No results.json in {str(results)!r}: pass the folder the campaign run wrote '
                                f'(the device call\'s files_at).')
    report = json.loads((results / 'results.json').read_text())
    if not report.get('encoders'):
        raise ValueError(f'{results / "results.json"} lists no exported encoders (see its jobs for why).')
    written = {}
    for name, enc in report['encoders'].items():
        state: dict[str, torch.Tensor] = {}
        for shard in enc['shards']:
            path = results / shard['file']
            if not path.is_file():
                raise FileNotFoundError(f'Shard {shard["file"]} of {name} is missing from {results}.')
            digest = sha256_file(path)
            if digest != shard['sha256']:
                raise ValueError(f'Shard {path} has sha256 {digest}, the report says {shard["sha256"]}: the copy is '
                                 f'damaged; fetch the files again.')
            state.update(load_file(str(path)))
        config = enc['config']
        pcfg = config['pretrained_cfg']
        length = int(pcfg['input_size'][-1])
        model = ecgvit.create_model(config['architecture'], img_size=length)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f'The shards of {name} do not match {config["architecture"]}: missing {missing}, '
                             f'unexpected {unexpected}.')
        model = model.to(torch.bfloat16)  # the shards' precision, stored as is (like the shipped weights)
        job = report['jobs'].get(enc['job'], {})
        folder = save_pretrained(model, out / name, pretrained_cfg={
            'pretrain_method': pcfg.get('pretrain_method', enc['method']), 'preprocessing': pcfg.get('preprocessing'),
            'license': 'apache-2.0', 'weights_dtype': 'bfloat16'}, card_extra=_card(name, enc, job, report))
        run = {k: report.get(k) for k in ('machine', 'torch', 'ecgvit', 'device', 'settings')}
        run['pack'] = {k: (report.get('pack') or {}).get(k) for k in ('counts', 'preprocessing', 'quant_step')}
        (folder / 'campaign.json').write_text(json.dumps({'encoder': enc, 'job': job, 'run': run}, indent=2,
                                                         default=float))
        if enc.get('heads'):
            _write_heads(results, report, name, enc['heads'], model, folder)
        check = load_pretrained(folder)
        for k, v in check.state_dict().items():
            if not torch.equal(v.to(torch.bfloat16), state[k].to(torch.bfloat16)):
                raise ValueError(f'{folder}: tensor {k} does not load back as written.')
        log(f'unpack: {name} -> {folder} ({len(enc["shards"])} shards, sha256 checked, loads)')
        written[name] = folder
    return written
