"""``ecgvit``: one command line for pretraining, evaluation, benchmarking, embedding and publishing encoders.

Subcommands (``ecgvit <command> --help`` explains every option)::

    ecgvit pretrain  --method mae_moco --data ptbxl --data-dir data/ptbxl --epochs 100 --output runs/mae_moco
    ecgvit probe     --checkpoint runs/mae_moco --data ptbxl:superdiagnostic --data-dir data/ptbxl --output runs/probe
    ecgvit finetune  --checkpoint runs/mae_moco --data ptbxl:superdiagnostic --data-dir data/ptbxl --layer-decay 0.75
    ecgvit benchmark --quick --out results/quick
    ecgvit embed     --checkpoint runs/mae_moco --input path/to/wfdb_or_cache --output runs/embeddings
    ecgvit push      --checkpoint runs/mae_moco --repo-id org/ecg_vit_mae_moco
    ecgvit export    --format onnx --pretrained --model ecg_vit_mae_moco -o export/mae_moco

Every command accepts ``--config FILE`` (YAML or JSON; keys are option names, command-line options win) and writes
its fully resolved settings as ``config.json`` beside its outputs. Under ``torchrun --nproc_per_node N`` the
``pretrain`` command trains with DDP. Bad arguments end with a one-line ``ecgvit <command>: error: ...`` and exit
status 2 (set ``ECGVIT_DEBUG=1`` for the traceback).
"""
import argparse
import dataclasses
import functools
import json
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ecgvit.constants import GLOBAL_POOLS
from ecgvit.errors import RunStopped

__all__ = ['main', 'build_parser', 'CliError']

_logger = logging.getLogger('ecgvit')


class CliError(ValueError):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default only when it has a meaningful one (not None/False, not already in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ''
        if action.default not in (None, False, argparse.SUPPRESS) and 'default' not in text and \
                action.option_strings and action.nargs != 0:
            text += ' [default: %(default)s]'
        return text


# ---------------------------------------------------------------------------------------------------------------------
# Option groups. Each setting is a field of a config dataclass, its flag and help generated from it
# (ecgvit.options.add_options): the flags below that are written out by hand belong to the command line alone.


def _add_common(p: argparse.ArgumentParser, run: bool = True) -> None:
    from ecgvit.options import RunOptions, add_options

    p.add_argument('--config', metavar='FILE', help='YAML or JSON file of option values (keys are option names, '
                   'e.g. batch_size or batch-size); options given on the command line override it.')
    p.add_argument('-v', '--verbose', action='store_true', help='Debug logging.')
    if not run:  # a command that computes nothing needs no seed, device or threads
        return
    add_options(p, RunOptions)
    p.add_argument('--threads', type=int, default=None,
                   help='torch intra-op CPU threads (default: torch\'s choice). 1 is often fastest for tiny models '
                        'and on a CPU shared with other jobs, where extra threads spin waiting for each other.')


def _add_data(p: argparse.ArgumentParser, only: Optional[Sequence[str]] = None) -> None:
    from ecgvit.options import DataOptions, add_options

    add_options(p.add_argument_group('data'), DataOptions, only=only)


def _add_encoder(p: argparse.ArgumentParser, pooling: bool = False) -> argparse._ArgumentGroup:
    g = p.add_argument_group('encoder')
    g.add_argument('--model', default=None,
                   help='Encoder architecture (ecgvit.list_models()); default: the checkpoint\'s, else '
                        'ecg_vit_mae_moco.')
    g.add_argument('--pretrained', action='store_true', help="Start from the model's published weights.")
    g.add_argument('--checkpoint', metavar='PATH',
                   help='Encoder weights: a pretraining run folder (its best weights), a checkpoint folder or '
                        '.safetensors file, or a folder written by ecgvit.hub.save_pretrained.')
    if pooling:
        g.add_argument('--global-pool', default=None, choices=GLOBAL_POOLS,
                       help="Which tokens make a window's embedding: 'token' (the [CLS] token: the paper's choice and "
                            "the models' default) or 'avg' (the mean of the normed patch tokens; same weights). For "
                            "ecg_vit_mae_nextclip, whose [CLS] only its clip term trains, 'avg' probed higher on "
                            'PTB-XL (benchmarks/README.md, "Which embedding to probe"). [default: the model\'s own]')
    return g


def _add_output(p: Any, default: str) -> None:
    p.add_argument('-o', '--output', '--out', dest='output', default=default, metavar='DIR',
                   help='Output folder (created).')


def build_parser() -> argparse.ArgumentParser:
    """The ``ecgvit`` argument parser (one subparser per command)."""
    from ecgvit.benchmark import NESTED_FLAGS, BenchmarkConfig
    from ecgvit.eval.config import FinetuneConfig, FitOptions, ProbeConfig
    from ecgvit.export import ExportConfig
    from ecgvit.options import DataOptions, RunOptions, add_options
    from ecgvit.train.config import TrainConfig
    from ecgvit.version import __version__

    run_fields = [f.name for f in dataclasses.fields(RunOptions)]
    parser = _Parser(prog='ecgvit', description=__doc__.split('\n\n')[0], formatter_class=_Formatter)
    parser.add_argument('--version', action='version', version=f'ecgvit {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', parser_class=_Parser)
    sub.required = True

    # -- pretrain
    p = sub.add_parser('pretrain', formatter_class=_Formatter,
                       help='Self-supervised pretraining (MAE-MoCo, MAE-Nextclip, ...) with checkpoints and resume.',
                       description='Pretrain an encoder with a self-supervised method. Seed recipe: Adam lr 2e-4, '
                                   'batch 64, 20 warm-up epochs (auto: min(20, 0.2 x epochs)), then '
                                   'ReduceLROnPlateau (0.9, patience 15) on the validation loss. Writes '
                                   'OUTPUT/{config.json, metrics.csv, checkpoints/, encoder/}. Run under torchrun for '
                                   'DDP.')
    p.add_argument('--method', default=None,
                   help="mae_moco, mae_nextclip, mae_centerclip, mae or moco (required): the paper's methods; "
                        "mae_moco_shared, mae_nextclip_shared, mae_centerclip_shared: ecgvit's shared-pass variants "
                        "(the same as --shared-pass).")
    _add_common(p)
    _add_data(p)
    g = p.add_argument_group('encoder')
    g.add_argument('--model', default=None,
                   help="Encoder architecture; default: the method's registered name (ecg_vit_mae_moco, "
                        "ecg_vit_mae_nextclip), ecg_vit_mae_moco otherwise. ecg_vit_tiny/small for CPU runs.")
    g.add_argument('--grad-checkpointing', action='store_true',
                   help="Recompute the encoder's block activations in the backward pass: less memory, a little more "
                        'time (peak memory is measured by benchmarks/run_all.py).')
    g.add_argument('--pretrained', action='store_true',
                   help="Continued pretraining: start the encoder from the model's published weights instead of a "
                        "random init (e.g. on your own ECGs). The method's decoders, heads, MoCo queue, optimiser "
                        'and schedule start fresh; config.json records where the encoder started (init).')
    g.add_argument('--checkpoint', metavar='PATH',
                   help='Continued pretraining from these encoder weights (a pretraining run folder, a checkpoint, '
                        'a .safetensors file or a save_pretrained folder), as --pretrained. Not a resume: '
                        '--resume continues a run exactly; this starts a new one.')
    g.add_argument('--heads', metavar='PATH',
                   help='With --pretrained / --checkpoint: start the method\'s decoders and heads from these trained '
                        'ones (a heads.safetensors file, or the folder holding it: a run\'s encoder/ folder; '
                        '"pretrained": those published beside the model\'s weights) instead of a random init, so '
                        'they need not relearn what they knew. MoCo\'s momentum side copies the query side and its '
                        'queue starts afresh, as at any start.')
    g.add_argument('--freeze-encoder', action='store_true',
                   help='With --pretrained / --checkpoint: train only the method\'s decoders and heads, the encoder '
                        'stays as it starts (its exported copy is the same weights). Makes heads for weights that '
                        'have none (encoder/heads.safetensors), so a continued run starts with --heads instead of '
                        'random heads, or to look at MAE reconstructions of published weights.')
    g = p.add_argument_group('method')
    g.add_argument('--mask-ratio', type=float, default=None, help='MAE mask ratio (default 0.75).')
    g.add_argument('--alpha', type=float, default=None, help='MAE loss weight (default 40 MAE-MoCo, 2 Nextclip).')
    g.add_argument('--queue-size', type=int, default=None, help='MoCo queue length (seed: 65536).')
    g.add_argument('--shared-pass', action=argparse.BooleanOptionalAction, default=None,
                   help="Hybrids: ecgvit's variant, one masked encoder pass serves MAE and the [CLS] task (MoCo "
                        "query / clip), 4x fewer FLOPs per step than the paper's separate full-token passes "
                        "(ecgvit.pretrain.hybrid says what differs). Default: off (the paper's passes), or as the "
                        'run being resumed.')
    g.add_argument('--lead-dropout', type=float, default=None, metavar='P',
                   help='Train for reduced-lead input: with probability P per record and encoder pass, keep only one '
                        'of --lead-sets and zero the other leads (targets stay the full record). The exported '
                        "weights' config records the subsets (pretrained_cfg lead_sets). Default: 0, off (the paper's "
                        'methods), or as the run being resumed.')
    g.add_argument('--lead-sets', default=None, metavar='SETS',
                   help="The subsets for --lead-dropout, separated by commas; a subset is a preset (limb or 6, "
                        "precordial, 1) or lead names joined by '+': 'limb,I' = the 6 limb leads, and lead I (the "
                        "default); 'limb,I,II,V1+V2+V3' adds lead II and a 3-lead subset.")
    g.add_argument('--method-arg', action='append', default=[], metavar='KEY=VALUE',
                   help='Any other create_pretrainer argument, value parsed as JSON (repeatable).')
    add_options(p.add_argument_group('optimisation, checkpoints and logging'), TrainConfig, skip=run_fields)
    g = p.add_argument_group('output')
    _add_output(g, 'output/pretrain')
    g.add_argument('--resume', nargs='?', const=True, default=False, metavar='PATH',
                   help='Continue exactly from the newest checkpoint in OUTPUT (or from PATH); starts fresh '
                        'if OUTPUT has none.')

    # -- probe / finetune
    p = sub.add_parser('probe', formatter_class=_Formatter,
                       help='Linear probe of a frozen encoder (embed once, fit a linear layer).',
                       description='Linear probe: the encoder is frozen, records are embedded once and a linear '
                                   'layer is trained on the features (warm-up, then ReduceLROnPlateau, as in '
                                   'pretraining) with early stopping on the validation loss; the best-validation '
                                   'layer is tested (metrics with 95% bootstrap CIs).')
    _add_common(p)
    _add_data(p)
    _add_encoder(p, pooling=True)
    add_options(p.add_argument_group('linear probe'), ProbeConfig, skip=run_fields)
    _add_output(p, 'output/probe')
    p = sub.add_parser('finetune', formatter_class=_Formatter,
                       help='End-to-end fine-tuning with a new linear head (layer-wise lr decay option).',
                       description='Fine-tune the whole encoder with a linear head on [CLS] (or on the mean of the '
                                   'patch tokens: --global-pool avg); CE for single-label, BCE for multi-label; '
                                   'warm-up, then ReduceLROnPlateau, as in pretraining; early stopping on the '
                                   'validation loss, best model tested.')
    _add_common(p)
    _add_data(p)
    g = _add_encoder(p, pooling=True)
    g.add_argument('--drop-path', type=float, default=0.0, help='Stochastic depth rate of the encoder.')
    add_options(p.add_argument_group('fine-tuning'), FinetuneConfig, skip=run_fields)
    _add_output(p, 'output/finetune')

    # -- benchmark
    p = sub.add_parser('benchmark', formatter_class=_Formatter,
                       help='Compare methods x protocols on one dataset: results.csv, results.md, results.png.',
                       description='Pretrain each method, evaluate each protocol, and tabulate test metrics with '
                                   '95% bootstrap CIs. random (untrained encoder) and supervised (trained from '
                                   'scratch on the labels) rows are always included. --quick runs tiny settings on '
                                   'built-in synthetic data in under a minute on 2 CPU cores; options given with it '
                                   'adjust the preset.')
    _add_common(p)
    p.add_argument('--quick', action='store_true',
                   help='Tiny model and settings on built-in synthetic data (under a minute on 2 CPU cores).')
    data_fields = [f.name for f in dataclasses.fields(DataOptions)]
    add_options(p, BenchmarkConfig, skip=run_fields + data_fields)
    _add_data(p)
    for stage, cls in (('pretrain', TrainConfig), ('probe', ProbeConfig), ('finetune', FinetuneConfig)):
        # The recipe fields used most; every field is reachable from Python (BenchmarkConfig.pretrain/probe/finetune).
        add_options(p.add_argument_group(stage), cls, prefix=stage, only=NESTED_FLAGS[stage])
    p.add_argument('--checkpoint', action='append', default=None, metavar='METHOD=PATH', dest='checkpoints',
                   help='Evaluate METHOD from weights pretrained elsewhere (an `ecgvit pretrain` output folder, a '
                        'checkpoint or a save_pretrained folder) instead of pretraining it here; repeatable. A '
                        'METHOD that is not a method name adds a row of that name.')
    g = p.add_argument_group('evaluation suite (--suite real)')
    g.add_argument('--suite', default=None, choices=['real'],
                   help='Run the evaluation suite instead (ecgvit.eval.suite): linear probes of existing encoders on '
                        'PTB-XL (100 Hz, official folds; superdiagnostic/form/rhythm/all), sex and age pooled over '
                        'PTB-XL, LUDB, CODE-15%% and CinC, CinC scored classes and LUDB rhythm, with paired bootstrap '
                        'CIs against a random-init floor. --data-dir holds ptbxl/, ludb/, cinc2021_samples/, '
                        'code15_samples/; encoders: --checkpoint NAME=PATH and/or --model NAME[,NAME] (registered, '
                        'published weights) [default: ecg_vit_mae_moco,ecg_vit_mae_nextclip].')
    g.add_argument('--seeds', default=None, help='Suite: probe seeds, comma-separated [default: 0,1,2].')
    g.add_argument('--fractions', default=None,
                   help='Suite: fractions of the training labels, comma-separated [default: 0.01,0.1,1].')
    g.add_argument('--tasks', default=None, help='Suite: task names, comma-separated [default: all present].')
    g.add_argument('--leads', default=None, nargs='+', metavar='SUBSET',
                   help='Suite: lead subsets to run the PTB-XL tasks on, each a preset (12, 6 = limb leads, 1 = lead '
                        'I, precordial) or leads joined by + (I+II+V2), subsets separated by commas: '
                        '"--leads 12,6,1,I+II". '
                        'Every subset but 12 runs the ptbxl_* tasks only; rows carry a leads column [default: 12].')
    g.add_argument('--global-pool', default=None, choices=GLOBAL_POOLS,
                   help="Suite: read every encoder and the floor through this pooling of its tokens, 'token' ([CLS]) "
                        "or 'avg' (mean of the normed patch tokens) [default: each model's own, [CLS] for ours].")
    g.add_argument('--c-sensitivity', default=None, metavar='TASKS',
                   help='Suite: tasks (comma-separated) whose headline metric at 100%% of the labels is also reported '
                        "at every L2 strength C of the probe's grid, each encoder and each pair of encoders at the "
                        "same C (c_sensitivity.csv): whether a difference comes from the weights or from the C each "
                        "encoder's validation split chose.")
    g.add_argument('--allow-untrained-leads', action='store_true', default=None,
                   help="Suite: evaluate encoders on lead subsets their weights were not trained on (their cfg's "
                        'lead_sets), with a warning and lead_check "untrained" in the rows, instead of refusing.')
    _add_output(p, 'benchmark-results')

    # -- embed
    p = sub.add_parser('embed', formatter_class=_Formatter,
                       help='Embed records (WFDB folder, array file, dataset or cache) into embeddings.npy + ids.txt.',
                       description='Compute the pre-logits embedding ([CLS], or the mean of the patch tokens with '
                                   '--global-pool avg) of every record of a WFDB folder, an array file (.npy/.npz/'
                                   '.h5, see --data arrays), any dataset (--data NAME --data-dir PATH) or a cache '
                                   'written by ecgvit.data.build_cache. A record longer than the model input is cut '
                                   'into windows (--crop, --window-stride) whose embeddings are pooled (--pooling). '
                                   'Writes OUTPUT/embeddings.npy (float32, N x D), OUTPUT/ids.txt (one id per row of '
                                   'embeddings.npy: record ids, record#window with --pooling none), '
                                   'OUTPUT/windows.csv with --pooling none (row, record_id, window, start_s, end_s) '
                                   'and config.json.')
    _add_common(p)
    _add_encoder(p, pooling=True)
    p.add_argument('--input', default=None, metavar='PATH',
                   help='WFDB folder (searched recursively), array file (.npy/.npz/.h5/.hdf5; its sampling rate and '
                        'lead names in the file or in a sidecar <stem>.json) or cache folder; or --data/--data-dir.')
    add_options(p.add_argument_group('data'), DataOptions, defaults={'data': None},
                only=('data', 'data_dir', 'sampling_rate', 'num_samples', 'crop', 'window_stride', 'short_records'))
    add_options(p, FitOptions, only=('pooling', 'leads', 'allow_untrained_leads'))
    p.add_argument('-b', '--batch-size', type=int, default=128, help='Records per forward pass.')
    p.add_argument('--fast', default='off', choices=['off', 'auto', 'fp32', 'bf16', 'int8', 'compile'],
                   help="CPU fast path: 'auto' times fp32, bf16 and int8 dynamic quantisation on this machine and "
                        "keeps the fastest whose embeddings stay within cosine 0.999 of fp32; or force one mode.")
    _add_output(p, 'output/embed')

    # -- push
    p = sub.add_parser('push', formatter_class=_Formatter, help='Upload an encoder to the Hugging Face Hub.',
                       description='Save the encoder (safetensors + config.json + model card) and upload it with '
                                   'ecgvit.hub.push_to_hub. Needs network access and a Hub token.')
    _add_common(p, run=False)
    _add_encoder(p)
    p.add_argument('--repo-id', default=None, help='Hub repository, org/name (required).')
    p.add_argument('--private', action='store_true', help='Create the repository private.')
    p.add_argument('--token', default=None, help='Hub token (default: the logged-in one).')
    p.add_argument('--revision', default=None, help='Branch to push to.')
    p.add_argument('--commit-message', default='Add ecgvit encoder', help='Commit message.')
    p.add_argument('--create-pr', action='store_true', help='Open a pull request instead of committing.')
    _add_output(p, 'output/push')

    # -- export
    p = sub.add_parser('export', formatter_class=_Formatter,
                       help='Export an encoder for deployment (ONNX, dynamic batch, preprocessing in its metadata).',
                       description='Write OUTPUT/model.onnx: z-scored ECG batch (batch, leads, samples) -> pre-logits '
                                   'embedding (and logits when the model has a head), batch size dynamic. Sampling '
                                   'rate, length, lead order, normalisation, model name, ecgvit version and the '
                                   'sha256 of the source weights are stored in its metadata_props and in '
                                   'OUTPUT/model.onnx.json, with the onnxruntime-vs-PyTorch check (max abs diff, '
                                   "cosine) for batch sizes 1 and 3. Needs pip install 'ecgvit[onnx]'.")
    _add_common(p, run=False)
    _add_encoder(p)
    _add_data(p, only=('num_samples',))
    add_options(p.add_argument_group('export'), ExportConfig)
    _add_output(p, 'output/export')
    return parser


# ---------------------------------------------------------------------------------------------------------------------
# Config files


def _load_config_file(path: str) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CliError(f'--config {path!r} does not exist.')
    try:
        text = p.read_text(encoding='utf-8')
    except UnicodeDecodeError as e:
        raise CliError(f'--config {path!r} is not UTF-8 text ({e.reason} at byte {e.start}).') from None
    try:
        if p.suffix.lower() == '.json':
            data = json.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text)
    except Exception as e:
        mark = getattr(e, 'problem_mark', None)  # YAML: where it went wrong
        line = getattr(e, 'lineno', None) or (mark.line + 1 if mark is not None else None)
        at = f' (line {line})' if line else ''
        raise CliError(f'--config {path!r} is not valid {"JSON" if p.suffix.lower() == ".json" else "YAML"}{at}: '
                       f'{str(e).splitlines()[0]}') from None
    if not isinstance(data, dict):
        raise CliError(f'--config {path!r} must hold a mapping of option names to values, got {type(data).__name__}.')
    return data


def _config_value(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    """A ``--config`` file's value for ``action``, checked as the command line would check it."""
    where = f'--config {path!r}: {key}'
    if value is None:
        if action.default is None or action.default is False:
            return action.default  # the same as leaving the key out
        raise CliError(f'{where} is null: give a value or leave the key out (default {action.default!r}).')
    if isinstance(action, (argparse._StoreConstAction, argparse.BooleanOptionalAction)) or action.nargs == 0:
        if not isinstance(value, bool):  # 'false' as text would be truthy: the switch would turn on
            raise CliError(f'{where} must be true or false, got {value!r}.')
        return value
    if isinstance(action, argparse._AppendAction) or action.nargs in ('+', '*'):
        if isinstance(value, dict) and action.dest == 'method_arg':  # {key: value} reads naturally in YAML
            return [f'{k}={json.dumps(v)}' for k, v in value.items()]
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items):
            raise CliError(f'{where} must be a list of values, got {value!r}.')
        return [str(v) for v in items]
    if action.nargs == '?' and isinstance(value, bool):  # --resume: true, or a path
        return value
    if isinstance(value, list) and action.type not in (int, float) and \
            all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        value = ','.join(str(v) for v in value)  # a comma-separated option (--seeds 0,1) given as a YAML list
    if action.type in (int, float):
        if isinstance(value, str):  # YAML reads 1e-3 as text; the command line would take it
            try:
                value = action.type(value)
            except ValueError:
                pass
        ok = isinstance(value, int) if action.type is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            kind = 'a whole number' if action.type is int else 'a number'
            raise CliError(f'{where} must be {kind}, got {value!r}.')
        value = action.type(value)
    elif isinstance(value, (dict, bool, list)):
        raise CliError(f'{where} must be text, got {value!r}.')
    elif action.type is not None and action.type is not str:
        value = action.type(str(value))
    else:
        value = str(value)
    if action.choices is not None and value not in action.choices:
        raise CliError(f'{where} must be one of {", ".join(map(str, action.choices))}, got {value!r}.')
    return value


def _parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    args, extra = parser.parse_known_args(argv)
    if extra:  # named with the command they were given to (argparse's top-level message names none)
        parser._subparsers._group_actions[0].choices[args.command].error(
            f'unrecognized arguments: {" ".join(extra)}')
    return args


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = build_parser()
    args = _parse_args(parser, argv)
    if getattr(args, 'config', None):
        sub = parser._subparsers._group_actions[0].choices[args.command]  # the command's own parser
        actions = {a.dest: a for a in sub._actions if a.dest not in ('help', 'config')}
        for a in list(actions.values()):  # a key may also be the flag's name (checkpoint for --checkpoint)
            for flag in a.option_strings:
                actions.setdefault(flag.lstrip('-').replace('-', '_'), a)
        values = {str(k).replace('-', '_'): v for k, v in _load_config_file(args.config).items()}
        unknown = sorted(set(values) - set(actions))
        if unknown:
            raise CliError(f'--config {args.config!r}: unknown option(s) {unknown} for `ecgvit {args.command}` (keys '
                           f'are option names without the dashes; see ecgvit {args.command} --help).')
        sub.set_defaults(**{actions[k].dest: _config_value(actions[k], k, v, args.config) for k, v in values.items()})
        args = _parse_args(parser, argv)  # command-line values override the file's
    return args


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def _write_config(out: Path, args: argparse.Namespace, extra: Optional[Dict[str, Any]] = None) -> None:
    from ecgvit.files import atomic_write_text
    from ecgvit.version import __version__

    out.mkdir(parents=True, exist_ok=True)
    resolved = {k: v for k, v in vars(args).items()}
    resolved.update(extra or {})
    resolved['ecgvit_version'] = __version__
    atomic_write_text(out / 'config.json', json.dumps(resolved, indent=2, default=str))


# What a folder's config.json says wrote it, for the commands whose config.json has no "command" key.
_OWNER_KEYS = (('steps_per_epoch', 'pretrain'), ('methods', 'benchmark'), ('architecture', 'save_pretrained'))
_OWNER_TEXT = {'linear': 'the results of `ecgvit probe`', 'suite': 'the results of `ecgvit benchmark --suite`',
               'save_pretrained': 'a saved encoder (save_pretrained)', 'unknown': 'a config.json ecgvit did not write'}


def _output_owner(out: Path) -> Optional[str]:
    """Which ecgvit command's results ``out`` holds ('pretrain', 'linear', 'suite', ...), None for no config."""
    if (out / 'suite_config.json').is_file():
        return 'suite'
    path = out / 'config.json'
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return 'unknown'
    if not isinstance(data, dict):
        return 'unknown'
    if data.get('command'):
        return str(data['command'])
    return next((owner for key, owner in _OWNER_KEYS if key in data), 'unknown')


def _claim_output(args: argparse.Namespace, command: str) -> Path:
    """The command's output folder; refused (before any work) when it is a file or holds another command's results,
    whose config.json (and more) this command would replace. A rerun of the same command may overwrite its own."""
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CliError(f'--output {args.output!r} is a file; give a folder (it is created).')
    owner = _output_owner(out) if out.is_dir() else None
    if owner is not None and owner != command:
        what = _OWNER_TEXT.get(owner, f'the results of `ecgvit {owner}`')
        name = {'linear': 'probe', 'suite': 'benchmark --suite'}.get(command, command)
        raise CliError(f'--output {args.output!r} already holds {what} (its config.json); `ecgvit {name}` would '
                       f'overwrite it: choose another --output.')
    return out


def _check_device(args: argparse.Namespace) -> None:
    """--device names a device this machine has (checked before any data are read)."""
    value = getattr(args, 'device', None)
    if value is None:
        return
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise CliError(f"--device {value!r} is not a device: use cpu, cuda or cuda:N.") from None
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise CliError(f'--device {value}: this machine has no usable CUDA GPU (torch.cuda.is_available() is '
                           f'False): use --device cpu, or leave --device out to use a GPU only where there is one.')
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CliError(f'--device {value}: this machine has {torch.cuda.device_count()} CUDA device(s), '
                           f'cuda:0 to cuda:{torch.cuda.device_count() - 1}.')
    elif dev.type != 'cpu':
        raise CliError(f"--device {value!r}: ecgvit runs on cpu or cuda (cuda:N).")


def _fill_defaults(args: argparse.Namespace, *classes: Any) -> None:
    """Options not given take their config dataclass's default (the one place it is declared)."""
    from ecgvit.options import options_from_args

    for cls in classes:
        given = options_from_args(args, cls)
        for f in dataclasses.fields(cls):
            if f.name not in given and f.metadata.get('cli', True) and hasattr(args, f.name):
                setattr(args, f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())


def _resolve_input(args: argparse.Namespace, model: Any) -> None:
    """Unset --sampling-rate / --num-samples become the model's own (its pretrained cfg)."""
    from ecgvit.options import model_input_defaults

    _check_positive(args, 'sampling_rate', 'num_samples')  # before a 0 could read as "not given" below
    if args.sampling_rate is None or args.num_samples is None:
        rate, length = model_input_defaults(model)
        args.sampling_rate = rate if args.sampling_rate is None else args.sampling_rate
        args.num_samples = length if args.num_samples is None else args.num_samples


def _refuse_plateau_options(schedule: Optional[str], args: argparse.Namespace) -> None:
    """--plateau-factor / --plateau-patience given with --schedule cosine would be ignored: refused instead."""
    from ecgvit.options import flag_name

    ignored = [flag_name(k) for k in ('plateau_factor', 'plateau_patience') if getattr(args, k, None) is not None]
    if schedule == 'cosine' and ignored:
        raise CliError(f'{", ".join(ignored)}: option(s) of the plateau schedule, which --schedule cosine ignores: '
                       f'drop them.')


def _check_positive(args: Any, *names: str, prefix: str = '') -> None:
    from ecgvit.options import flag_name

    for n in names:
        v = getattr(args, n, None)
        if v is not None and not v > 0:  # NaN included
            raise CliError(f'{flag_name(n, prefix)} must be positive, got {v}.')


def _splits(args: argparse.Namespace, model_cfg: Optional[Dict[str, Any]] = None,
            leads: Any = None, labelled: bool = True) -> Dict[str, Any]:
    """The command's cached splits; ``model_cfg`` (``model_data_cfg``) is checked against them before any work;
    ``leads``: read only that lead subset (``Preprocessing.input_leads``); ``labelled=False``: the labels go unused,
    so records without one are kept (``prepare_data``)."""
    from ecgvit.data.prepare import prepare_data

    cache = args.cache_dir or str(Path(args.output) / 'data')
    splits = prepare_data(args.data, args.data_dir, cache, args.sampling_rate, args.num_samples, args.seed,
                          args.synthetic_records, args.num_workers, args.progress, crop=args.crop,
                          window_stride=args.window_stride, short_records=args.short_records, model_cfg=model_cfg,
                          model_name=_weights_name(args), leads=leads, labelled=labelled)
    _print_skipped(splits['skipped'], splits['skipped_csv'])
    return splits


def _print_skipped(n: int, path: str) -> None:
    """Say how many records the data left out and where they are listed (nothing is dropped without a word)."""
    if n:
        print(f'skipped {n} record{"s" if n != 1 else ""} (listed with reasons in {path})', file=sys.stderr)


def _weights_name(args: argparse.Namespace) -> str:
    """How the command line named the encoder's weights (for errors)."""
    if getattr(args, 'checkpoint', None):
        return f'--checkpoint {args.checkpoint}'
    return f'--pretrained --model {getattr(args, "model", None) or "ecg_vit_mae_moco"}'


def load_encoder(checkpoint: Optional[str], model: Optional[str], num_samples: Optional[int],
                 pretrained: bool = False, global_pool: Optional[str] = None, **kwargs: Any):
    """``ecgvit.hub.load_encoder`` (see there); its errors end the command as one line. ``global_pool`` reads the
    loaded weights through another pooling (``reset_classifier``: the final norm stays before the pooling, where the
    weights were trained with it) and is recorded in the returned source."""
    from ecgvit.hub import load_encoder as _load

    if pretrained and checkpoint:
        raise CliError('--pretrained and --checkpoint both name the weights to use: give one (--checkpoint PATH, or '
                       '--pretrained --model NAME for the published weights).')
    encoder, source = _load(checkpoint, model, num_samples, pretrained, **kwargs)
    if global_pool is not None:
        if not hasattr(encoder, 'global_pool'):
            raise CliError(f'--global-pool: {type(encoder).__name__} has no global_pool to set.')
        encoder.reset_classifier(encoder.num_classes, global_pool)
        source = dict(source, global_pool=global_pool)
    return encoder, source


def _random_init_note(args: argparse.Namespace, source: Dict[str, Any]) -> bool:
    """Say so when no weights were given (a random-init encoder, seeded by --seed); True for random init."""
    random_init = not (source.get('checkpoint') or source.get('pretrained'))
    if random_init:
        print(f'note: no --checkpoint or --pretrained: a random-init encoder (seed {args.seed}), e.g. the floor a '
              f'pretrained one should beat.')
    return random_init


def _data_lead_subset(encoder: Any, leads: Sequence[str], dataset: Any, args: argparse.Namespace, random_init: bool,
                      where: str) -> Optional[Tuple[Tuple[str, ...], bool]]:
    """When no record of ``dataset`` holds some of ``leads`` (a 6-lead device read as 12 leads), the subset the
    records do hold, checked against the weights as ``--leads`` would be: (subset, trained on it); None otherwise."""
    from ecgvit.eval.leads import check_encoder_leads, leads_absent_everywhere
    from ecgvit.lead_sets import UntrainedLeadsError, describe_leads

    absent = leads_absent_everywhere(dataset, leads)
    if not absent:
        return None
    present = tuple(n for n in leads if n not in absent)
    try:
        return check_encoder_leads(encoder, present, args.allow_untrained_leads, _weights_name(args), random_init)
    except UntrainedLeadsError as e:
        raise CliError(f'no record of {where} holds {", ".join(absent)}, so the input is {describe_leads(present)}: '
                       f'{e}') from None


def _print_metrics(result: Dict[str, Any]) -> None:
    from ecgvit.benchmark import format_table

    print(format_table([dict(result, method=result.get('method', '-'))]))


# ---------------------------------------------------------------------------------------------------------------------
# Commands


def train_config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~ecgvit.train.TrainConfig` of ``ecgvit pretrain``: the options given, the dataclass's defaults
    for the rest."""
    from ecgvit.options import options_from_args
    from ecgvit.train import TrainConfig

    return TrainConfig(**options_from_args(args, TrainConfig), output_dir=args.output, resume=args.resume,
                       reuse_cpu_memory=True)  # this process only trains: let glibc recycle freed tensors


def _resumed_config(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The run config of the checkpoint ``--resume`` would continue, or None (no ``--resume``, or nothing to
    continue)."""
    from ecgvit.train.checkpoint import CheckpointError, read_checkpoint_state

    if not args.resume:
        return None
    where = Path(args.output) / 'checkpoints' if args.resume is True else Path(args.resume)
    try:
        state = read_checkpoint_state(where)
    except CheckpointError:
        return None  # nothing to continue (a fresh start), or a damaged one the training loop reports
    return state.get('config') or {}


def _init_record(args: argparse.Namespace, model_name: str) -> Optional[Dict[str, Any]]:
    """Where ``--pretrained`` / ``--checkpoint`` start the encoder (source and sha256 of the weights), or None."""
    from ecgvit.hub import encoder_weights_file, sha256_file
    from ecgvit.weights_sha256 import WEIGHTS_SHA256

    if args.pretrained and args.checkpoint:
        raise CliError('--pretrained and --checkpoint both name the weights to start from: give one.')
    if args.pretrained:
        if model_name not in WEIGHTS_SHA256:
            raise CliError(f'--pretrained: {model_name} has no published weights (those that do: '
                           f'{", ".join(sorted(WEIGHTS_SHA256))}); pass --checkpoint PATH, or drop --pretrained to '
                           f'start from a random init.')
        return {'pretrained': model_name, 'weights_sha256': WEIGHTS_SHA256[model_name]}
    if args.checkpoint:
        try:
            weights = encoder_weights_file(args.checkpoint)
        except (FileNotFoundError, OSError) as e:
            raise CliError(f'--checkpoint {args.checkpoint}: {e}') from None
        return {'checkpoint': str(Path(args.checkpoint).resolve()), 'weights_sha256': sha256_file(weights)}
    return None


def _check_resume_init(args: argparse.Namespace, model_name: str,
                       resumed: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The init a run records: a resumed run keeps its own, and starting weights other than its own are refused
    (the checkpoint replaces them, so they would be recorded but never used)."""
    if resumed is None:
        return _init_record(args, model_name)
    saved = resumed.get('init')
    if not (args.pretrained or args.checkpoint):
        return saved
    # A run from a random init is refused before the weights are looked up: "no published weights" would name the
    # wrong problem.
    if saved is None or saved.get('weights_sha256') != _init_record(args, model_name)['weights_sha256']:
        started = (f"from {saved.get('pretrained') or saved.get('checkpoint')} (sha256 {saved['weights_sha256'][:12]})"
                   if saved else 'from a random init')
        raise CliError(f'--resume continues a run that started {started}, so --pretrained / --checkpoint cannot '
                       f'change where it started: drop them to continue it, or start a new run in another --output.')
    return saved


def _warn_other_data(run_data: Optional[Dict[str, Any]], args: argparse.Namespace) -> None:
    """--checkpoint of a pretraining run, continued on other data than that run read: allowed (adapting weights to
    new ECGs is a use), but said, since --data defaults to synthetic records and a forgotten --data trains on them."""
    if not run_data or not run_data.get('data'):
        return
    then = _data_flags(run_data['data'], run_data.get('data_dir'))
    now = _data_flags(args.data, args.data_dir)
    if then != now:
        default = ' (the default: generated records)' if args.data == 'synthetic' else ''
        warnings.warn(f'--checkpoint {args.checkpoint} was pretrained on {then}; this run reads {now}{default}. '
                      f'Pass the data to continue on, e.g. {then}.', stacklevel=2)


def _data_flags(data: str, data_dir: Optional[str]) -> str:
    return f'--data {data}' + (f' --data-dir {data_dir}' if data_dir else '')


def _heads_path(path: str, model_name: str) -> str:
    """``--heads pretrained``: the heads published beside the model's weights (``weights/<model>/``)."""
    if path != 'pretrained':
        return path
    from ecgvit.pretrain.heads import HEADS_NAME
    from ecgvit.weights import weights_dir

    return str(weights_dir() / model_name / HEADS_NAME)


def _start_heads(pretrainer: Any, path: str, method: str, model_name: str,
                 init: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Load ``--heads`` into a fresh run's pretrainer; what the run records of them (``config.json``: heads)."""
    from ecgvit.errors import CheckpointError
    from ecgvit.hub import sha256_file
    from ecgvit.pretrain.heads import load_heads

    if init is None:
        raise CliError(f'--heads {path}: trained heads go with the encoder weights they were fitted to; give those '
                       f'with --pretrained or --checkpoint (from a random-init encoder they would start as noise '
                       f'anyway).')
    try:
        info = load_heads(pretrainer, _heads_path(path, model_name), method=method, model=model_name)
    except CheckpointError as e:
        raise CliError(f'--heads {path}: {e}') from None
    if info['same_encoder'] is False:
        warnings.warn(f'--heads {path}: these heads were fitted to other encoder weights than the ones this run '
                      f'starts from; they fit these less well, so expect a few epochs of higher loss.', stacklevel=2)
    return {'path': info['path'], 'sha256': sha256_file(info['path']), 'method': info['method'],
            'same_encoder': info['same_encoder'], 'saved_at_epoch': info['extra'].get('epochs')}


def _freeze_encoder(args: argparse.Namespace, init: Optional[Dict[str, Any]],
                    resumed: Optional[Dict[str, Any]]) -> bool:
    """Whether the run trains its heads only (``--freeze-encoder``); a resumed run keeps what it started with."""
    if resumed is not None:
        saved = bool(resumed.get('freeze_encoder'))
        if args.freeze_encoder and not saved:
            raise CliError('--resume continues a run that trains its encoder: --freeze-encoder cannot change that; '
                           'drop it, or start a new run in another --output.')
        return saved
    if args.freeze_encoder and init is None:
        raise CliError('--freeze-encoder keeps the encoder as it starts, so it needs trained weights: give '
                       '--pretrained or --checkpoint (a frozen random init learns nothing).')
    return bool(args.freeze_encoder)


def _check_resume_heads(path: Optional[str], resumed: Dict[str, Any], model_name: str) -> Optional[Dict[str, Any]]:
    """A resumed run's heads are in its checkpoint: ``--heads`` may repeat the file it started from, nothing else."""
    from ecgvit.errors import CheckpointError
    from ecgvit.hub import sha256_file
    from ecgvit.pretrain.heads import read_heads

    saved = resumed.get('heads')
    if path is None:
        return saved
    try:
        given = sha256_file(read_heads(_heads_path(path, model_name))['path'])
    except (CheckpointError, OSError) as e:  # a missing or damaged file: say so, as a fresh start would
        raise CliError(f'--heads {path}: {e}') from None
    if (saved or {}).get('sha256') != given:
        started = f"from {saved['path']}" if saved else 'from a random init'
        raise CliError(f'--resume continues a run whose heads started {started}: its checkpoint holds them now, so '
                       f'--heads cannot change them; drop --heads to continue it, or start a new run in another '
                       f'--output.')
    return saved


# The data a run trains on: a resumed run continues on its own (an option not given again carries over).
_RESUME_DATA = ('data', 'data_dir', 'sampling_rate', 'num_samples', 'synthetic_records', 'crop', 'window_stride',
                'short_records', 'seed')


def _resume_data(args: argparse.Namespace, resumed: Optional[Dict[str, Any]], given: Dict[str, Any]) -> None:
    """A resumed run's data settings: those not given again carry over; one given differently is refused (the
    checkpoint's optimiser, schedule and MoCo queue belong to that data)."""
    from ecgvit.options import flag_name, same_setting

    saved = (resumed or {}).get('args') or {}
    for key in _RESUME_DATA:
        if key not in saved:
            continue  # a checkpoint written before the key was recorded
        if key in given and not same_setting(key, given[key], saved[key]):
            raise CliError(f'--resume continues a run trained with {flag_name(key)} {saved[key]}, not '
                           f'{given[key]}: drop {flag_name(key)} to continue it, or start a new run in another '
                           f'--output.')
        if key not in given:
            setattr(args, key, saved[key])
    # Where the run's cache is: not a data setting (another folder holds the same windows), so it only carries over.
    if 'cache_dir' not in given and saved.get('cache_dir'):
        args.cache_dir = saved['cache_dir']


def _check_resumed_data(resumed: Optional[Dict[str, Any]], splits: Dict[str, Any], args: argparse.Namespace) -> None:
    """A resumed run reads the records it was trained on: the same options can still read other data (a run that
    recorded a relative --data-dir, resumed from another folder; a data folder that gained or lost records)."""
    saved = (resumed or {}).get('data') or {}
    then = (saved.get('n_train'), saved.get('n_val'))
    now = (len(splits['train']), len(splits['val']))
    if None in then or then == now:
        return
    raise CliError(f'--resume continues a run trained on {then[0]} / {then[1]} train / validation windows, but '
                   f'{args.data} in {args.data_dir or "(built in)"} gives {now[0]} / {now[1]}: these are not the '
                   f'data it was trained on (another folder, or records added or removed). Give --data-dir the '
                   f"run's own data, or start a new run in another --output.")


# Method settings with a flag of their own; every other one is given as --method-arg KEY=VALUE.
_METHOD_FLAGS = ('mask_ratio', 'alpha', 'queue_size', 'shared_pass', 'lead_dropout', 'lead_sets')


def _method_setting_flag(key: str, value: Any, args: argparse.Namespace) -> str:
    """How the command line gave a method setting: its own flag, or --method-arg."""
    from ecgvit.options import flag_name

    if key in _METHOD_FLAGS and getattr(args, key, None) is not None:
        return f'{flag_name(key)} {value}'
    if key == 'sampling_rate' and not any(item.startswith('sampling_rate=') for item in args.method_arg):
        return f'--sampling-rate {value}'  # the clip methods' rate is the model input's
    return f'--method-arg {key}={value}'


def _method_kwarg_error(error: Exception, method_kwargs: Dict[str, Any], args: argparse.Namespace) -> Exception:
    """A pretrainer's refusal of a setting, named as the command line gave it (the message names the setting as the
    Python API does)."""
    from ecgvit.errors import UnknownMethodSettingError

    unknown = [k for k in method_kwargs if k in getattr(error, 'unknown', ())]
    if isinstance(error, UnknownMethodSettingError) and unknown:
        given = ', '.join(_method_setting_flag(k, method_kwargs[k], args) for k in unknown)
        return CliError(f'{given}: {error.method} has no setting {", ".join(unknown)}. Its settings (--method-arg '
                        f'KEY=VALUE): {", ".join(sorted(error.allowed))}.')
    text = str(error)
    named = [k for k in method_kwargs if re.search(rf'\b{re.escape(k)}\b', text)]
    if not named:
        return error
    return CliError(f'{_method_setting_flag(named[0], method_kwargs[named[0]], args)}: {text}')


def cmd_pretrain(args: argparse.Namespace) -> int:
    import ecgvit
    from ecgvit.data.prepare import check_model_data, check_num_samples, model_data_cfg
    from ecgvit.options import DataOptions, RunOptions, options_from_args, parse_key_value
    from ecgvit.pretrain import create_pretrainer, list_pretrainers, split_method
    from ecgvit.pretrain.factory import METHODS
    from ecgvit.train import MethodSettingsError, load_best_into, seed_everything, train
    from ecgvit.train.distributed import barrier, cleanup_distributed, init_distributed, is_main_process
    from ecgvit.train.validate import validate_train_config

    given_data = options_from_args(args, DataOptions)
    given_data.update({k: v for k, v in options_from_args(args, RunOptions, only=('seed',)).items()})
    _fill_defaults(args, RunOptions, DataOptions)
    _claim_output(args, 'pretrain')
    if args.method is None:
        raise CliError('--method is required (on the command line or in --config).')
    if args.method not in list_pretrainers(variants=True) and not args.method.endswith('+paper'):
        raise CliError(f'Unknown --method {args.method!r}: choose from {list_pretrainers(variants=True)}.')
    method, variant_kwargs = split_method(args.method)  # 'mae_moco_shared' -> 'mae_moco', shared_pass=True
    if variant_kwargs and args.shared_pass is not None and args.shared_pass != variant_kwargs['shared_pass']:
        raise CliError(f'--method {args.method} contradicts --{"" if args.shared_pass else "no-"}shared-pass; drop '
                       f'the flag (or use --method {method}).')
    _check_positive(args, 'epochs', 'batch_size', 'lr', 'num_samples')
    if args.num_samples is not None:
        check_num_samples(args.num_samples)
    _refuse_plateau_options(args.schedule, args)
    resumed = _resumed_config(args)
    _resume_data(args, resumed, given_data)  # before the TrainConfig: a carried-over --seed is part of it
    if args.data_dir is not None and 'data_dir' in given_data:
        # Recorded absolute, so a resume from another folder reads the same data (a carried relative path from an
        # older run stays as it was recorded).
        args.data_dir = str(Path(args.data_dir).resolve())
    if args.cache_dir is not None and 'cache_dir' in given_data:
        args.cache_dir = str(Path(args.cache_dir).resolve())  # likewise: a resume from elsewhere finds it
    cfg = train_config_from_args(args)  # the options fix it here: nothing below changes them
    validate_train_config(cfg, warn=False)  # train() checks it again (and warns), but only after the data
    # Default architecture: a resumed run's own (which --checkpoint may have set), else the method's registered name.
    model_name = (args.model or (resumed or {}).get('model')
                  or {'mae_nextclip': 'ecg_vit_mae_nextclip'}.get(method, 'ecg_vit_mae_moco'))
    if model_name not in ecgvit.list_models():
        raise CliError(f'Unknown --model {model_name!r}: choose from {ecgvit.list_models()}.')
    init = _check_resume_init(args, model_name, resumed)
    start, source = None, {}  # the encoder with its starting weights (a fresh start from --pretrained / --checkpoint)
    if init is not None and resumed is None:
        start, source = load_encoder(args.checkpoint, None if args.checkpoint and not args.model else model_name,
                                     args.num_samples, bool(args.pretrained))
        loaded = source.get('model') or start.pretrained_cfg.get('architecture') or model_name
        if args.model and loaded != args.model:  # a save_pretrained folder builds the architecture it records
            raise CliError(f'--checkpoint {args.checkpoint} holds {loaded} weights, not {args.model}: drop --model '
                           f'(the checkpoint says its architecture) or pass weights of {args.model}.')
        model_name = loaded
        _warn_other_data(source.get('run_data'), args)
    _resolve_input(args, start if start is not None else model_name)
    heads = _check_resume_heads(args.heads, resumed, model_name) if resumed is not None else None
    method_kwargs: Dict[str, Any] = {}
    for item in args.method_arg:
        try:
            key, value = parse_key_value(item)
        except ValueError:
            raise CliError(f'--method-arg {item!r} is not KEY=VALUE.') from None
        method_kwargs[key] = value
    for key in _METHOD_FLAGS:
        if getattr(args, key) is not None:
            method_kwargs[key] = getattr(args, key)
    method_kwargs.update(variant_kwargs)
    if 'clip' in method:
        method_kwargs.setdefault('sampling_rate', args.sampling_rate)
    if resumed and resumed.get('method') == method:
        # A resumed run continues with the settings it was started with (--alpha, --method-arg, ...): those this
        # command does not give carry over; one it gives differently is refused by the resume check in train().
        for key, value in (resumed.get('method_kwargs') or {}).items():
            if key not in ('lead_dropout', 'lead_sets'):  # a pair, carried together below
                method_kwargs.setdefault(key, value)
    saved = (resumed or {}).get('pretrainer')  # the method settings of the checkpoint --resume continues
    if args.resume and METHODS[method]['alpha'] is not None and 'shared_pass' not in method_kwargs:
        # A resumed run continues as it was trained: switching passes mid-run would change what it learns.
        if saved is not None and 'shared_pass' in saved:
            method_kwargs['shared_pass'] = bool(saved['shared_pass'])
    if args.resume and 'lead_dropout' not in method_kwargs:
        # Likewise lead-set dropout: a resumed run keeps it (and its subsets, unless --lead-sets names others, which
        # the resume check then refuses).
        saved = saved or {}
        if saved.get('lead_dropout'):
            method_kwargs['lead_dropout'] = saved['lead_dropout']
            method_kwargs.setdefault('lead_sets', saved.get('lead_sets'))
    # Built before the data, so a bad method setting ends the command before a cache is built; train() seeds again
    # before the first step, so the data building in between changes nothing of the run.
    seed_everything(args.seed)
    try:
        if start is not None:
            # The loaded encoder itself, so the momentum encoder (MoCo) is a copy of the starting weights too.
            pretrainer = create_pretrainer(method, start, **method_kwargs)
        else:
            pretrainer = create_pretrainer(method, model_name, encoder_kwargs={'img_size': args.num_samples},
                                           **method_kwargs)
    except (TypeError, ValueError) as e:
        raise _method_kwarg_error(e, method_kwargs, args) from None
    if args.heads and resumed is None:
        heads = _start_heads(pretrainer, args.heads, method, model_name, init)
    freeze = _freeze_encoder(args, init, resumed)
    if freeze:
        # The optimiser takes only what requires grad; MoCo's momentum encoder, a copy of this one, then stays equal.
        pretrainer.encoder.requires_grad_(False)
    # Under torchrun, rank 0 builds the cache while the others wait, then they open the finished one.
    info = init_distributed(args.device)
    # Pretraining reads no label: records without one stay, except in a run from before that was so (its data).
    labelled = bool((resumed or {}).get('data')) and not resumed['data'].get('unlabelled_kept')
    splits = _splits(args, labelled=labelled) if info.is_main else None
    barrier()
    if splits is None:
        splits = _splits(args, labelled=labelled)
    _check_resumed_data(resumed, splits, args)
    # An encoder that comes with trained weights (when the options give one) must see the data it was trained on.
    check_model_data(splits['train'].preprocessing, model_data_cfg(pretrainer.encoder, source if start else {}),
                     _weights_name(args))
    if args.grad_checkpointing:
        pretrainer.encoder.set_grad_checkpointing(True)  # the masked passes honour it too (forward_masked)
    run_config = {'command': 'pretrain', 'args': vars(args), 'method': method, 'model': model_name,
                  'init': init, 'heads': heads, 'freeze_encoder': freeze, 'method_kwargs': method_kwargs,
                  'pretrainer': getattr(pretrainer, 'config', {}),
                  'data': {'spec': args.data, 'cache_dir': splits['cache_dir'], 'n_train': len(splits['train']),
                           'n_val': len(splits['val']), 'unlabelled_kept': not labelled},
                  'preprocessing': splits['train'].preprocessing.to_dict()}
    if getattr(pretrainer, 'moco', None) is not None:
        from ecgvit.pretrain import queue_copies_per_record

        run_config['data']['queue_copies_per_record'] = queue_copies_per_record(
            pretrainer.moco.queue_size, len(splits['train']))
    train_set, val_set = splits['train'], splits['val']
    clip = getattr(pretrainer, 'clip', None)
    if clip is not None and clip.cycle == 'rpeak':
        # Detect each record's RR once here instead of in every step of every epoch.
        from ecgvit.data.rr_dataset import WithRR

        t0 = time.perf_counter()
        train_set = WithRR(train_set, clip.sampling_rate)  # the rate the branch itself would detect at
        val_set = WithRR(val_set, clip.sampling_rate) if val_set is not None and len(val_set) else val_set
        _logger.info('R peaks: median RR found for %.0f%% of %d training records in %.1f s (the rest use the '
                     'fallback)', 100 * train_set.found_fraction(), len(train_set), time.perf_counter() - t0)
    from ecgvit.data.lead_mask_dataset import with_lead_masks

    # Leads a record lacks are zero-filled in the cache: the batch says so, and no loss learns those zeros. Wrapped
    # last: WithLeadMask keeps the keys of WithRR's dict items and reads the cache's mask through it.
    train_set, val_set, missing = with_lead_masks(train_set, val_set)
    if missing is not None:
        run_config['data']['train_records_missing_leads'] = missing
    try:
        summary = train(pretrainer, train_set, val_set, cfg, run_config=run_config)
    except MethodSettingsError as e:
        if any(key == 'method' for key, _, _ in e.diffs):
            raise CliError(f'{e} (ecgvit pretrain: --method, --shared-pass / --no-shared-pass)') from None
        if any(key == 'shared_pass' for key, _, _ in e.diffs):
            raise CliError(f'{e} (ecgvit pretrain: --shared-pass / --no-shared-pass)') from None
        if any(key in ('lead_dropout', 'lead_sets') for key, _, _ in e.diffs):
            raise CliError(f'{e} (ecgvit pretrain: --lead-dropout, --lead-sets)') from None
        raise
    if is_main_process():
        load_best_into(pretrainer, args.output)
        from ecgvit.hub import save_pretrained
        from ecgvit.pretrain.heads import save_heads

        encoder_dir = Path(args.output) / 'encoder'
        save_pretrained(pretrainer.encoder, encoder_dir,
                        pretrained_cfg={'pretrain_method': method,
                                        'preprocessing': splits['train'].preprocessing.to_dict(),
                                        **({'pretrain_init': init} if init else {})})
        # The best weights' decoders and heads beside them: `--heads` starts a continued run from them.
        save_heads(pretrainer.state_dict(), encoder_dir, method=method, model=model_name, encoder=pretrainer.encoder,
                   extra={'epochs': None if summary.get('best_epoch') is None else summary['best_epoch'] + 1})
        print(json.dumps(summary, indent=2))
    cleanup_distributed()
    return 0


def _eval_command(args: argparse.Namespace, protocol: str) -> int:
    from ecgvit.data.prepare import check_num_samples, model_data_cfg
    from ecgvit.eval import FinetuneConfig, ProbeConfig, finetune, linear_probe
    from ecgvit.eval.config import with_options
    from ecgvit.eval.leads import check_encoder_leads
    from ecgvit.lead_sets import resolve_leads
    from ecgvit.options import DataOptions, RunOptions, options_from_args
    from ecgvit.train.runtime import seed_everything

    _fill_defaults(args, RunOptions, DataOptions)
    out = _claim_output(args, protocol)
    _check_positive(args, 'epochs', 'batch_size', 'lr')
    if args.num_samples is not None:
        check_num_samples(args.num_samples)
    cls = ProbeConfig if protocol == 'linear' else FinetuneConfig
    given = options_from_args(args, cls)
    cfg = with_options(cls(), given, warn=False)  # checked before the encoder or data; warned where it runs
    _refuse_plateau_options(cfg.schedule, args)
    if protocol == 'finetune' and not 0 <= args.drop_path < 1:
        raise CliError(f'--drop-path must be a rate in [0, 1), got {args.drop_path}.')
    extra = {'drop_path_rate': args.drop_path} if protocol == 'finetune' and args.drop_path else {}
    seed_everything(args.seed)  # a random-init encoder (no weights given) is the same for the same --seed
    encoder, source = load_encoder(args.checkpoint, args.model, args.num_samples, args.pretrained,
                                   args.global_pool, **extra)
    random_init = _random_init_note(args, source)
    _resolve_input(args, encoder)
    leads = resolve_leads(cfg.leads)
    if not random_init and not cfg.allow_untrained_leads:  # refused before any data are built
        check_encoder_leads(encoder, leads, model_name=_weights_name(args))
    splits = _splits(args, model_data_cfg(encoder, source), leads=cfg.leads)
    subset = _data_lead_subset(encoder, leads, splits['train'], args, random_init, args.data_dir or args.data)
    if subset is not None:
        leads = subset[0]
        cfg = dataclasses.replace(cfg, leads=','.join(leads))
    if cfg.batch_size > len(splits['train']):
        if 'batch_size' in given:
            raise CliError(f'--batch-size {cfg.batch_size} is larger than the training split '
                           f'({len(splits["train"])} records): use {len(splits["train"])} or less.')
        # The default batch on a small data set: the whole training split is one batch (said, and recorded).
        print(f'note: the training split holds {len(splits["train"])} records, fewer than the default --batch-size '
              f'{cfg.batch_size}: using {len(splits["train"])}.', file=sys.stderr)
        cfg = dataclasses.replace(cfg, batch_size=len(splits['train']))
    run = linear_probe if protocol == 'linear' else finetune
    result = run(encoder, splits['train'], splits['val'], splits['test'], config=cfg, output_dir=str(out),
                 random_init=random_init)
    # Written last: a run that fails leaves the folder's previous config.json beside the results it describes.
    _write_config(out, args, {**dataclasses.asdict(cfg), 'command': protocol, 'encoder': source,
                              'cache_dir': splits['cache_dir'], 'label_names': splits['label_names'],
                              'multilabel': splits['multilabel'], 'leads_used': list(leads)})
    _print_metrics(dict(result, method=source.get('checkpoint') or source.get('model')))
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    """``ecgvit benchmark --suite real``: the evaluation suite (``ecgvit.eval.suite.run_suite``) on given encoders."""
    from ecgvit.eval.suite import SuiteConfig, run_suite

    if not args.data_dir:
        raise CliError('--suite needs --data-dir: the folder holding ptbxl/, ludb/, cinc2021_samples/ and '
                       'code15_samples/.')
    if args.n_boot is not None and args.n_boot < 0:
        raise CliError(f'--n-boot must be 0 (no confidence intervals) or more, got {args.n_boot}.')
    _claim_output(args, 'suite')

    def _list(value, cast, option):
        try:
            return tuple(cast(v) for v in str(value).split(',') if v.strip())
        except ValueError:
            raise CliError(f'{option} {value!r} is not a comma-separated list of numbers.') from None

    encoders: Dict[str, str] = {}
    for item in args.checkpoints or []:
        name, sep, path = item.partition('=')
        if not sep or not name.strip() or not path:
            raise CliError(f'--checkpoint {item!r} is not NAME=PATH (e.g. mae_moco=runs/mae_moco).')
        encoders[name.strip()] = path
    for name in (args.model or '').split(','):
        if name.strip():
            encoders[name.strip()] = name.strip()
    cfg = SuiteConfig(
        data_dir=args.data_dir, out=args.output,
        encoders=encoders or {'ecg_vit_mae_moco': 'ecg_vit_mae_moco', 'ecg_vit_mae_nextclip': 'ecg_vit_mae_nextclip'},
        seeds=_list(args.seeds or '0,1,2', int, '--seeds'),
        fractions=_list(args.fractions or '0.01,0.1,1', float, '--fractions'),
        tasks=_list(args.tasks, str, '--tasks') if args.tasks else None,
        leads=tuple(args.leads or ('12',)), allow_untrained_leads=bool(args.allow_untrained_leads),
        global_pool=args.global_pool,
        c_sensitivity=_list(args.c_sensitivity, str, '--c-sensitivity') if args.c_sensitivity else (),
        **{k: v for k, v in (('n_boot', args.n_boot), ('split_seed', args.seed), ('device', args.device),
                             ('amp', args.amp), ('workers', args.num_workers), ('progress', args.progress))
           if v is not None},
        cache_dir=args.cache_dir)
    if args.threads is not None:
        import torch
        torch.set_num_threads(max(1, args.threads))
    summary = run_suite(cfg)
    several = len({r.get('leads', '12') for r in summary['results']}) > 1
    for r in summary['results']:
        if r['fraction'] == max(cfg.fractions) and r.get('headline', True):
            diff = '' if r['encoder'] == 'random' else (f'  vs random {r["diff_vs_random"]:+.3f} [{r["diff_lo"]:+.3f}, '
                                                        f'{r["diff_hi"]:+.3f}] {r["verdict_vs_random"]}')
            leads = f'leads {r.get("leads", "12"):<6s} ' if several else ''
            print(f'{leads}{r["task"]:24s} {r["metric"]:7s} {r["encoder"]:22s} {r["mean"]:.3f} +- {r["sd"]:.3f}{diff}')
    extra = ', c_sensitivity.csv' if summary.get('c_sensitivity') else ''
    print(f'\nwrote {Path(cfg.out) / "results.md"}, results.csv, pairwise.csv, predictions.csv, differences.png, '
          f'skipped.csv, splits.csv{extra} and suite_config.json ({summary["wall_time_s"]:.0f} s)')
    return 0


def _checkpoints_architecture(checkpoints: Dict[str, str]) -> Optional[str]:
    """The architecture --checkpoint weights were made for, which the benchmark's other rows then use too (every row
    is one architecture: the floors are the checkpoints' own)."""
    from ecgvit.hub import checkpoint_architecture

    archs = {name: checkpoint_architecture(path) for name, path in checkpoints.items()}
    known = sorted({a for a in archs.values() if a})
    if len(known) > 1:
        listed = ', '.join(f'{name}: {arch}' for name, arch in archs.items() if arch)
        raise CliError(f'The --checkpoint weights are of different architectures ({listed}); a benchmark compares '
                       f'one: give --model and weights of it.')
    if not known:
        return None  # bare weights files: the default architecture, which load_encoder checks them against
    return known[0]


# The benchmark's options the evaluation suite reads too (the rest are refused with --suite).
_SUITE_OPTIONS = ('data_dir', 'cache_dir', 'n_boot', 'seed', 'device', 'amp', 'num_workers', 'progress', 'model')


def cmd_benchmark(args: argparse.Namespace) -> int:
    from ecgvit.benchmark import NESTED_FLAGS, BenchmarkConfig, format_table, quick_config, run_benchmark
    from ecgvit.data.prepare import check_num_samples
    from ecgvit.eval.config import FinetuneConfig, ProbeConfig
    from ecgvit.options import flag_name, options_from_args
    from ecgvit.train.config import TrainConfig

    if args.suite:
        # The suite evaluates given encoders: the methods x protocols options would be ignored without a word.
        ignored = [flag_name(f.name) for f in dataclasses.fields(BenchmarkConfig)
                   if f.metadata.get('cli', True) and f.name not in _SUITE_OPTIONS
                   and getattr(args, f.name, None) is not None]
        ignored += [flag_name(f'{stage}_{name}') for stage, names in NESTED_FLAGS.items() for name in names
                    if getattr(args, f'{stage}_{name}', None) is not None]
        ignored += ['--quick'] if args.quick else []
        if ignored:
            raise CliError(f'{", ".join(ignored)}: option(s) of the methods x protocols benchmark, which the '
                           f'evaluation suite (--suite real) would ignore: drop them, or drop --suite.')
        return cmd_suite(args)
    suite_only = [flag for flag, v in (('--leads', args.leads), ('--allow-untrained-leads', args.allow_untrained_leads),
                                       ('--seeds', args.seeds), ('--fractions', args.fractions),
                                       ('--tasks', args.tasks), ('--global-pool', args.global_pool),
                                       ('--c-sensitivity', args.c_sensitivity)) if v]
    if suite_only:
        raise CliError(f'{", ".join(suite_only)}: option(s) of the evaluation suite (--suite real), which the methods '
                       f'x protocols benchmark would ignore: add --suite real, or drop them.')
    _claim_output(args, 'benchmark')

    cfg = quick_config(args.output) if args.quick else BenchmarkConfig(out=args.output)
    overrides: Dict[str, Any] = options_from_args(args, BenchmarkConfig)  # given on the command line: over the preset
    for stage, cls in (('pretrain', TrainConfig), ('probe', ProbeConfig), ('finetune', FinetuneConfig)):
        given = options_from_args(args, cls, prefix=stage, only=NESTED_FLAGS[stage])
        if given:
            overrides[stage] = dataclasses.replace(getattr(cfg, stage), **given)
    if args.checkpoints:
        pairs = [c.partition('=') for c in args.checkpoints]
        bad = [c for c, (_, sep, path) in zip(args.checkpoints, pairs) if not sep or not path]
        if bad:
            raise CliError(f'--checkpoint {bad[0]!r} is not METHOD=PATH (e.g. mae_moco=runs/mae_moco).')
        overrides['checkpoints'] = {k.strip(): path for k, _, path in pairs}
        arch = _checkpoints_architecture(overrides['checkpoints']) if args.model is None else None
        if arch is not None and arch != cfg.model:
            print(f'note: --model {arch} (the architecture of the --checkpoint weights) for every row.',
                  file=sys.stderr)
            overrides['model'] = arch
    if args.threads is not None:
        overrides['threads'] = args.threads
    cfg = dataclasses.replace(cfg, **overrides)
    for stage in ('pretrain', 'probe', 'finetune'):
        _check_positive(getattr(cfg, stage), 'epochs', 'batch_size', 'lr', prefix=stage)
    if not isinstance(cfg.n_boot, int) or cfg.n_boot < 0:
        raise CliError(f'--n-boot must be 0 (no confidence intervals) or more, got {cfg.n_boot}.')
    _check_positive(cfg, 'synthetic_records', 'sampling_rate', 'num_samples')
    if cfg.num_samples is not None:
        check_num_samples(cfg.num_samples)
    rows = run_benchmark(cfg)
    print(format_table(rows))
    print(f'\nwrote {Path(cfg.out) / "results.csv"}, results.md, results.png and config.json')
    failed = [f'{r["method"]}/{r["protocol"]}' for r in rows if r.get('error')]
    if failed:
        print(f'failed rows: {", ".join(failed)} (see the log above)', file=sys.stderr)
        return 1
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    import torch

    from ecgvit.constants import DEFAULT_NUM_SAMPLES, DEFAULT_SAMPLING_RATE
    from ecgvit.data import CachedECGDataset, Preprocessing, build_cache, get_dataset
    from ecgvit.data.datasets.arrays import ARRAY_SUFFIXES
    from ecgvit.data.prepare import (
        check_model_data,
        check_num_samples,
        check_short_records,
        data_preprocessing,
        dataset_kwargs,
        model_data_cfg,
        parse_data_spec,
    )
    from ecgvit.eval.config import FitOptions
    from ecgvit.eval.leads import apply_lead_mask, check_encoder_leads, lead_mask_tensor, resolve_data_leads
    from ecgvit.eval.pooling import embed_records
    from ecgvit.files import atomic_copy, atomic_save_npy, atomic_write_text
    from ecgvit.options import DataOptions, RunOptions, options_from_args
    from ecgvit.train.runtime import seed_everything

    amp_given = args.amp is not None
    _fill_defaults(args, RunOptions)
    for cls, names in ((DataOptions, ('crop', 'window_stride', 'short_records')),
                       (FitOptions, ('pooling', 'leads', 'allow_untrained_leads'))):
        given = options_from_args(args, cls, only=names)
        for f in dataclasses.fields(cls):
            if f.name in names and f.name not in given:
                setattr(args, f.name, f.default)
    if args.input is not None and args.data is not None:
        raise CliError('give --input PATH or --data NAME --data-dir PATH, not both.')
    if args.input is None and args.data is None:
        raise CliError('--input (a WFDB folder, array file or cache) or --data NAME --data-dir PATH is required.')
    if args.window_stride is not None and args.crop != 'windows':
        raise CliError(f'--window-stride {args.window_stride} needs --crop windows (got --crop {args.crop}).')
    _check_positive(args, 'sampling_rate', 'num_samples', 'window_stride', 'batch_size')
    if args.fast != 'off' and amp_given and args.amp != 'fp32':
        raise CliError(f'--fast {args.fast} sets the precision itself (fp32, bf16, int8): drop --amp {args.amp}.')
    if args.num_workers < 0:
        raise CliError(f'-j/--num-workers must be 0 or more, got {args.num_workers}.')
    src = Path(args.input) if args.input is not None else None
    if src is not None and not src.exists():
        raise CliError(f'--input {args.input!r} does not exist.')
    out = _claim_output(args, 'embed')
    cached = src is not None and (src / 'manifest.json').is_file()
    dataset = CachedECGDataset(src) if cached else None
    if args.num_samples is not None:
        check_num_samples(args.num_samples)
    length = dataset.preprocessing.num_samples if cached else args.num_samples
    if length is None and not (args.checkpoint or args.pretrained):
        length = DEFAULT_NUM_SAMPLES  # an untrained encoder has no recipe of its own
    seed_everything(args.seed)  # a random-init encoder (no weights given) is the same for the same --seed
    encoder, source = load_encoder(args.checkpoint, args.model, length, args.pretrained, args.global_pool)
    model_cfg = model_data_cfg(encoder, source)
    random_init = _random_init_note(args, source)
    if cached:
        check_model_data(dataset.preprocessing, model_cfg, f'--input {args.input} (a cache) for {_weights_name(args)}')
        pp = dataset.preprocessing
        leads = resolve_data_leads(args.leads, dataset)  # a subset of what the cache holds
        leads, leads_trained = check_encoder_leads(encoder, leads, args.allow_untrained_leads, _weights_name(args),
                                                   random_init)
    else:
        pad = 'zero' if args.short_records == 'pad' else 'error'
        if model_cfg is not None:
            # The recipe the weights were trained with (--sampling-rate / --num-samples may only restate it); empty
            # leads are tolerated as by every command, whatever the training run did.
            pp = Preprocessing.from_pretrained_cfg(model_cfg, pad=pad, empty_lead_policy='zero', missing_leads='zero',
                                                   crop=args.crop, window_stride=args.window_stride)
            given = {k: v for k, v in (('sampling_rate', args.sampling_rate), ('num_samples', args.num_samples))
                     if v is not None}
            check_model_data(Preprocessing.from_dict(dict(pp.to_dict(), **given)), model_cfg, _weights_name(args))
        else:  # random initialisation: any rate; the model is built for the length
            pp = data_preprocessing(args.sampling_rate or DEFAULT_SAMPLING_RATE, length or DEFAULT_NUM_SAMPLES,
                                    args.crop, args.window_stride, args.short_records)
        if pp.num_samples != length:  # the encoder was built before the recipe was known
            seed_everything(args.seed)
            encoder, source = load_encoder(args.checkpoint, args.model, pp.num_samples, args.pretrained,
                                           args.global_pool)
        # Refused (or warned about) before anything is read; only the subset's leads are read and cached.
        leads, leads_trained = check_encoder_leads(encoder, args.leads, args.allow_untrained_leads,
                                                   _weights_name(args), random_init)
        pp = dataclasses.replace(pp, input_leads=leads)
        if args.data is not None:
            name, label_set = parse_data_spec(args.data)  # a label set asked for keeps only records labelled in it
            root = args.data_dir if name != 'synthetic' or args.data_dir else str(out / 'synthetic')
            index = get_dataset(name, root, **dataset_kwargs(name, label_set, pp.sampling_rate, args.seed,
                                                             num_samples=pp.num_samples,
                                                             labelled=label_set is not None))
        elif src.is_file() and src.suffix.lower() in ARRAY_SUFFIXES:
            index = get_dataset('arrays', src)
        elif src.is_file():
            raise CliError(f'--input {args.input!r} is a file but not an array file ({", ".join(ARRAY_SUFFIXES)}); '
                           f'give a WFDB folder, an array file or a cache folder.')
        else:
            index = get_dataset('folder', src, labels_csv=False)
        if len(index) == 0:
            raise CliError(f'{args.input or args.data_dir!r} holds no readable records.')
        check_short_records(index, pp, args.short_records)
        cache = build_cache(index, pp, out / 'cache', num_workers=args.num_workers, progress=args.progress)
        dataset = CachedECGDataset(cache)
    subset = _data_lead_subset(encoder, leads, dataset, args, random_init, args.input or args.data_dir or args.data)
    if subset is not None:  # read as every lead, but the records hold fewer: masked and recorded as that subset
        leads, leads_trained = subset
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    amp = args.amp
    if args.fast != 'off':
        from ecgvit.inference import optimize_for_inference
        from ecgvit.train.batch import batch_inputs

        if device.type != 'cpu':
            raise CliError('--fast is a CPU path (int8 dynamic quantisation, bf16, compile): add --device cpu, or '
                           'on a GPU use --amp bf16 instead.')
        encoder.reset_classifier(0)  # forward() then returns the pre-logits embedding that embed writes
        example = apply_lead_mask(torch.stack([batch_inputs(dataset[i]) for i in range(min(8, len(dataset)))]),
                                  lead_mask_tensor(leads))
        encoder = optimize_for_inference(encoder.eval(), args.fast, example=example)
        source = dict(source, fast_mode=encoder.mode, fast_timings_ms=encoder.timings_ms, fast_cosine=encoder.cosine)
        print(f'fast path: {encoder.mode} ' + ' '.join(f'{k} {v:.1f} ms' for k, v in encoder.timings_ms.items()))
        amp = 'fp32'  # the fast encoder manages its own precision
    feats, _, ids = embed_records(encoder, dataset, args.pooling, batch_size=args.batch_size, amp=amp,
                                  num_workers=args.num_workers, progress=args.progress, device=device,
                                  lead_mask=lead_mask_tensor(leads))
    windows = list(dataset.windows) if args.pooling == 'none' else [0] * len(ids)
    if not cached:
        # The cache groups records by split (one memmap block each); the rows follow the input's own order instead
        # (a folder's sorted records, an array's rows), each record's windows in time order.
        position = {e.record_id: i for i, e in enumerate(index.entries)}
        order = sorted(range(len(ids)), key=lambda r: (position.get(ids[r], len(position)), windows[r]))
        feats, ids, windows = feats[order], [ids[r] for r in order], [windows[r] for r in order]
    out.mkdir(parents=True, exist_ok=True)
    # Each file lands whole (a full disk leaves the previous one), and config.json goes first and comes back last: a
    # folder with a config.json holds one run's files, never a mix of two (a run that fails half-way leaves none).
    # A previous run's windows.csv would describe rows this run did not write.
    (out / 'config.json').unlink(missing_ok=True)
    atomic_save_npy(out / 'embeddings.npy', feats)
    n_records = len(set(dataset.record_ids))
    if args.pooling == 'none':
        _write_windows_csv(out / 'windows.csv', ids, windows, pp)
        if len(set(ids)) != len(ids):  # several windows per record: make the ids unique
            ids = [f'{r}#{w}' for r, w in zip(ids, windows)]
    else:
        (out / 'windows.csv').unlink(missing_ok=True)
    atomic_write_text(out / 'ids.txt', '\n'.join(ids) + '\n')
    skipped = dataset.skipped
    atomic_copy(dataset.skipped_csv, out / 'skipped.csv')  # beside the results: which records are not in them
    _write_config(out, args, {'command': 'embed', 'encoder': source, 'num_records': n_records,
                              'num_windows': len(dataset), 'num_rows': len(ids), 'pooling': args.pooling,
                              'num_skipped': len(skipped), 'preprocessing': pp.to_dict(),
                              'embedding_dim': int(feats.shape[1]), 'leads_used': list(leads),
                              'leads_trained': leads_trained})
    extra = f', {out / "windows.csv"}' if args.pooling == 'none' else ''
    print(f'wrote {out / "embeddings.npy"} {tuple(feats.shape)} ({n_records} records, {len(dataset)} windows, '
          f'pooling {args.pooling}), {out / "ids.txt"}{extra}')
    _print_skipped(len(skipped), str(out / 'skipped.csv'))
    return 0


def _write_windows_csv(path: Path, record_ids: Sequence[str], windows: Sequence[int], pp: Any) -> None:
    """Row of embeddings.npy -> record and window, with the window's span in seconds of the resampled record."""
    import csv

    from ecgvit.files import atomic_open

    stride = (pp.window_stride or pp.num_samples) if pp.crop == 'windows' else 0
    with atomic_open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['row', 'record_id', 'window', 'start_s', 'end_s'])
        for row, (rid, k) in enumerate(zip(record_ids, windows)):
            start = int(k) * stride / pp.sampling_rate
            w.writerow([row, rid, int(k), f'{start:g}', f'{start + pp.duration_s:g}'])


def cmd_push(args: argparse.Namespace) -> int:
    from ecgvit import hub

    if not args.repo_id:
        raise CliError('--repo-id org/name is required: the Hub repository to upload to.')
    if args.repo_id.count('/') != 1 or not all(args.repo_id.split('/')):
        raise CliError(f'--repo-id {args.repo_id!r} must be org/name.')
    if not (args.checkpoint or args.pretrained):
        raise CliError('give the weights to upload: --checkpoint PATH or --pretrained --model NAME (an untrained '
                       'encoder is not worth publishing).')
    out = _claim_output(args, 'push')
    encoder, source = load_encoder(args.checkpoint, args.model, None, args.pretrained)
    try:
        url = hub.push_to_hub(encoder, args.repo_id, private=args.private, token=args.token, revision=args.revision,
                              commit_message=args.commit_message, create_pr=args.create_pr)
    except Exception as e:  # requests' and httpx's connection errors: the raw text names neither the Hub nor a fix
        if type(e).__name__ in ('ConnectionError', 'ConnectError', 'ConnectTimeout', 'ReadTimeout'):
            raise CliError(f'could not reach the Hugging Face Hub ({" ".join(str(e).split())[:200]}): push needs '
                           f'network access (check the connection, a proxy, or HF_ENDPOINT).') from None
        raise
    _write_config(out, args, {'command': 'push', 'encoder': source, 'url': str(url)})  # only what was uploaded
    print(url)
    return 0


def _weights_sha256(encoder: Any, source: Dict[str, Any]) -> Optional[str]:
    """sha256 of the weight file ``load_encoder`` read (``source``): the checkpoint file, or the published weights'
    verified digest; None for an encoder that was not loaded from a file."""
    from ecgvit.weights import WEIGHTS_NAME, sha256_file

    if source.get('checkpoint'):
        path = Path(source['checkpoint'])
        path = path / WEIGHTS_NAME if path.is_dir() else path
        return sha256_file(path) if path.is_file() else None
    if source.get('pretrained'):
        return (getattr(encoder, 'pretrained_cfg', None) or {}).get('sha256')  # checked when the weights were loaded
    return None


def cmd_export(args: argparse.Namespace) -> int:
    from ecgvit.data.prepare import check_num_samples
    from ecgvit.export import ExportConfig, export_onnx
    from ecgvit.options import options_from_args

    cfg = ExportConfig(**options_from_args(args, ExportConfig))
    if not (args.checkpoint or args.pretrained):
        raise CliError('give the weights to export: --checkpoint PATH or --pretrained --model NAME (an untrained '
                       'encoder has nothing to deploy).')
    _check_positive(args, 'opset', 'atol', 'min_cosine', 'num_samples')
    if not cfg.min_cosine <= 1:
        raise CliError(f'--min-cosine must be at most 1 (a cosine similarity), got {cfg.min_cosine}.')
    if Path(args.output).suffix.lower() == '.onnx':
        raise CliError(f'-o/--output names the folder that receives model.onnx, its .json sidecar and config.json, '
                       f'not the file: e.g. -o {Path(args.output).with_suffix("")}.')
    if args.num_samples is not None:
        check_num_samples(args.num_samples)
    out = _claim_output(args, 'export')
    encoder, source = load_encoder(args.checkpoint, args.model, args.num_samples, args.pretrained)
    result = export_onnx(encoder, out / 'model.onnx', opset=cfg.opset, dynamic_batch=cfg.dynamic_batch,
                         num_samples=args.num_samples, exporter=cfg.exporter,
                         model_name=source.get('model') or encoder.pretrained_cfg.get('architecture'),
                         weights_sha256=_weights_sha256(encoder, source), check=cfg.check, atol=cfg.atol,
                         min_cosine=cfg.min_cosine)
    _write_config(out, args, {'command': 'export', 'encoder': source, 'export': dataclasses.asdict(cfg),
                              'files': [result.path.name, result.sidecar.name], 'parity': result.parity})
    meta = result.metadata
    batch = 'batch' if cfg.dynamic_batch else '1'
    print(f"wrote {result.path} ({meta['model']}, input ecg ({batch}, {len(json.loads(meta['leads']))}, "
          f"{meta['num_samples']}) at {meta['sampling_rate']} Hz, outputs {', '.join(json.loads(meta['outputs']))}) "
          f'and {result.sidecar}')
    if result.parity:
        for batch, per in result.parity['batches'].items():
            print(f'parity vs PyTorch (onnxruntime {result.parity["onnxruntime"]}), batch {batch}: ' + '; '.join(
                f'{name} max abs diff {v["max_abs_diff"]:.2e}, min cosine {v["min_cosine"]:.8f}'
                for name, v in per.items()))
    else:
        print('parity check skipped (--no-check)')
    return 0


_COMMANDS = {'pretrain': cmd_pretrain, 'probe': lambda a: _eval_command(a, 'linear'),
             'finetune': lambda a: _eval_command(a, 'finetune'), 'benchmark': cmd_benchmark, 'embed': cmd_embed,
             'push': cmd_push, 'export': cmd_export}


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``ecgvit`` console script. Returns the exit status.

    Example:
        >>> # ecgvit benchmark --quick --out results/quick
    """
    debug = os.environ.get('ECGVIT_DEBUG', '') not in ('', '0')
    first = next((a for a in (sys.argv[1:] if argv is None else argv) if not str(a).startswith('-')), None)
    command = f'ecgvit {first}' if first in _COMMANDS else 'ecgvit'  # errors of --config name their command too
    formatwarning = warnings.formatwarning
    if not debug:
        warnings.formatwarning = functools.partial(_warning_line, command, formatwarning)
    try:
        with warnings.catch_warnings():  # a command's warning filters end with it (main() also runs in-process)
            return _main(argv, command, debug)
    finally:
        warnings.formatwarning = formatwarning


_PACKAGE_DIR = Path(__file__).resolve().parent


def _warning_line(command: str, others: Any, message: Any, category: type, filename: str, lineno: int,
                  line: Optional[str] = None) -> str:
    """ecgvit's own warnings as one line for a command-line user, not a source location and a line of our code
    (ECGVIT_DEBUG=1 shows those); other libraries' warnings keep the format in place before (``others``)."""
    try:
        ours = Path(filename).resolve().is_relative_to(_PACKAGE_DIR)
    except (OSError, ValueError):
        ours = False
    if not ours:
        return others(message, category, filename, lineno, line)
    return f'{command}: warning: {message}\n'


def _main(argv: Optional[List[str]], command: str, debug: bool) -> int:
    try:
        args = _parse(argv)
        command = f'ecgvit {args.command}'
        # Under torchrun every process runs this: rank 0 speaks for all; the others say only what goes wrong.
        other_rank = os.environ.get('RANK', '0') not in ('', '0')
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR if other_rank else logging.INFO,
                            format='%(asctime)s %(levelname)s %(name)s: %(message)s')
        if other_rank and not debug:
            warnings.simplefilter('ignore')  # the same warnings rank 0 shows, once per process
        if getattr(args, 'threads', None) is not None and args.command != 'benchmark':
            if args.threads < 1:
                raise CliError(f'--threads must be >= 1, got {args.threads}.')
            import torch
            torch.set_num_threads(args.threads)
        _check_device(args)
        seed = getattr(args, 'seed', None)
        if seed is not None and not 0 <= seed < 2 ** 32:  # numpy's generators take no other
            raise CliError(f'--seed must be from 0 to {2 ** 32 - 1}, got {seed}.')
        return int(_COMMANDS[args.command](args) or 0)
    except RunStopped as e:  # a clean stop: the shell's convention for "ended by signal N"
        print(f'{command}: {e}', file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f'{command}: interrupted', file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as e:  # every failure ends as one line; ECGVIT_DEBUG=1 shows the traceback
        if debug:
            raise
        msg = ' '.join(str(e).split()) or type(e).__name__
        hint = '' if isinstance(e, (ValueError, FileNotFoundError, KeyError)) else \
            f' [{type(e).__name__}; set ECGVIT_DEBUG=1 for the traceback]'
        print(f'{command}: error: {msg}{hint}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
