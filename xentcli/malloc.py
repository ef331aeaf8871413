"""Keep freed block-sized buffers in the process's heap while streaming (glibc only).

A stream allocates and frees arrays of a few megabytes for every block of
rows. glibc hands allocations above its mmap threshold (128 KiB to 32 MiB,
adjusted as it goes) straight to the kernel and returns them on free, so
every block pays the page faults of fresh memory again: a third to a half of
a streamed run's time on narrow tables, spent in the kernel. Raising the
threshold above a block's size and keeping up to a few blocks' worth of
freed memory in the heap (``M_TRIM_THRESHOLD``) makes the next block reuse
pages already mapped; the peak memory is unchanged (the same blocks are
live at once). Elsewhere (macOS, Windows, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 16 << 20  # larger than any per-block array (blocks hold about 2**19 values)
TRIM_THRESHOLD = 32 << 20

_done = False


def reuse_block_memory() -> bool:
    """Tune glibc's allocator for block-by-block streaming; ``True`` if it was done (once per process)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        # The process's own symbols hold libc's (no search: find_library runs ldconfig, a process of its own)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        try:
            mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
        except (OSError, AttributeError):
            return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _done = ok
    return ok
