"""Ingestion that loses nothing: every hour of every sensor reaches the output once, whatever the poller goes through.

The simulated world's clock runs hours in seconds, a fifth of its sensors upload every 2, 3 or 4 hours (so /latest
jumps and the hours between are only in /sensors/{id}/hours), and the polling worker is killed in the middle of its
catch-up. The progress lives in Kafka: a poller that takes over, even on an empty data directory, goes on from it.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airq_dev.harness import Pipeline, Worker, polling, topic_measurements, wait_for
from airq_dev.harness import output_counts as read_output
from airq_dev.simulator import HOUR, Faults, SimulatorThread, WorldConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = "ingest-test-key"


def hour_of(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()) // HOUR


def utc(hour: int) -> str:
    return datetime.fromtimestamp(hour * HOUR, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def every_hour(served: list[tuple[int, str, float, str]]) -> set[tuple[int, str]]:
    """Every hour of every sensor from the first hour it was served to the last (the stream's 72-hour filter
    aside): what a complete pipeline writes."""
    first: dict[int, int] = {}
    last: dict[int, int] = defaultdict(int)
    for sensor, dt, _value, _kind in served:
        h = hour_of(dt)
        first[sensor] = min(first.get(sensor, h), h)
        last[sensor] = max(last[sensor], h)
    horizon = int((datetime.now(UTC) - timedelta(hours=71)).timestamp()) // HOUR
    return {(s, utc(h)) for s in first for h in range(first[s], last[s] + 1) if h > horizon}


def ingest(worker: Worker) -> dict[str, Any]:
    return worker.status()["poller"]["ingest"]


def drained(worker: Worker) -> bool:
    summary = ingest(worker)
    return summary["open_sensor_hours"] == 0


def check_complete(p: Pipeline, kafka: str, sim: SimulatorThread) -> dict[str, int]:
    """Everything served is written exactly once; returns the figures."""
    served = sim.served()
    expected = every_hour(served)
    on_topic = topic_measurements(kafka, p.topic)
    negative = {(m["sensor_id"], m["datetime_utc"]) for m in on_topic if m["value"] < 0}
    expected -= negative

    def missing() -> set[tuple[int, str]]:
        seen, _ = read_output(p.output_dir)
        return expected - set(seen)

    wait_for(lambda: not missing() or None, 240, interval=2, what="every hour of every sensor in the files")
    seen, bad = read_output(p.output_dir)
    duplicated = {k: n for k, n in seen.items() if n > 1}
    assert bad == 0
    assert not duplicated, f"{len(duplicated)} measurements written more than once: {list(duplicated)[:5]}"
    assert not missing()
    return {
        "served": len({(s, dt) for s, dt, _v, _k in served}),
        "expected": len(expected),
        "written": sum(seen.values()),
        "on_topic": len(on_topic),
        "duplicates": len(duplicated),
    }


def test_split_workers_write_every_hour_once_through_poller_kills_mid_catch_up(kafka: str, tmp_path: Path) -> None:
    sim = SimulatorThread(
        WorldConfig(
            locations=300,
            seed=22,
            rate_limit_per_minute=1200,
            time_offset_s=-14 * 3600,
            batch_fraction=0.2,
            faults=Faults(),
        )
    ).start()
    try:
        p = Pipeline(
            tmp_path,
            kafka,
            app__session_timeout_s=6,
            output__rotate_max_age_s=2,
            openaq__requests_per_minute=1200,
            openaq__requests_per_hour=72000,
            openaq__gap_retry_minutes=0.05,
        )
        env = {"OPENAQ_BASE_URL": sim.url, "OPENAQ_API_KEY": KEY, "AIRQ_POLL_INTERVAL": "4"}
        ingesters = [p.worker(f"ingest-{i}", role="ingest", **env) for i in (1, 2)]
        process = [p.worker(f"process-{i}", role="process") for i in (1, 2)]
        for w in process + ingesters:
            w.start()
        wait_for(lambda: len(polling(ingesters)) == 1, 60, what="one polling ingest worker")

        stop = threading.Event()

        def clock() -> None:  # the world goes on while the poller is dead: that is what the catch-up is for
            for _ in range(12):
                if stop.wait(7.0):
                    return
                sim.advance(1)

        ticker = threading.Thread(target=clock, daemon=True)
        ticker.start()
        takeovers: list[float] = []
        caught_up_at_kill: list[int] = []
        try:
            for kill in range(2):
                (poller,) = wait_for(lambda: polling(ingesters) or None, 60, what="a polling worker")
                other = next(w for w in ingesters if w is not poller)
                before = poller.status()["counters"]["caught_up"]
                # In the middle of a catch-up: hours still missing, and some of them sent since we looked.
                wait_for(
                    lambda w=poller, b=before: (
                        w.status()["counters"]["caught_up"] > b and ingest(w)["open_sensor_hours"] > 0
                    ),
                    90,
                    interval=0.1,
                    what="the poller to be catching up",
                )
                caught_up_at_kill.append(ingest(poller)["open_sensor_hours"])
                cycles = other.status()["counters"]["poll_cycles"]
                poller.kill()
                killed_at = time.monotonic()
                wait_for(
                    lambda o=other, c=cycles: o.status()["counters"]["poll_cycles"] > c,
                    60,
                    interval=0.1,
                    what="the standby ingest worker to poll",
                )
                takeovers.append(time.monotonic() - killed_at)
                if kill == 1:
                    shutil.rmtree(poller.data_dir)  # nothing of the progress is on the worker's disk
                poller.start(wait_ready=False)
        finally:
            ticker.join()
        for w in process + ingesters:
            w.wait_ready(120)
        (poller,) = wait_for(lambda: polling(ingesters) or None, 60, what="a polling worker")
        # Each takeover costs about an hour of the world's clock: most sensors miss one, and the catch-up asks for
        # them oldest first at the rate the budget leaves (1,200 a minute less the listings').
        clock_stopped = time.monotonic()
        wait_for(lambda: drained(poller), 300, interval=1, what="no missing sensor-hour")
        drain_s = time.monotonic() - clock_stopped
        cycles = poller.status()["counters"]["poll_cycles"]
        wait_for(lambda: poller.status()["counters"]["poll_cycles"] >= cycles + 2, 60, what="two more cycles")
        figures = check_complete(p, kafka, sim)
        stats = sim.stats(False)
        print(
            f"\ningest kills: {figures}, missing sensor-hours at each kill {caught_up_at_kill}, "
            f"time from SIGKILL to the next poll {', '.join(f'{t:.1f} s' for t in takeovers)}, "
            f"backlog drained {drain_s:.0f} s after the clock stopped, "
            f"requests {stats['requests_total']}, 429s {stats['rate_limited']}"
        )
        assert stats["rate_limited"] == 0
        assert len(takeovers) == 2
    finally:
        stop.set()
        sim.stop()


def test_a_six_hour_outage_of_every_worker_drains_within_the_budget(kafka: str, tmp_path: Path) -> None:
    sim = SimulatorThread(
        WorldConfig(locations=200, seed=23, rate_limit_per_minute=300, time_offset_s=-10 * 3600, faults=Faults())
    ).start()
    try:
        p = Pipeline(
            tmp_path,
            kafka,
            app__session_timeout_s=6,
            output__rotate_max_age_s=2,
            openaq__requests_per_minute=300,
            openaq__requests_per_hour=18000,
        )
        env = {"OPENAQ_BASE_URL": sim.url, "OPENAQ_API_KEY": KEY, "AIRQ_POLL_INTERVAL": "3"}
        poller = p.worker("ingest", role="ingest", **env).start()
        processor = p.worker("process", role="process").start()
        wait_for(lambda: poller.status()["counters"]["poll_cycles"] >= 2, 60, what="two poll cycles")
        began = time.monotonic()
        assert poller.stop() == 0
        stop_s = time.monotonic() - began
        assert processor.stop() == 0
        sim.advance(6)  # six hours pass with no worker running
        requests_before = sim.stats(False)["requests_total"]
        poller.start()
        processor.start()
        restarted = time.monotonic()
        wait_for(lambda: ingest(poller)["open_sensor_hours"] > 0, 60, what="the gaps to be seen")
        backlog = ingest(poller)
        wait_for(lambda: ingest(poller)["open_sensor_hours"] == 0, 240, interval=1, what="the gaps to drain")
        drained_s = time.monotonic() - restarted
        stats = sim.stats(False)
        summary = ingest(poller)
        assert summary["oldest_open_hour"] is None and summary["given_up_hours"] == 0
        assert poller.status()["counters"]["caught_up"] >= backlog["open_sensor_hours"]
        assert stats["rate_limited"] == 0
        assert stats["max_requests_per_minute"] <= 300
        metrics = poller.get("/metrics")[1]
        assert "airq_open_sensor_hours 0.0" in metrics
        figures = check_complete(p, kafka, sim)
        requests = stats["requests_total"] - requests_before
        print(
            f"\noutage: stop after SIGTERM {stop_s:.1f} s; backlog {backlog['open_sensor_hours']} sensor-hours of "
            f"{backlog['sensors_with_gaps']} sensors, drained in {drained_s:.1f} s with {requests} "
            f"requests (max {stats['max_requests_per_minute']}/min, 429s {stats['rate_limited']}); {figures}"
        )
    finally:
        sim.stop()
