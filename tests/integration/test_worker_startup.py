"""A worker started the way a user starts it: `faust -A airq_app worker` in a subprocess."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from airq_dev.harness import VENV_BIN, Pipeline, encode, free_port, measurement, produce, recent_hour, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def describe_partitions(bootstrap: str, topics: list[str]) -> dict[str, int]:
    async def go() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}

    return asyncio.run(go())


def test_worker_creates_topics_and_consumes(pipeline: Pipeline) -> None:
    worker = pipeline.worker().start()
    code, body = worker.get("/airq/health")
    assert code == 200 and body["status"] == "ok"
    partitions = describe_partitions(pipeline.bootstrap, [pipeline.topic, pipeline.dlq_topic])
    assert partitions == {pipeline.topic: 8, pipeline.dlq_topic: 8}

    produce(pipeline.bootstrap, pipeline.topic, [encode(measurement(101, recent_hour()))])
    wait_for(lambda: worker.status()["counters"]["consumed"] >= 1, 30, what="the message to be consumed")
    status = worker.status()
    assert sorted(status["assignment"]["active"]) == list(range(8))
    assert worker.get("/airq/ready")[0] == 200


def test_broken_pipeline_stops_with_one_message(tmp_path: Path) -> None:
    bad = tmp_path / "pipeline.json"
    data = json.loads((ROOT / "pipeline.json").read_text())
    data["openaq"]["poll_interval_s"] = -5
    bad.write_text(json.dumps(data))
    proc = subprocess.run(
        [str(VENV_BIN / "faust"), "-A", "airq_app", "worker", "-l", "info"],
        cwd=ROOT,
        env={"AIRQ_PIPELINE": str(bad), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip() == (
        f"airq: configuration error: {bad}: openaq.poll_interval_s: -5 is less than the minimum of 1"
    )


def test_unreachable_broker_is_retried_not_fatal(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens here
    p = Pipeline(tmp_path, f"127.0.0.1:{dead}")
    worker = p.worker()
    try:
        worker.start(wait_ready=False)
        wait_for(lambda: _answers(worker, "/airq/health") == 200, 30, what="health endpoint")
        assert _answers(worker, "/airq/ready") == 503
        time.sleep(6)
        assert worker.alive(), worker.log_tail()
        assert _answers(worker, "/airq/ready") == 503
        log = worker.log_text()
        assert "Kafka broker refused the connection" in log and f"(bootstrap 127.0.0.1:{dead}); retrying in" in log
    finally:
        worker.stop()


def _answers(worker, path: str) -> int | None:
    try:
        return worker.get(path)[0]
    except OSError:
        return None
