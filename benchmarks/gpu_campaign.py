"""The GPU campaign: one prepared command that pretrains, evaluates and returns the two seed-size encoders.

Three steps (the code is in ``benchmarks/campaign/``; ``benchmarks/README.md`` "GPU campaign" has the exact device
call and how to prepare it):

``pack`` (here, with the data):
    The pretraining pool (``PretrainingPool`` over the data folder, PTB-XL folds 9-10 held out) and the PTB-XL
    superdiagnostic evaluation folds (1-8 / 9 / 10), preprocessed with the project's ``Preprocessing`` at the model's
    rate and length, quantised and compressed into a folder small enough to travel (``.campaign/``, git-ignored).
``run`` (there, on the GPU machine; also on a CPU at tiny size):
    Decodes the pack, pretrains each method in bf16 under a time budget (several as parallel processes with
    ``--parallel``), checkpointing every epoch; probes each encoder and the random init on PTB-XL fold 10 (linear
    probe, macro AUROC, paired bootstrap CIs); writes ``results.json``, ``results.md``, ``campaign.log`` and the
    seed-size encoders as bf16 safetensors shards (< 16 MiB each) into ``--out`` (the device's ``$OUT``), updated
    after every finished method, so a run killed at its time limit still returns what it finished.
``unpack`` (here, with what came back):
    Checks each shard's sha256 and reassembles each encoder into a folder that ``ecgvit.hub.load_pretrained`` and
    ``ecgvit.create_model('local-dir:...', pretrained=True)`` load.

Usage:
    python benchmarks/gpu_campaign.py pack --data-dir /work/shared/data --out .campaign
    python3 benchmarks/gpu_campaign.py run --data .campaign --out "$OUT" --device cuda --parallel 4
    python benchmarks/gpu_campaign.py unpack --results /work/.device/... --out runs/gpu-campaign
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]


def _install_wheels(folder: str, target: str) -> None:
    """Install the carried wheels into ``target`` and put it first on the import path (the GPU image has no index)."""
    wheels = sorted(str(p) for p in Path(folder).glob('*.whl'))
    if not wheels:
        raise SystemExit(f'--wheels {folder}: no .whl files there (prepare them with pip download, see '
                         f'benchmarks/README.md "GPU campaign").')
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile',
                    '--no-cache-dir', '--upgrade', '--target', target, *wheels], check=True)
    sys.path.insert(0, target)
    os.environ['PYTHONPATH'] = os.pathsep.join(p for p in (target, os.environ.get('PYTHONPATH')) if p)


def build_parser() -> argparse.ArgumentParser:
    from benchmarks.campaign import run as run_mod

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('pack', help='build the compact pool + evaluation folder (here, with the data)')
    p.add_argument('--data-dir', required=True, help='folder of dataset folders (ptbxl/, ludb/, ...)')
    p.add_argument('--out', default='.campaign', help='pack folder (git-ignored; carried to the GPU machine)')
    p.add_argument('--sampling-rate', type=float, default=360.0, help="model rate in Hz (the seed's 360)")
    p.add_argument('--num-samples', type=int, default=3600, help="model input length (the seed's 3600)")
    p.add_argument('--cache-dir', default=None, help='keep the preprocessed caches here (default: temporary)')
    p.add_argument('--quant-step', type=float, default=None, help='quantisation step in standard deviations '
                                                                  '(default 0.02)')
    p.add_argument('--preset', type=int, default=6, help='LZMA preset 0-9')
    p.add_argument('--num-workers', type=int, default=0, help='cache-building processes')
    p.add_argument('--no-eval', action='store_true',
                   help='pack the pool only, not the PTB-XL evaluation folds (about 15 %% smaller: room for weights '
                        'that travel with `run --init`); the jobs are then not probed there')

    r = sub.add_parser('run', help='pretrain, evaluate and export (there, on the GPU machine)')
    run_mod.add_run_arguments(r)

    w = sub.add_parser('train-one', help=argparse.SUPPRESS)  # one method in its own process (run --parallel)
    w.add_argument('--job', required=True)

    u = sub.add_parser('unpack', help='reassemble the returned shards into encoder folders (here)')
    u.add_argument('--results', required=True, help='the folder the run wrote (the device files_at folder)')
    u.add_argument('--out', required=True, help='where the encoder folders go (one per shipped name)')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--wheels' in argv:  # before anything imports timm or safetensors
        i = argv.index('--wheels')
        _install_wheels(argv[i + 1], os.environ.get('CAMPAIGN_SITE', '/tmp/site'))
        del argv[i:i + 2]
    args = build_parser().parse_args(argv)
    if args.command == 'pack':
        from benchmarks.campaign import codec
        from benchmarks.campaign.pack import pack

        pack(args.data_dir, args.out, args.sampling_rate, args.num_samples, args.cache_dir,
             args.quant_step or codec.QUANT_STEP, args.preset, args.num_workers, with_eval=not args.no_eval)
        return 0
    if args.command == 'run':
        from benchmarks.campaign.run import run

        return run(args)
    if args.command == 'train-one':
        from benchmarks.campaign.worker import train_one_from_file

        return train_one_from_file(args.job)
    from benchmarks.campaign.unpack import unpack

    unpack(args.results, args.out)
    return 0


if __name__ == '__main__':
    if str(ROOT) not in sys.path:  # `python benchmarks/gpu_campaign.py`: import the benchmarks package and ecgvit
        sys.path.insert(0, str(ROOT))
    os.environ['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)
    sys.exit(main())
