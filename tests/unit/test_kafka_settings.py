"""The `kafka` section of pipeline.json and the AIRQ_KAFKA_* / AIRQ_BROKER variables as the worker reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airq_app.settings import ConfigError, load_settings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Kafka-pw"


def pipeline(tmp_path: Path, kafka: dict | None = None) -> dict[str, str]:
    data = json.loads((ROOT / "pipeline.json").read_text())
    data.pop("$schema", None)
    if kafka is not None:
        data["kafka"] = kafka
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(data))
    return {"AIRQ_PIPELINE": str(path)}


def ca_file(tmp_path: Path) -> str:
    """A PEM CA bundle that exists on this machine: the system's."""
    import ssl

    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no system CA bundle to use as a CA file")


def test_defaults_are_plaintext_and_automatic_replication(tmp_path: Path) -> None:
    s = load_settings(pipeline(tmp_path), dotenv=False)
    assert s.kafka.security.protocol == "PLAINTEXT" and s.kafka.security.password is None
    assert (s.kafka.replication_factor, s.kafka.min_insync_replicas) == (None, None)
    assert s.kafka.producer_request_timeout_s == 1200.0
    assert s.public()["kafka"]["replication_factor"] == "auto"


def test_pipeline_section_with_password_from_the_environment(tmp_path: Path) -> None:
    ca = ca_file(tmp_path)
    kafka = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "username": "airq",
        "ca_file": ca,
        "replication_factor": 3,
        "min_insync_replicas": 2,
        "producer_request_timeout_s": 30,
    }
    s = load_settings({**pipeline(tmp_path, kafka), "AIRQ_KAFKA_PASSWORD": PASSWORD}, dotenv=False)
    sec = s.kafka.security
    assert (sec.protocol, sec.mechanism, sec.username, sec.password, sec.ca_file) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "airq",
        PASSWORD,
        ca,
    )
    assert (s.kafka.replication_factor, s.kafka.min_insync_replicas, s.kafka.producer_request_timeout_s) == (3, 2, 30.0)
    assert PASSWORD not in repr(s) and PASSWORD not in json.dumps(s.public())
    assert s.public()["kafka"] == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "username": "airq",
        "ca_file": True,
        "client_certificate": False,
        "replication_factor": 3,
        "min_insync_replicas": 2,
    }
    creds = sec.faust_credentials()
    assert creds.username == "airq" and creds.ssl_context is sec.ssl_context


def test_environment_overrides_the_section(tmp_path: Path) -> None:
    env = {
        **pipeline(tmp_path, {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "username": "file-user"}),
        "AIRQ_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "AIRQ_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "AIRQ_KAFKA_USERNAME": "env-user",
        "AIRQ_KAFKA_PASSWORD": PASSWORD,
        "AIRQ_KAFKA_REPLICATION_FACTOR": "2",
        "AIRQ_KAFKA_PRODUCER_TIMEOUT_S": "5",
    }
    s = load_settings(env, dotenv=False)
    assert (s.kafka.security.protocol, s.kafka.security.mechanism, s.kafka.security.username) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-256",
        "env-user",
    )
    assert (s.kafka.replication_factor, s.kafka.producer_request_timeout_s) == (2, 5.0)
    # "auto" in the environment wins over a number in the file.
    env = {**pipeline(tmp_path, {"replication_factor": 2}), "AIRQ_KAFKA_REPLICATION_FACTOR": "auto"}
    auto = load_settings(env, dotenv=False)
    assert auto.kafka.replication_factor is None


def test_password_in_pipeline_json_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(pipeline(tmp_path, {"password": PASSWORD}), dotenv=False)
    assert "kafka.password: not allowed here: set AIRQ_KAFKA_PASSWORD" in str(raised.value)
    assert PASSWORD not in str(raised.value)


@pytest.mark.parametrize(
    ("kafka", "env", "expected"),
    [
        ({"replication_factor": "three"}, {}, "kafka.replication_factor: 'three' does not match '^auto$'"),
        ({"replication_factor": 0}, {}, "kafka.replication_factor: 0 is less than the minimum of 1"),
        ({}, {"AIRQ_KAFKA_REPLICATION_FACTOR": "three"}, "AIRQ_KAFKA_REPLICATION_FACTOR: 'three' is not an integer"),
        ({}, {"AIRQ_KAFKA_REPLICATION_FACTOR": "0"}, "AIRQ_KAFKA_REPLICATION_FACTOR: 0 is out of range (1..32)"),
        (
            {"replication_factor": 2, "min_insync_replicas": 3},
            {},
            "kafka.min_insync_replicas: 3 is more than the replication factor 2",
        ),
        ({"security_protocol": "TLS"}, {}, "kafka.security_protocol: 'TLS' is not one of"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, {}, "needs AIRQ_KAFKA_USERNAME"),
        ({"sasl_mechanism": "PLAIN"}, {}, "does not use SASL"),
        ({}, {"AIRQ_KAFKA_SECURITY_PROTOCOL": "SSL", "AIRQ_KAFKA_CA_FILE": "/nonexistent/ca.pem"}, "cannot be read"),
        ({}, {"AIRQ_KAFKA_PRODUCER_TIMEOUT_S": "0"}, "AIRQ_KAFKA_PRODUCER_TIMEOUT_S: 0.0 must be at least 1.0"),
    ],
)
def test_bad_kafka_settings_name_the_setting(tmp_path: Path, kafka: dict, env: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**pipeline(tmp_path, kafka), **env}, dotenv=False)
    assert expected in str(raised.value)


def test_broker_list(tmp_path: Path) -> None:
    env = pipeline(tmp_path)
    s = load_settings({**env, "AIRQ_BROKER": "kafka://h1:9092,h2:9093, h3:9094"}, dotenv=False)
    assert s.kafka.broker_urls == ["kafka://h1:9092", "kafka://h2:9093", "kafka://h3:9094"]
    assert load_settings({**env, "AIRQ_BROKER": "h1:9092;h2:9092"}, dotenv=False).kafka.broker_urls == [
        "kafka://h1:9092",
        "kafka://h2:9092",
    ]
    assert load_settings({**env, "AIRQ_BROKER": "10.0.0.5:9093"}, dotenv=False).kafka.broker == "kafka://10.0.0.5:9093"
    for bad in ("kafka://h1:x", "kafka://h1:9092,:9093", "http://h1:9092", " , "):
        with pytest.raises(ConfigError, match="AIRQ_BROKER"):
            load_settings({**env, "AIRQ_BROKER": bad}, dotenv=False)
