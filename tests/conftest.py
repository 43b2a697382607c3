from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airq_dev import harness as support
from airq_dev import local_kafka
from airq_dev.harness import Pipeline


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """The bootstrap address of a real broker: AIRQ_BROKER, the running local one, or one started here."""
    configured = os.environ.get("AIRQ_BROKER")
    if configured:
        yield configured.split("://", 1)[-1]
        return
    broker = local_kafka.LocalBroker()
    already = local_kafka.answers_metadata(broker.bootstrap, timeout=2.0)
    try:
        bootstrap = local_kafka.start(broker)
    except local_kafka.BrokerError as exc:
        pytest.fail(f"cannot start the local Kafka broker: {exc}")
    yield bootstrap
    if not already:
        local_kafka.stop(broker)


@pytest.fixture
def pipeline(kafka: str, tmp_path: Path) -> Iterator[Pipeline]:
    """An isolated pipeline (own topics, app id, output dir); its workers are stopped afterwards."""
    p = Pipeline(tmp_path, kafka)
    yield p
    p.stop_all()


@pytest.fixture(autouse=True)
def stop_leftover_workers() -> Iterator[None]:
    """Stop any worker a test left running (a failed assertion, or a test that does not stop its own)."""
    yield
    while support.STARTED_WORKERS:
        worker = support.STARTED_WORKERS.pop()
        if worker.alive():
            worker.stop(timeout=30)
