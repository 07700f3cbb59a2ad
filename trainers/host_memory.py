"""Keep freed host memory for reuse while training on the CPU.

glibc's malloc serves every block over 128 KiB from a fresh `mmap` and hands it back to the OS
when it is freed, so a CPU training step, which allocates and frees the same activation
buffers every step, pays a page fault for every 4 KiB it touches, a large share of a fused
step's time (docs/performance.md). PyTorch's CPU tuning guide swaps in jemalloc or tcmalloc for
this; here glibc's own thresholds are raised, from inside the process, so nothing has to be
preloaded. The cost: memory freed after training stays with the process (malloc reuses it).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling for it: larger blocks still come from mmap
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: about 2 GiB of free heap top kept
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
log = logging.getLogger(__name__)
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once; return whether they are
    raised. Left alone where the C library is not glibc, or where the user tuned malloc through
    its environment variables themselves."""
    global _applied
    if _applied is None:
        _applied = _raise_thresholds()
    return _applied


def _raise_thresholds() -> bool:
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: their malloc has other knobs
        return False
    done = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("glibc malloc keeps freed blocks up to %d bytes for reuse: %s", MMAP_THRESHOLD, done)
    return done
