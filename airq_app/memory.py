"""Returning freed memory to the system (glibc malloc), and a garbage collector tuned for a worker.

glibc keeps the freed pages of its main heap, so a worker's RSS grows past what it holds; `release()` calls
`malloc_trim(0)` every `INTERVAL_S` (a no-op elsewhere, e.g. musl or macOS). A full collection walks every live
container; `tune_gc()` makes young collections rarer (reference counting frees most garbage) and `freeze()` moves
start-up objects out of the collector's way. Measurements: docs/performance.md, steps 4, 8 and 10.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time

INTERVAL_S = 10.0
GC_THRESHOLDS = (100_000, 20, 100)  # Python's defaults: (700, 10, 10)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def freeze() -> None:
    """Collect once, then leave every object alive now out of later collections (start-up's, mostly)."""
    gc.collect()
    gc.freeze()


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError, TypeError):
        return None


_libc = _glibc()


def release() -> float:
    """Give free heap pages back to the system; returns the seconds it took (0.0 where unsupported)."""
    if _libc is None:
        return 0.0
    started = time.perf_counter()
    _libc.malloc_trim(0)
    return time.perf_counter() - started
