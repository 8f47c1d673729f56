"""Every ``>>>`` example in ecgvit's docstrings runs and prints what it says (those needing data or a network are
marked ``# doctest: +SKIP`` on each line)."""
import doctest
import importlib
import pkgutil

import pytest

import ecgvit

MODULES = sorted(m.name for m in pkgutil.walk_packages(ecgvit.__path__, 'ecgvit.'))


@pytest.mark.parametrize('name', MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False,
                             report=True)
    assert result.failed == 0, f'{result.failed} of {result.attempted} docstring example lines of {name} failed'
