"""How far pretrained weights moved from their initialisation: relative L2 distance over all encoder parameters.

``||w - w0|| / ||w0||`` where ``w0`` is the seed's random initialisation of the same architecture
(``torch.manual_seed(seed); ecgvit.create_model(name)``, which is exactly the encoder a seeded ``ecgvit pretrain`` run
starts from: it seeds, then builds the encoder first). A first check on any weights called pretrained: 8 epochs of the
seed recipe move the seed-size encoder by about 3 % (the weights shipped on 2026-11-30: 3.3 % and 3.0 %).

    python benchmarks/init_distance.py                                  # the shipped weights
    python benchmarks/init_distance.py ~/.cache/ecgvit-runs/weights-bf16/mae_moco   # a run: every checkpoint in it
"""
if __name__ == '__main__' and __package__ is None:  # `python benchmarks/init_distance.py` from the repository root
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
from pathlib import Path
from typing import Dict, Iterator, Tuple

import torch

import ecgvit

__all__ = ['relative_distance', 'distance_from_init']


def relative_distance(state: Dict[str, torch.Tensor], reference: Dict[str, torch.Tensor]) -> float:
    """``||state - reference|| / ||reference||`` over the tensors both hold (floating point only)."""
    keys = [k for k, v in reference.items() if k in state and v.is_floating_point()]
    if not keys:
        raise ValueError('The two state dicts share no floating-point tensor: are they the same architecture?')
    num = sum(float((state[k].double() - reference[k].double()).square().sum()) for k in keys)
    den = sum(float(reference[k].double().square().sum()) for k in keys)
    return (num / den) ** 0.5


def distance_from_init(model: torch.nn.Module, model_name: str, seed: int = 0) -> float:
    """Relative distance of ``model``'s weights from the seed-``seed`` random init of ``model_name``."""
    torch.manual_seed(seed)
    init = ecgvit.create_model(model_name, img_size=model.seq_len)
    return relative_distance(model.state_dict(), init.state_dict())


def _run_checkpoints(run: Path) -> Iterator[Tuple[str, Path]]:
    ckpts = run / 'checkpoints'
    for step in sorted(ckpts.glob('step-*')):
        yield step.name, step
    if (ckpts / 'best.safetensors').is_file():
        yield 'best', ckpts / 'best.safetensors'


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('runs', nargs='*', help='pretraining run folders (default: the shipped weights)')
    p.add_argument('--seed', type=int, default=None, help="init seed (default: the run's own, else 0)")
    args = p.parse_args()
    from ecgvit.hub import load_encoder
    if not args.runs:
        for name in ('ecg_vit_mae_moco', 'ecg_vit_mae_nextclip'):
            model = ecgvit.create_model(name, pretrained=True)
            print(f'{name} (shipped): {distance_from_init(model, name, args.seed or 0):.4f}')
        return
    for run in map(Path, args.runs):
        cfg = json.loads((run / 'config.json').read_text())
        seed = args.seed if args.seed is not None else int((cfg.get('train') or cfg).get('seed', 0))
        for label, path in _run_checkpoints(run):
            model, info = load_encoder(path, model=cfg.get('model'))
            print(f'{run.name} {label}: {distance_from_init(model, info.get("model", cfg.get("model")), seed):.4f}')


if __name__ == '__main__':
    main()
