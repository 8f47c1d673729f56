"""The import rules of docs/architecture.md: each layer imports only the layers below it that its row names."""
import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1] / 'ecgvit'

# module (first name under ecgvit) -> layer
LAYER_OF = {
    'constants': 'basics', 'version': 'basics', 'errors': 'basics', 'staging': 'basics', 'layers': 'basics',
    'files': 'basics',
    'lead_sets': 'basics',
    'weights': 'weights', 'weights_sha256': 'weights',
    'models': 'models', 'factory': 'models',
    'data': 'data',
    'options': 'options',
    'pretrain': 'pretrain',
    'train': 'train',
    'eval': 'eval',
    'hub': 'hub', 'cards': 'hub',
    'inference': 'inference',
    'export': 'export',
    'benchmark': 'harness',
    'cli': 'cli',
    '__init__': 'package',
}

# layer -> the layers it may import (docs/architecture.md, "The layers")
ALLOWED: Dict[str, Set[str]] = {
    'basics': set(),
    'weights': {'basics'},
    'models': {'basics', 'weights'},
    'data': {'basics'},
    'options': {'basics', 'models'},
    'pretrain': {'basics', 'models', 'data'},
    'train': {'basics', 'options'},
    'eval': {'basics', 'weights', 'models', 'data', 'options', 'train', 'hub'},  # the suite reads run folders
    'hub': {'basics', 'weights', 'models', 'train'},
    'inference': {'basics', 'models'},
    'export': {'basics', 'weights', 'models', 'data', 'options'},
    'harness': {'basics', 'weights', 'models', 'data', 'options', 'pretrain', 'train', 'eval', 'hub', 'inference',
                'package'},
    'cli': {'basics', 'weights', 'models', 'data', 'options', 'pretrain', 'train', 'eval', 'hub', 'inference',
            'export', 'harness', 'package'},
    'package': {'basics', 'models'},  # ecgvit/__init__.py: the rest loads lazily, on first use
}


def _module_name(path: Path) -> Tuple[str, ...]:
    parts = path.relative_to(ROOT.parent).with_suffix('').parts
    return parts[:-1] if parts[-1] == '__init__' else parts


def _imports(path: Path, text: Optional[str] = None) -> Iterator[Tuple[str, int]]:
    """(imported ecgvit module, line) for every import in the file, at any depth (function-level ones too)."""
    mod = _module_name(path)
    package = mod if path.name == '__init__.py' else mod[:-1]
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                name = '.'.join(base + ((node.module,) if node.module else ()))
                names = [name] if node.module else [f'{name}.{a.name}' for a in node.names]
            else:
                names = [node.module or '']
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == 'ecgvit' or name.startswith('ecgvit.'):
                yield name, node.lineno


def _layer(dotted: str) -> str:
    parts = dotted.split('.')
    return LAYER_OF['__init__' if len(parts) == 1 else parts[1]]


FILES = sorted(ROOT.rglob('*.py'))


def test_every_module_has_a_layer():
    unknown = sorted({p.relative_to(ROOT).parts[0].removesuffix('.py') for p in FILES} - set(LAYER_OF))
    assert not unknown, f'add these to LAYER_OF and docs/architecture.md: {unknown}'


def _violations(path: Path, text: Optional[str] = None) -> List[str]:
    own = _layer('.'.join(_module_name(path)))
    bad = []
    for name, line in _imports(path, text):
        layer = _layer(name)
        if layer != own and layer not in ALLOWED[own]:
            bad.append(f'line {line}: {name} ({own} may not import {layer})')
    return bad


@pytest.mark.parametrize('path', FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    bad = _violations(path)
    assert not bad, '\n'.join(bad)


def test_the_checker_sees_forbidden_imports_at_any_depth():
    data_file, loop_file = ROOT / 'data' / 'cache.py', ROOT / 'train' / 'loop.py'
    assert _violations(data_file, 'def f():\n    from ecgvit.models import ecg_vit\n') == [
        'line 2: ecgvit.models (data may not import models)']
    assert _violations(loop_file, 'from ..pretrain import hybrid\n') == [
        'line 1: ecgvit.pretrain (train may not import pretrain)']
    assert _violations(loop_file, 'from .checkpoint import save_checkpoint\nimport ecgvit.options\n') == []


LOWER = {'basics', 'weights', 'models'}


def _function_level_imports(path: Path, text: Optional[str] = None) -> List[str]:
    """ecgvit imports inside a function or method of ``path`` (lines), which would hide an import cycle."""
    tree = ast.parse(path.read_text() if text is None else text)
    top = {id(node) for node in tree.body}
    nested = {line for name, line in _imports(path, text)}
    return [f'line {n.lineno}' for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
            and id(n) not in top and n.lineno in nested and not _type_checking_only(tree, n)]


def _type_checking_only(tree: ast.Module, node: ast.AST) -> bool:
    return any(isinstance(b, ast.If) and 'TYPE_CHECKING' in ast.unparse(b.test) and node in list(ast.walk(b))
               for b in tree.body)


@pytest.mark.parametrize('path', [p for p in FILES if _layer('.'.join(_module_name(p))) in LOWER],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_lower_layers_import_nothing_inside_functions(path):
    bad = _function_level_imports(path)
    assert not bad, f'{path.relative_to(ROOT)}: function-level ecgvit imports at {bad} (move them to the top)'


def test_the_function_level_check_sees_one():
    path = ROOT / 'models' / 'ecg_vit.py'
    assert _function_level_imports(path, 'import ecgvit.errors\n\ndef f():\n    from ecgvit import weights\n') == [
        'line 4']


def test_nothing_in_ecgvit_imports_benchmarks():
    bad = []
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ''] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f'{path.relative_to(ROOT)}:{node.lineno}' for n in names if n.split('.')[0] == 'benchmarks']
    assert not bad, f'benchmarks/ sits on top of ecgvit and is imported by nothing in it: {bad}'
