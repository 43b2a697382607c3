"""The worker's Kafka producer settings and its buffer of table updates, without a broker.

What a real outage does to them is in tests/integration/test_kafka_outage.py; here: which failures are retried,
that a retried update is sent once and in order, what readiness says meanwhile, and what `create_app` hands Faust.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, NotLeaderForPartitionError, RecordTooLargeError
from faust.auth import SASLCredentials
from faust.exceptions import ProducerSendError

from airq_app.kafka import faust_internals
from airq_app.kafka.faust_internals import producer as faust_producer
from airq_app.kafka.faust_internals.producer import RetryingProducerBuffer, _retriable, producer_problem
from airq_app.settings import load_settings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _send_error(cause: Exception) -> ProducerSendError:
    try:
        raise ProducerSendError(f"Error while sending: {cause!r}") from cause
    except ProducerSendError as exc:
        return exc


def test_which_send_failures_are_retried() -> None:
    assert _retriable(_send_error(KafkaTimeoutError()))
    assert _retriable(_send_error(NotLeaderForPartitionError()))
    assert _retriable(KafkaTimeoutError())
    assert not _retriable(_send_error(RecordTooLargeError()))  # would fail the same way for ever
    assert not _retriable(ValueError("a bug"))


class FlakyChannel:
    """A topic whose producer cannot take a message the first `failures` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.published: list[str] = []
        self.attempts = 0

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise _send_error(KafkaTimeoutError())
        self.published.append(fut.message.value)


def _message(channel: FlakyChannel, value: str) -> Any:
    return SimpleNamespace(message=SimpleNamespace(channel=channel, value=value), done=lambda: False)


def test_an_update_the_producer_cannot_take_is_retried_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_producer, "SEND_RETRY_FIRST_DELAY_S", 0.01)
    channel = FlakyChannel(failures=3)
    seen: list[str | None] = []

    async def go() -> None:
        buffer = RetryingProducerBuffer()
        app = SimpleNamespace(should_stop=False, _producer=SimpleNamespace(buffer=buffer))
        buffer.app = app  # type: ignore[assignment]

        async def watch() -> None:
            while not channel.published:
                seen.append(producer_problem(app, after_s=0.0))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        await buffer._send_pending(_message(channel, "first"))
        await buffer._send_pending(_message(channel, "second"))
        await watcher
        assert buffer.stalled_since is None and producer_problem(app, after_s=0.0) is None

    asyncio.run(go())
    assert channel.published == ["first", "second"] and channel.attempts == 5
    problems = [s for s in seen if s]
    assert problems and problems[-1].startswith("Kafka producer has not delivered table updates for")
    assert "KafkaTimeoutError" in problems[-1]


def test_a_non_retriable_failure_still_raises() -> None:
    class Broken(FlakyChannel):
        async def publish_message(self, fut: Any, wait: bool = False) -> None:
            raise _send_error(RecordTooLargeError())

    async def go() -> None:
        buffer = RetryingProducerBuffer()
        buffer.app = SimpleNamespace(should_stop=False)  # type: ignore[assignment]
        await buffer._send_pending(_message(Broken(0), "big"))

    with pytest.raises(ProducerSendError):
        asyncio.run(go())


def test_create_app_hands_faust_the_cluster_settings(tmp_path: Path) -> None:
    from airq_app.application import create_app

    paths = ssl.get_default_verify_paths()
    ca = next((c for c in (paths.cafile, paths.openssl_cafile) if c and Path(c).is_file()), None)
    if ca is None:
        pytest.skip("no system CA bundle to use as a CA file")
    pipeline = json.loads((ROOT / "pipeline.json").read_text())
    pipeline.pop("$schema", None)
    (tmp_path / "pipeline.json").write_text(json.dumps(pipeline))
    env = {
        "AIRQ_PIPELINE": str(tmp_path / "pipeline.json"),
        "AIRQ_BROKER": "kafka://k1:9096,k2:9096,k3:9096",
        "AIRQ_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AIRQ_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AIRQ_KAFKA_USERNAME": "airq",
        "AIRQ_KAFKA_PASSWORD": "pw-not-shown",
        "AIRQ_KAFKA_CA_FILE": ca,
        "AIRQ_KAFKA_PRODUCER_TIMEOUT_S": "7",
        "AIRQ_DATA_DIR": str(tmp_path / "data"),
    }
    app = create_app(load_settings(env, dotenv=False))
    assert app.bootstrap_servers() == ["k1:9096", "k2:9096", "k3:9096"]
    assert app.conf.producer_acks == -1 and app.conf.producer_request_timeout == 7.0
    creds = app.conf.broker_credentials
    assert isinstance(creds, SASLCredentials)
    assert (creds.username, creds.mechanism.value, creds.protocol.value) == ("airq", "SCRAM-SHA-512", "SASL_SSL")
    producer = app.producer
    assert isinstance(producer, faust_producer.Producer)
    assert isinstance(producer.buffer, RetryingProducerBuffer)
    settings = {**producer._settings_default(), **producer._settings_auth(), **producer._settings_extra()}
    assert settings["acks"] == -1 and settings["enable_idempotence"] is True
    assert settings["security_protocol"] == "SASL_SSL" and settings["sasl_plain_username"] == "airq"
    faust_internals.set_replication(app, 3, 2)
    assert app.conf.topic_replication_factor == 3 and producer.replication == (3, 2)
    assert "pw-not-shown" not in repr(app.airq_settings)
