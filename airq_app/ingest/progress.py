"""The ingest progress in Kafka: a compacted topic keyed by sensor id, shared by every ingest-capable worker.

A sensor's record (`gaps.SensorProgress`) is written only after Kafka acknowledged what it describes and read in full
whenever this worker becomes the poller; the key `given-up` holds the hours given up (`gaps.GivenUp`). A late record
from a poller that lost its election is still true of Kafka: at worst hours are asked again and the stream drops
the repeats.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from airq_app.ingest.gaps import GivenUp, SensorProgress

log = logging.getLogger("airq.poller")

GIVEN_UP_KEY = b"given-up"
PARTITIONS = 1  # thousands of sensors' records: one partition, read in well under a second


async def read_progress(
    bootstrap: list[str], topic: str, client_kwargs: dict[str, Any] | None = None
) -> tuple[dict[int, SensorProgress], GivenUp]:
    """Every sensor's latest progress record, read from the start of the topic to its end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=30000, **(client_kwargs or {})
    )
    await consumer.start()
    sensors: dict[int, SensorProgress] = {}
    given_up = GivenUp()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        bad = 0
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    key = record.key or b""
                    if key == GIVEN_UP_KEY:
                        if record.value is not None:
                            try:
                                given_up = GivenUp.decode(record.value)
                            except ValueError:
                                bad += 1
                        continue
                    try:
                        sensor_id = int(key)
                    except ValueError:
                        bad += 1
                        continue
                    if record.value is None:
                        sensors.pop(sensor_id, None)
                        continue
                    try:
                        sensors[sensor_id] = SensorProgress.decode(record.value)
                    except ValueError:
                        bad += 1
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if bad:
            log.warning("airq: %d unreadable records in %s were skipped", bad, topic)
    finally:
        await _stop(consumer)
    return sensors, given_up


async def _stop(consumer: AIOKafkaConsumer) -> None:
    """Stop the consumer; aiokafka may raise CancelledError from its own background task here, which must not
    cancel the caller (the poller's timer) unless the caller itself is being cancelled."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
