"""Real TLS and SASL against a real broker: airq's client settings authenticate, and every failure has one clear line.

One broker for the module (CA and certificates made with openssl, SCRAM users added at format time): about 5 s
to start on 2 cores; the module takes about 15 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from faust.transport.drivers import aiokafka as aiokafka_driver

from airq_app.kafka.security import KafkaSecurity, connection_error, describe_kafka_error
from airq_app.settings import read_kafka_security
from airq_dev.harness import free_port
from airq_dev.kafka_cluster import SecureBroker
from airq_dev.kafka_node import BrokerError
from airq_dev.kafka_pki import make_ca

pytestmark = pytest.mark.integration

WRONG_PASSWORD = "not-the-password-7f3a"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    b = SecureBroker(
        tmp_path_factory.mktemp("secure"),
        sasl_ssl_port=free_port(),
        controller_port=free_port(),
        ssl_port=free_port(),
        plaintext_port=free_port(),
    )
    began = time.monotonic()
    try:
        b.start()
    except BrokerError as exc:
        b.stop()
        pytest.fail(f"cannot start the secured Kafka broker: {exc}")
    print(f"secured broker up in {time.monotonic() - began:.1f} s")
    yield b
    b.stop()
    assert b.pid is None


def _env(broker: SecureBroker, **overrides: str) -> dict[str, str]:
    env = {
        "AIRQ_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AIRQ_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AIRQ_KAFKA_USERNAME": broker.username,
        "AIRQ_KAFKA_PASSWORD": broker.password,
        "AIRQ_KAFKA_CA_FILE": str(broker.ca_file),
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


async def _start_producer(bootstrap: str, security: KafkaSecurity) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security.aiokafka_kwargs())
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


async def _round_trip(bootstrap: str, security: KafkaSecurity, values: list[bytes]) -> list[bytes]:
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.aiokafka_kwargs())
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, 1, 1)])
        assert all(code == 0 for _, code, *_ in response.topic_errors), response
    finally:
        await admin.close()
    producer = await _start_producer(bootstrap, security)
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **security.aiokafka_kwargs()
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 20
        while len(got) < len(values) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            got += [m.value for msgs in batches.values() for m in msgs if m.value is not None]
    finally:
        await consumer.stop()
    return got


def _failure(bootstrap: str, security: KafkaSecurity) -> tuple[BaseException, BaseException]:
    """What a client's start() raises, and the real cause connection_error() finds (there must be one)."""

    async def go() -> tuple[BaseException, BaseException]:
        with pytest.raises(KafkaConnectionError) as raised:
            await _start_producer(bootstrap, security)
        cause = await connection_error(bootstrap, security, timeout=10)
        assert cause is not None, "connection_error() found no cause"
        return raised.value, cause

    return asyncio.run(go())


def test_scram_sha_512_over_tls_produces_and_consumes(broker: SecureBroker) -> None:
    security = read_kafka_security(_env(broker), {"security_protocol": "PLAINTEXT"})
    assert security.protocol == "SASL_SSL" and security.mechanism == "SCRAM-SHA-512"
    values = [f"m{i}".encode() for i in range(20)]
    assert asyncio.run(_round_trip(broker.bootstrap, security, values)) == values


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_other_mechanisms_authenticate(broker: SecureBroker, mechanism: str) -> None:
    security = read_kafka_security(_env(broker, AIRQ_KAFKA_SASL_MECHANISM=mechanism))
    assert asyncio.run(connection_error(broker.bootstrap, security)) is None
    assert asyncio.run(connection_error(broker.bootstrap, broker.security(mechanism, WRONG_PASSWORD))) is not None


def test_wrong_password_names_authentication_and_user_not_password(
    broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    security = read_kafka_security(_env(broker, AIRQ_KAFKA_PASSWORD=WRONG_PASSWORD))
    raised, cause = _failure(broker.bootstrap, security)
    assert isinstance(cause, SaslAuthenticationFailed)
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in str(cause)
    line = describe_kafka_error(cause, security)
    assert line == "Kafka authentication failed for user airq (SCRAM-SHA-512)"
    # aiokafka's own exception only says that bootstrapping failed; the line says where and how.
    generic = describe_kafka_error(raised, security)
    assert generic == f"Kafka bootstrap failed: no broker at {broker.bootstrap} accepted a SASL_SSL connection"
    for text in (line, generic, caplog.text, repr(security), str(security), str(security.public())):
        assert WRONG_PASSWORD not in text and broker.password not in text


def test_untrusted_ca_names_tls_certificate(broker: SecureBroker, tmp_path: Path) -> None:
    other_ca, _ = make_ca(tmp_path, "other")
    security = read_kafka_security(_env(broker, AIRQ_KAFKA_CA_FILE=str(other_ca)))
    _, cause = _failure(broker.bootstrap, security)
    line = describe_kafka_error(cause, security)
    assert line == "Kafka TLS handshake failed: certificate not trusted (self-signed certificate in certificate chain)"
    # Without a CA file the system's CAs do not know the broker's either, and the line says what to set.
    system = read_kafka_security(_env(broker, AIRQ_KAFKA_CA_FILE=""))
    _, cause = _failure(broker.bootstrap, system)
    assert describe_kafka_error(cause, system).endswith(
        "set AIRQ_KAFKA_CA_FILE to the CA that signed the broker's certificate"
    )


def test_plaintext_client_on_tls_port_is_one_clear_line(broker: SecureBroker) -> None:
    security = read_kafka_security({})
    _, cause = _failure(broker.bootstrap, security)
    line = describe_kafka_error(cause, security)
    assert line.startswith("Kafka broker closed the connection (a plaintext client on a TLS port?)"), line


def test_tls_client_on_plaintext_port_is_one_clear_line(broker: SecureBroker) -> None:
    assert broker.plaintext_bootstrap is not None
    security = KafkaSecurity(protocol="SSL", ca_file=str(broker.ca_file))
    _, cause = _failure(broker.plaintext_bootstrap, security)
    assert isinstance(cause, ConnectionResetError)
    line = describe_kafka_error(cause, security)
    assert line == "Kafka broker reset the connection during the TLS handshake (a TLS client on a plaintext port?)"
    assert asyncio.run(connection_error(broker.plaintext_bootstrap, KafkaSecurity())) is None


def test_mutual_tls_with_client_certificate(broker: SecureBroker) -> None:
    assert broker.ssl_bootstrap is not None
    env = {
        "AIRQ_KAFKA_SECURITY_PROTOCOL": "SSL",
        "AIRQ_KAFKA_CA_FILE": str(broker.ca_file),
        "AIRQ_KAFKA_CERT_FILE": str(broker.client_cert_file),
        "AIRQ_KAFKA_KEY_FILE": str(broker.client_key_file),
    }
    security = read_kafka_security(env)
    assert asyncio.run(_round_trip(broker.ssl_bootstrap, security, [b"mtls"])) == [b"mtls"]
    without = KafkaSecurity(protocol="SSL", ca_file=str(broker.ca_file))
    _, cause = _failure(broker.ssl_bootstrap, without)
    assert "requires a client certificate" in describe_kafka_error(cause, without)
    # An SSL client on the SASL_SSL port gets through TLS, and is then turned away for want of SASL.
    _, cause = _failure(broker.bootstrap, without)
    assert "needs SASL" in describe_kafka_error(cause, without)


def test_faust_passes_scram_and_tls_to_its_producer_and_consumer(broker: SecureBroker) -> None:
    import faust

    security = broker.security("SCRAM-SHA-512")
    app = faust.App(
        f"sec-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{broker.bootstrap}",
        broker_credentials=security.faust_credentials(),
        web_enabled=False,
    )
    topic = f"faust-{uuid.uuid4().hex[:8]}"

    async def go() -> set[str]:
        producer = app.producer
        await producer.start()
        try:
            await producer.create_topic(topic, 1, 1)
            await producer.send_and_wait(topic, b"k", b"v", partition=None, timestamp=None, headers=None)
        finally:
            await producer.stop()
        assert isinstance(app.consumer, aiokafka_driver.Consumer)
        assert isinstance(app.transport, aiokafka_driver.Transport)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        client = consumer._client
        assert (client._security_protocol, client._sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
        assert client._ssl_context is security.ssl_context
        await consumer.start()
        try:
            return set(await consumer.topics())
        finally:
            await consumer.stop()

    assert topic in asyncio.run(go())
