"""Worker roles in the mixes users run: separate ingest and processing workers, killed and restarted.

The simulated world's clock starts 16 hours back and advances an hour every few seconds, so every cycle serves
new measurements while the workers are being killed.
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airq_dev.harness import Pipeline, polling, topic_measurements, wait_for
from airq_dev.harness import output_counts as read_output
from airq_dev.simulator import Faults, SimulatorThread, WorldConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = "roles-test-key"


def kept(messages: list[dict], max_age_h: float) -> set[tuple[int, str]]:
    """What the stream writes of what was served: not sentinel or negative values, nor older than 72 hours
    (`max_age_h` a little under or over it, for a lower and an upper bound)."""
    horizon = (datetime.now(UTC) - timedelta(hours=max_age_h)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {(m["sensor_id"], m["datetime_utc"]) for m in messages if m["value"] >= 0 and m["datetime_utc"] > horizon}


def test_ingest_and_processing_workers_killed_over_and_over_write_everything_once(kafka: str, tmp_path: Path) -> None:
    sim = SimulatorThread(
        WorldConfig(locations=1500, seed=21, rate_limit_per_minute=0, time_offset_s=-16 * 3600, faults=Faults())
    ).start()
    try:
        p = Pipeline(
            tmp_path,
            kafka,
            app__session_timeout_s=6,
            output__rotate_max_age_s=2,
            output__flush_interval_s=0.5,
            openaq__requests_per_minute=600,
            openaq__requests_per_hour=36000,
        )
        env = {"OPENAQ_BASE_URL": sim.url, "OPENAQ_API_KEY": KEY, "AIRQ_POLL_INTERVAL": "4"}
        ingest = [p.worker(f"ingest-{i}", role="ingest", **env) for i in (1, 2)]
        process = [p.worker(f"process-{i}", role="process") for i in (1, 2)]
        for w in process + ingest:
            w.start()
        # A standby ingest worker is ready too: connected and able to take over.
        assert all(w.get("/airq/ready")[0] == 200 for w in ingest)
        wait_for(lambda: len(polling(ingest)) == 1, 60, what="one polling ingest worker")

        stop = threading.Event()
        # While the polling worker is dead no worker polls: an hour that came and went in /latest meanwhile would
        # only be found by a catch-up, and the new poller's catch-up state is its own. The clock holds still then.
        running = threading.Event()
        running.set()

        def clock() -> None:
            for _ in range(15):  # up to the present: later hours would be in the future for the stream
                if stop.wait(5.0):
                    return
                running.wait()
                sim.advance(1)

        ticker = threading.Thread(target=clock, daemon=True)
        ticker.start()
        rng = random.Random(5)
        process_kills = ingest_kills = 0
        takeovers: list[float] = []
        try:
            for round_ in range(12):
                time.sleep(rng.uniform(1.5, 4.0))
                victim = process[round_ % 2]
                victim.kill()
                process_kills += 1
                time.sleep(rng.uniform(0.5, 2.0))
                victim.start(wait_ready=False)
                if round_ in (3, 8):
                    (poller,) = wait_for(lambda: polling(ingest) or None, 60, what="a polling worker")
                    other = next(w for w in ingest if w is not poller)
                    cycles_before = other.status()["counters"]["poll_cycles"]
                    running.clear()
                    poller.kill()
                    killed_at = time.monotonic()
                    ingest_kills += 1
                    wait_for(
                        lambda o=other, c=cycles_before: o.status()["counters"]["poll_cycles"] > c,
                        60,
                        interval=0.2,
                        what="the standby ingest worker to poll",
                    )
                    takeovers.append(time.monotonic() - killed_at)
                    running.set()
                    poller.start(wait_ready=False)
        finally:
            stop.set()
            ticker.join()
        for w in process + ingest:
            w.wait_ready(120)
        # One more cycle after the clock stopped: everything served so far is on the topic.
        (poller,) = wait_for(lambda: polling(ingest) or None, 60, what="a polling worker")
        cycles = poller.status()["counters"]["poll_cycles"]
        wait_for(lambda: poller.status()["counters"]["poll_cycles"] >= cycles + 2, 60, what="two more cycles")

        served = {(s, dt) for s, dt, _v, _kind in sim.served()}
        on_topic = topic_measurements(kafka, p.topic)
        assert {(m["sensor_id"], m["datetime_utc"]) for m in on_topic} == served
        expected = kept(on_topic, 71)

        def written_all() -> bool | int:
            seen, _ = read_output(p.output_dir)
            return set(seen) >= expected or len(expected - set(seen))

        wait_for(lambda: written_all() is True, 300, interval=2, what="every served measurement in the files")
        for w in process:
            assert w.stop() == 0, w.log_tail(150)
        seen, bad = read_output(p.output_dir)
        duplicated = {k: n for k, n in seen.items() if n > 1}
        print(
            f"\nroles: {len(served)} measurements served, {sum(seen.values())} lines written, "
            f"{process_kills} processing and {ingest_kills} ingest SIGKILLs, "
            f"poller takeover after SIGKILL: {', '.join(f'{t:.1f} s' for t in takeovers)}"
        )
        assert bad == 0
        assert not duplicated, f"{len(duplicated)} measurements written more than once"
        assert expected <= set(seen) <= kept(on_topic, 73)
        assert len(takeovers) == 2
    finally:
        sim.stop()


def test_polling_goes_on_whoever_leads_the_processing_group(kafka: str, tmp_path: Path) -> None:
    """Processing-only workers first (one of them leads the processing group), then an `all` worker joins."""
    sim = SimulatorThread(WorldConfig(locations=30, seed=4, rate_limit_per_minute=0, faults=Faults())).start()
    try:
        p = Pipeline(tmp_path, kafka, app__session_timeout_s=6)
        env = {"OPENAQ_BASE_URL": sim.url, "OPENAQ_API_KEY": KEY, "AIRQ_POLL_INTERVAL": "2"}
        process = [p.worker(f"p{i}", role="process").start() for i in (1, 2)]
        both = p.worker("all", role="all", **env).start()
        wait_for(lambda: both.status()["counters"]["poll_cycles"] >= 2, 60, what="the all worker to poll")
        assert all(w.status()["counters"]["poll_cycles"] == 0 for w in process)
        # Every worker says which one polls.
        assert {w.status()["poller"]["polling_worker"] for w in [both]} == {both.url}
        assert all(w.status()["poller"] is None for w in process)
        wait_for(lambda: sum(read_output(p.output_dir)[0].values()) > 0, 60, what="records")
    finally:
        sim.stop()


def test_every_written_location_is_answered_by_every_worker_across_rebalances(kafka: str, tmp_path: Path) -> None:
    sim = SimulatorThread(WorldConfig(locations=300, seed=8, rate_limit_per_minute=0, faults=Faults())).start()
    try:
        p = Pipeline(tmp_path, kafka, app__session_timeout_s=6, output__rotate_max_age_s=1)
        env = {"OPENAQ_BASE_URL": sim.url, "OPENAQ_API_KEY": KEY, "AIRQ_POLL_INTERVAL": "5"}
        workers = [p.worker(f"w{i}", role="all", **env) for i in (1, 2, 3)]
        for w in workers:
            w.start()
        wait_for(lambda: workers[0].status()["counters"]["produced"] > 0, 60, what="a poll")
        joiner = p.worker("w4", role="all", **env).start()  # a join ...
        wait_for(lambda: all(w.status()["assignment"]["active"] for w in workers + [joiner]), 60, what="4 active")
        assert workers[0].stop() == 0  # ... and a leave
        # Three workers, one standby each: every worker holds only some partitions and forwards the others.
        live = [workers[1], workers[2], joiner]
        for w in live:
            w.wait_ready(90)

        def locations_written() -> set[int]:
            ids = set()
            for path in p.output_dir.rglob("*.jsonl"):
                for line in path.read_text().splitlines():
                    ids.add(json.loads(line)["location_id"])
            return ids

        wait_for(lambda: len(locations_written()) >= 200, 90, what="records of most locations")
        written = locations_written()

        def all_answered() -> list[tuple[str, int]] | bool:
            missing = [
                (w.name, loc) for w in live for loc in sorted(written) if w.get(f"/airq/locations/{loc}")[0] != 200
            ]
            return not missing or missing[:5]

        result = wait_for(lambda: all_answered() is True, 30, interval=1, what="every location on every worker")
        assert result is True
    finally:
        sim.stop()
