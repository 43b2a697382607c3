"""Workers that pause (SIGSTOP past the session timeout, then SIGCONT) and outputs another worker still holds.

A paused worker keeps its partitions' output locks and its open files; when it wakes it finishes those files and
delivers the state behind them, after its partitions' new owner recovered the tables. The new owner must take
that state into account, and a held lock must hold up only its own partition.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import faust
import orjson
import pytest
from faust.stores import rocksdb as faust_rocksdb

from airq_app.kafka import faust_internals
from airq_app.stream.catch_up import ChangelogCatchUp
from airq_dev.harness import (
    Pipeline,
    Worker,
    create_topic,
    encode,
    finished_records,
    measurement,
    produce,
    recent_hour,
    wait_for,
)
from airq_dev.simulator import Faults, SimulatorThread, WorldConfig

pytestmark = pytest.mark.integration


def _counts(output: Path) -> Counter[tuple[int, str]]:
    return Counter((r["sensor_id"], r["datetime_utc"]) for r in finished_records(output))


def test_a_partition_whose_output_another_worker_holds_does_not_hold_up_the_others(kafka: str, tmp_path: Path) -> None:
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1)
    state = p.output_dir / "_state"
    state.mkdir(parents=True)
    held = os.open(state / "partition-00003.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(held, fcntl.LOCK_EX)  # as a paused worker would hold it
    try:
        worker = p.worker().start(wait_ready=False)  # not ready while a partition's output is held
        hour = recent_hour()
        batch = [measurement(8000 + i, hour, value=float(i), location_id=800 + i) for i in range(64)]
        produce(p.bootstrap, p.topic, [encode(m) for m in batch])
        wait_for(
            lambda: {r["source"]["partition"] for r in finished_records(p.output_dir)} == set(range(8)) - {3},
            60,
            what="every partition but the held one written",
        )
        assert "output still held by another worker" in worker.log_text()
    finally:
        os.close(held)
    expected = {(m["sensor_id"], m["datetime_utc"]) for m in batch}
    wait_for(lambda: set(_counts(p.output_dir)) == expected, 60, what="the held partition written once free")
    assert max(_counts(p.output_dir).values()) == 1
    wait_for(lambda: worker.get("/airq/ready")[0] == 200, 30, what="ready once every partition is open")
    assert worker.stop() == 0


def test_a_paused_owner_finishing_its_files_late_does_not_make_the_next_owner_write_twice(
    kafka: str, tmp_path: Path
) -> None:
    # Files stay open until the partition is given up: the paused worker wakes with records whose state
    # (that they were seen) it has not delivered yet.
    p = Pipeline(
        tmp_path,
        kafka,
        app__partitions=1,
        app__session_timeout_s=6,
        output__finish_idle_s=0,
        output__rotate_max_age_s=600,
    )
    a = p.worker("a").start()
    hour = recent_hour()
    batch = [measurement(8100 + i, hour, value=float(i), location_id=81) for i in range(20)]
    produce(p.bootstrap, p.topic, [encode(m) for m in batch])

    def processed(w: Worker) -> int:
        c = w.status()["counters"]
        return int(c["consumed"] - c.get("before_open", 0) - c["stale"] - c["replayed"])

    wait_for(lambda: processed(a) >= 20, 60, what="a to process the batch")
    assert finished_records(p.output_dir) == []
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        b = p.worker("b").start(wait_ready=False)
        # b is given the partition once a's session times out, recovers the tables, and waits for the output.
        wait_for(lambda: "output still held by another worker" in b.log_text(), 90, what="b to wait for a's output")
        # The poller sends the same values again meanwhile: b takes them up as soon as the output is free.
        produce(p.bootstrap, p.topic, [encode(m) for m in batch])
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    # a wakes, gives the partition up: finishes its file (delivering the state behind it) and lets the lock go.
    try:
        wait_for(lambda: len(finished_records(p.output_dir)) >= 20, 60, what="a's file finished")
        wait_for(
            lambda: a.status()["counters"]["duplicates"] + b.status()["counters"]["duplicates"] >= 20,
            90,
            what="the repeats recognised",
        )
    except AssertionError as exc:
        said = "\n".join(x for x in a.log_text().splitlines() if "airq" in x or "evok" in x)
        raise AssertionError(f"{exc}\n--- a:\n{said}\n--- b: {b.status()['counters']}\n{b.log_tail(40)}") from None
    caught_up = b.status()["counters"].get("tables_caught_up")
    assert b.stop() == 0 and a.stop() == 0  # every file finished
    counts = _counts(p.output_dir)
    print(f"\npaused owner: b caught {caught_up} table updates up; {sum(counts.values())} lines for 20 values")
    assert len(counts) == 20 and max(counts.values()) == 1


def test_processing_workers_paused_past_the_session_timeout_write_every_value_and_correction_once(
    kafka: str, tmp_path: Path
) -> None:
    sim = SimulatorThread(
        WorldConfig(
            locations=600,
            seed=31,
            rate_limit_per_minute=0,
            time_offset_s=-10 * 3600,
            revision_rate=0.2,
            revision_delay_s=3,
            faults=Faults(),
        )
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
        env = {"OPENAQ_BASE_URL": sim.url, "OPENAQ_API_KEY": "pause-test-key", "AIRQ_POLL_INTERVAL": "4"}
        ingest = p.worker("ingest", role="ingest", **env)
        process = [p.worker(f"process-{i}") for i in (1, 2)]
        for w in [*process, ingest]:
            w.start()
        stop = threading.Event()

        def clock() -> None:
            for _ in range(9):  # up to the present; each hour also revises some of the hour before
                if stop.wait(6.0):
                    return
                sim.advance(1)

        ticker = threading.Thread(target=clock, daemon=True)
        ticker.start()
        rng = random.Random(3)
        pauses = 0
        try:
            for round_ in range(6):  # each processing worker three times, in turn
                time.sleep(rng.uniform(1.0, 3.0))
                victim = process[round_ % 2]
                assert victim.proc is not None
                os.kill(victim.proc.pid, signal.SIGSTOP)
                try:
                    time.sleep(rng.uniform(9.0, 12.0))  # past the 6 s session timeout: its partitions move
                finally:
                    os.kill(victim.proc.pid, signal.SIGCONT)
                pauses += 1
        finally:
            stop.set()
            ticker.join()
        for w in [*process, ingest]:
            w.wait_ready(120)
        cycles = ingest.status()["counters"]["poll_cycles"]
        wait_for(lambda: ingest.status()["counters"]["poll_cycles"] >= cycles + 2, 60, what="two more poll cycles")
        horizon = (datetime.now(UTC) - timedelta(hours=71)).strftime("%Y-%m-%dT%H:%M:%SZ")
        served = {k: v for k, v in sim.values().items() if k[1] > horizon}
        expected = {(s, dt, rev) for (s, dt), values in served.items() for rev in range(len(values))}

        def written() -> Counter[tuple[int, str, int]]:
            return Counter((r["sensor_id"], r["datetime_utc"], r["revision"]) for r in finished_records(p.output_dir))

        wait_for(lambda: set(written()) >= expected, 240, interval=2, what="every value and correction written")
        restarted = sum(w.status()["counters"]["restarted_fetches"] for w in process)  # the stall watchdog's
        for w in process:
            assert w.stop() == 0, w.log_tail(80)
        counts = written()
        corrections = sum(1 for k in expected if k[2] > 0)
        print(
            f"\npaused workers: {pauses} pauses, {len(expected)} values served ({corrections} corrections), "
            f"{sum(counts.values())} lines written, most copies of one value: {max(counts.values())}, "
            f"fetches restarted by the stall watchdog: {restarted}"
        )
        assert corrections > 0 and pauses == 6
        assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:5]
        assert set(counts) <= expected | {k for k in counts if k[1] <= horizon}
        assert restarted == 0
    finally:
        sim.stop()


def test_updates_a_previous_owner_delivered_after_the_recovery_reach_the_new_owners_store(
    kafka: str, tmp_path: Path
) -> None:
    store_url = faust_internals.register_bounded_rocksdb()
    app = faust.App(f"catch-up-{uuid.uuid4().hex[:8]}", store=store_url, datadir=str(tmp_path))
    table = cast(faust.Table, app.Table("sensor_history", key_type=str, value_type=bytes, partitions=1))
    assert isinstance(table.data, faust_rocksdb.Store)
    table.data._db_for_partition(0)
    create_topic(kafka, table.changelog_topic_name, partitions=1)
    updates = [(str(sensor), {"newest": hour}) for sensor, hour in ((1, 10), (2, 10), (1, 11), (3, 11), (2, 12))]
    produce(kafka, table.changelog_topic_name, [(orjson.dumps(k), orjson.dumps(v)) for k, v in updates])
    # Faust's recovery read the first two; the previous owner delivered the other three afterwards.
    recovered = faust_internals.StoreBatch(table, 0)
    for key, value in updates[:2]:
        recovered.add(key, orjson.dumps(key), orjson.dumps(value))
    assert recovered.commit(1)
    catch_up = ChangelogCatchUp([table], [kafka], {})

    async def twice() -> tuple[int, int]:
        try:
            return await catch_up.apply(0), await catch_up.apply(0)
        finally:
            await catch_up.close()

    assert asyncio.run(twice()) == (3, 0)  # the second time: nothing beyond the store
    stored = {k: faust_internals.read_raw(table, 0, k, orjson.dumps(k)) for k in ("1", "2", "3")}
    assert {k: orjson.loads(v) for k, v in stored.items() if v} == {
        "1": {"newest": 11},
        "2": {"newest": 12},
        "3": {"newest": 11},
    }
    assert faust_internals.persisted_offset(table, 0) == 4
