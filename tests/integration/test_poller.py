"""The poller in a worker, against the simulator over real HTTP and the real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airq_dev.harness import Pipeline, finished_records, topic_measurements, wait_for
from airq_dev.simulator import Faults, SimulatorThread, WorldConfig

pytestmark = pytest.mark.integration
SECRET = "poller-secret-key-7Q2Z"


@pytest.fixture
def simulator():
    sim = SimulatorThread(WorldConfig(locations=150, seed=3, rate_limit_per_minute=60, faults=Faults())).start()
    yield sim
    sim.stop()


def test_poller_sends_what_openaq_served_once_per_measurement(kafka: str, tmp_path: Path, simulator) -> None:
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1, openaq__requests_per_minute=30)
    # The first listing page of pm25 fails twice with a 503: retried, the cycle goes on.
    simulator.set_faults(fail_next=[503, 503])
    worker = p.worker(role="all", OPENAQ_BASE_URL=simulator.url, OPENAQ_API_KEY=SECRET, AIRQ_POLL_INTERVAL="3")
    worker.start()
    wait_for(
        lambda: worker.status()["last_poll"]["outcome"] == "ok" and worker.status()["counters"]["produced"],
        90,
        what="a successful poll cycle",
    )
    first_cycle_requests = simulator.stats(False)["requests_total"]
    # A few more cycles: the same latest values again and again.
    wait_for(lambda: simulator.stats(False)["requests_total"] >= 3 * first_cycle_requests, 90, what="3 cycles")

    served = {(s, dt) for s, dt, _v, kind in simulator.served("latest")}
    on_topic = topic_measurements(kafka, p.topic)
    assert {(m["sensor_id"], m["datetime_utc"]) for m in on_topic} == served
    sample = on_topic[0]
    assert sample["location_name"] and sample["parameter"] and sample["fetched_at"].endswith("Z")
    assert len(on_topic) > len(served)  # repeats on the topic ...

    def written() -> set:
        return {(r["sensor_id"], r["datetime_utc"]) for r in finished_records(p.output_dir)}

    wait_for(lambda: written() >= {k for k in served if _fresh(k, on_topic)}, 60, what="output")
    records = finished_records(p.output_dir)
    assert len(records) == len({(r["sensor_id"], r["datetime_utc"]) for r in records})  # ... once in the files

    stats = simulator.stats(False)
    assert stats["rate_limited"] == 0, "the client's budget must keep the poller under the limit"
    assert stats["max_requests_per_minute"] <= 30
    assert stats["responses_by_status"].get("503") == 2
    status = worker.status()
    assert status["last_poll"]["rate_limit_remaining"] is not None
    # The key is never logged, shown or written.
    assert SECRET not in worker.log_text()
    assert SECRET not in json.dumps(status)
    assert SECRET not in worker.get("/metrics")[1]
    assert all(SECRET not in f.read_text() for f in p.output_dir.rglob("*.jsonl"))


def _fresh(key: tuple[int, str], on_topic: list[dict]) -> bool:
    """Served measurements the stream keeps: not filtered as too old or as sentinel/negative values."""
    from datetime import UTC, datetime, timedelta

    m = next(m for m in on_topic if (m["sensor_id"], m["datetime_utc"]) == key)
    when = datetime.fromisoformat(m["datetime_utc"].replace("Z", "+00:00"))
    return when > datetime.now(UTC) - timedelta(hours=70) and m["value"] >= 0


def test_ingest_role_polls_without_processing(kafka: str, tmp_path: Path, simulator) -> None:
    p = Pipeline(tmp_path, kafka)
    worker = p.worker(role="ingest", OPENAQ_BASE_URL=simulator.url, OPENAQ_API_KEY=SECRET, AIRQ_POLL_INTERVAL="60")
    worker.start()
    wait_for(lambda: worker.status()["counters"]["produced"] > 0, 60, what="produced")
    status = worker.status()
    assert status["counters"]["consumed"] == 0
    assert status["assignment"]["active"] == []
    assert worker.get("/airq/locations/1")[0] == 404
    assert not list(p.output_dir.rglob("*.jsonl"))


def test_missed_hours_are_caught_up_after_downtime(kafka: str, tmp_path: Path) -> None:
    import urllib.request

    sim = SimulatorThread(WorldConfig(locations=20, seed=9, rate_limit_per_minute=0, faults=Faults())).start()
    try:
        p = Pipeline(tmp_path, kafka)
        worker = p.worker(role="ingest", OPENAQ_BASE_URL=sim.url, OPENAQ_API_KEY=SECRET, AIRQ_POLL_INTERVAL="60")
        worker.start()
        wait_for(lambda: worker.status()["counters"]["produced"] > 0, 60, what="first cycle")
        worker.stop()
        # Four hours pass while airq is down.
        req = urllib.request.Request(f"{sim.url}/_sim/clock", data=b'{"advance_hours": 4}', method="POST")
        urllib.request.urlopen(req, timeout=5).read()
        worker.start()
        wait_for(lambda: worker.status()["counters"].get("caught_up", 0) > 0, 60, what="catch-up")
        hours = {(s, dt) for s, dt, _v, kind in sim.served() if kind != "latest"}
        on_topic = {(m["sensor_id"], m["datetime_utc"]) for m in topic_measurements(kafka, p.topic)}
        assert hours, "the catch-up asked /sensors/{id}/hours"
        latest_hours = {dt for s, dt, _v, kind in sim.served() if kind == "latest"}
        missed = {k for k in hours if k[1] not in latest_hours or k in on_topic}
        assert missed <= on_topic
        per_sensor: dict[int, set[str]] = {}
        for s, dt in on_topic:
            per_sensor.setdefault(s, set()).add(dt)
        assert max(len(v) for v in per_sensor.values()) >= 4  # before, three missed hours, after
    finally:
        sim.stop()


def test_only_the_elected_worker_polls_and_another_takes_over(kafka: str, tmp_path: Path, simulator) -> None:
    p = Pipeline(tmp_path, kafka, app__session_timeout_s=6)
    env = {"OPENAQ_BASE_URL": simulator.url, "OPENAQ_API_KEY": SECRET, "AIRQ_POLL_INTERVAL": "2"}
    workers = [p.worker(name, role="all", **env) for name in ("a", "b")]
    for w in workers:
        w.start()

    def one_leader() -> tuple | None:
        states = [w.status() for w in workers]
        leaders = [w for w, s in zip(workers, states, strict=True) if s["poller"]["this_worker_polls"]]
        if len(leaders) != 1 or not all(s["assignment"]["active"] for s in states):
            return None  # not settled: one leader, and both workers processing
        leader = leaders[0]
        return (
            (leader, next(w for w in workers if w is not leader))
            if leader.status()["counters"]["poll_cycles"]
            else None
        )

    leader, follower = wait_for(one_leader, 90, interval=0.5, what="one leader that has polled")
    follower_polled = follower.status()["counters"]["polled"]
    cycles = leader.status()["counters"]["poll_cycles"]
    wait_for(lambda: leader.status()["counters"]["poll_cycles"] >= cycles + 3, 60, what="three cycles on the leader")
    assert follower.status()["counters"]["polled"] == follower_polled  # the other worker polled meanwhile
    # Both say which worker polls.
    assert {w.status()["poller"]["polling_worker"] for w in workers} == {leader.url}

    assert leader.stop() == 0
    wait_for(lambda: follower.status()["poller"]["this_worker_polls"], 60, what="the remaining worker to poll")
    wait_for(lambda: follower.status()["counters"]["produced"] > 0, 60, what="the new leader to poll")
