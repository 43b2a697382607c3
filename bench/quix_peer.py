"""The bench's peer: airq's job written in Quix Streams, the stream processor a user would weigh airq against.

It is written as a user of Quix Streams would write it, with its defaults: a confluent-kafka consumer, the
sensor's state in Quix's RocksDB store (with its own changelog topic), a `BatchingSink` appending JSON Lines per
partition, at-least-once, a checkpoint every 5 s. Per message it calls airq's own `parse_message` and
`airq_app.domain.decide.decide` (per measurement), exactly as the hand-written baseline does, so that only the
framework differs.

State in Quix is scoped by the message key, which is the location; a sensor belongs to one location, so the
sensor's history is kept under the sensor id inside its location's scope, without a repartition.

`compare_outputs` checks the peer's files against the baseline's, record by record.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from quixstreams import Application, State, message_context
from quixstreams.sinks import BatchingSink, SinkBatch

from airq_app.domain import dedup
from airq_app.domain.decide import decide
from airq_app.domain.filters import FilterConfig
from airq_app.domain.record import OutputRecord
from airq_app.domain.timeutil import utc_seconds
from bench.job import RETENTION_S, measurements_of

CONFIG = FilterConfig(max_age_hours=8760)
VOLATILE = ("processed_at",)  # fields that differ between two correct runs


def handle(
    value: bytes, state: State, source: dict[str, Any], cfg: FilterConfig = CONFIG, now: datetime | None = None
) -> list[OutputRecord]:
    """The records to write for one raw message (a measurement or a location's list of them), skipping invalid,
    duplicate and filtered ones; updates each sensor's state (its main entry and the bucket of the measurement's
    hour, `airq_app.domain.dedup`) as `airq_app.domain.decide.decide_in` does."""
    when = now or datetime.now(UTC)
    out: list[OutputRecord] = []
    for m in measurements_of(value):
        sensor = m["sensor_id"]
        bucket = state.get(dedup.bucket_key(sensor, dedup.hour_of(utc_seconds(m["datetime_utc"]))))
        d = decide(m, source, state.get(str(sensor)), cfg, RETENTION_S, when, bucket)
        if d.outcome != "write":
            continue
        for key, new in d.writes.items():
            if new is None:
                state.delete(key)
            else:
                state.set(key, new)
        assert d.record is not None
        out.append(d.record)
    return out


def process(value: bytes, state: State) -> list[OutputRecord]:
    """`handle` as a stateful Quix function: the source position comes from Quix's message context."""
    ctx = message_context()
    return handle(value, state, {"topic": ctx.topic, "partition": ctx.partition, "offset": ctx.offset})


class JsonLinesSink(BatchingSink):
    """Appends each checkpoint's records to `part-NNNNN.inprogress` per partition; `close` finishes the files."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = out
        self.files: dict[int, BinaryIO] = {}
        self.written = 0

    def write(self, batch: SinkBatch) -> None:
        f = self.files.get(batch.partition)
        if f is None:
            f = self.files[batch.partition] = open(self.out / f"part-{batch.partition:05d}.inprogress", "ab")
        f.write(b"".join(orjson.dumps(item.value) + b"\n" for item in batch))
        f.flush()
        self.written += batch.size

    def close(self) -> None:
        for partition, f in self.files.items():
            os.fsync(f.fileno())
            f.close()
            os.rename(self.out / f"part-{partition:05d}.inprogress", self.out / f"part-{partition:05d}.jsonl")
        self.files.clear()


def build(bootstrap: str, topic: str, out: Path, group: str) -> tuple[Application, JsonLinesSink]:
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=out / "state",
        loglevel="WARNING",
    )
    sdf = app.dataframe(app.topic(topic, value_deserializer="bytes"))
    sdf = sdf.apply(process, stateful=True, expand=True)
    sink = JsonLinesSink(out)
    sdf.sink(sink)
    return app, sink


def run(bootstrap: str, topic: str, out: Path, distinct: int, group: str) -> dict[str, Any]:
    """Consume `topic` as consumer group `group` until `distinct` records are written, then finish the files."""
    started = time.perf_counter()
    app, sink = build(bootstrap, topic, out, group)
    app.run(count=distinct, collect=False)
    sink.close()
    return {"elapsed_s": time.perf_counter() - started, "written": sink.written}


def run_process(bootstrap: str, topic: str, out: str, distinct: int, group: str, result: Any) -> None:
    """Entry point of the spawned interpreter."""
    result.update(run(bootstrap, topic, Path(out), distinct, group))


def _records(path: Path) -> Any:
    with path.open("rb") as f:
        for line in f:
            record = orjson.loads(line)
            for name in VOLATILE:
                record.pop(name, None)
            yield record


def compare_outputs(expected: Path, actual: Path) -> int:
    """Check that `actual` holds the same finished files as `expected`, record for record in the same order
    (fields in `VOLATILE` aside); returns how many records were compared. Raises AssertionError on the first
    difference, naming the file, the line and the record's sensor and time."""
    names = sorted(p.name for p in expected.glob("*.jsonl"))
    got = sorted(p.name for p in actual.glob("*.jsonl"))
    assert names == got, f"finished files differ: expected {names}, got {got}"
    compared = 0
    for name in names:
        a, b = _records(expected / name), _records(actual / name)
        line = 0
        while True:
            line += 1
            x, y = next(a, None), next(b, None)
            if x is None and y is None:
                break
            assert x is not None, f"{name}:{line}: extra record {_ident(y)}"
            assert y is not None, f"{name}:{line}: missing record {_ident(x)}"
            if x != y:
                fields = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
                raise AssertionError(f"{name}:{line}: record {_ident(x)} differs in {fields} (got {_ident(y)})")
            compared += 1
    return compared


def _ident(record: dict[str, Any] | None) -> str:
    if record is None:
        return "-"
    return f"sensor {record.get('sensor_id')} at {record.get('datetime_utc')}"
