"""Bring a newly owned partition's tables up to its changelogs' end before the stream uses them.

A paused previous owner (longer than the session timeout) still holds the partition's output lock and, on waking,
delivers the state behind its open files before letting the lock go; so once the new owner has the lock, this reads
the changelog from Faust's persisted offset to its end and writes it to RocksDB with that offset, as Faust's recovery
does. Usually there is nothing to read (one ListOffsets request).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from airq_app.kafka import faust_internals

log = logging.getLogger("airq.stream")

READ_TIMEOUT_S = 60.0  # at most, for one partition's changelog tail


class ChangelogCatchUp:
    """One consumer (no group) per worker, started when first needed, reading changelog tails."""

    def __init__(self, tables: list[Any], bootstrap: list[str], client_kwargs: dict[str, Any]) -> None:
        self.tables = tables
        self.bootstrap = bootstrap
        self.client_kwargs = client_kwargs
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self.applied = 0  # changelog records applied, in all

    async def apply(self, partition: int) -> int:
        """Write to the partition's stores what their changelogs hold beyond them; the number of records."""
        async with self._lock:
            applied = 0
            for table in self.tables:
                persisted = faust_internals.persisted_offset(table, partition)
                if persisted is None:
                    continue  # not a RocksDB store (unit tests), or not open here
                applied += await asyncio.wait_for(self._apply(table, partition, persisted), READ_TIMEOUT_S)
            self.applied += applied
            return applied

    async def _apply(self, table: Any, partition: int, persisted: int) -> int:
        consumer = await self._started()
        tp = TopicPartition(table.changelog_topic_name, partition)
        end = (await consumer.end_offsets([tp]))[tp]
        if end <= persisted + 1:
            return 0
        consumer.assign([tp])
        consumer.seek(tp, persisted + 1)
        batch = faust_internals.StoreBatch(table, partition)
        last = persisted
        while last + 1 < end:
            records = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
            for record in records:
                if record.key is not None:
                    batch.add(record.key.decode("utf-8", "replace"), record.key, record.value)
                last = record.offset
            if not records and await consumer.position(tp) >= end:
                break  # the rest were transaction markers or compacted away
        if batch.size and not batch.commit(last):
            return 0  # revoked meanwhile: the next owner catches up itself
        log.warning(
            "airq: %s[%d]: %d update(s) reached the changelog after it was recovered (the previous owner finished "
            "its files late); applied up to offset %d",
            tp.topic,
            partition,
            batch.size,
            last,
        )
        return batch.size

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                isolation_level="read_committed",
                **self.client_kwargs,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
