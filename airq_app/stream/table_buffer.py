"""A table's writes held in memory and delivered together: the changelog in batches, then RocksDB in one write.

Why: Faust's `table[key] = value` writes RocksDB and sends one changelog message per write, a third of a worker's
time (docs/performance.md, step 1). Here a write is a dict assignment; `deliver()` (before any file is finished)
sends each changed key once in aiokafka record batches and, once Kafka has them, writes them to RocksDB with the
changelog offset in one atomic batch, as Faust's recovery expects; the table, changelog format, recovery and
standbys stay Faust's. Reads see undelivered values first; a value Kafka did not take stays for the next attempt.
`begin`/`commit`/`rollback` apply a message's writes together or not at all; nothing reaches a partition after
`discard`. Pending values are dicts (`airq_app.stream.table_values` has the bytes): neither writer nor readers
change them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from airq_app.kafka import faust_internals
from airq_app.stream.changelog import ChangelogNotDelivered

log = logging.getLogger("airq.stream")

#: How long `deliver` waits for Kafka before it gives up for now (the values stay pending; the sink retries).
DELIVERY_TIMEOUT_S = 15.0

_DELETED = object()


class TableBuffer:
    """Pending writes of one Faust table, per partition; `producer` returns the aiokafka producer to send with."""

    def __init__(self, table: Any, producer: Callable[[], Any], keep_deliveries: int = 3) -> None:
        self.table = table
        self.topic: str = table.changelog_topic_name
        self._producer = producer
        self.pending: dict[int, dict[str, Any]] = {}  # partition -> key -> value (or _DELETED)
        self.inflight: dict[int, dict[str, Any]] = {}  # being delivered
        # What the last `keep_deliveries` deliveries wrote, newest first, as it is in RocksDB: a sensor's next
        # measurement finds its state without a RocksDB lookup and a JSON decode. Each: partition -> key -> value.
        self.recent: deque[dict[int, dict[str, Any]]] = deque(maxlen=keep_deliveries)
        self._views: dict[int, list[dict[str, Any]]] = {}  # partition -> its layers (see `_view`)
        self._lock = asyncio.Lock()
        self._discarded: set[int] = set()  # partitions revoked while a delivery was under way
        self.staged: dict[str, Any] | None = None  # the current message's writes (`begin`), not yet pending
        self._staged_partition = -1
        self._staged_revoked = False  # its partition was discarded since `begin`
        self.delivered = 0  # keys delivered, in all

    # -- reads and writes (the stream, while it processes a message of `partition`) ----------------------------

    def get(self, partition: int, key: str) -> dict[str, Any] | None:
        staged = self.staged
        if staged is not None and partition == self._staged_partition:
            value = staged.get(key)
            if value is not None:
                return None if value is _DELETED else value
        for entries in self._views.get(partition) or self._view(partition):
            value = entries.get(key)
            if value is not None:
                return None if value is _DELETED else value
        raw = faust_internals.read_raw(self.table, partition, key, orjson.dumps(key))
        return orjson.loads(raw) if raw is not None else None

    def _view(self, partition: int) -> list[dict[str, Any]]:
        """The partition's layers, newest first: pending, being delivered, then the last deliveries."""
        pending = self.pending.get(partition)
        if pending is None:
            pending = self.pending[partition] = {}
        layers = [pending, self.inflight.get(partition), *(d.get(partition) for d in self.recent)]
        view = self._views[partition] = [entries for entries in layers if entries is not None]
        return view

    def put(self, partition: int, key: str, value: Any) -> None:
        staged = self.staged
        if staged is not None:
            if partition != self._staged_partition:
                raise ValueError(f"partition {partition} written while a message of {self._staged_partition} is staged")
            staged[key] = value
            return
        entries = self.pending.get(partition)
        if entries is None:
            entries = self.pending[partition] = {}
            self._views.pop(partition, None)
        entries[key] = value

    def delete(self, partition: int, key: str) -> None:
        """Delete `key` if it is there (a key never written sends no tombstone)."""
        if self.get(partition, key) is not None:
            self.put(partition, key, _DELETED)

    def begin(self, partition: int) -> None:
        """Stage the writes that follow (one message of `partition`) until `commit` or `rollback`."""
        self.staged, self._staged_partition, self._staged_revoked = {}, partition, False

    def commit(self) -> int:
        """Make the staged writes pending; dropped instead if their partition was discarded meanwhile. The number
        of keys made pending."""
        staged, partition, revoked = self.staged, self._staged_partition, self._staged_revoked
        self.rollback()
        if not staged or revoked:
            return 0
        entries = self.pending.get(partition)
        if entries is None:
            entries = self.pending[partition] = {}
            self._views.pop(partition, None)
        entries.update(staged)
        return len(staged)

    def rollback(self) -> None:
        """Forget the staged writes (nothing staged: nothing to do)."""
        self.staged, self._staged_partition, self._staged_revoked = None, -1, False

    def size(self) -> int:
        return sum(map(len, self.pending.values())) + sum(map(len, self.inflight.values()))

    def discard(self, partition: int) -> int:
        """Forget what the partition has pending and cached (it was revoked: its unacknowledged messages are
        processed again by its next owner, and its table may change elsewhere). Returns how many keys were dropped."""
        self._discarded.add(partition)
        if partition == self._staged_partition:
            self._staged_revoked = True
        self.inflight.pop(partition, None)  # not to be read again: the partition may come back changed
        self._views.pop(partition, None)
        for delivered in self.recent:
            delivered.pop(partition, None)
        return len(self.pending.pop(partition, {}))

    # -- delivery ----------------------------------------------------------------------------------------------

    async def deliver(self) -> int:
        """Send every pending write to the changelog, wait for Kafka, then write it to RocksDB; the number of keys.

        Raises `ChangelogNotDelivered` when Kafka did not take them all within `DELIVERY_TIMEOUT_S`; they stay
        pending (behind anything written meanwhile). RocksDB is written only for partitions whose database is still
        open here (a revoked partition's new owner recovers the values from the changelog).
        """
        async with self._lock:
            if not any(self.pending.values()):
                return 0
            taken, self.pending = self.pending, {}
            self.inflight = dict(taken)  # its own mapping: `discard` drops a partition from it mid-delivery
            self._views = {}
            self._discarded.clear()
            writes: dict[int, faust_internals.StoreBatch] = {}
            try:
                offsets = await self._send(taken, writes)
            except BaseException as exc:
                for partition, entries in taken.items():
                    if partition in self._discarded:
                        continue  # its next owner processes those messages again
                    entries.update(self.pending.get(partition, {}))  # written meanwhile: newer
                    self.pending[partition] = entries
                self.inflight = {}
                self._views = {}
                if isinstance(exc, TimeoutError):
                    exc = TimeoutError(f"Kafka did not acknowledge them within {DELIVERY_TIMEOUT_S:.0f} s")
                if isinstance(exc, Exception):
                    log.error("airq: %d table updates not delivered to %s: %r", self.size(), self.topic, exc)
                    raise ChangelogNotDelivered(
                        f"{self.size()} table update(s) not delivered to the changelog {self.topic}: "
                        f"{type(exc).__name__}: {exc}"[:300]
                    ) from exc
                raise
            count = 0
            for partition, store in writes.items():
                count += store.size
                if partition in self._discarded or not store.commit(offsets[partition]):
                    # Revoked: in the changelog, where its next owner recovers them.
                    taken.pop(partition, None)
            self.recent.appendleft(taken)
            self.inflight = {}
            self._views = {}
            self.delivered += count
            return count

    async def _send(
        self, taken: dict[int, dict[str, Any]], writes: dict[int, faust_internals.StoreBatch]
    ) -> dict[int, int]:
        """Encode each entry once, into changelog record batches (sent as they fill) and the partition's store batch
        (applied by the caller once Kafka has them all); the last changelog offset per partition."""
        producer = self._producer()
        dumps = orjson.dumps
        sent: list[tuple[int, int, Any]] = []  # (partition, records in the batch, its future)

        async def submit(partition: int, batch: Any) -> None:
            send = producer.send_batch(batch, self.topic, partition=partition)
            sent.append((partition, batch.record_count(), await asyncio.wait_for(send, DELIVERY_TIMEOUT_S)))

        for partition, entries in taken.items():
            if not entries:
                continue
            store = writes[partition] = faust_internals.StoreBatch(self.table, partition)
            batch = producer.create_batch()
            for key, value in entries.items():
                k = dumps(key)
                v = None if value is _DELETED else dumps(value)
                store.add(key, k, v)
                if batch.append(key=k, value=v, timestamp=None) is None:
                    await submit(partition, batch)
                    batch = producer.create_batch()
                    if batch.append(key=k, value=v, timestamp=None) is None:
                        raise ValueError(f"a table value of {len(v or b'')} bytes does not fit in a record batch")
            await submit(partition, batch)
        results = await asyncio.wait_for(asyncio.gather(*(fut for _p, _n, fut in sent)), DELIVERY_TIMEOUT_S)
        offsets: dict[int, int] = {}
        for (partition, n, _fut), meta in zip(sent, results, strict=True):
            offsets[partition] = max(offsets.get(partition, -1), meta.offset + n - 1)
        return offsets
