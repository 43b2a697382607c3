"""Kafka security settings: refused before any connection with one line each, and the password never shown."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from airq_app.kafka.security import (
    KafkaConfigError,
    KafkaSecurity,
    bootstrap_servers,
    describe_kafka_error,
    replication_plan,
)
from airq_app.settings import read_kafka_security
from airq_dev.kafka_pki import Pki, make_ca, make_pki

pytestmark = pytest.mark.unit

PASSWORD = "Pa55-w0rd-only-in-env"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), "store-pass")


def _sasl_env(**overrides: str) -> dict[str, str]:
    env = {
        "AIRQ_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AIRQ_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AIRQ_KAFKA_USERNAME": "airq",
        "AIRQ_KAFKA_PASSWORD": PASSWORD,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def _error(env: dict[str, str], section: dict[str, Any] | None = None) -> str:
    with pytest.raises(ValueError) as raised:
        read_kafka_security(env, section)
    message = str(raised.value)
    assert "\n" not in message and PASSWORD not in message
    return message


def test_plaintext_by_default() -> None:
    security = read_kafka_security({}, {})
    assert security.protocol == "PLAINTEXT"
    assert security.aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials() is None
    assert security.ssl_context is None


def test_unknown_protocol_and_mechanism() -> None:
    assert _error({"AIRQ_KAFKA_SECURITY_PROTOCOL": "TLS"}) == (
        "AIRQ_KAFKA_SECURITY_PROTOCOL: 'TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
    )
    assert _error({}, {"security_protocol": "tls"}) == (
        "pipeline.json: kafka.security_protocol: 'tls' is not one of ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL']"
    )
    assert _error(_sasl_env(AIRQ_KAFKA_SASL_MECHANISM="GSSAPI")) == (
        "AIRQ_KAFKA_SASL_MECHANISM: 'GSSAPI' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
    )


def test_spelling_is_forgiving() -> None:
    security = read_kafka_security(
        _sasl_env(AIRQ_KAFKA_SECURITY_PROTOCOL=" sasl_plaintext ", AIRQ_KAFKA_SASL_MECHANISM="scram_sha_256")
    )
    assert (security.protocol, security.mechanism) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")


def test_sasl_needs_mechanism_username_and_password() -> None:
    assert _error(_sasl_env(AIRQ_KAFKA_SASL_MECHANISM="")) == (
        "AIRQ_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs AIRQ_KAFKA_SASL_MECHANISM: one of PLAIN, SCRAM-SHA-256,"
        " SCRAM-SHA-512"
    )
    assert (
        _error(_sasl_env(AIRQ_KAFKA_PASSWORD="")) == "AIRQ_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs AIRQ_KAFKA_PASSWORD"
    )
    assert (
        _error(_sasl_env(AIRQ_KAFKA_USERNAME="")) == "AIRQ_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs AIRQ_KAFKA_USERNAME"
    )
    assert _error(_sasl_env(AIRQ_KAFKA_USERNAME="", AIRQ_KAFKA_PASSWORD="")) == (
        "AIRQ_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs AIRQ_KAFKA_USERNAME and AIRQ_KAFKA_PASSWORD"
    )


def test_sasl_settings_without_a_sasl_protocol_are_refused() -> None:
    assert _error({"AIRQ_KAFKA_SASL_MECHANISM": "PLAIN"}) == (
        "AIRQ_KAFKA_SASL_MECHANISM is set but AIRQ_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL:"
        " set it to SASL_SSL (or SASL_PLAINTEXT)"
    )
    message = _error(
        {"AIRQ_KAFKA_SECURITY_PROTOCOL": "SSL", "AIRQ_KAFKA_USERNAME": "airq", "AIRQ_KAFKA_PASSWORD": PASSWORD}
    )
    assert message.startswith("AIRQ_KAFKA_USERNAME, AIRQ_KAFKA_PASSWORD are set but AIRQ_KAFKA_SECURITY_PROTOCOL=SSL")


def test_password_is_never_read_from_pipeline_json() -> None:
    assert _error(_sasl_env(), {"password": PASSWORD}) == (
        "pipeline.json: kafka.password: not allowed here: set AIRQ_KAFKA_PASSWORD in the environment or .env"
    )


def test_environment_overrides_pipeline_section(pki: Pki) -> None:
    section = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "username": "app",
        "ca_file": str(pki.ca_file),
    }
    security = read_kafka_security(
        {"AIRQ_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "AIRQ_KAFKA_PASSWORD": PASSWORD}, section
    )
    assert (security.protocol, security.mechanism, security.username) == ("SASL_SSL", "SCRAM-SHA-256", "app")
    assert security.ca_file == str(pki.ca_file)
    assert _error({}, {**section, "security_protocol": "PLAINTEXT"}).startswith(
        "pipeline.json kafka.sasl_mechanism, pipeline.json kafka.username are set but"
        " pipeline.json kafka.security_protocol=PLAINTEXT does not use SASL"
    )


def test_unreadable_or_wrong_ca_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    assert _error(_sasl_env(AIRQ_KAFKA_CA_FILE=str(missing))) == (
        f"AIRQ_KAFKA_CA_FILE: {missing} cannot be read (No such file or directory)"
    )
    assert _error(_sasl_env(AIRQ_KAFKA_CA_FILE=str(tmp_path))) == (
        f"AIRQ_KAFKA_CA_FILE: {tmp_path} cannot be read (Is a directory)"
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert _error(_sasl_env(AIRQ_KAFKA_CA_FILE=str(garbage))).startswith(
        f"AIRQ_KAFKA_CA_FILE: {garbage} holds no PEM CA certificate"
    )


def test_tls_files_need_a_tls_protocol_and_a_key_needs_a_certificate(pki: Pki) -> None:
    assert _error({"AIRQ_KAFKA_CA_FILE": str(pki.ca_file)}) == (
        "AIRQ_KAFKA_CA_FILE set but AIRQ_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS: set it to SSL or SASL_SSL"
    )
    env = {"AIRQ_KAFKA_SECURITY_PROTOCOL": "SSL", "AIRQ_KAFKA_KEY_FILE": str(pki.client_key)}
    assert _error(env) == "AIRQ_KAFKA_KEY_FILE is set without AIRQ_KAFKA_CERT_FILE"


def test_client_certificate_must_match_its_key(pki: Pki) -> None:
    env = {
        "AIRQ_KAFKA_SECURITY_PROTOCOL": "SSL",
        "AIRQ_KAFKA_CA_FILE": str(pki.ca_file),
        "AIRQ_KAFKA_CERT_FILE": str(pki.client_cert),
        "AIRQ_KAFKA_KEY_FILE": str(pki.broker_key),
    }
    assert "not a PEM certificate and matching unencrypted key" in _error(env)
    security = read_kafka_security({**env, "AIRQ_KAFKA_KEY_FILE": str(pki.client_key)})
    context = security.ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "airq test ca"),),)]


def test_no_password_in_repr_str_public_or_errors(pki: Pki) -> None:
    security = read_kafka_security(_sasl_env(AIRQ_KAFKA_CA_FILE=str(pki.ca_file)))
    assert security.password == PASSWORD
    for text in (repr(security), str(security), str(security.public()), repr(security.faust_credentials())):
        assert PASSWORD not in text
    assert security.public() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "username": "airq",
        "ca_file": True,
        "client_certificate": False,
    }
    line = describe_kafka_error(RuntimeError(f"broker said: bad password {PASSWORD}"), security)
    assert line == "Kafka error: RuntimeError: broker said: bad password ***"


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [("SSL", None), ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_PLAINTEXT", "PLAIN")],
)
def test_faust_credentials_give_faust_the_same_aiokafka_settings(
    pki: Pki, protocol: str, mechanism: str | None
) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    env = {"AIRQ_KAFKA_SECURITY_PROTOCOL": protocol}
    if mechanism:
        env.update(
            {"AIRQ_KAFKA_SASL_MECHANISM": mechanism, "AIRQ_KAFKA_USERNAME": "airq", "AIRQ_KAFKA_PASSWORD": PASSWORD}
        )
    if protocol.endswith("SSL"):
        env["AIRQ_KAFKA_CA_FILE"] = str(pki.ca_file)
    security = read_kafka_security(env)
    through_faust = dict(credentials_to_aiokafka_auth(security.faust_credentials()))
    if protocol == "SASL_PLAINTEXT":
        assert through_faust.pop("ssl_context") is None
    assert through_faust == security.aiokafka_kwargs()


def test_tls_context_is_shared_and_uses_only_the_given_ca(pki: Pki, tmp_path: Path) -> None:
    other_ca, _ = make_ca(tmp_path, "other")
    security = KafkaSecurity(protocol="SSL", ca_file=str(other_ca))
    assert security.aiokafka_kwargs()["ssl_context"] is security.ssl_context
    assert [c["subject"] for c in security.ssl_context.get_ca_certs()] == [((("commonName", "airq test other"),),)]


@pytest.mark.parametrize(
    ("brokers", "configured", "min_insync", "plan"),
    [
        (1, None, None, (1, 1)),
        (2, None, None, (2, 2)),
        (3, None, None, (3, 2)),
        (7, None, None, (3, 2)),
        (5, 5, None, (5, 2)),
        (3, 1, None, (1, 1)),
        (3, None, 3, (3, 3)),
        (3, 2, 1, (2, 1)),
    ],
)
def test_replication_plan(brokers: int, configured: int | None, min_insync: int | None, plan: tuple[int, int]) -> None:
    assert replication_plan(brokers, configured, min_insync) == plan


@pytest.mark.parametrize(
    ("brokers", "configured", "min_insync", "message"),
    [
        (1, 3, None, "AIRQ_KAFKA_REPLICATION_FACTOR: 3 copies need 3 brokers, the cluster has 1"),
        (3, 0, None, "AIRQ_KAFKA_REPLICATION_FACTOR: 0 is less than 1"),
        (3, None, 4, "min.insync.replicas: 4 is more than the replication factor 3: every write would fail"),
        (1, None, 2, "min.insync.replicas: 2 is more than the replication factor 1: every write would fail"),
        (3, None, 0, "min.insync.replicas: 0 is less than 1"),
        (0, None, None, "the Kafka cluster reports 0 brokers"),
    ],
)
def test_replication_plan_refuses(brokers: int, configured: int | None, min_insync: int | None, message: str) -> None:
    with pytest.raises(KafkaConfigError) as raised:
        replication_plan(brokers, configured, min_insync)
    assert str(raised.value) == message


def test_bootstrap_servers() -> None:
    assert bootstrap_servers("kafka://h1:9092,h2:9093") == [("h1", 9092), ("h2", 9093)]
    assert bootstrap_servers("h1;kafka://[::1]:29092") == [("h1", 9092), ("::1", 29092)]
