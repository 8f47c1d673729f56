"""Shared pytest fixtures."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one torch thread, restoring the count afterwards.

    Tiny models gain nothing from a second thread, and on a busy 2-core machine OpenMP spin-waiting made their
    forwards up to ~40x slower. One thread also fixes the reduction order, so repeated runs are bit-identical.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope='session')
def _private_ecgvit_cache(tmp_path_factory):
    """Per-machine decisions (amp='auto') go to a session folder, not the user's ~/.cache/ecgvit."""
    import os

    old = os.environ.get('ECGVIT_CACHE_DIR')
    os.environ['ECGVIT_CACHE_DIR'] = str(tmp_path_factory.mktemp('ecgvit-cache'))
    yield
    if old is None:
        os.environ.pop('ECGVIT_CACHE_DIR', None)
    else:
        os.environ['ECGVIT_CACHE_DIR'] = old


@pytest.fixture(scope='module')
def source_run(tmp_path_factory):
    """A finished one-epoch MAE run of ecg_vit_tiny (its encoder/ folder holds the heads): the weights continued
    pretraining starts from. Returns (root, run folder); root/data is its cache."""
    from continued_runs import COMMON

    from ecgvit.cli import main

    root = tmp_path_factory.mktemp('continued')
    threads = torch.get_num_threads()
    rc = main(['pretrain', '--method', 'mae', '--model', 'ecg_vit_tiny', *COMMON, '--cache-dir', str(root / 'data'),
               '--epochs', '1', '--output', str(root / 'source')])
    torch.set_num_threads(threads)
    assert rc == 0
    return root, root / 'source'
