"""The poller keeps its cached location index when a refresh fails, and a malformed location costs only itself.

The poller runs one cycle against a small HTTP server of the test's own (real HTTP), with a real location cache
file on disk; messages are collected instead of sent to Kafka, which this behaviour does not involve.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from airq_app import openaq
from airq_app.ingest.gaps import GivenUp, SensorProgress
from airq_app.ingest.poller import Poller
from airq_app.metrics import Metrics
from airq_app.settings import load_settings
from airq_app.status import WorkerStatus
from airq_dev.fixtures_openaq import fast_client
from tests.integration.test_openaq_client import Answer, envelope, hostile_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "openaq"
LOCATION = json.loads((DATA / "docs_location_2178.json").read_text(encoding="utf-8"))["results"][0]
LATEST = json.loads((DATA / "docs_location_2178_latest.json").read_text(encoding="utf-8"))["results"]


def serve(locations: Any) -> Any:
    """/v3/locations answers `locations` (a status code or a list); /latest of NO2 in ppm (id 7) answers the
    location's sample latest rows, every other parameter nothing."""

    def answer(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        if path == "/v3/locations":
            if isinstance(locations, int):
                return locations, {}, b'{"detail": "upstream unavailable"}'
            return 200, {}, envelope(locations)
        if path == "/v3/parameters/7/latest":
            return 200, {}, envelope(LATEST)
        return 200, {}, envelope([])

    return answer


def run_cycle(tmp_path: Path, url: str) -> tuple[Poller, list[dict[str, Any]], dict[str, Any]]:
    env = {
        "AIRQ_PIPELINE": str(ROOT / "pipeline.json"),
        "AIRQ_DATA_DIR": str(tmp_path),
        "OPENAQ_BASE_URL": url,
        "OPENAQ_API_KEY": "test-key-poller-cache",
    }
    settings = load_settings(env, dotenv=False)
    sent: list[dict[str, Any]] = []

    async def send(key: bytes, value: bytes) -> asyncio.Future[Any]:
        data = json.loads(value)  # one location's measurements
        assert isinstance(data, list) and all(str(m["location_id"]).encode() == key for m in data)
        sent.extend(data)
        return acknowledged()

    async def save(key: bytes, value: bytes) -> asyncio.Future[Any]:
        return acknowledged()

    async def load() -> tuple[dict[int, SensorProgress], GivenUp]:
        return {}, GivenUp()

    poller = Poller(settings, WorkerStatus(), Metrics(), send, save, load, client=fast_client(url, max_retries=0))
    poller._leading = True  # as if elected: the cycle runs while this worker polls

    summary = asyncio.run(poller.poll_cycle())
    return poller, sent, summary


def acknowledged() -> asyncio.Future[Any]:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


def stale_cache(tmp_path: Path) -> dict[int, dict[str, Any]]:
    index = openaq.index_locations([LOCATION])
    (tmp_path / "locations.json").write_text(
        json.dumps({"fetched_at": 0.0, "sensors": {str(k): v for k, v in index.items()}})
    )
    return index


def test_a_failed_refresh_keeps_the_cached_index(tmp_path: Path) -> None:
    cached = stale_cache(tmp_path)  # fetched in 1970: the cycle refreshes it first
    with hostile_server(serve(503)) as url:
        poller, sent, summary = run_cycle(tmp_path, url)
    assert poller.sensor_index == cached
    assert summary["outcome"] == "partial" and poller.status.last_poll.errors[0].startswith("locations: ")
    assert {m["sensor_id"] for m in sent} == {3916}  # the NO2 (ppm) sensor, mapped through the cached index
    assert sent[0]["location_name"] == "Del Norte"
    assert json.loads((tmp_path / "locations.json").read_text())["fetched_at"] == 0.0  # not overwritten


def test_a_malformed_location_in_a_refresh_costs_only_itself(tmp_path: Path) -> None:
    stale_cache(tmp_path)
    bad = {**LOCATION, "id": 4242, "sensors": 5}
    with hostile_server(serve([bad, LOCATION])) as url:
        poller, sent, summary = run_cycle(tmp_path, url)
    assert summary["outcome"] == "ok"
    assert {m["location_id"] for m in poller.sensor_index.values()} == {2178}
    assert {m["sensor_id"] for m in sent} == {3916}
    assert json.loads((tmp_path / "locations.json").read_text())["fetched_at"] > 0  # refreshed
