"""The local broker: real Kafka from Maven jars, answering on loopback, never auto-creating topics."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from airq_dev import local_kafka

pytestmark = pytest.mark.integration


def test_broker_answers_metadata(kafka: str) -> None:
    assert local_kafka.answers_metadata(kafka)


def test_topics_are_never_auto_created(kafka: str) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, request_timeout_ms=3000)
        await producer.start()
        try:
            await producer.send_and_wait(f"nobody-created-{uuid.uuid4().hex[:6]}", b"x")
        finally:
            await producer.stop()

    with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
        asyncio.run(send())


def test_start_reuses_a_running_broker(kafka: str, capsys: pytest.CaptureFixture[str]) -> None:
    if kafka != local_kafka.LocalBroker().bootstrap:
        pytest.skip("AIRQ_BROKER points elsewhere")
    assert local_kafka.start() == kafka
    assert "already running" in capsys.readouterr().out


def test_port_taken_by_something_else_is_reported(tmp_path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        broker = local_kafka.LocalBroker(state_dir=tmp_path, port=port, controller_port=port + 1)
        with pytest.raises(local_kafka.BrokerError, match=f"Port {port} is taken"):
            local_kafka.start(broker)
