"""The producer: idempotent, replicated topics, and a buffer of table updates that outlives a Kafka outage.

Faust internals relied on (faust-streaming and aiokafka at `PINNED_VERSIONS`; the fingerprints in
`tests/unit/test_faust_internals.py` name each upstream object):

- `ProducerBuffer.max_messages`: past it a table write waits (`ProducerBuffer.wait_until_ebb`) while the buffer
  drains one message at a time; Faust's 100 makes that wait happen every few events.
- `Producer` (installed through `Transport.Producer`): idempotence on (`_settings_extra`), airq's replication factor
  and `min.insync.replicas` for every topic Faust creates (`create_topic`), `flush` and `on_stop` bounded at stop,
  and a buffer replacing the one `Producer.__init__` makes, whose `ProducerBuffer._send_pending` (called by
  `ProducerBuffer._handle_pending`) retries a send the producer cannot take yet instead of ending its task, which
  would stop the worker. aiokafka: the accumulator's batch expiry (`MessageAccumulator._batch_ttl`, set by
  `_append_batch`, checked through `MessageBatch.expired` in `drain_by_nodes`; off, so an outage fails no changelog
  batch), its `_batches` and `_pending_batches` (counted as undelivered), and `Sender.sender_task` (cancelled after
  `STOP_GRACE_S` when the worker stops while Kafka is unreachable, where Faust's flush would wait for ever;
  `AIOKafkaProducer.stop` then returns without flushing).
- The leader topic's name (`LeaderAssignor._leader_topic_name`), created with airq's other topics.
- The aiokafka producer under Faust's (`Producer._producer`), for the table buffer's record batches.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types import FutureMessage

PRODUCER_BUFFER_MESSAGES = 10_000

log = logging.getLogger("airq.kafka")


def set_producer_buffer_limit(messages: int = PRODUCER_BUFFER_MESSAGES) -> None:
    ProducerBuffer.max_messages = messages


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


def kafka_producer(app: Any) -> Any:
    """The started aiokafka producer under Faust's producer (its batch API: `create_batch`, `send_batch`)."""
    producer = app.producer._producer
    if producer is None:
        raise RuntimeError("the Kafka producer is not started")
    return producer
