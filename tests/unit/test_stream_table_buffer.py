"""Table writes held in memory and delivered together: changelog batches first, then one RocksDB write per partition.

The store is Faust's own RocksDB store (rocksdict) in a temporary directory; the producer is aiokafka's record batch
builder behind a stand-in that numbers the records as a partition leader would, and fails when told to.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP

from airq_app.kafka import faust_internals
from airq_app.stream.changelog import ChangelogNotDelivered
from airq_app.stream.table_buffer import TableBuffer

pytestmark = pytest.mark.unit


class Producer:
    """aiokafka's `create_batch` / `send_batch`: batches of at most `batch_size` bytes, offsets per partition."""

    def __init__(self, batch_size: int = 16384) -> None:
        self.batch_size = batch_size
        self.next_offset: dict[tuple[str, int], int] = defaultdict(int)
        self.records: list[tuple[str, int, int, bytes, bytes | None]] = []  # topic, partition, offset, key, value
        self.batches = 0
        self.fail: Exception | None = None
        self.hold: asyncio.Event | None = None  # deliveries wait for it

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.batches += 1

        async def complete() -> None:
            if self.hold is not None:
                await self.hold.wait()
            if self.fail is not None:
                fut.set_exception(self.fail)
                return
            base = self.next_offset[(topic, partition)]
            parsed = DefaultRecordBatch(bytearray(batch._build()))
            for i, record in enumerate(parsed):
                self.records.append((topic, partition, base + i, record.key, record.value))
            self.next_offset[(topic, partition)] = base + batch.record_count()
            fut.set_result(SimpleNamespace(offset=base))

        asyncio.ensure_future(complete())
        return fut


def rocksdb_table(tmp_path: Path, partitions: int = 2) -> Any:
    app = faust.App("tb", store=faust_internals.register_bounded_rocksdb(), datadir=str(tmp_path))
    table = app.Table("sensor_history", key_type=str, value_type=bytes, partitions=partitions)
    assert isinstance(table.data, faust_rocksdb.Store)
    for p in range(partitions):
        table.data._db_for_partition(p)  # opened, as on assignment
    return table


def test_reads_see_pending_values_and_deletes_of_absent_keys_send_nothing(tmp_path: Path) -> None:
    table = rocksdb_table(tmp_path)
    producer = Producer()
    buf = TableBuffer(table, lambda: producer)
    buf.put(0, "1", {"newest": 10})
    buf.delete(0, "1/2")  # never written: no tombstone
    assert buf.get(0, "1") == {"newest": 10} and buf.get(1, "1") is None and buf.get(0, "1/2") is None
    assert buf.size() == 1
    assert asyncio.run(buf.deliver()) == 1
    buf.delete(0, "1")
    assert buf.get(0, "1") is None and buf.size() == 1
    asyncio.run(buf.deliver())
    assert [(r[2], r[3], r[4]) for r in producer.records] == [(0, b'"1"', b'{"newest":10}'), (1, b'"1"', None)]


def test_delivery_writes_the_changelog_then_rocksdb_with_the_offset_faust_recovers_from(tmp_path: Path) -> None:
    table = rocksdb_table(tmp_path)
    producer = Producer(batch_size=256)  # a few records a batch: the partition's writes span several batches
    buf = TableBuffer(table, lambda: producer, keep_deliveries=1)
    for i in range(30):
        buf.put(i % 2, f"s{i}", {"i": i, "pad": "x" * 40})
    buf.put(0, "s0", {"i": 100})  # rewritten before delivery: sent once, with the newer value
    assert asyncio.run(buf.deliver()) == 30
    assert producer.batches > 2 and len(producer.records) == 30
    sent = {(r[1], r[3]): r[4] for r in producer.records}
    assert sent[(0, b'"s0"')] == b'{"i":100}'
    store = table.data
    for partition in (0, 1):
        # The keys and values are those Faust's own writes would store and send; the persisted offset is the
        # partition's last changelog offset, so recovery resumes right after it.
        tp = TP(table.changelog_topic_name, partition)
        assert store.persisted_offset(tp) == producer.next_offset[(tp.topic, partition)] - 1 == 14
        db = store._db_for_partition(partition)
        for (p, key), value in sent.items():
            if p == partition:
                assert db.get(key) == value
    assert store._encode_key("s0") == b'"s0"'
    # Delivered values are served from memory (those of the last `keep_deliveries` deliveries), the rest from
    # RocksDB, the same either way.
    assert buf.get(0, "s0") == {"i": 100} and buf.get(1, "s1") == {"i": 1, "pad": "x" * 40}
    buf.put(0, "s0", {"i": 101})
    asyncio.run(buf.deliver())
    assert len(buf.recent) == 1 and list(buf.recent[0][0]) == ["s0"] and buf.get(1, "s1") == {"i": 1, "pad": "x" * 40}
    assert buf.size() == 0 and buf.delivered == 31


async def held_failing_delivery(
    buf: TableBuffer, producer: Producer, error: Exception
) -> tuple[asyncio.Future[int], asyncio.Event]:
    """A delivery under way that will fail with `error` once the returned event (`producer.hold`) is set."""
    producer.fail = error
    producer.hold = hold = asyncio.Event()
    delivery = asyncio.ensure_future(buf.deliver())
    await asyncio.sleep(0.01)
    return delivery, hold


def test_a_failed_delivery_keeps_every_value_pending_and_newer_writes_win(tmp_path: Path) -> None:
    table = rocksdb_table(tmp_path)
    producer = Producer()
    buf = TableBuffer(table, lambda: producer)

    async def go() -> None:
        buf.put(0, "a", {"v": 1})
        buf.put(0, "b", {"v": 1})
        delivery, hold = await held_failing_delivery(buf, producer, RuntimeError("MessageSizeTooLargeError"))
        buf.put(0, "b", {"v": 2})  # written while the first delivery is under way
        assert buf.get(0, "a") == {"v": 1} and buf.get(0, "b") == {"v": 2}
        hold.set()
        with pytest.raises(ChangelogNotDelivered, match="2 table update"):
            await delivery
        assert table.data._db_for_partition(0).get(b'"a"') is None  # never in RocksDB before Kafka has it
        assert buf.get(0, "a") == {"v": 1} and buf.get(0, "b") == {"v": 2} and buf.size() == 2
        producer.fail = producer.hold = None
        assert await buf.deliver() == 2
        assert table.data._db_for_partition(0).get(b'"b"') == b'{"v":2}'

    asyncio.run(go())


def test_a_revoked_partition_is_forgotten_and_not_written_locally(tmp_path: Path) -> None:
    table = rocksdb_table(tmp_path)
    producer = Producer()
    buf = TableBuffer(table, lambda: producer)
    buf.put(0, "a", {"v": 1})
    buf.put(1, "b", {"v": 1})
    asyncio.run(buf.deliver())
    assert buf.get(0, "a") == {"v": 1}
    buf.put(0, "c", {"v": 1})
    assert buf.discard(0) == 1 and buf.size() == 0
    assert all(0 not in delivered for delivered in buf.recent)
    # Its database closed (the partition moved away): the changelog still gets what was pending, RocksDB does not.
    buf.put(1, "d", {"v": 1})
    table.data._dbs.pop(1)
    asyncio.run(buf.deliver())
    assert producer.records[-1][3] == b'"d"'
    assert orjson.loads(table.data._db_for_partition(0).get(b'"a"')) == {"v": 1}


def test_a_partition_revoked_during_a_failed_delivery_is_not_kept_pending(tmp_path: Path) -> None:
    table = rocksdb_table(tmp_path)
    producer = Producer()
    buf = TableBuffer(table, lambda: producer)

    async def go() -> None:
        buf.put(0, "a", {"v": 1})
        buf.put(1, "b", {"v": 1})
        delivery, hold = await held_failing_delivery(buf, producer, RuntimeError("broker gone"))
        buf.discard(0)  # revoked meanwhile: another worker owns its state now
        assert buf.get(0, "a") is None  # what was being delivered is not read again either
        hold.set()
        with pytest.raises(ChangelogNotDelivered):
            await delivery
        assert buf.get(1, "b") == {"v": 1} and buf.size() == 1 and not buf.pending.get(0)

    asyncio.run(go())


def test_a_value_larger_than_a_batch_goes_in_a_batch_of_its_own(tmp_path: Path) -> None:
    table = rocksdb_table(tmp_path)
    producer = Producer(batch_size=256)
    buf = TableBuffer(table, lambda: producer)
    buf.put(0, "small", {"v": 1})
    buf.put(0, "big", {"v": "x" * 2000})  # a busy sensor's hour bucket can be far larger than a batch
    buf.put(0, "after", {"v": 2})
    assert asyncio.run(buf.deliver()) == 3
    assert [r[3] for r in producer.records] == [b'"small"', b'"big"', b'"after"'] and producer.batches == 3
    assert len(table.data._db_for_partition(0).get(b'"big"')) > 2000
