"""Scaling out: three workers share the partitions; when one leaves, the others take over its partitions."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airq_dev.harness import Pipeline, encode, finished_records, measurement, produce, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def hour(n: int) -> str:
    t = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=n)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def assignments(workers) -> dict[str, dict[str, list[int]]]:
    return {w.name: w.status()["assignment"] for w in workers}


def settled(workers, partitions: int = 8) -> dict | None:
    try:
        a = assignments(workers)
    except OSError:
        return None
    actives = [p for x in a.values() for p in x["active"]]
    if sorted(actives) != list(range(partitions)) or any(not x["active"] for x in a.values()):
        return None
    return a


def test_three_workers_share_and_take_over(kafka: str, tmp_path: Path) -> None:
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1, output__flush_interval_s=0.2, app__session_timeout_s=6)
    workers = [p.worker(name) for name in ("a", "b", "c")]
    try:
        for w in workers:
            w.start()
        a = wait_for(lambda: settled(workers), 90, interval=1, what="three workers to share all 8 partitions")
        actives = [set(x["active"]) for x in a.values()]
        assert sum(len(s) for s in actives) == 8 and set().union(*actives) == set(range(8))  # disjoint, complete
        assert all(len(s) in (2, 3) for s in actives)

        first = [measurement(7000 + s, hour(2), location_id=700 + s) for s in range(200)]
        produce(p.bootstrap, p.topic, [encode(m) for m in first])
        wait_for(lambda: len(finished_records(p.output_dir)) >= len(first), 60, what="first batch written")

        # Any worker's overview (the dashboard's data) gathers every worker and every location.
        def overview_complete() -> dict | None:
            view = workers[0].get("/airq/api/overview")[1]
            ids = {e["location_id"] for e in view["locations"]}
            return view if ids == {700 + s for s in range(200)} and len(view["workers"]) == 3 else None

        view = wait_for(overview_complete, 30, what="an overview of 3 workers and 200 locations")
        assert {w["url"] for w in view["workers"]} == {w.url for w in workers}
        assert all(w["reachable"] and w["ready"] for w in view["workers"])
        assert sorted(p for w in view["workers"] for p in w["active"]) == list(range(8))
        assert sum(w["written"] for w in view["workers"]) >= len(first)

        leaving = workers[2]
        leaving_partitions = set(a["c"]["active"])
        stopped_at = time.monotonic()
        assert leaving.stop() == 0
        second = [measurement(7000 + s, hour(1), location_id=700 + s) for s in range(200)]
        feeding = threading.Event()

        def feed() -> None:  # a steady trickle, as a poller would send
            for i in range(0, len(second), 10):
                produce(p.bootstrap, p.topic, [encode(m) for m in second[i : i + 10]])
                time.sleep(0.2)
            feeding.set()

        threading.Thread(target=feed, daemon=True).start()
        hour1 = hour(1)

        def taken_over() -> bool:
            return any(
                r["source"]["partition"] in leaving_partitions and r["datetime_utc"] == hour1
                for r in finished_records(p.output_dir)
            )

        wait_for(taken_over, 120, interval=0.2, what="a record of the leaving worker's partitions")
        failover_s = time.monotonic() - stopped_at
        remaining = workers[:2]
        b = wait_for(lambda: settled(remaining), 60, interval=1, what="two workers to share all 8 partitions")
        assert set(b["a"]["active"]) | set(b["b"]["active"]) == set(range(8))
        assert not set(b["a"]["active"]) & set(b["b"]["active"])

        feeding.wait(60)
        expected = {(m["sensor_id"], m["datetime_utc"]) for m in first + second}
        wait_for(
            lambda: {(r["sensor_id"], r["datetime_utc"]) for r in finished_records(p.output_dir)} >= expected,
            90,
            what="every measurement written",
        )
        counts = Counter((r["sensor_id"], r["datetime_utc"]) for r in finished_records(p.output_dir))
        assert set(counts) == expected and max(counts.values()) == 1
        print(
            f"\nscaling: partitions {a}; after c left {b}; "
            f"failover (stop -> first record of its partitions in a finished file): {failover_s:.1f} s"
        )
    finally:
        p.stop_all()
