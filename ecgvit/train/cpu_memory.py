"""Let glibc recycle freed CPU tensors instead of page-faulting fresh memory for every large activation.

glibc's ``malloc`` serves a request above its mmap threshold (which adapts up to 32 MiB) with freshly mapped pages and
unmaps them again on ``free``. Seed-size activations are larger than that: one MAE-MoCo query pass at batch 64 holds
``64 x 145 x 1536`` floats (57 MB) per qkv projection. Every training step therefore maps, zero-fills and unmaps
gigabytes, one 4 KiB page fault at a time: 2.9 million minor page faults in four MAE-MoCo steps, about a sixth of a
6-s step on the 2-core Xeon of ``benchmarks/README.md`` (5.4 s instead of 6.3 s with :func:`reuse_freed_memory`,
0.9 million page faults).

:func:`reuse_freed_memory` turns mmap allocation off (``M_MMAP_MAX = 0``) and raises the trim threshold
(``M_TRIM_THRESHOLD``), so freed blocks stay in the heap and the next step reuses them. The cost is that memory is not
handed back to the system while the process lives (the peak itself barely moves: ``benchmarks/run_all.py`` measures
it). It changes the
whole process for good, so :func:`~ecgvit.train.train` calls it only on request
(``TrainConfig(reuse_cpu_memory=True)``, which ``ecgvit pretrain`` sets) and only for CPU runs. Other C libraries (musl,
macOS, Windows) are left as they are.
"""
import ctypes
import ctypes.util
import logging
import platform

__all__ = ['reuse_freed_memory']

_logger = logging.getLogger(__name__)

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2 ** 30  # an int: mallopt takes one; 1 GiB of free heap top before any is given back

_applied = False


def reuse_freed_memory() -> bool:
    """Keep freed memory in glibc's heap for reuse (see the module doc). Idempotent.

    Returns:
        True when the settings are in effect (Linux with glibc), False where nothing was changed.
    """
    global _applied
    if _applied:
        return True
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        # Trim threshold first: if mmap allocation were turned off alone, freed heap tops would still be returned.
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and libc.mallopt(_M_MMAP_MAX, 0) == 1
    except (OSError, AttributeError) as e:  # no loadable libc or no mallopt: run with the defaults
        _logger.debug('mallopt unavailable (%s); leaving the allocator as it is', e)
        return False
    _applied = ok
    if ok:
        _logger.debug('glibc malloc: mmap allocation off, trim threshold %d bytes (freed tensors are reused)',
                      _TRIM_THRESHOLD)
    else:
        _logger.warning('glibc refused a mallopt setting; large tensors may still be page-faulted every step')
    return ok
