"""The consumer: its hand-over of messages to the streams, its seeks, its stop and its commits.

Faust internals relied on (faust-streaming, aiokafka and mode-streaming at `PINNED_VERSIONS`; the fingerprints in
`tests/unit/test_faust_internals.py` name each upstream object):

- Hand-over (`Consumer._drain_messages`, Faust's loop with one change): Faust races every hand-over against
  `self.suspend_flow.wait()` (`wait_first`: four tasks and an `asyncio.wait` per message, one of a worker's top
  costs) so that one blocked by a full buffer is abandoned when a rebalance suspends the flow; here only a hand-over
  that has to wait is raced. The copy uses `_read_offset`, `_add_gap`, `_n_acked`, `_commit_every`, `diag` and mode's
  `Service._stopped` and `Service.wait_first`.
- Seeks (`AIOKafkaConsumerThread.seek`, `ThreadDelegateConsumer._seek`): Faust seeks from the worker's loop, but the
  aiokafka consumer lives in the consumer thread's loop, where `Fetcher.seek_to` then races the thread (`KeyError`
  in `fetched_records` stops the worker) and wakes its fetch waiter unnoticed (the partition stalls). Here every seek
  runs in that thread: awaited (`Consumer._seek`) or queued with `call_soon_threadsafe` (`ConsumerThread.seek`);
  `thread_loop` is the thread's loop.
- Stop (`AIOKafkaConsumerThread.on_thread_stop`): finishes when a rebalance callback was cut short (see
  `ConsumerThread`); closes the aiokafka consumer's `_fetcher` and `_client` as `AIOKafkaConsumer.stop` would.
- Commits (`commit_offsets`): the thread's `call_thread` (mode's `QueueServiceThread`) and `_ensure_consumer`,
  instead of `AIOKafkaConsumerThread._commit`, which treats a refused commit as a crash.
- Fetching (`resume_fetching`): `_get_active_partitions`, `_paused_partitions` and `_buffered_partitions`, as
  `Consumer.on_buffer_full` and `Consumer.on_buffer_drop` keep them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from mode import Service, ServiceT

log = logging.getLogger("airq.kafka")


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
        # Typed as returning an Awaitable; it is the conductor's `on_message`, a coroutine function (`hand_over`
        # steps the coroutine it returns).
        callback: Callable[[Any], Coroutine[Any, Any, Any]] = self.callback  # type: ignore[assignment]
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
