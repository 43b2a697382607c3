"""Freed memory goes back to the system: RSS falls after a burst of allocations is freed."""

from __future__ import annotations

import gc

import pytest

from airq_app import memory

pytestmark = pytest.mark.unit


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_release_returns_freed_heap_pages() -> None:
    if memory._libc is None:
        pytest.skip("not glibc")
    memory.release()
    before = rss_mb()
    # Many 2-KB objects (heap, not mmap) with a few survivors pinning the top of the heap, as in a worker.
    chunks = [bytes(2048) + str(i).encode() for i in range(100_000)]
    keep = chunks[::5000]
    del chunks
    gc.collect()
    grown = rss_mb()
    took = memory.release()
    after = rss_mb()
    assert grown - before > 100, (before, grown)
    assert after < grown - 100, f"RSS {grown:.0f} MB -> {after:.0f} MB after release"
    assert took < 1.0
    assert len(keep) == 20


def test_gc_is_tuned_and_start_up_objects_are_frozen() -> None:
    before = gc.get_threshold()
    try:
        memory.tune_gc()
        assert gc.get_threshold() == memory.GC_THRESHOLDS and memory.GC_THRESHOLDS[0] > before[0]
        memory.freeze()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
