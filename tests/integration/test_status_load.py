"""/airq/status under load: bursts of 200 concurrent requests on a worker that does not poll share the Kafka admin
lookup of the polling worker (at most one per 2 s), which the worker counts in its status and its metrics."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from airq_dev.harness import Pipeline, polling, wait_for
from airq_dev.simulator import Faults, SimulatorThread, WorldConfig

pytestmark = pytest.mark.integration
TOKEN = "status-load-token-41d9e2"
BURST = 200
ROUNDS = 5


async def bursts(url: str, headers: dict[str, str]) -> list[tuple[int, Any]]:
    """`ROUNDS` bursts of `BURST` concurrent GETs of /airq/status, a second apart: every answer's (code, body)."""
    answers: list[tuple[int, Any]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), headers=headers) as session:

        async def one() -> tuple[int, Any]:
            async with session.get(f"{url}/airq/status", timeout=aiohttp.ClientTimeout(total=30)) as resp:
                return resp.status, await resp.json()

        for n in range(ROUNDS):
            if n:
                await asyncio.sleep(1.0)
            answers.extend(await asyncio.gather(*(one() for _ in range(BURST))))
    return answers


def test_bursts_of_200_concurrent_status_requests_make_at_most_one_admin_lookup_a_second(
    kafka: str, tmp_path: Path
) -> None:
    sim = SimulatorThread(WorldConfig(locations=5, seed=3, rate_limit_per_minute=0, faults=Faults())).start()
    p = Pipeline(tmp_path, kafka, web_token=TOKEN)
    try:
        env = {"OPENAQ_BASE_URL": sim.url, "OPENAQ_API_KEY": "status-load-key", "AIRQ_POLL_INTERVAL": "30"}
        workers = [p.worker(f"w{i}", role="ingest", **env).start() for i in (1, 2)]
        (leader,) = wait_for(lambda: polling(workers), 60, what="one polling worker")
        standby = next(w for w in workers if w is not leader)
        # The standby asks Kafka which worker polls; wait until it knows.
        wait_for(lambda: standby.status()["poller"]["polling_worker"] == leader.url, 30, what="the poller found")

        before = standby.status()["poller"]["admin_lookups"]
        started = time.monotonic()
        answers = asyncio.run(bursts(standby.url, {"Authorization": f"Bearer {TOKEN}"}))
        took = time.monotonic() - started
        after = standby.status()["poller"]["admin_lookups"]

        assert len(answers) == BURST * ROUNDS and {code for code, _ in answers} == {200}
        assert {body["poller"]["polling_worker"] for _, body in answers} == {leader.url}
        lookups = after - before
        # Every status request asks; the cached answer (2 s) serves all but at most one a second.
        assert lookups <= 1 + took, f"{lookups} admin lookups in {took:.1f} s for {len(answers)} requests"
        metrics = standby.get("/metrics")[1]
        found = re.search(r"^airq_poller_admin_lookups_total (\S+)$", metrics, re.M)
        assert found and float(found.group(1)) >= after
    finally:
        p.stop_all()
        sim.stop()
