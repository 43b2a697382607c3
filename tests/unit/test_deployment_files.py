"""docker-compose.yml cannot run here (no Docker engine): check it against what the app expects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from airq_app.settings import ROLES, ConfigError, load_settings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
CONTRACT_VARS = {
    "OPENAQ_API_KEY",
    "OPENAQ_BASE_URL",
    "AIRQ_PIPELINE",
    "AIRQ_BROKER",
    "AIRQ_OUTPUT_DIR",
    "AIRQ_DATA_DIR",
    "AIRQ_WEB_PORT",
    "AIRQ_ROLE",
    "AIRQ_POLL_INTERVAL",
    "AIRQ_WEB_BIND",
    "AIRQ_WEB_HOST",
    "AIRQ_WEB_TOKEN",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_broker_is_kraft_without_auto_create(compose: dict) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    listeners = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert "kafka:19092" in listeners.values()
    # Unauthenticated: published on the host's loopback only.
    assert all(str(port).startswith("127.0.0.1:") for port in kafka["ports"])


def test_worker_settings_are_valid_and_scalable(compose: dict) -> None:
    worker = compose["services"]["worker"]
    env = {k: str(v) for k, v in worker["environment"].items()}
    assert set(env) <= CONTRACT_VARS
    assert env["AIRQ_ROLE"] in ROLES
    # The broker address must be the broker service's internal listener.
    assert env["AIRQ_BROKER"] == "kafka://kafka:19092"
    assert env["AIRQ_WEB_BIND"] == "0.0.0.0"
    # Per-worker state stays inside each container; the output directory is shared.
    assert not any(v.split(":")[1] == env["AIRQ_DATA_DIR"] for v in worker.get("volumes", []))
    assert any(v.split(":")[1] == env["AIRQ_OUTPUT_DIR"] for v in worker["volumes"])
    # `--scale worker=3` needs host ports chosen by Docker, not a fixed one, and no container_name.
    assert "container_name" not in worker
    for port in worker["ports"]:
        assert re.fullmatch(r"(127\.0\.0\.1:)?:?6066", str(port)), port
    # The values resolve to valid settings (with ${VAR:-default} taking its default, ${VAR:?error} a value).
    resolved = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) for k, v in env.items()}
    resolved = {k: re.sub(r"\$\{\w+:\?[^}]*\}", "compose-test-token", v) for k, v in resolved.items()}
    resolved["AIRQ_PIPELINE"] = str(ROOT / "pipeline.json")
    s = load_settings({k: v for k, v in resolved.items() if v}, dotenv=False)
    assert s.kafka.broker == "kafka://kafka:19092" and s.web.port == 6066
    assert s.openaq.base_url == "http://simulator:8765"
    assert s.web.token == "compose-test-token"


def test_compose_workers_bound_beyond_loopback_want_a_web_token(compose: dict) -> None:
    env = compose["services"]["worker"]["environment"]
    # `docker compose up` stops with this message when AIRQ_WEB_TOKEN is unset, instead of a worker exiting.
    assert re.fullmatch(r"\$\{AIRQ_WEB_TOKEN:\?[^}]+\}", env["AIRQ_WEB_TOKEN"])
    # Without one, the worker bound like the image and the compose file refuses to start.
    no_token = {"AIRQ_PIPELINE": str(ROOT / "pipeline.json"), "AIRQ_WEB_BIND": env["AIRQ_WEB_BIND"]}
    with pytest.raises(ConfigError, match="AIRQ_WEB_TOKEN"):
        load_settings(no_token, dotenv=False)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "AIRQ_WEB_BIND=0.0.0.0" in dockerfile and "AIRQ_WEB_TOKEN" not in dockerfile  # never baked into an image


def test_dockerfile_runs_the_worker_like_a_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert 'CMD ["faust", "-A", "airq_app", "worker", "-l", "info"]' in text
    assert "constraints.txt" in text
    # The worker image (the last stage, the default) carries the pipeline only, not the development tooling.
    worker_stage = text.rsplit("FROM ", 1)[1]
    assert "airq_dev" not in worker_stage and "AS worker" in worker_stage


def test_simulator_service_uses_the_simulator_module(compose: dict) -> None:
    sim = compose["services"]["simulator"]
    assert sim["command"][:3] == ["python", "-m", "airq_dev.simulator"]
    port = sim["command"][sim["command"].index("--port") + 1]
    assert compose["services"]["worker"]["environment"]["OPENAQ_BASE_URL"].endswith(f":{port}}}")
