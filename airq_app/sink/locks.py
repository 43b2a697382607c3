"""Which worker owns a partition's output: an exclusive `flock` on `_state/partition-NNNNN.lock`.

Two workers sharing the output directory never write the same partition at once, and the kernel frees the lock
when its holder dies, even by SIGKILL. A worker taking a partition over tries the lock every `LOCK_POLL_S` for as
long as another worker holds it; `waiting_for` says which partitions it waits for and why (the sink adds those
whose output it cannot read yet), so that the worker can report itself not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from airq_app.sink.files import storage_reason
from airq_app.sink.recovery import recover_partition

log = logging.getLogger("airq.sink")

LOCK_POLL_S = 0.2  # between tries of a partition lock another worker holds


class PartitionLocks:
    """The partition locks under `state_dir`, and the partitions this worker waits for."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.waiting_for: dict[int, str] = {}

    def note_wait(self, partition: int, reason: str, then: str) -> None:
        """Record why `partition` is waited for; logged (with what happens `then`) when the reason changes."""
        if self.waiting_for.get(partition) != reason:
            log.warning("airq: partition %d: %s; %s", partition, reason, then)
        self.waiting_for[partition] = reason

    async def take(self, partition: int, wait_s: float | None, given_up: Callable[[], bool]) -> int | None:
        """The locked descriptor of the partition's lock file; None if the partition is given up meanwhile
        (`given_up()`); TimeoutError after `wait_s` (None: no deadline)."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        path = self.state_dir / f"partition-{partition:05d}.lock"
        started = time.monotonic()
        fd: int | None = None
        try:
            while True:
                try:
                    if fd is None:
                        self.state_dir.mkdir(parents=True, exist_ok=True)
                        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if partition in self.waiting_for:
                        log.info(
                            "airq: partition %d output taken over after %.1f s", partition, time.monotonic() - started
                        )
                    return fd
                except BlockingIOError:
                    reason = "output still held by another worker"
                except OSError as exc:
                    reason = f"cannot open its lock file: {storage_reason(exc)}"
                self.note_wait(partition, reason, "waiting")
                if given_up():
                    if fd is not None:
                        os.close(fd)
                    return None
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"partition {partition} output lock not released in {wait_s:.0f} s")
                await asyncio.sleep(LOCK_POLL_S)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise


def unlock(fd: int) -> None:
    """Let go of a partition lock taken by `PartitionLocks.take`."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


def peek_finished(output_dir: Path, state_dir: Path, partition: int) -> int:
    """The finished offset read without owning the partition (nothing deleted); -1 if unreadable."""
    try:
        return recover_partition(output_dir, state_dir, partition, delete_unfinished=False)[0]
    except OSError:
        return -1
