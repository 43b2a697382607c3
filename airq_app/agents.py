"""The stream agent: wires the topic, the tables, the pure processing and the sink together.

Acknowledgement order (what makes the files exactly-once): the tables are updated while the event is
processed, the record goes to the sink, and the event is acknowledged only when its file is finished
(renamed and fsynced). Faust commits only acknowledged offsets, so a crash replays every message whose output
was not durable; `processing.decide` writes those again and drops real repeats.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from faust.exceptions import PartitionsMismatch
from faust.types import TP, EventT, StreamT

from airq_app import metrics
from airq_app.application import app, settings
from airq_app.processing import decide, filter_config, location_summary
from airq_app.sink import JsonLinesSink, SinkClosed
from airq_app.status import status
from airq_app.table_values import read, write
from airq_app.tables import latest_by_location, location_summaries, sensor_history
from airq_app.topics import MEASUREMENTS_TOPIC, dead_letter, measurements
from airq_app.validation import InvalidMessage, parse_measurement

log = logging.getLogger("airq.stream")

rules = filter_config(settings)
retention_s = settings.dedup_retention_hours * 3600


def _blocked(reason: str | None) -> None:
    status.sink_blocked = reason


def _finished(partition: int, records: int) -> None:
    status.inc("written", records)
    status.inc("files_finished")


_changelog_flush = asyncio.Lock()


async def flush_changelog() -> None:
    """Deliver every queued table update to Kafka (Faust's own flush may return with some still queued).

    One at a time: Faust's buffer flush waits for its sender message by message on one shared event, and
    concurrent flushes (the sink finishes partitions concurrently) kept resetting it for each other.
    """
    async with _changelog_flush:
        producer = app.producer
        while producer.buffer.size:
            await producer.buffer.flush()
        await producer.flush()


sink = JsonLinesSink(
    settings.output_dir,
    worker_id=f"w{settings.web_port}",
    max_bytes=settings.rotate_max_bytes,
    max_age_s=settings.rotate_max_age_s,
    on_blocked=_blocked,
    on_finished=_finished,
    before_finish=flush_changelog,
)


# Per owned partition, the offset to process next: each partition is processed strictly in offset order,
# from just after its durable output, whatever Faust redelivers or skips.
next_offset: dict[int, int] = {}
_last_seek: dict[int, float] = {}


@app.agent(measurements)
async def process(stream: StreamT) -> None:
    async for event in stream.noack().events():
        started = time.perf_counter()
        try:
            await handle(event)
            flush_summaries(event)
            metrics.processing_seconds.observe(time.perf_counter() - started)
        except PartitionsMismatch as exc:
            # The broker's metadata has not caught up with a changelog topic yet: nothing was written, so
            # the event is tried again rather than dead-lettered.
            partition, offset = event.message.partition, event.message.offset
            log.warning(
                "airq: tables not writable yet, retrying %s[%d]@%d: %s", event.message.topic, partition, offset, exc
            )
            if next_offset.get(partition) == offset + 1:
                next_offset[partition] = offset
            await asyncio.sleep(1.0)
            await realign(event.message.tp, offset, force=True)
        except Exception as exc:  # one bad message must never stop or stall the stream
            log.exception(
                "airq: processing %s[%d]@%d failed", event.message.topic, event.message.partition, event.message.offset
            )
            await send_dead_letter(event, f"processing_error: {type(exc).__name__}: {exc}")
            partition, offset = event.message.partition, event.message.offset
            if next_offset.get(partition) == offset:
                next_offset[partition] = offset + 1  # dealt with: it is in the dead-letter topic
            event.ack()


async def handle(event: EventT) -> None:
    msg = event.message
    partition, offset = msg.partition, msg.offset
    status.inc("consumed")
    status.positions[partition] = offset + 1
    generation = msg.generation_id
    if not (sink.owns(partition, generation) and partition in next_offset):
        # Faust can deliver a partition's messages before the assignment handler has opened its output.
        # Processing now would mark measurements as seen that no file can take; wait for the handler instead.
        current = await sink.wait_owned(
            partition,
            generation,
            lambda: app.consumer_generation_id == generation,
            ready=lambda: partition in next_offset,
        )
        if not current:
            status.inc("stale")  # from an earlier assignment: the partition's new owner processes it
            return
    expected = next_offset[partition]
    if offset < expected:
        # Delivered again (a seek went back) or already in a finished file: its outcome is decided.
        status.inc("replayed")
        event.ack()
        return
    if offset > expected:
        # Messages before this one were never processed (Faust may deliver from a stale position around a
        # rebalance, and acknowledges what it skips): go back rather than leave a hole.
        await realign(msg.tp, expected)
        return
    next_offset[partition] = offset + 1
    try:
        m = parse_measurement(event.value)
    except InvalidMessage as exc:
        await send_dead_letter(event, str(exc))
        event.ack()
        return
    source = {"topic": msg.topic, "partition": partition, "offset": offset}
    sensor = str(m["sensor_id"])
    decision = decide(m, source, read(sensor_history, sensor), rules, retention_s, datetime.now(UTC))
    if decision.outcome == "duplicate":
        status.inc("duplicates")
        event.ack()
        return
    if decision.outcome == "filtered":
        status.filter(decision.reason or "unknown")
        event.ack()
        return
    assert decision.record is not None and decision.history is not None
    for table in (sensor_history, latest_by_location):
        # Raises PartitionsMismatch before any write rather than between the two tables' writes.
        table._verify_source_topic_partitions(msg.topic)
    write(sensor_history, sensor, decision.history)
    if "stuck" in decision.record.get("flags", ()):
        status.inc("flagged")
    loc = str(m["location_id"])
    summary = location_summary(location_summaries.get(loc), decision.record)
    if summary is not None:  # None: an older (backfilled) value, the latest stays
        location_summaries.put(partition, loc, summary)
    line = orjson.dumps(decision.record) + b"\n"
    try:
        await sink.write(partition, offset, line, _acker(event), generation=generation)
    except SinkClosed:
        # The partition moved away mid-event: not acknowledged, so its new owner processes it again.
        status.inc("handed_over")


def flush_summaries(event: EventT) -> None:
    """Write the partition's pending location summaries when its burst is over (or they are 1 s old)."""
    msg = event.message
    try:
        if location_summaries.due(msg.partition, lambda: msg.offset + 1 >= (app.consumer.highwater(msg.tp) or 0)):
            location_summaries.flush(msg.partition)
    except Exception as exc:  # the event itself is done; the summaries wait for the next flush
        log.warning("airq: location summaries of partition %d not written yet: %s", msg.partition, exc)


async def realign(tp: TP, offset: int, force: bool = False) -> None:
    """Seek a partition back to the next offset it must process (at most every 2 s per partition unless forced)."""
    now = time.monotonic()
    if not force and now - _last_seek.get(tp.partition, 0.0) < 2.0:
        return
    _last_seek[tp.partition] = now
    status.inc("realigned")
    log.warning("airq: %s[%d] skipped ahead; seeking back to offset %d", tp.topic, tp.partition, offset)
    await app.consumer.seek(tp, offset)


def _acker(event: EventT) -> Any:
    """Acknowledge once the record is in a finished file, and measure how long that took from produce time."""
    produced_at = event.message.timestamp

    def ack() -> None:
        event.ack()
        if produced_at:
            metrics.end_to_end_seconds.observe(max(0.0, time.time() - produced_at))

    return ack


async def send_dead_letter(event: EventT, reason: str) -> None:
    """Dead-letter entry with the original bytes; awaited so the offset is not committed before it lands."""
    msg = event.message
    raw: bytes | None = msg.value if isinstance(msg.value, bytes | None) else bytes(msg.value)
    entry: dict[str, Any] = {
        "reason": reason,
        "source": {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset, "timestamp": msg.timestamp},
        "key": msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else msg.key,
        "dead_lettered_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    try:
        entry["value"] = raw.decode("utf-8") if raw is not None else None
    except UnicodeDecodeError:
        entry["value"] = None
        entry["value_base64"] = base64.b64encode(raw).decode("ascii")
    status.dead_letter(reason)
    log.warning("airq: dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason[:200])
    fut = await dead_letter.send(key=msg.key if isinstance(msg.key, bytes) else None, value=orjson.dumps(entry))
    await fut


@app.timer(settings.flush_interval_s)
async def flush_output() -> None:
    await sink.tick()


@app.on_partitions_assigned.connect
async def open_output(app: Any, assigned: set[TP], **kwargs: Any) -> None:
    """Take over each partition's output and rewind the group offset to just after its durable output.

    The files, not Faust's bookkeeping, decide where a partition resumes: Faust acknowledges messages it
    skips during a rebalance, so its committed offset can run ahead of the output. Committing
    `finished + 1` here (forwards or backwards) makes the seek that follows start right after the last record
    in a finished file; replays before that point are then skipped, after it rewritten or de-duplicated.
    """
    started = time.monotonic()
    tps = sorted(tp for tp in assigned if tp.topic == MEASUREMENTS_TOPIC)
    resume: dict[TP, int] = {}
    for tp in tps:
        resume[tp] = await sink.open_partition(tp.partition, generation=app.consumer_generation_id) + 1
    if tps:
        earliest = await app.consumer.earliest_offsets(*tps)
        resume = {tp: max(offset, earliest.get(tp) or 0) for tp, offset in resume.items()}
        await app.consumer._commit(resume)
        for tp, offset in resume.items():
            next_offset[tp.partition] = offset
    log.info(
        "airq: output ready for partitions %s in %.2f s; resuming at %s",
        [tp.partition for tp in tps],
        time.monotonic() - started,
        {tp.partition: o for tp, o in resume.items()},
    )


@app.on_partitions_revoked.connect
async def finish_output(app: Any, revoked: set[TP], **kwargs: Any) -> None:
    for tp in sorted(revoked):
        if tp.topic == MEASUREMENTS_TOPIC:
            next_offset.pop(tp.partition, None)
            location_summaries.drop(tp.partition)
            await sink.close_partition(tp.partition)


async def _close_sink() -> None:
    await sink.close()


app.before_stop.append(_close_sink)
