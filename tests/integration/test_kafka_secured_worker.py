"""A worker on a SASL_SSL broker (SCRAM-SHA-512 over TLS from a CA made with openssl), as a managed cluster needs.

- With the right settings every client the worker opens (Faust's consumer and producer, the topic admin, the poller
  election, the readiness probe) authenticates, and a produced workload ends up in the files exactly once.
- With a wrong password, a CA that did not sign the broker's certificate, or no TLS at all, the worker does not
  crash or crash-loop: it logs one clear line per retry with backoff, answers /airq/ready with 503 naming
  authentication or TLS, and is still running 30 s later. The password is in no log line, status or output.

One broker for the module (about 5 s to start). The refused workers start first, so they have waited 30 s by the
time the second test checks them, while the first test runs.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airq_dev import harness
from airq_dev.harness import (
    Pipeline,
    Worker,
    encode,
    finished_records,
    free_port,
    http_get,
    measurement,
    produce,
    wait_for,
)
from airq_dev.kafka_cluster import SecureBroker
from airq_dev.kafka_node import BrokerError
from airq_dev.kafka_pki import make_ca

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WRONG_PASSWORD = "wrong-kafka-password-5e1d"
WAIT_S = 30.0
UNREACHABLE_OPENAQ = "http://127.0.0.1:9"  # nothing listens: the elected poller's requests fail quickly


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    b = SecureBroker(tmp_path_factory.mktemp("secure"), sasl_ssl_port=free_port(), controller_port=free_port())
    began = time.monotonic()
    try:
        b.start()
    except BrokerError as exc:
        b.stop()
        pytest.fail(f"cannot start the secured Kafka broker: {exc}")
    print(f"\nsecured broker up in {time.monotonic() - began:.1f} s")
    yield b
    b.stop()


def kafka_env(broker: SecureBroker, **overrides: str) -> dict[str, str]:
    """The settings a user puts in `.env` for a SASL_SSL cluster."""
    env = {
        "AIRQ_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AIRQ_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AIRQ_KAFKA_USERNAME": broker.username,
        "AIRQ_KAFKA_PASSWORD": broker.password,
        "AIRQ_KAFKA_CA_FILE": str(broker.ca_file),
    }
    env.update(overrides)
    return env


Refused = tuple[dict[str, Worker], float]  # the workers by what is wrong with them, and when they started


@pytest.fixture(scope="module")
def refused(broker: SecureBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Refused]:
    base = tmp_path_factory.mktemp("refused")
    other_ca, _ = make_ca(base, "other")
    settings = {
        "password": kafka_env(broker, AIRQ_KAFKA_PASSWORD=WRONG_PASSWORD),
        "untrusted": kafka_env(broker, AIRQ_KAFKA_CA_FILE=str(other_ca)),
        "plaintext": {},
    }
    workers = {}
    for name, env in settings.items():
        p = Pipeline(base / name, broker.bootstrap, kafka_env=env)
        workers[name] = p.worker(name, role="all", OPENAQ_BASE_URL=UNREACHABLE_OPENAQ).start(wait_ready=False)
        # Kept running across this module's tests (conftest stops the workers a test leaves behind): stopped below.
        harness.STARTED_WORKERS.remove(workers[name])
    yield workers, time.monotonic()
    for w in workers.values():
        w.stop()


def _leaks(text: str, broker: SecureBroker) -> list[str]:
    return [secret for secret in (broker.password, WRONG_PASSWORD) if secret in text]


def test_worker_on_sasl_ssl_scram_sha_512_end_to_end(broker: SecureBroker, refused: Refused, tmp_path: Path) -> None:
    began = time.monotonic()
    p = Pipeline(tmp_path, broker.bootstrap, kafka_env=kafka_env(broker), output__rotate_max_age_s=1)
    w = p.worker("a", role="all", OPENAQ_BASE_URL=UNREACHABLE_OPENAQ).start()  # ready: group joined, election too
    hour = (datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    messages = [measurement(300_000 + i, hour, value=float(i % 90), location_id=30_000 + i // 4) for i in range(2000)]
    produce(broker.bootstrap, p.topic, [encode(m) for m in messages], security=broker.security())
    wanted = {(m["sensor_id"], m["datetime_utc"]) for m in messages}
    wait_for(
        lambda: {(r["sensor_id"], r["datetime_utc"]) for r in finished_records(p.output_dir)} >= wanted,
        90,
        interval=1,
        what="every measurement written",
    )
    counts = Counter((r["sensor_id"], r["datetime_utc"]) for r in finished_records(p.output_dir))
    assert set(counts) == wanted and set(counts.values()) == {1}

    status = w.status()
    assert status["settings"]["kafka"] == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "username": broker.username,
        "ca_file": True,
        "client_certificate": False,
        "replication_factor": "auto",
        "min_insync_replicas": "auto",
    }
    assert status["poller"], status  # the election's consumer group works over SASL_SSL too
    pages = [json.dumps(status), http_get(w.url + "/metrics")[1].decode(), json.dumps(w.get("/airq/ready")[1])]
    w.stop()
    outputs = [path.read_text() for path in p.output_dir.rglob("*.jsonl")]
    assert not _leaks("\n".join([w.log_text(), *pages, *outputs]), broker), "the Kafka password leaked"
    assert "created topics" in w.log_text() and "replication factor 1, min.insync.replicas 1, 1 brokers" in w.log_text()
    print(f"\nSASL_SSL end to end: {len(messages)} measurements written; test {time.monotonic() - began:.1f} s")


EXPECTED = {
    "password": "Kafka authentication failed for user airq (SCRAM-SHA-512)",
    "untrusted": "Kafka TLS handshake failed: certificate not trusted",
    "plaintext": "Kafka broker closed the connection (a plaintext client on a TLS port?)",
}


def test_refused_settings_wait_with_one_clear_line_and_503(broker: SecureBroker, refused: Refused) -> None:
    workers, started = refused
    time.sleep(max(0.0, started + WAIT_S - time.monotonic()))
    for name, w in workers.items():
        assert w.alive(), f"worker {name} exited:\n{w.log_tail()}"
        assert w.starts == 1
        assert w.get("/airq/health")[0] == 200
        code, body = w.get("/airq/ready")
        assert code == 503, (name, body)
        assert len(body["problems"]) == 1 and body["problems"][0].startswith(EXPECTED[name]), (name, body)
        log = w.log_text()
        lines = [line for line in log.splitlines() if EXPECTED[name] in line]
        # One line per retry, with backoff (1, 2, 4, 8, 16 s...): a handful in 30 s, not a tight loop.
        assert 3 <= len(lines) <= 8, (name, len(lines), w.log_tail())
        assert all("retrying in" in line for line in lines)
        assert "Traceback" not in log, w.log_tail()
        assert not _leaks(log + json.dumps(body) + json.dumps(w.get("/airq/status")[1]), broker)
    print(f"\nrefused workers still waiting after {time.monotonic() - started:.0f} s: {sorted(workers)}")
