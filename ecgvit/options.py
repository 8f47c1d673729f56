"""Options declared once: config dataclasses whose fields carry their help, and the argparse flags built from them.

Every setting of a run is a field of a config dataclass (:class:`RunOptions` and :class:`DataOptions` here,
:class:`ecgvit.train.TrainConfig`, :class:`ecgvit.eval.ProbeConfig`, :class:`ecgvit.eval.FinetuneConfig`,
:class:`ecgvit.benchmark.BenchmarkConfig`). A field holds the one default and, in ``metadata``, its help text; the
command line gets its flags from the fields (:func:`add_options`: ``batch_size`` -> ``--batch-size``, with a prefix
for nested configs, ``pretrain.epochs`` -> ``--pretrain-epochs``), so the API, the CLI and ``--help`` cannot drift.

Flags built here default to None ("not given"), and :func:`options_from_args` returns only the options given, so a
preset (``ecgvit benchmark --quick``) or a ``--config`` file can sit under the command line.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_options(parser, RunOptions)
    >>> options_from_args(parser.parse_args(['--seed', '3']), RunOptions)
    {'seed': 3}
"""
import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Dict, Optional, Tuple, Type

__all__ = ['RunOptions', 'DataOptions', 'option', 'documented', 'add_options', 'options_from_args', 'flag_name',
           'model_input_defaults', 'parse_key_value', 'same_setting']


def option(default: Any = None, help: str = '', *, default_factory: Optional[Callable[[], Any]] = None,
           **meta: Any) -> Any:
    """A dataclass field with its help text (and optional ``choices``, ``short`` flag, ``metavar``, ``cli=False``,
    and for a bool that is on by default ``help_off``: the help of its ``--no-...`` flag)."""
    meta = dict(meta, help=help)
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def documented(cls: Type) -> Type:
    """Class decorator: append an ``Attributes:`` section built from the fields' help and defaults to the docstring,
    so the docs are generated from the one declaration too."""
    lines = []
    for f in dataclasses.fields(cls):
        default = _default_of(f)
        shown = '' if default is None or dataclasses.is_dataclass(default) else f' Default: {default!r}.'
        lines.append(f'        {f.name}: {f.metadata.get("help", "")}{shown}')
    cls.__doc__ = (cls.__doc__ or cls.__name__).rstrip() + '\n\n    Attributes:\n' + '\n'.join(lines) + '\n'
    return cls


@documented
@dataclass
class RunOptions:
    """Settings every run has: seed, device, precision, workers, progress bars."""
    seed: int = option(0, 'Seed for initialisation, data order, masks, augmentations and the bootstrap.')
    device: Optional[str] = option(None, "'cpu' or 'cuda' (default: CUDA when available).")
    amp: str = option('auto', "Mixed precision: 'auto' picks bf16 where a quick transformer-block probe shows it is "
                              'faster (measured once per process); or bf16, fp32.', choices=('auto', 'bf16', 'fp32'))
    num_workers: int = option(0, 'DataLoader and cache-building worker processes.', short='-j')
    progress: bool = option(True, 'Show progress bars (--no-progress hides them).', help_off='Hide progress bars.')


@documented
@dataclass
class DataOptions:
    """Which records a command reads and how they are shaped for the model."""
    data: str = option('synthetic', "Dataset and label set, e.g. 'synthetic' (built in, generated on first use), "
                                    "'ptbxl:superdiagnostic', 'cpsc2018', 'chapman', 'ludb:rhythm', 'cinc', 'folder', "
                                    "'arrays' (a .npy/.npz/.h5 file: --data-dir FILE; its sampling rate and lead names "
                                    "stored in it or in a sidecar FILE-stem.json), or 'pool' (pretraining: every "
                                    'dataset folder under --data-dir, 10-s windows, duplicates dropped, PTB-XL folds '
                                    '9-10 held out, 5% of patients for the validation loss).', metavar='NAME[:LABELS]')
    data_dir: Optional[str] = option(None, 'Dataset folder (not needed for synthetic); the array file for arrays.',
                                     metavar='PATH')
    cache_dir: Optional[str] = option(None, 'Where preprocessed caches go (default: OUTPUT/data).', metavar='PATH')
    sampling_rate: Optional[float] = option(None, "Model input rate in Hz (default: the model's own, from its "
                                                  'pretrained cfg; 360 for the seed-size encoders).')
    num_samples: Optional[int] = option(None, "Model input length in samples, a multiple of 25 (default: the model's "
                                              'own; 3600 = 10 s at 360 Hz for the seed-size encoders).')
    synthetic_records: int = option(400, "Records generated for 'synthetic'.")
    crop: str = option('windows', "How a record becomes model inputs: 'windows' (the whole record, cut into windows of "
                                  '--num-samples spaced --window-stride apart; a tail shorter than a window is left '
                                  'out; probe, finetune and embed pool the windows of a record, see --pooling) or '
                                  "'center' (one window from the middle of the record).",
                       choices=('windows', 'center'))
    window_stride: Optional[int] = option(None, 'Samples (at the model rate) between the starts of consecutive windows '
                                                'of a record (default: --num-samples, windows do not overlap).')
    short_records: str = option('pad', 'A record shorter than one window: zero-padded to it with a warning (pad), '
                                       'left out with a warning (skip), or an error (error).',
                                choices=('pad', 'skip', 'error'))


def model_input_defaults(model: Any) -> Tuple[float, int]:
    """The (sampling rate, input length) a model was made for, the defaults of :class:`DataOptions`.

    Read from the model's pretrained cfg: its recorded preprocessing when it has one (weights pretrained by
    ecgvit), else its ``sampling_rate`` and ``input_size``.

    Args:
        model: A registered model name or a model with a ``pretrained_cfg``.

    Example:
        >>> model_input_defaults('ecg_vit_tiny')
        (360.0, 3600)
    """
    from ecgvit.constants import DEFAULT_NUM_SAMPLES, DEFAULT_SAMPLING_RATE

    if isinstance(model, str):
        from timm.models import get_pretrained_cfg

        found = get_pretrained_cfg(model)
        cfg = found.to_dict() if found is not None else {}
    else:
        cfg = dict(getattr(model, 'pretrained_cfg', None) or {})
    pp = cfg.get('preprocessing') or {}
    rate = pp.get('sampling_rate') or cfg.get('sampling_rate') or DEFAULT_SAMPLING_RATE
    length = pp.get('num_samples') or (cfg.get('input_size') or (DEFAULT_NUM_SAMPLES,))[-1]
    return float(rate), int(length)


# ---------------------------------------------------------------------------------------------------------------------
# argparse


def parse_key_value(item: str) -> Tuple[str, Any]:
    """``'KEY=VALUE'`` -> ``(key, value)``, the value read as JSON (``20``, ``true``, ``[1, 2]``), else kept as text.

    How command lines pass extra method settings (``ecgvit pretrain --method-arg``, the GPU campaign's jobs).

    Raises:
        ValueError: ``item`` has no ``=``.
    """
    key, sep, value = item.partition('=')
    if not sep:
        raise ValueError(f'{item!r} is not KEY=VALUE.')
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def flag_name(name: str, prefix: str = '') -> str:
    """The flag of field ``name``: ``batch_size`` -> ``--batch-size``; with prefix 'pretrain': ``--pretrain-...``."""
    return '--' + '-'.join(p for p in (prefix, name) if p).replace('_', '-')


def _base_type(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Union:  # Optional[X] -> X
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _comma_list(text: str) -> list:
    return [v.strip() for v in str(text).split(',') if v.strip()]


def _selected(cls: Type, only: Optional[Collection[str]], skip: Collection[str]) -> Tuple[dataclasses.Field, ...]:
    chosen = [f for f in dataclasses.fields(cls) if f.metadata.get('cli', True) and f.name not in skip]
    if only is not None:
        names = {f.name for f in chosen}
        missing = sorted(set(only) - names)
        if missing:
            raise ValueError(f'{cls.__name__} has no option(s) {missing}: choose from {sorted(names)}.')
        chosen = [f for f in chosen if f.name in only]
    return tuple(chosen)


def add_options(parser: Any, cls: Type, prefix: str = '', only: Optional[Collection[str]] = None,
                skip: Collection[str] = (), defaults: Optional[Dict[str, Any]] = None) -> None:
    """Add one flag per field of dataclass ``cls`` to ``parser`` (a parser or an argument group).

    The flag is :func:`flag_name` of the field, its help the field's ``metadata['help']`` plus the default, its type
    the field's (``Optional[X]`` -> X, ``List[str]`` -> comma-separated; a ``bool`` gets the one flag that changes
    it: ``--x`` when off by default, ``--no-x`` when on, ``--x/--no-x`` when None). The parsed value is None when the
    flag is not given (see :func:`options_from_args`).

    Args:
        parser: An ``argparse.ArgumentParser`` or argument group.
        cls: The config dataclass.
        prefix: Flag and destination prefix for a nested config (``'pretrain'`` -> ``--pretrain-epochs``).
        only: Add only these fields.
        skip: Leave these fields out.
        defaults: Defaults to show in the help instead of the dataclass's (a command whose preset differs).
    """
    hints = typing.get_type_hints(cls)
    for f in _selected(cls, only, skip):
        tp = _base_type(hints[f.name])
        flag = flag_name(f.name, prefix)
        dest = flag[2:].replace('-', '_')
        default = (defaults or {}).get(f.name, _default_of(f))
        text = f.metadata.get('help', '')
        if default not in (None, False, '') and 'default' not in text:
            shown = ','.join(default) if isinstance(default, (list, tuple)) else default
            text += f' [default: {shown}]'
        text = text.replace('%', '%%')  # argparse formats help with %
        names = [flag] + ([f.metadata['short']] if f.metadata.get('short') and not prefix else [])
        kwargs: Dict[str, Any] = dict(dest=dest, default=None, help=text)
        if tp is bool and default in (True, False):
            # One flag, the one that changes something: --x for an option off by default, --no-x for one on.
            names = [flag_name(f'no_{f.name}', prefix)] if default else names
            # The help of --no-x says what the flag does (turn it off), not what the option does when on.
            text = f.metadata.get('help', '') if not default else f.metadata.get('help_off') or \
                f"Turn off: {f.metadata.get('help', '')}"
            kwargs.update(action='store_const', const=not default, help=text.replace('%', '%%'))
        elif tp is bool:
            kwargs['action'] = argparse.BooleanOptionalAction
        else:
            origin = typing.get_origin(tp)
            kwargs['type'] = _comma_list if origin in (list, tuple) else tp if tp in (int, float) else str
            if f.metadata.get('choices'):
                kwargs['choices'] = f.metadata['choices']
            kwargs['metavar'] = f.metadata.get('metavar') or (None if 'choices' in kwargs else f.name.upper())
        parser.add_argument(*names, **kwargs)


def options_from_args(args: argparse.Namespace, cls: Type, prefix: str = '', only: Optional[Collection[str]] = None,
                      skip: Collection[str] = ()) -> Dict[str, Any]:
    """The fields of ``cls`` given on the command line (or in ``--config``), as ``{field name: value}``."""
    out = {}
    for f in _selected(cls, only, skip):
        value = getattr(args, flag_name(f.name, prefix)[2:].replace('-', '_'), None)
        if value is not None:
            out[f.name] = value
    return out


def same_setting(key: str, a: Any, b: Any) -> bool:
    """Whether two recorded values of an option are the same setting (a resumed run's, this command's).

    Folders are the same when they resolve to one path ('data/x' and '/home/me/data/x'); rates compare as numbers.

    Args:
        key: The option's field name (``data_dir`` and ``sampling_rate`` compare as above, the rest by ``==``).
        a: One value.
        b: The other.

    Example:
        >>> same_setting('sampling_rate', 100, 100.0), same_setting('seed', 0, 1)
        (True, False)
    """
    if key == 'data_dir' and a is not None and b is not None:
        return a == b or Path(a).resolve() == Path(b).resolve()
    if key == 'sampling_rate' and a is not None and b is not None:
        return float(a) == float(b)
    return a == b
