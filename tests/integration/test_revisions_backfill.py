"""Revised values and backfilled history on the real broker, with real HTTP to the simulator.

- A worker polling a simulator that corrects a share of sensor-hours a few seconds after first serving them writes
  every value served once, numbered: revision 0 for the first, then 1 with the value it replaces.
- `faust -A airq_app backfill` of 30 days for 100 locations from the archive layout, killed with SIGKILL halfway and
  run again, writes every archived measurement exactly once, while a worker with role `all` keeps polling.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from airq_dev.harness import ROOT, VENV_BIN, Pipeline, finished_records, wait_for
from airq_dev.simulator import Faults, SimulatorThread, WorldConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = "revisions-test-key"
PARAMETERS = {"pm25", "pm10", "o3", "no2", "so2", "co"}


def recent(dt_utc: str, hours: float = 70) -> bool:
    return dt_utc > (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def by_key(records: list[dict]) -> dict[tuple[int, str], list[dict]]:
    out: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for r in records:
        out[(r["sensor_id"], r["datetime_utc"])].append(r)
    return out


def test_revised_values_come_out_once_each_with_their_revision_and_previous_value(kafka: str, tmp_path: Path) -> None:
    started = time.monotonic()
    sim = SimulatorThread(
        WorldConfig(locations=40, seed=17, rate_limit_per_minute=0, revision_rate=0.3, revision_delay_s=4.0)
    ).start()
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1, output__flush_interval_s=0.2)
    try:
        worker = p.worker("w1", role="all", OPENAQ_BASE_URL=sim.url, OPENAQ_API_KEY=KEY, AIRQ_POLL_INTERVAL="2").start()

        def converged() -> bool:
            served = {k: v for k, v in sim.values().items() if recent(k[1])}
            revised = [k for k, v in served.items() if len(v) > 1]
            if len(revised) < 10:
                return False
            got = by_key(finished_records(p.output_dir))
            return all(len(got.get(k, ())) >= len(v) for k, v in served.items())

        wait_for(converged, 120, interval=1.0, what="every served value, revisions included, in finished files")
        time.sleep(3)  # a few more cycles: repeats of every value must stay duplicates
        served = {k: v for k, v in sim.values().items() if recent(k[1])}
        got = by_key(finished_records(p.output_dir))
        revised = 0
        for key, values in served.items():
            records = sorted(got.get(key, ()), key=lambda r: r["revision"])
            assert [r["revision"] for r in records] == list(range(len(values))), (key, values, records)
            assert [r["raw_value"] for r in records] == values, key
            assert [r["previous_value"] for r in records] == [None, *values[:-1]], key
            revised += len(values) > 1
        assert revised >= 10
        # Nothing written that was not served, and every (sensor, time, revision) once.
        assert set(got) <= set(served) | {k for k in got if not recent(k[1])}
        triples = Counter((r["sensor_id"], r["datetime_utc"], r["revision"]) for r in finished_records(p.output_dir))
        assert max(triples.values()) == 1
        status = worker.status()["counters"]
        assert status["revisions"] >= revised and status["duplicates"] > 0
        code, metrics = worker.get("/metrics")
        assert code == 200 and "airq_revisions_total" in metrics
    finally:
        p.stop_all()
        sim.stop()
        print(f"\nrevisions test wall time: {time.monotonic() - started:.1f} s")


def backfill_command(p: Pipeline, sim: SimulatorThread, first: date, last: date, log: Path) -> subprocess.Popen:
    env = p.env(
        AIRQ_DATA_DIR=str(p.base / "backfill-data"),
        OPENAQ_BASE_URL=sim.url,
        OPENAQ_ARCHIVE_URL=sim.url,
        OPENAQ_API_KEY=KEY,
    )
    return subprocess.Popen(
        [str(VENV_BIN / "faust"), "-A", "airq_app", "backfill", "--from", str(first), "--to", str(last)],
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_backfill_killed_halfway_and_resumed_writes_every_archived_measurement_once(kafka: str, tmp_path: Path) -> None:
    started = time.monotonic()
    sim = SimulatorThread(WorldConfig(locations=100, seed=23, rate_limit_per_minute=0, faults=Faults())).start()
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=2, output__flush_interval_s=0.5)
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=33), today - timedelta(days=4)
    progress = p.base / "backfill-data" / "backfill" / "archive.done"
    log = p.base / "backfill.log"
    try:
        worker = p.worker(
            "live", role="all", OPENAQ_BASE_URL=sim.url, OPENAQ_API_KEY=KEY, AIRQ_POLL_INTERVAL="5"
        ).start()
        wait_for(lambda: worker.status()["counters"]["poll_cycles"] >= 1, 60, what="a first poll cycle")
        cycles_before = worker.status()["counters"]["poll_cycles"]

        units = 100 * 30
        backfill_started = time.monotonic()
        proc = backfill_command(p, sim, first, last, log)
        done = lambda: len(progress.read_text().splitlines()) if progress.exists() else 0  # noqa: E731
        wait_for(lambda: proc.poll() is not None or done() >= units // 2, 300, what="half of the days sent")
        assert proc.poll() is None, log.read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = done()
        assert units // 2 <= killed_at < units

        sent_started = time.monotonic()
        proc = backfill_command(p, sim, first, last, log)
        assert proc.wait(600) == 0, log.read_text()[-3000:]
        resumed_s = time.monotonic() - sent_started
        assert len(set(progress.read_text().splitlines())) == units
        text = log.read_text()
        assert f"{units - killed_at} of {units - killed_at} days sent ({killed_at} sent before)" in text, text[-2000:]

        lo, hi = f"{first}T00:00:00Z", f"{last}T23:00:00Z"
        archived = {(sid, dt) for sid, dt, _v, kind in sim.served("archive") if kind == "archive"}
        values = {(sid, dt): v for sid, dt, v, kind in sim.served("archive")}
        sensors = sim.sim.world.sensors
        expected = {k for k in archived if sensors[k[0]].parameter.name in PARAMETERS}
        assert len(expected) > 150_000

        def in_window(records: list[dict]) -> list[dict]:
            return [r for r in records if lo <= r["datetime_utc"] <= hi]

        wait_for(
            lambda: len(in_window(finished_records(p.output_dir))) >= len(expected),
            600,
            interval=5,
            what=f"{len(expected)} archived measurements in finished files",
        )
        written_s = time.monotonic() - backfill_started
        time.sleep(5)
        records = finished_records(p.output_dir)
        history = in_window(records)
        counts = Counter((r["sensor_id"], r["datetime_utc"]) for r in history)
        assert set(counts) == expected
        assert max(counts.values()) == 1
        assert all(
            r["revision"] == 0 and r["raw_value"] == values[(r["sensor_id"], r["datetime_utc"])] for r in history
        )
        # Live polling went on meanwhile, and wrote its own hours once each too.
        assert worker.status()["counters"]["poll_cycles"] > cycles_before
        live = [r for r in records if recent(r["datetime_utc"], hours=30)]
        assert live and max(Counter((r["sensor_id"], r["datetime_utc"], r["revision"]) for r in records).values()) == 1
        sent = [line for line in text.splitlines() if line.startswith("airq backfill: ") and "/s)" in line]
        print(
            f"\nbackfill: {len(expected):,} measurements; {sent[-1]}; resumed run {resumed_s:.1f} s; all in finished "
            f"files {written_s:.1f} s after the first run started ({len(expected) / written_s:,.0f} measurements/s)"
        )
    finally:
        p.stop_all()
        sim.stop()
        print(f"backfill test wall time: {time.monotonic() - started:.1f} s")
