"""Process-wide malloc tuning for long CPU dreams (opt-in; the CLI turns it on).

PyTorch has no caching allocator on the CPU: every gradient step allocates its
activations afresh (at 720p, blocks of tens to hundreds of MB), and glibc
serves blocks above its mmap threshold (at most 32 MB) with ``mmap``, so each
step the kernel zero-fills the pages on first touch and unmaps them again. On
this project's 2-core test machine that was 0.13 s of system time per
EfficientNet-Lite0 720p step (about 15% of it; benchmarks/RESULTS.md).

:func:`keep_freed_memory` tells glibc to serve large blocks from the heap and
not to give freed heap memory back, so the next step reuses the same pages.
The process then keeps its peak memory until it exits, which suits a CLI run
of small images and not a shared host process such as ComfyUI, so nothing calls
it implicitly. It does not suit large (tiled) images either: their full-size
buffers are few and slow to fill, and heap fragments between them raise the peak.

:func:`release_freed_memory` is the opposite, for one moment: it hands the
freed heap pages back to the system. The dream loop calls it after the tiles of
a large image's gradient, whose activations (about 1 GB for a 1024 px tile)
would otherwise stay in the process while the full-size step buffers are made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)

# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.lru_cache(maxsize=1)
def _libc() -> "ctypes.CDLL | None":
    """glibc, loaded once (finding it can spawn a process), or ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


_STATE = {"kept": False}
#: glibc's default ``M_MMAP_MAX`` (blocks above the mmap threshold are mapped, and unmapped when freed).
_DEFAULT_MMAP_MAX = 65536


@contextmanager
def tiles_on_the_heap() -> Iterator[None]:
    """Serve every block from the heap inside the block, then hand the freed heap back to the system.

    For the tiles of a large image's gradient on the CPU: each tile's activations
    (about 1 GB at 1024 px, some blocks of 100 MB) are freed and made again by the
    next tile. From the heap, the next tile reuses the same pages; mapped, every
    tile would pay page faults for all of them again. On leaving, the heap is
    trimmed (:func:`release_freed_memory`), so the full-size buffers of the step
    that follows do not come on top of the tiles' memory, and glibc's default
    (large blocks mapped) is back, unless :func:`keep_freed_memory` had been called.
    """
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        yield
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(_M_MMAP_MAX, 0)
    try:
        yield
    finally:
        mallopt(_M_MMAP_MAX, 0 if _STATE["kept"] else _DEFAULT_MMAP_MAX)
        release_freed_memory()


def release_freed_memory() -> bool:
    """Give freed heap memory back to the system now (glibc ``malloc_trim(0)``; Linux/glibc only).

    Returns:
        ``True`` when glibc released memory, ``False`` when there was none or no glibc.
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


def keep_freed_memory() -> bool:
    """Make glibc malloc reuse freed large blocks instead of unmapping them (Linux/glibc only).

    Call once, early, in a process that dreams for a long time. Later
    allocations come from the heap (``M_MMAP_MAX = 0``) and the heap is never
    trimmed (``M_TRIM_THRESHOLD`` = 2 GiB - 1), so steps stop paying page faults
    for their activations.

    Returns:
        ``True`` when applied, ``False`` where there is no glibc (macOS, Windows, musl).
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _STATE["kept"] = ok
    log.debug("glibc malloc: large blocks from the heap, no trimming: %s", ok)
    return ok
