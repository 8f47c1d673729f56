#!/usr/bin/env bash
# Run timm's own model test-suite (shipped in timm's sdist on PyPI) on ecgvit's registered models: the contract timm
# users rely on. Uses the sdist of the installed timm release so the tests match the code under test.
set -euo pipefail
ver=$(python -c "import timm; print(timm.__version__)")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip download -q --no-deps --no-binary :all: "timm==$ver" -d "$work"
tar xzf "$work/timm-$ver.tar.gz" -C "$work" "timm-$ver/tests"
pip install -q pytest-timeout
suite="$work/timm-$ver/tests/test_models.py"
# Importing ecgvit before collection registers our names; -k keeps the run to them.
python - "$suite" "$work/timm-$ver" <<'PY'
import sys

import pytest

import ecgvit

suite, root = sys.argv[1], sys.argv[2]
names = ecgvit.list_models()
print('ecgvit models under timm tests:', names)
args = ['-q', '-p', 'no:cacheprovider', '-c', '/dev/null', '--rootdir', root, suite, '-k', 'ecg_vit', '-W', 'ignore']
code = pytest.main(args)
sys.exit(int(code))
PY
