"""Process-wide malloc tuning for long CPU dreams (opt-in; the CLI turns it on).

PyTorch has no caching allocator on the CPU: every gradient step allocates its
activations afresh (at 720p, blocks of tens to hundreds of MB), and glibc
serves blocks above its mmap threshold (at most 32 MB) with ``mmap``, so each
step the kernel zero-fills the pages on first touch and unmaps them again. On
this project's 2-core test machine that was 0.13 s of system time per
EfficientNet-Lite0 720p step (about 15% of it; benchmarks/RESULTS.md).

:func:`keep_freed_memory` tells glibc to serve large blocks from the heap and
not to give freed heap memory back, so the next step reuses the same pages.
The process then keeps its peak memory until it exits (the peak itself does
not change), which suits a CLI run and not a shared host process such as
ComfyUI, so nothing calls it implicitly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc malloc reuse freed large blocks instead of unmapping them (Linux/glibc only).

    Call once, early, in a process that dreams for a long time. Later
    allocations come from the heap (``M_MMAP_MAX = 0``) and the heap is never
    trimmed (``M_TRIM_THRESHOLD`` = 2 GiB - 1), so steps stop paying page faults
    for their activations.

    Returns:
        ``True`` when applied, ``False`` where there is no glibc (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    log.debug("glibc malloc: large blocks from the heap, no trimming: %s", ok)
    return ok
