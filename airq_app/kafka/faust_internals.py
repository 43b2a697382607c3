"""Every place airq relies on faust-streaming internals, in one module, written against `FAUST_VERSION`.

`tests/unit/test_faust_internals.py` fails when the installed faust-streaming is another version: each use below
must then be checked against the new Faust before the pin moves.

- The consumer's hand-over of each fetched message to the streams (`Consumer._drain_messages`, Faust's loop with
  one change). Faust hands every message over with `await self.wait_first(callback(message),
  self.suspend_flow.wait())`: four tasks (the two, and the service's stopped and crashed events) and an
  `asyncio.wait` per message, so that a hand-over blocked by a full buffer is abandoned when a rebalance suspends
  the flow; py-spy put it among a worker's top costs. Almost every hand-over completes without waiting, so the loop
  here runs it directly, and only one that has to wait is raced against `suspend_flow` exactly as Faust does.
- `ProducerBuffer.max_messages`: table writes queue changelog messages in this buffer; past `max_messages` the
  stream waits while it drains one message at a time. Faust's 100 makes that wait happen every few events.
- `Table._verify_source_topic_partitions`: raises `PartitionsMismatch` before a write, so the stream can check
  both tables before writing either.
- The consumer thread's aiokafka consumer (`call_thread`, `_ensure_consumer`): commits explicit offsets (forwards or
  backwards) when a partition is opened.
- `Table.data` (the store) for one-lookup reads and its persisted changelog offset (`persisted_offset`), and
  `Table.send_changelog` for a write on behalf of a partition
  outside any event (location summaries flushed when their partition is revoked).
- Seeks (`AIOKafkaConsumerThread.seek`, `Consumer._seek`): Faust calls the aiokafka consumer's `seek` straight from
  the worker's event loop, although that consumer lives in the consumer thread's loop. `Fetcher.seek_to` then deletes
  the partition's fetched records while the thread may be deleting them too (`KeyError` in `fetched_records`: the
  worker crashed), and wakes the thread's fetch waiter with `set_result` from the wrong thread, which that loop does
  not notice: the partition stalled until something else woke the loop. Here every seek runs in the consumer's
  thread: awaited (`Consumer._seek`), or queued with `call_soon_threadsafe` (`ConsumerThread.seek`).
- The consumer thread's stop (`AIOKafkaConsumerThread.on_thread_stop`): finishes when a rebalance callback was cut
  short (see `ConsumerThread`); uses the aiokafka consumer's `_fetcher` and `_client`.
- The producer (`Producer` below, installed through `Transport.Producer`): Faust's aiokafka producer with the
  idempotent producer switched on (`_settings_extra`), every topic Faust creates itself given airq's replication
  factor and `min.insync.replicas` (`create_topic`), and its message buffer (`ProducerBuffer._send_pending`, the
  loop that sends table updates to their changelogs) retrying a send the producer cannot take yet instead of letting
  the exception end the buffer's task, which stops the whole worker. aiokafka internals used: the accumulator's
  batch expiry (`_message_accumulator._batch_ttl`, switched off so that an outage fails no changelog batch), and
  the sender task (cancelled to give up, after `STOP_GRACE_S`, when the worker stops while Kafka is unreachable:
  Faust's flush at stop would wait for ever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, cast

import faust
import rocksdict
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.structs import OffsetAndMetadata
from faust import tables as faust_tables
from faust.exceptions import ProducerSendError
from faust.sensors import Monitor
from faust.stores import STORES
from faust.stores import rocksdb as faust_rocksdb
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types import TP, FutureMessage
from mode import Service, ServiceT
from mode.utils.queues import ThrowableQueue

FAUST_VERSION = "0.15.3"
PRODUCER_BUFFER_MESSAGES = 10_000

log = logging.getLogger("airq.kafka")


def installed_version() -> str:
    return str(faust.__version__)


def set_producer_buffer_limit(messages: int = PRODUCER_BUFFER_MESSAGES) -> None:
    ProducerBuffer.max_messages = messages


def verify_writable(table: Any, source_topic: str) -> None:
    """Raise `PartitionsMismatch` when the table's changelog cannot take a write from `source_topic` yet."""
    table._verify_source_topic_partitions(source_topic)


async def commit_offsets(consumer: Any, offsets: dict[TP, int]) -> bool:
    """Commit these offsets for the group, whatever was committed before; False when nothing was committed (the
    partitions are not assigned any more, or the group is rebalancing).

    Straight to aiokafka in the consumer's thread: Faust's `_commit` treats a commit refused by a rebalance, or
    one left with no partition still assigned, as a crash of the whole consumer.
    """
    thread = consumer._thread

    async def commit() -> bool:
        aio = thread._ensure_consumer()
        assigned = aio.assignment()
        wanted = {
            TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, "")
            for tp, offset in offsets.items()
            if TopicPartition(tp.topic, tp.partition) in assigned
        }
        if not wanted:
            return False
        try:
            await aio.commit(wanted)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            log.info("airq: offsets %s not committed: %r", {tp.partition: o.offset for tp, o in wanted.items()}, exc)
            return False
        return True

    return bool(await thread.call_thread(commit))


def store_get(table: Any, key: Any) -> Any:
    """The stored value for `key` with one store lookup (`Table.get` does two)."""
    return table.data.get(key)


def send_changelog_for(table: Any, partition: int, key: Any, value: Any) -> None:
    """Queue a changelog message for `partition` without a current event (the table's own write needs one)."""
    table.send_changelog(partition, key, value)


class _Resumed(Awaitable[Any]):
    """Continues a coroutine that already yielded `pending` to the event loop (like `yield from` mid-way)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, to_yield = self.coro, self.pending
        while True:
            try:
                sent = yield to_yield
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation and the like go to the coroutine
                try:
                    to_yield = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    to_yield = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    return await _Resumed(coro, pending)


async def hand_over(
    callback: Callable[[Any], Coroutine[Any, Any, Any]],
    message: Any,
    suspend_flow: asyncio.Event,
    wait_first: Callable[..., Awaitable[Any]],
) -> None:
    """Deliver one message to the streams: directly unless it has to wait (see the module docstring)."""
    if suspend_flow.is_set():
        await wait_first(callback(message), suspend_flow.wait())
        return
    coro = callback(message)
    try:
        pending = coro.send(None)
    except StopIteration:
        return  # delivered without waiting: the common case
    await wait_first(_resume(coro, pending), suspend_flow.wait())


class ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    #: How long the aiokafka consumer may take to stop (commit, leave the group) before its connections are closed.
    stop_timeout_s = 15.0

    async def on_thread_stop(self) -> None:
        """Faust's stop, except that a consumer whose rebalance callback was cut short, or whose stop does not
        finish, still lets the worker stop.

        Faust stops the thread's method queue before the aiokafka consumer; a partition-assignment callback then
        waiting on that queue (airq's asks for the earliest offsets) is cancelled, the cancellation escapes
        `AIOKafkaConsumer.stop()`, the thread never signals its shutdown, and the worker waits Faust's 60 s
        shutdown timeout before exiting. A consumer stopping in the middle of a rebalance can also wait for its
        join request for as long as the group's rebalance timeout, and the consumer's thread is not a daemon: the
        process would not exit before it. Here the stop finishes within `stop_timeout_s`: the fetcher and the
        client are closed anyway. Nothing is lost: offsets not committed are those of records processed again.
        """
        try:
            await asyncio.wait_for(super().on_thread_stop(), self.stop_timeout_s)
        except (asyncio.CancelledError, Exception) as exc:
            log.warning("airq: Kafka consumer did not stop cleanly (%r); closing its connections", exc)
            consumer = self._consumer
            if consumer is not None:
                for part in (getattr(consumer, "_fetcher", None), getattr(consumer, "_client", None)):
                    if part is not None:
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await part.close()

    def seek(self, partition: TP, offset: int) -> None:
        """Faust's synchronous seek, run in the consumer's thread (see the module docstring)."""
        self.thread_loop.call_soon_threadsafe(self._seek_here, partition, offset)

    async def seek_in_thread(self, partition: TP, offset: int) -> None:
        """Seek from the consumer's thread and wait for it; `IllegalStateError` if the partition is not assigned."""
        await self.call_thread(self._seek_async, partition, offset)

    async def _seek_async(self, partition: TP, offset: int) -> None:
        self._ensure_consumer().seek(partition, offset)

    def _seek_here(self, partition: TP, offset: int) -> None:
        try:
            self._ensure_consumer().seek(partition, offset)
        except IllegalStateError:
            log.info("airq: %s[%d] no longer assigned; not seeking to %d", partition.topic, partition.partition, offset)


class Consumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _seek(self, partition: TP, offset: int) -> None:
        await cast(ConsumerThread, self._thread).seek_in_thread(partition, offset)

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - Faust's loop
        callback = self.callback
        suspend_flow = self.suspend_flow
        wait_first = self.wait_first
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await hand_over(callback, message, suspend_flow, wait_first)
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


# -- The producer: idempotent, replicated topics, and a buffer that outlives a Kafka outage ------------------------

SEND_RETRY_FIRST_DELAY_S = 0.5
SEND_RETRY_MAX_DELAY_S = 10.0
STOP_GRACE_S = 10.0  # a stopping worker waits this long for undelivered messages while Kafka is unreachable


def _retriable(exc: BaseException) -> bool:
    """A send that may work later: Kafka unreachable or without a leader for longer than the request timeout."""
    cause = exc.__cause__ if isinstance(exc, ProducerSendError) and exc.__cause__ is not None else exc
    if isinstance(cause, KafkaTimeoutError | KafkaConnectionError | TimeoutError):
        return True
    return isinstance(cause, KafkaError) and bool(getattr(cause, "retriable", False))


class RetryingProducerBuffer(ProducerBuffer):
    """Faust's buffer of table updates; a send the producer cannot take (its request timeout ran out during an
    outage) is retried in order with backoff, where Faust's task would raise and stop the worker. Once the stopping
    worker has given up on Kafka (`abandoned`), what is left fails at once instead of being tried."""

    stalled_since: float | None = None
    stall_reason: str | None = None
    abandoned: bool = False

    async def _send_pending(self, fut: FutureMessage) -> None:
        delay = SEND_RETRY_FIRST_DELAY_S
        while True:
            if self.abandoned:
                self._give_up(fut, KafkaConnectionError("the worker stopped with Kafka unreachable"))
                return
            try:
                await fut.message.channel.publish_message(fut, wait=False)
            except Exception as exc:
                if not _retriable(exc):
                    raise
                if self.abandoned or self.should_stop:
                    self._give_up(fut, exc)
                    return
                if self.stalled_since is None:
                    self.stalled_since = time.monotonic()
                self.stall_reason = f"{type(exc.__cause__ or exc).__name__}: {exc.__cause__ or exc}"[:200]
                log.warning("airq: Kafka producer cannot take a table update (%s); retrying in %.1f s", exc, delay)
                await self.sleep(delay)
                delay = min(delay * 2, SEND_RETRY_MAX_DELAY_S)
                continue
            self.stalled_since = self.stall_reason = None
            return

    @staticmethod
    def _give_up(fut: FutureMessage, exc: BaseException) -> None:
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()  # retrieved: nobody waits for a table update's delivery, asyncio need not warn


class Producer(aiokafka_driver.Producer):
    """Faust's aiokafka producer, made for replicated clusters and outages (see the module docstring).

    `replication` is set by the app once it has counted the brokers: (replication factor, min.insync.replicas).
    """

    replication: tuple[int, int] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        buffer = RetryingProducerBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        self.buffer: RetryingProducerBuffer = buffer

    def _settings_extra(self) -> Mapping[str, Any]:
        # acks=all comes from the app's producer_acks=-1; with idempotence a retried batch is written once and the
        # order within a partition holds.
        return {**super()._settings_extra(), "enable_idempotence": True}

    async def on_start(self) -> None:
        await super().on_start()
        # aiokafka fails a batch whose partition has had no leader for request_timeout; an idempotent producer
        # otherwise retries until it is delivered. Without expiry nothing is dropped while a partition moves.
        producer = self._producer
        if producer is not None:
            producer._message_accumulator._batch_ttl = math.inf

    async def flush(self) -> None:
        """Faust's flush; while the worker stops, at most `STOP_GRACE_S` (Faust's waits for ever without Kafka)."""
        if not self.app.should_stop:
            await super().flush()
            return
        if self.buffer.abandoned:
            return
        try:
            await asyncio.wait_for(super().flush(), STOP_GRACE_S)
        except TimeoutError:
            await self.abandon()

    async def on_stop(self) -> None:
        if self._producer is not None and self.undelivered() and not self.buffer.abandoned:
            try:
                await asyncio.wait_for(asyncio.shield(self._producer.flush()), STOP_GRACE_S)
            except TimeoutError:
                await self.abandon()
        await super().on_stop()

    async def abandon(self) -> None:
        """Give up what Kafka has not taken by now: the worker is stopping and Kafka is unreachable.

        Table updates not delivered belong to events whose output is not acknowledged either (the stream finishes
        no file before its updates are delivered), so those events are processed again after the restart.
        """
        if self.buffer.abandoned:
            return
        log.error(
            "airq: stopping with Kafka unreachable for %.0f s: %d queued table updates and %d unsent batches given up",
            STOP_GRACE_S,
            self.buffer.size,
            self.undelivered(),
        )
        self.buffer.abandoned = True
        producer = self._producer
        if producer is None:
            return
        # Without its sender the aiokafka producer stops at once instead of flushing for ever; the batches it held
        # stay undelivered (failing them instead trips over aiokafka's bookkeeping of retried batches).
        sender = producer._sender.sender_task
        if sender is not None and not sender.done():
            sender.cancel()
            await asyncio.wait([sender], timeout=STOP_GRACE_S)

    def undelivered(self) -> int:
        """Batches queued or in flight in aiokafka's accumulator."""
        producer = self._producer
        if producer is None:
            return 0
        acc = producer._message_accumulator
        return sum(len(batches) for batches in acc._batches.values()) + len(acc._pending_batches)

    async def create_topic(
        self, topic: str, partitions: int, replication: int, *, config: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Topics Faust creates itself (its leader topic, any internal one) get airq's replication too."""
        if self.replication is not None:
            replication, min_insync = max(replication, self.replication[0]), self.replication[1]
            config = {"min.insync.replicas": str(min_insync), **(config or {})}
        await super().create_topic(topic, partitions, replication, config=config, **kwargs)


def set_replication(app: faust.App, factor: int, min_insync: int) -> None:
    """Every topic Faust declares from now on gets `factor` copies and `min.insync.replicas` = `min_insync`."""
    app.conf.topic_replication_factor = factor
    producer = app.producer
    if isinstance(producer, Producer):
        producer.replication = (factor, min_insync)


def leader_topic_name(app: faust.App) -> str:
    """The one-partition topic Faust's assignor creates for the group leader (`faust.assignor.LeaderAssignor`)."""
    return f"{app.conf.id}-__assignor-__leader"


def producer_problem(app: Any, after_s: float = 5.0) -> str | None:
    """Why the producer has not delivered for `after_s` seconds (for readiness), or None."""
    buffer = getattr(getattr(app, "_producer", None), "buffer", None)
    if not isinstance(buffer, RetryingProducerBuffer) or buffer.stalled_since is None:
        return None
    stalled = time.monotonic() - buffer.stalled_since
    if stalled < after_s:
        return None
    return f"Kafka producer has not delivered table updates for {stalled:.0f} s ({buffer.stall_reason})"


class Transport(aiokafka_driver.Transport):
    Consumer = Consumer
    Producer = Producer


# -- RocksDB: a store whose info LOG is bounded -------------------------------------------------------------------
# RocksDB writes a text `LOG` beside each partition's database and, by default, never rotates it away (it grew from
# 38 MB to 103 MB of a 10-million-message run's 103 MB directory). Faust's rocksdict options do not pass
# `max_log_file_size` / `keep_log_file_num`, so airq's store uses an options class that does.

BOUNDED_ROCKSDB_URL = "airq-rocksdb://"
ROCKSDB_MAX_LOG_FILE_SIZE = 1024 * 1024
ROCKSDB_KEEP_LOG_FILE_NUM = 3


class BoundedLogOptions(faust_rocksdb.RocksDBOptions):
    def as_options(self) -> Any:
        options = super().as_options()
        if self.use_rocksdict:
            options.set_max_log_file_size(ROCKSDB_MAX_LOG_FILE_SIZE)
            options.set_keep_log_file_num(ROCKSDB_KEEP_LOG_FILE_NUM)
        return options


class BoundedLogStore(faust_rocksdb.Store):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rocksdb_options = BoundedLogOptions(**self.options, use_rocksdict=self.use_rocksdict)


def register_bounded_rocksdb() -> str:
    """Make `BoundedLogStore` available to Faust; returns the store URL to configure."""
    STORES.aliases["airq-rocksdb"] = f"{__name__}:BoundedLogStore"
    return BOUNDED_ROCKSDB_URL


# -- Table writes outside Faust's per-key path (`airq_app.stream.table_buffer`) ------------------------------------


def read_raw(table: Any, partition: int, key: str, encoded_key: bytes) -> bytes | None:
    """The stored bytes of `key` in the table's `partition` (one RocksDB lookup), or None."""
    data = table.data
    if isinstance(data, faust_rocksdb.Store):
        value: bytes | None = data._db_for_partition(partition).get(encoded_key)
        return value
    return data.get(key)  # Faust's in-memory store (unit tests): keys as they are


def persisted_offset(table: Any, partition: int) -> int | None:
    """The last changelog offset the table's RocksDB `partition` holds (-1: none); None for another store."""
    data = table.data
    if not isinstance(data, faust_rocksdb.Store):
        return None
    offset = data.persisted_offset(TP(table.changelog_topic_name, partition))
    return -1 if offset is None else int(offset)


class StoreBatch:
    """Writes to one partition of a table's store, applied together by `commit`: for RocksDB one atomic write batch
    with the changelog offset they reach, as Faust's `apply_changelog_batch` + `set_persisted_offset` do."""

    def __init__(self, table: Any, partition: int) -> None:
        self.data = table.data
        self.partition = partition
        self.rocksdb = isinstance(self.data, faust_rocksdb.Store)
        self.batch = rocksdict.WriteBatch(raw_mode=True) if self.rocksdb else None
        self.items: list[tuple[str, bytes | None]] = []  # Faust's in-memory store (unit tests): keys as they are
        self.size = 0

    def add(self, key: str, encoded_key: bytes, value: bytes | None) -> None:
        """`value` None deletes the key."""
        self.size += 1
        batch = self.batch
        if batch is None:
            self.items.append((key, value))
        elif value is None:
            batch.delete(encoded_key)
        else:
            batch.put(encoded_key, value)

    def commit(self, changelog_offset: int) -> bool:
        """Apply the writes; False (nothing written) when the partition's database is not open here any more
        (revoked: its next owner recovers them from the changelog)."""
        if self.batch is None:
            for key, value in self.items:
                if value is None:
                    self.data.pop(key, None)
                else:
                    self.data[key] = value
            return True
        db = self.data._dbs.get(self.partition)
        if db is None:
            return False
        self.batch.put(faust_rocksdb.Store.offset_key, str(changelog_offset).encode())
        db.write(self.batch)
        return True


def kafka_producer(app: Any) -> Any:
    """The started aiokafka producer under Faust's producer (its batch API: `create_batch`, `send_batch`)."""
    producer = app.producer._producer
    if producer is None:
        raise RuntimeError("the Kafka producer is not started")
    return producer


class QuietMonitor(Monitor):
    """Faust's monitor without its bookkeeping per message and per event (timestamps, counters, a state dict each
    time), which only Faust's web statistics read; airq keeps those pages off and counts in `WorkerStatus`."""

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: dict[str, Any] | None = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        return None


class ChangelogQueue(ThrowableQueue):
    """The queue of changelog records on their way to the tables (recovery and standbys), emptied only while the
    flow is suspended.

    Faust's empties whenever the app's flow control resumes, and one recovery resumes it several times: after the
    active partitions are read, after the standby partitions are sought and resumed, and again once the streams are
    sought. Records a standby fetched in between were dropped while the fetch position moved on, and the standby's
    later records then advanced its persisted offset past the hole: a replica missing a record batch of its
    changelog, which, promoted to active, accepted a repeat as new (seen in the SIGKILL chaos test: a standby without
    the changelog's records 5060-5167 of a partition wrote a measurement twice). A rebalance still empties it: the
    revocation suspends the flow, then clears every queue.
    """

    def clear(self) -> None:
        if not self._flow_control.is_active():
            super().clear()


class TableManager(faust_tables.TableManager):
    """Faust's table manager without the 1 s it sleeps at start (time for tables declared late to register):
    airq declares every table before the app starts (`airq_app.worker.build`), and the stream waits on it. Its
    changelog queue is a `ChangelogQueue`."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()

    @property
    def changelog_queue(self) -> ThrowableQueue:
        if self._changelog_queue is None:
            self._changelog_queue = ChangelogQueue(
                maxsize=self.app.conf.stream_buffer_maxsize,
                flow_control=self.app.flow_control,
                clear_on_resume=True,  # managed by the flow control: cleared at a revocation (`clear` above)
            )
        return self._changelog_queue


def resume_fetching(consumer: Any, tp: TP) -> bool:
    """Put an assigned partition back among those the consumer fetches, if Faust left it out: a partition taken
    out while its stream's buffer was full goes back only when that buffer signals it drained, and a signal lost in
    a rebalance leaves it out for good. Returns whether it was out."""
    if tp not in consumer.assignment() or tp in consumer._paused_partitions:
        return False
    active = consumer._get_active_partitions()
    was_out = tp not in active or tp in consumer._buffered_partitions
    active.add(tp)
    consumer._buffered_partitions.discard(tp)
    return was_out
