"""Speed, memory and release scripts (not part of the installed ``ecgvit`` package).

Each script runs on its own from the repository root (``python -m benchmarks.run_all`` or
``python benchmarks/run_all.py``); as a package they import each other, and tests import them, normally.
"""
