"""The stream agent: wires the topic, the tables, the pure processing and the sink together.

Order that makes the files exactly-once: table updates are held while the event is processed (`TableBuffer`), the
record goes to the sink, the updates reach their changelogs (then RocksDB) before the file is finished, and only then
is the event acknowledged, so a crash replays exactly the messages whose output was not durable. One
`StreamProcessor` per worker owns the per-partition state (open files, cursor, pending location summaries).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.exceptions import PartitionsMismatch
from faust.types import TP, EventT, StreamT
from orjson import OPT_APPEND_NEWLINE, dumps

from airq_app.application import AirqApp
from airq_app.domain.decide import decide, merge_location
from airq_app.domain.filters import FilterConfig
from airq_app.domain.record import OutputRecord
from airq_app.domain.validation import InvalidMessage, parse_message
from airq_app.kafka import faust_internals
from airq_app.kafka.topics import Topics
from airq_app.metrics import Metrics
from airq_app.settings import OutputSettings
from airq_app.sink import JsonLinesSink, SinkClosed
from airq_app.status import WorkerStatus
from airq_app.stream import sensor_state
from airq_app.stream.catch_up import ChangelogCatchUp
from airq_app.stream.changelog import ChangelogDelivery, ChangelogNotDelivered
from airq_app.stream.cursor import PartitionCursor
from airq_app.stream.dead_letter import dead_letter_entry
from airq_app.stream.table_buffer import TableBuffer
from airq_app.stream.table_values import LocationSummaries
from airq_app.stream.tables import StreamTables

log = logging.getLogger("airq.stream")

STALL_CHECK_S = 5.0
FLUSH_TIMEOUT_S = 15.0  # at most, for Kafka to acknowledge the table updates behind a file (then retried)
OPEN_WAIT_S = 2.0  # the assignment handler waits this long for its partitions' resume offsets
STALL_S = 15.0  # an owned partition with messages waiting and none processed for this long is fetched again


class StreamProcessor:
    def __init__(
        self,
        app: AirqApp,
        topics: Topics,
        tables: StreamTables,
        status: WorkerStatus,
        metrics: Metrics,
        rules: FilterConfig,
        retention_hours: float,
        output: OutputSettings,
        worker_id: str,
    ) -> None:
        self.app = app
        self.topics = topics
        self.tables = tables
        self.status = status
        self.metrics = metrics
        self.rules = rules
        self.retention_s = retention_hours * 3600
        self.output = output
        self.sink = JsonLinesSink(
            output,
            worker_id,
            on_blocked=self._blocked,
            on_finished=self._finished,
            before_finish=self.flush_changelog,
        )
        self.cursor = PartitionCursor()
        self.summaries = LocationSummaries(tables.latest_by_location)
        # Sensor state is written behind: delivered (changelog, then RocksDB) before any file is finished.
        self.history = TableBuffer(tables.sensor_history, lambda: faust_internals.kafka_producer(app))
        # Location summaries are written through Faust's table path: its failed changelog sends are tracked.
        self.delivery = ChangelogDelivery([tables.latest_by_location])
        self._changelog_flush = asyncio.Lock()
        self._producer_flush: asyncio.Future[None] | None = None  # the producer flush under way (`flush_changelog`)
        self._progress: dict[int, tuple[int, float]] = {}  # partition -> (next offset, since when) for watch_stalls
        self._end_offsets: dict[int, int] = {}  # partition -> its end offset when last asked (`after_message`)
        self._opening: dict[int, asyncio.Task[None]] = {}  # partition -> its `open_partition`, while it runs
        self._early: dict[int, int] = {}  # partition -> a message offset delivered before it was open
        self.catch_up: ChangelogCatchUp | None = None  # set by the worker (a real broker's changelogs)

    # -- wiring ----------------------------------------------------------------------------------------------

    def install(self) -> None:
        """Register the agent, the output timer, the assignment handlers and the stop hook on the app."""
        app = self.app
        app.agent(self.topics.measurements, name="airq.stream.process")(self.process)
        app.timer(self.output.flush_interval_s, name="airq.stream.flush_output")(self.sink.tick)
        app.timer(STALL_CHECK_S, name="airq.stream.watch_stalls")(self.watch_stalls)
        # mode types a receiver as (sender, *args, signal=..., **kwargs); Faust sends the partition set positionally.
        app.on_partitions_assigned.connect(self.on_assigned)  # type: ignore[arg-type]
        app.on_partitions_revoked.connect(self.on_revoked)  # type: ignore[arg-type]
        app.before_stop.append(self.close)
        app.sensors.add(self.delivery)

    async def close(self) -> None:
        """At stop: give the partitions up (see the sink) and close the changelog reader."""
        await self.sink.close()
        if self.catch_up is not None:
            await self.catch_up.close()

    def _blocked(self, reason: str | None) -> None:
        self.status.sink_blocked = reason

    def _finished(self, partition: int, records: int) -> None:
        self.status.inc("written", records)
        self.status.inc("files_finished")

    async def flush_changelog(self) -> None:
        """Deliver every queued table update to Kafka (Faust's own flush may return with some still queued).

        One at a time: Faust's buffer flush waits for its sender message by message on one shared event, and
        concurrent flushes (the sink finishes partitions concurrently) kept resetting it for each other. Within
        `FLUSH_TIMEOUT_S`: the producer never expires a batch, so a changelog partition without a leader or with
        too few in-sync replicas would hold the flush (and the partition's lock) for ever. Past the deadline it
        raises; the sink then reports the output as not durable (the worker is not ready) and tries again, while
        the flush goes on (a cancelled one could lose an update it had taken from the queue).
        """
        async with self._changelog_flush:
            await self.history.deliver()
            task = self._producer_flush
            if task is None or task.done():
                task = self._producer_flush = asyncio.ensure_future(self._flush_producer())
                task.add_done_callback(lambda t: t.cancelled() or t.exception())  # an outcome nobody waited for
            try:
                await asyncio.wait_for(asyncio.shield(task), FLUSH_TIMEOUT_S)
            except TimeoutError:
                raise ChangelogNotDelivered(
                    f"Kafka did not acknowledge the table updates within {FLUSH_TIMEOUT_S:.0f} s "
                    "(a changelog partition without a leader, or with too few in-sync replicas?)"
                ) from None

    async def _flush_producer(self) -> None:
        producer = self.app.producer
        while producer.buffer.size:
            await producer.buffer.flush()
        await producer.flush()
        if self.delivery.failed:
            # Raises while any update is still undelivered: the sink keeps the file and reports why.
            await self.delivery.resolve(producer)

    # -- the agent -------------------------------------------------------------------------------------------

    async def process(self, stream: StreamT) -> None:
        # StreamT, Faust's abstract stream type, lacks the `noack` of faust.Stream, which agents are given.
        async for event in stream.noack().events():  # type: ignore[attr-defined]
            started = time.perf_counter()
            msg = event.message
            try:
                await self.handle(event)
                self.after_message(event)
                self.metrics.processing_seconds.observe(time.perf_counter() - started)
            except PartitionsMismatch as exc:
                # The broker's metadata has not caught up with a changelog topic yet: nothing was written, so
                # the event is tried again rather than dead-lettered.
                log.warning(
                    "airq: tables not writable yet, retrying %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc
                )
                self.cursor.retry(msg.partition, msg.offset)
                await asyncio.sleep(1.0)
                await self.realign(msg.tp, msg.offset, force=True)
            except Exception as exc:  # one bad message must never stop or stall the stream
                log.exception("airq: processing %s[%d]@%d failed", msg.topic, msg.partition, msg.offset)
                await self.send_dead_letter(event, f"processing_error: {type(exc).__name__}: {exc}")
                self.cursor.skip_failed(msg.partition, msg.offset)  # dealt with: it is in the dead-letter topic
                event.ack()

    async def handle(self, event: EventT) -> None:
        msg = event.message
        partition, offset = msg.partition, msg.offset
        status, sink, cursor = self.status, self.sink, self.cursor
        status.inc("consumed")
        generation = msg.generation_id
        if not (sink.owns(partition, generation) and cursor.owns(partition)):
            if self.app.consumer_generation_id != generation:
                status.inc("stale")  # from an earlier assignment: the partition's new owner processes it
                return
            opening = self._opening.get(partition)
            if opening is not None and sink.owns(partition, generation):
                # Its output is taken; what is left (the tables' catch-up) is short: worth waiting for.
                await asyncio.wait({opening}, timeout=OPEN_WAIT_S)
        if not (sink.owns(partition, generation) and cursor.owns(partition)):
            # Its output is not open yet (another worker may still hold it). Processing now would mark
            # measurements as seen that no file can take, and waiting here would hold every other partition
            # up: left unacknowledged, it is read again once the partition is open (`open_partition` seeks).
            self._early[partition] = offset
            status.inc("before_open")
            return
        expected = cursor.next(partition)
        assert expected is not None
        if offset < expected:
            # Delivered again (a seek went back) or already in a finished file: its outcome is decided.
            status.inc("replayed")
            event.ack()
            return
        if offset > expected:
            # Messages before this one were never processed (Faust may deliver from a stale position around a
            # rebalance, and acknowledges what it skips): go back rather than leave a hole, unless retention
            # deleted them meanwhile (then the partition moves on from its earliest offset).
            if offset != await self.realign(msg.tp, expected):
                return
        cursor.advance(partition, offset)
        # Lag counts from here: a message delivered ahead of its partition's next offset is not processed yet.
        status.positions[partition] = offset + 1
        try:
            items = parse_message(event.value)
        except InvalidMessage as exc:
            await self.send_dead_letter(event, str(exc))
            event.ack()
            return
        for table in (self.tables.sensor_history, self.tables.latest_by_location):
            # Raises PartitionsMismatch before any write rather than between the two tables' writes.
            faust_internals.verify_writable(table, msg.topic)
        history = self.history
        history.begin(partition)  # the message's state writes apply together with its records, or not at all
        try:
            await self._decide_message(event, items, partition, offset, generation)
        finally:
            history.rollback()  # nothing staged is left once the records are accepted (`commit`)

    async def _decide_message(
        self, event: EventT, items: list[Any], partition: int, offset: int, generation: int | None
    ) -> None:
        msg = event.message
        status = self.status
        source = {"topic": msg.topic, "partition": partition, "offset": offset}
        records: list[OutputRecord] = []
        in_message: set[tuple[int, str]] = set()
        now = datetime.now(UTC)
        location_key: int | None = None  # the location id the message's key names, once one matched
        for m in items:
            if isinstance(m, InvalidMessage):
                await self.send_dead_letter(event, str(m))
                continue
            if m["location_id"] != location_key and msg.key != str(m["location_id"]).encode():
                # A sensor's state lives in the partition its location id's key hashes to: a message under another
                # key (or none) would be de-duplicated against another partition's state, and could be written twice.
                key = msg.key.decode("utf-8", "replace")[:40] if isinstance(msg.key, bytes) else msg.key
                await self.send_dead_letter(event, f"key_mismatch: key {key!r} is not location id {m['location_id']}")
                continue
            location_key = m["location_id"]
            ident = (m["sensor_id"], m["datetime_utc"])
            if ident in in_message:
                # `seen` remembers the message a (sensor, time) came in: a second copy inside the same message
                # would look like a replay of the first.
                status.inc("duplicates")
                continue
            in_message.add(ident)
            record = self.decide_one(m, source, partition, now)
            if record is not None:
                records.append(record)
        summary = self.summary_of(records) if records else None
        lines = [dumps(r, option=OPT_APPEND_NEWLINE) for r in records]

        def accepted() -> None:
            self.history.commit()
            if summary is not None:
                self.summaries.put(partition, *summary)

        if not lines:
            if self.sink.owns(partition, generation):
                accepted()
            event.ack()
            return
        try:
            # One write for the whole message: its lines never straddle two files.
            await self.sink.write(
                partition,
                offset,
                b"".join(lines),
                self._acker(event),
                generation=generation,
                records=len(lines),
                accepted=accepted,
            )
        except SinkClosed:
            # The partition moved away mid-event: not acknowledged, so its new owner processes it again.
            status.inc("handed_over")

    def decide_one(
        self, m: dict[str, Any], source: dict[str, Any], partition: int, now: datetime
    ) -> OutputRecord | None:
        """Decide one measurement against its sensor's state and write the state; the record to write, or None."""
        status = self.status
        history, bucket = sensor_state.load(self.history, partition, m)
        decision = decide(m, source, history, self.rules, self.retention_s, now, bucket)
        if decision.outcome == "duplicate":
            status.inc("duplicates")
            return None
        if decision.outcome == "filtered":
            status.filter(decision.reason or "unknown")
            return None
        assert decision.record is not None
        sensor_state.store(self.history, partition, decision.writes)
        if decision.record["revision"]:
            status.inc("revisions")
        if "stuck" in decision.record.get("flags", ()):
            status.inc("flagged")
        return decision.record

    def summary_of(self, records: list[OutputRecord]) -> tuple[str, dict[str, Any]] | None:
        """A message's records (one location's) merged into the location's summary: (key, summary), or None when
        nothing is newer than the summary shows (backfilled values)."""
        loc = str(records[0]["location_id"])
        summary = merge_location(self.summaries.get(loc), records)
        return None if summary is None else (loc, summary)

    def after_message(self, event: EventT) -> None:
        """When the message left its partition caught up (nothing more fetched for it), let the sink finish the
        partition's file once it stays quiet; write the partition's pending location summaries when its burst is
        over (or they are 1 s old)."""
        msg = event.message
        partition = msg.partition
        # The end offset only grows: below the last one seen, the partition is not caught up, without asking.
        caught_up = msg.offset + 1 >= self._end_offsets.get(partition, 0)
        if caught_up:
            try:
                end = self._end_offsets[partition] = self.app.consumer.highwater(msg.tp) or 0
            except Exception:  # no position known (the partition is being revoked): nothing to hurry
                end = msg.offset + 2
            caught_up = msg.offset + 1 >= end
        if caught_up and self.output.finish_idle_s > 0:
            self.sink.finish_when_quiet(partition)
        try:
            if self.summaries.due(partition, lambda: caught_up):
                self.summaries.flush(partition)
        except Exception as exc:  # the event itself is done; the summaries wait for the next flush
            log.warning("airq: location summaries of partition %d not written yet: %s", partition, exc)

    async def watch_stalls(self) -> None:
        """The stall check, run by a timer: an error in it (Kafka away, a partition revoked) waits for the next run."""
        try:
            await self._watch_stalls()
        except Exception as exc:
            log.warning("airq: stall check failed, trying again in %.0f s: %r", STALL_CHECK_S, exc)

    async def _watch_stalls(self) -> None:
        """Fetch again a partition that has messages waiting but has delivered none for `STALL_S`.

        Around rebalances a newly assigned partition can stop being delivered (Faust takes a partition out of
        fetching while its stream's buffer is full and puts it back on a signal from that buffer, which a
        rebalance can lose; or a seek back is not followed by the records): the worker then holds it for ever
        without progress. Not while the output is blocked or the group rebalances (no progress is expected).
        """
        app = self.app
        if self.sink.blocked is not None or app.rebalancing or app.should_stop:
            return
        topic = self.topics.names.measurements
        owned = [p for p in self.cursor.partitions() if self.sink.owns(p)]
        if not owned:
            return
        tps = [TP(topic, p) for p in owned]
        try:
            ends = await app.consumer.highwaters(*tps)
        except Exception as exc:
            log.debug("airq: end offsets not available for the stall check: %r", exc)
            return
        now = time.monotonic()
        for tp in tps:
            expected, end = self.cursor.next(tp.partition), ends.get(tp)
            if expected is None or end is None or end <= expected:
                self._progress.pop(tp.partition, None)
                continue
            last = self._progress.get(tp.partition)
            if last is None or last[0] != expected:
                self._progress[tp.partition] = (expected, now)
                continue
            if now - last[1] < STALL_S:
                continue
            was_out = faust_internals.resume_fetching(app.consumer, tp)
            log.warning(
                "airq: %s[%d] has %d messages waiting and none delivered for %.0f s (%s); fetching again from %d",
                tp.topic,
                tp.partition,
                end - expected,
                now - last[1],
                "left out of fetching" if was_out else "fetching",
                expected,
            )
            self.status.inc("restarted_fetches")
            self._progress[tp.partition] = (expected, now)
            await self.realign(tp, expected, force=True)

    async def realign(self, tp: TP, offset: int, force: bool = False) -> int | None:
        """Seek a partition back to the next offset it must process (at most every 2 s per partition unless forced).

        Returns the partition's next offset afterwards: `offset`, or the earliest offset still in the topic when
        retention deleted the messages from `offset` on before they were processed; None when the partition was
        revoked meanwhile. Those are lost (logged,
        counted and shown in status); seeking to a deleted offset would only reset to the earliest one, deliver
        it as "ahead" again, and stall the partition for ever.
        """
        if not self.cursor.may_seek(tp.partition, force):
            return offset
        earliest = (await self.app.consumer.earliest_offsets(tp)).get(tp) or 0
        if offset < earliest:
            log.error(
                "airq: %s[%d] offsets %d to %d were deleted by retention before they were processed (%d messages lost)",
                tp.topic,
                tp.partition,
                offset,
                earliest - 1,
                earliest - offset,
            )
            self.status.lost_to_retention(tp.partition, offset, earliest - 1)
            self.cursor.open(tp.partition, earliest)
            offset = earliest
        self.status.inc("realigned")
        log.warning("airq: %s[%d] skipped ahead; seeking back to offset %d", tp.topic, tp.partition, offset)
        try:
            await self.app.consumer.seek(tp, offset)
        except IllegalStateError:
            # Revoked while this waited for Kafka: the partition's next owner starts from its output.
            log.info("airq: %s[%d] revoked meanwhile; not seeking", tp.topic, tp.partition)
            return None
        return offset

    def _acker(self, event: EventT) -> Any:
        """Acknowledge once the record is in a finished file, and measure how long that took from produce time."""
        produced_at = event.message.timestamp
        end_to_end = self.metrics.end_to_end_seconds

        def ack() -> None:
            event.ack()
            if produced_at:
                end_to_end.observe(max(0.0, time.time() - produced_at))

        return ack

    async def send_dead_letter(self, event: EventT, reason: str) -> None:
        """Dead-letter entry with the original bytes; awaited so the offset is not committed before it lands."""
        msg = event.message
        self.status.dead_letter(reason)
        log.warning("airq: dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason[:200])
        key = msg.key if isinstance(msg.key, bytes) else None
        fut = await self.topics.dead_letter.send(key=key, value=dead_letter_entry(msg, reason))
        await fut

    # -- assignment ------------------------------------------------------------------------------------------

    async def on_assigned(self, sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        """Open each assigned partition on its own (`open_partition`); wait up to `OPEN_WAIT_S` for them.

        Each partition makes progress on its own: one whose output another worker still holds (a paused worker
        keeps its lock until it wakes) opens when it can, while the others are processed; its messages are left
        unacknowledged until then. Waiting briefly here lets the usual case (every lock free) commit each
        partition's resume offset before Faust seeks to the committed offsets.
        """
        app = self.app
        tps = sorted(tp for tp in assigned if tp.topic == self.topics.names.measurements)
        if tps and app.should_stop:
            # A worker stopping now leaves the group: the next owner rewinds. (Its commit would go through the
            # consumer's thread, which is stopping too and may no longer take calls.)
            log.info("airq: stopping; partitions %s left to their next owner", [tp.partition for tp in tps])
            return
        generation = app.consumer_generation_id
        committed = []
        for tp in tps:
            done = asyncio.Event()
            committed.append(done)
            task = asyncio.ensure_future(self.open_partition(tp, generation, done))
            self._opening[tp.partition] = task
            task.add_done_callback(partial(self._opened, tp.partition))
        if committed:
            await asyncio.wait([asyncio.ensure_future(e.wait()) for e in committed], timeout=OPEN_WAIT_S)

    def _opened(self, partition: int, task: asyncio.Task[None]) -> None:
        if self._opening.get(partition) is task:
            del self._opening[partition]
        if not task.cancelled() and task.exception() is not None:
            log.error("airq: opening partition %d failed: %r", partition, task.exception())

    async def open_partition(self, tp: TP, generation: int, committed: asyncio.Event) -> None:
        """Take over a partition's output and start it right after its durable output.

        The files, not Faust's bookkeeping, decide where a partition resumes: Faust acknowledges messages it
        skips during a rebalance, so its committed offset can run ahead of the output. `finished + 1` is committed
        (forwards or backwards); once Faust's recovery is over the tables are brought up to their changelogs' end
        (`ChangelogCatchUp`: a previous owner may have finished files after the recovery), and the partition seeks
        there itself if any of its messages came before it was open.
        """
        app, partition = self.app, tp.partition
        started = time.monotonic()
        try:
            finished = await self.sink.open_partition(partition, generation=generation)
            if not self.sink.owns(partition, generation):
                return  # given up meanwhile (revoked, or the worker stops)
            earliest = (await app.consumer.earliest_offsets(tp)).get(tp) or 0
            resume = max(finished + 1, earliest)
            if not await faust_internals.commit_offsets(app.consumer, {tp: resume}):
                self._early.setdefault(partition, resume)  # Faust may seek elsewhere: seek there once open
        finally:
            committed.set()
        while app.rebalancing and app.consumer_generation_id == generation and self.sink.owns(partition, generation):
            await asyncio.sleep(0.05)  # Faust recovers the tables meanwhile
        if not self.sink.owns(partition, generation) or app.consumer_generation_id != generation:
            return
        if self.catch_up is not None:
            self.status.inc("tables_caught_up", await self.catch_up.apply(partition))
        self.cursor.open(partition, resume)
        if self._early.pop(partition, None) is not None:
            await self.realign(tp, resume, force=True)  # what came before it was open is read again
        log.info(
            "airq: output of partition %d ready in %.2f s; resuming at %d",
            partition,
            time.monotonic() - started,
            resume,
        )

    async def on_revoked(self, sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        partitions = sorted(tp.partition for tp in revoked if tp.topic == self.topics.names.measurements)
        for partition in partitions:
            self.cursor.close(partition)
            self._end_offsets.pop(partition, None)
            self._early.pop(partition, None)
            try:
                # Before the files are finished: finishing flushes the changelog, summaries included.
                self.summaries.hand_over(partition)
            except Exception as exc:
                log.warning("airq: location summaries of partition %d not handed over: %s", partition, exc)
        # All at once: a blocked output gives every partition up within one bounded attempt, not one each.
        await self.sink.close_partitions(partitions)
        for partition in partitions:
            # Finishing the files delivered the state behind them; what is left belongs to messages not
            # acknowledged, which the partition's next owner processes again.
            self.history.discard(partition)
