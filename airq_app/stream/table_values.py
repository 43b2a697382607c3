"""JSON objects in Faust tables, and `latest_by_location` written once per burst (pure of app wiring).

Values are kept as the bytes orjson makes (the changelog holds the same JSON Faust's own json codec would
write); `read()` does one RocksDB lookup where `Table.get` does two (`in`, then the value).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from airq_app.kafka.faust_internals import send_changelog_for, store_get


def read(table: Any, key: str) -> dict[str, Any] | None:
    """The JSON object stored under `key`, or None."""
    raw = store_get(table, key)
    return orjson.loads(raw) if raw is not None else None


def write(table: Any, key: str, value: dict[str, Any]) -> None:
    """Store `value` under `key` (and send it to the changelog); only while processing a message."""
    table[key] = orjson.dumps(value)


class LocationSummaries:
    """`latest_by_location` with its writes coalesced: one table write per location and flush, not per record.

    A location's sensors report together, so most records replace a summary written moments before. Pending
    summaries are held per source partition and written when the partition is caught up (its burst is over)
    or every `max_delay_s`, always while one of that partition's messages is being processed. Reads see
    pending summaries first, then the last `recent_max` written (decoded, so that a location's next hour need
    not read and decode its summary again), then the table. A partition's entries are forgotten when it goes.
    """

    def __init__(self, table: Any, max_delay_s: float = 1.0, recent_max: int = 20_000) -> None:
        self.table = table
        self.max_delay_s = max_delay_s
        self.recent_max = recent_max
        self.pending: dict[int, dict[str, dict[str, Any]]] = {}
        self.recent: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()  # key -> (partition, summary)
        self._since: dict[int, float] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        for entries in self.pending.values():
            if key in entries:
                return entries[key]
        cached = self.recent.get(key)
        if cached is not None:
            return cached[1]
        return read(self.table, key)

    def put(self, partition: int, key: str, summary: dict[str, Any]) -> None:
        entries = self.pending.setdefault(partition, {})
        if not entries:
            self._since[partition] = time.monotonic()
        entries[key] = summary

    def due(self, partition: int, caught_up: Callable[[], bool]) -> bool:
        if not self.pending.get(partition):
            return False
        return time.monotonic() - self._since[partition] >= self.max_delay_s or caught_up()

    def flush(self, partition: int) -> None:
        """Write the partition's pending summaries; call while processing a message of that partition.

        A summary leaves `pending` only once written, so a failed write is tried again at the next flush.
        """
        entries = self.pending.get(partition, {})
        recent = self.recent
        while entries:
            key, summary = next(iter(entries.items()))
            write(self.table, key, summary)
            del entries[key]
            recent[key] = (partition, summary)
            recent.move_to_end(key)
        self.pending.pop(partition, None)
        while len(recent) > self.recent_max:
            recent.popitem(last=False)

    def hand_over(self, partition: int) -> int:
        """The partition is being revoked: send its pending summaries to the changelog, where its new owner
        recovers them, and forget them here. Returns how many were sent. (Dropping them would lose every location
        whose summary was not flushed yet until its next new hour.)"""
        entries = self.pending.pop(partition, {})
        self._since.pop(partition, None)
        self.recent = OrderedDict((k, v) for k, v in self.recent.items() if v[0] != partition)
        for key, summary in entries.items():
            send_changelog_for(self.table, partition, key, orjson.dumps(summary))
        return len(entries)

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        merged = {k: orjson.loads(v) for k, v in self.table.items()}
        for entries in self.pending.values():
            merged.update(entries)
        return list(merged.items())
