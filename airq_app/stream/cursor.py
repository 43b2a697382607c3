"""Where each owned partition resumes: the next offset to process, and when it was last sought.

Each partition is processed strictly in offset order, from just after its durable output, whatever Faust
redelivers or skips. One `PartitionCursor` per worker, opened and closed with the partitions it owns.
"""

from __future__ import annotations

import time


class PartitionCursor:
    def __init__(self, min_seek_interval_s: float = 2.0) -> None:
        self.min_seek_interval_s = min_seek_interval_s
        self._next: dict[int, int] = {}
        self._last_seek: dict[int, float] = {}

    def open(self, partition: int, offset: int) -> None:
        self._next[partition] = offset

    def close(self, partition: int) -> None:
        self._next.pop(partition, None)
        self._last_seek.pop(partition, None)

    def partitions(self) -> list[int]:
        return sorted(self._next)

    def owns(self, partition: int) -> bool:
        return partition in self._next

    def next(self, partition: int) -> int | None:
        return self._next.get(partition)

    def advance(self, partition: int, offset: int) -> None:
        """`offset` is dealt with: the next one is due."""
        self._next[partition] = offset + 1

    def retry(self, partition: int, offset: int) -> None:
        """`offset` was taken but not dealt with: it is due again."""
        if self._next.get(partition) == offset + 1:
            self._next[partition] = offset

    def skip_failed(self, partition: int, offset: int) -> None:
        """`offset` failed and was dead-lettered: it is dealt with."""
        if self._next.get(partition) == offset:
            self._next[partition] = offset + 1

    def may_seek(self, partition: int, force: bool = False) -> bool:
        """True when a seek back is allowed now (at most one per `min_seek_interval_s` unless forced)."""
        now = time.monotonic()
        if not force and now - self._last_seek.get(partition, 0.0) < self.min_seek_interval_s:
            return False
        self._last_seek[partition] = now
        return True
