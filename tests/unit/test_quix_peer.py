"""The Quix Streams peer of `make bench` does the baseline's work per message, with its state in Quix's own RocksDB
store, and the bench's output check tells a difference apart from a correct run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from quixstreams.sinks import SinkBatch
from quixstreams.state.rocksdb import RocksDBStorePartition

from airq_app.domain import dedup
from airq_dev.harness import measurement
from bench import quix_peer
from bench.throughput import baseline_step, workload

pytestmark = pytest.mark.unit


def now() -> datetime:
    """The clock when a step runs (the workload's newest hour is the current one, so a clock taken at import time
    can be an hour behind it when the unit tests run late in the suite)."""
    return datetime.now(UTC)


def _without_volatile(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in orjson.loads(orjson.dumps(record)).items() if k not in quix_peer.VOLATILE}
        for record in records
    ]


class Store:
    """A Quix RocksDB store partition, used as the framework uses it: one transaction per checkpoint, the state
    scoped by the message key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partition = RocksDBStorePartition(str(path))
        self.tx = self.partition.begin()

    def state(self, key: bytes) -> Any:
        return self.tx.as_state(prefix=key)

    def checkpoint(self) -> None:
        self.tx.prepare()
        self.tx.flush()
        self.tx = self.partition.begin()

    def reopen(self) -> None:
        self.checkpoint()
        self.partition.close()
        self.partition = RocksDBStorePartition(str(self.path))
        self.tx = self.partition.begin()

    def close(self) -> None:
        self.partition.close()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "state")
    yield s
    s.close()


def test_peer_writes_record_for_record_what_the_baseline_writes(store: Store) -> None:
    rows, distinct = workload(1_500, 0.2, sensors=40)
    db: dict[bytes, bytes] = {}
    written = 0
    for offset, (key, value) in enumerate(rows):
        source = {"topic": "t", "partition": 3, "offset": offset}
        expected = baseline_step(db, value, source, quix_peer.CONFIG, now())
        got = quix_peer.handle(value, store.state(key), source, now=now())
        assert _without_volatile(got) == _without_volatile(expected), f"message {offset}"
        written += len(got)
        if offset % 97 == 96:
            store.checkpoint()
        if offset == 900:
            store.reopen()  # the state lives in RocksDB, not in the transaction
    assert written == distinct == 1_200
    assert len(rows) < 1_500 / 4  # a location's sensors share a message


def test_a_repeat_is_recognised_after_a_checkpoint_and_a_restart(store: Store) -> None:
    key, value = workload(1, 0.0)[0][0]
    first = quix_peer.handle(value, store.state(key), {"topic": "t", "partition": 0, "offset": 5}, now=now())
    assert len(first) == 1 and first[0]["source"]["offset"] == 5
    store.reopen()
    assert quix_peer.handle(value, store.state(key), {"topic": "t", "partition": 0, "offset": 6}, now=now()) == []
    # The accepted message itself, delivered again (at-least-once), is written again.
    again = quix_peer.handle(value, store.state(key), {"topic": "t", "partition": 0, "offset": 5}, now=now())
    assert _without_volatile(again) == _without_volatile(first)


def test_buckets_behind_the_retention_are_deleted_from_the_store(store: Store) -> None:
    first, later = datetime(2025, 1, 1, 5, tzinfo=UTC), datetime(2026, 1, 3, 5, tzinfo=UTC)  # a year and 2 days
    db: dict[bytes, bytes] = {}
    state = store.state(b"20")
    for offset, when in enumerate((first, later)):
        value = orjson.dumps(measurement(200, when.strftime("%Y-%m-%dT%H:%M:%SZ"), location_id=20))
        source = {"topic": "t", "partition": 0, "offset": offset}
        now = when + timedelta(minutes=30)
        expected = baseline_step(db, value, source, quix_peer.CONFIG, now)
        assert _without_volatile(quix_peer.handle(value, state, source, now=now)) == _without_volatile(expected)
    old_bucket = dedup.bucket_key(200, int(first.timestamp()) // 3600)
    new_bucket = dedup.bucket_key(200, int(later.timestamp()) // 3600)
    store.reopen()
    state = store.state(b"20")
    assert not state.exists(old_bucket) and old_bucket.encode() not in db
    assert state.exists(new_bucket) and state.get("200") == orjson.loads(db[b"200"])


def test_invalid_messages_are_skipped_without_state(store: Store) -> None:
    state = store.state(b"1")
    for bad in (b"", b"not json", b"[1, 2]", orjson.dumps({"sensor_id": 1})):
        assert quix_peer.handle(bad, state, {"topic": "t", "partition": 0, "offset": 0}, now=now()) == []
    store.reopen()
    assert not store.state(b"1").exists("1")
    # The same sensor, valid this time, is written: nothing of the invalid messages was kept for it.
    key, value = workload(1, 0.0)[0][0]
    (valid,) = orjson.loads(value)
    state = store.state(key)
    assert len(quix_peer.handle(value, state, {"topic": "t", "partition": 0, "offset": 1}, now=now())) == 1
    assert state.exists(str(valid["sensor_id"]))


def _batch(partition: int, records: list[dict[str, Any]], first_offset: int = 0) -> SinkBatch:
    batch = SinkBatch(topic="t", partition=partition)
    for i, r in enumerate(records):
        batch.append(value=r, key=b"k", timestamp=0, headers=[], offset=first_offset + i)
    return batch


def test_sink_appends_batches_per_partition_and_finishes_files_on_close(tmp_path: Path) -> None:
    sink = quix_peer.JsonLinesSink(tmp_path)
    sink.write(_batch(0, [{"n": 1}, {"n": 2}]))
    sink.write(_batch(7, [{"n": 3}]))
    sink.write(_batch(0, [{"n": 4}], first_offset=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.inprogress", "part-00007.inprogress"]
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.jsonl", "part-00007.jsonl"]
    assert (tmp_path / "part-00000.jsonl").read_bytes() == b'{"n":1}\n{"n":2}\n{"n":4}\n'
    assert (tmp_path / "part-00007.jsonl").read_bytes() == b'{"n":3}\n'
    assert sink.written == 4


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def _records(n: int) -> list[dict[str, Any]]:
    return [
        {"sensor_id": 100 + i, "datetime_utc": f"2026-01-01T{i:02d}:00:00Z", "value": float(i), "processed_at": "x"}
        for i in range(n)
    ]


def test_compare_outputs_ignores_processing_time_only(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "part-00000.jsonl", _records(3))
    _write(a / "part-00001.jsonl", _records(2))
    _write(b / "part-00000.jsonl", [{**r, "processed_at": "later"} for r in _records(3)])
    _write(b / "part-00001.jsonl", _records(2))
    assert quix_peer.compare_outputs(a, b) == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rs: [rs[0], {**rs[1], "value": 9.5}, rs[2]], "part-00000.jsonl:2: record sensor 101 at"),
        (lambda rs: rs[:2], "part-00000.jsonl:3: missing record sensor 102"),
        (lambda rs: [*rs, rs[2]], "part-00000.jsonl:4: extra record sensor 102"),
        (lambda rs: [rs[1], rs[0], rs[2]], "part-00000.jsonl:1: record sensor 100"),
        (lambda rs: [{k: v for k, v in r.items() if k != "value"} for r in rs], "differs in ['value']"),
    ],
)
def test_compare_outputs_names_the_first_difference(tmp_path: Path, change: Any, message: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "part-00000.jsonl", _records(3))
    _write(b / "part-00000.jsonl", change(_records(3)))
    with pytest.raises(AssertionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        quix_peer.compare_outputs(a, b)


def test_compare_outputs_requires_the_same_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "part-00000.jsonl", _records(1))
    _write(a / "part-00002.jsonl", _records(1))
    _write(b / "part-00000.jsonl", _records(1))
    _write(b / "part-00002.inprogress", _records(1))
    with pytest.raises(AssertionError, match="finished files differ"):
        quix_peer.compare_outputs(a, b)
