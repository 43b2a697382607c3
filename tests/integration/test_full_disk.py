"""A really full disk under the output directory (a small tmpfs): the worker blocks, says why, loses nothing."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airq_dev.harness import Pipeline, Worker, encode, finished_records, measurement, produce, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (needs root and a kernel that lets us mount one; skipped otherwise)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def grow(mount_point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=64m", str(mount_point)], check=True)


def _batch(first_sensor: int, hours: range = range(6)) -> list[dict[str, object]]:
    """250 sensors, one measurement an hour: 6 hours are 1,500 records of about 700 bytes (about 1 MB, four
    times the disk)."""
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return [
        measurement(first_sensor + s, (top - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"), location_id=5_000 + s)
        for h in hours
        for s in range(250)
    ]


def test_full_disk_blocks_then_resumes_without_loss(kafka: str, tmp_path: Path, small_disk: Path) -> None:
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1)
    p.output_dir = small_disk  # the worker writes there; AIRQ_OUTPUT_DIR follows
    worker = p.worker("w1")
    worker.start()
    batch = _batch(50_000)
    produce(kafka, p.topic, [encode(m) for m in batch])

    def blocked() -> str | None:
        code, body = worker.get("/airq/ready")
        problems = body.get("problems", []) if isinstance(body, dict) else []
        return next((x for x in problems if "disk full" in x), None) if code == 503 else None

    reason = wait_for(blocked, 90, what="/airq/ready to report the full disk")
    assert "output blocked" in reason
    assert worker.alive()
    written_while_full = len(finished_records(small_disk))
    assert written_while_full < len(batch)

    grow(small_disk)
    wait_for(lambda: worker.get("/airq/ready")[0] == 200, 60, what="ready again once there is room")
    expected = {(m["sensor_id"], m["datetime_utc"]) for m in batch}
    wait_for(
        lambda: {(r["sensor_id"], r["datetime_utc"]) for r in finished_records(small_disk)} >= expected,
        90,
        what="every measurement written",
    )
    counts = Counter((r["sensor_id"], r["datetime_utc"]) for r in finished_records(small_disk))
    assert set(counts) == expected and max(counts.values()) == 1
    assert worker.stop() == 0
    assert not list(small_disk.rglob("*.inprogress"))  # every file finished on the way out
    log = worker.log_text()
    assert "output blocked, not consuming until it can write again: disk full" in log
    assert "output writable again" in log


def _active(worker: Worker) -> set[int]:
    try:
        return set(worker.status()["assignment"]["active"])
    except (OSError, KeyError, TypeError):
        return set()


def _output_blocked(worker: Worker) -> bool:
    try:
        code, body = worker.get("/airq/ready")
    except OSError:
        return False
    problems = body.get("problems", []) if isinstance(body, dict) else []
    return code == 503 and any("disk full" in x for x in problems)


def _settled(worker: Worker) -> bool:
    """Assigned, not rebalancing, tables recovered (the output may still be blocked)."""
    try:
        body = worker.get("/airq/ready")[1]
    except OSError:
        return False
    problems = body.get("problems", []) if isinstance(body, dict) else ["no answer"]
    return not [x for x in problems if not x.startswith("output blocked")]


def _lagging(worker: Worker) -> bool:
    """The worker's stream has messages it has not consumed (high-water mark beyond what it processed)."""
    try:
        return worker.alive() and any(n > 0 for n in worker.status()["consumer_lag"].values())
    except (OSError, KeyError, TypeError, AttributeError):
        return False


def _diagnosis(output_dir: Path, workers: list[Worker]) -> str:
    """Which source offsets each partition has in finished files, and what the workers say."""
    offsets: dict[int, list[int]] = {}
    for r in finished_records(output_dir):
        offsets.setdefault(r["source"]["partition"], []).append(r["source"]["offset"])
    lines = [f"partition {p}: {len(o)} records, offsets {min(o)}-{max(o)}" for p, o in sorted(offsets.items())]
    for w in workers:
        if not w.alive():
            lines.append(f"{w.name}: exited\n{w.log_tail(30)}")
            continue
        try:
            st = w.status()
            lines.append(
                f"{w.name}: {st['worker']['problems']} {st['assignment']} lag {st['consumer_lag']} {st['counters']}"
            )
        except (OSError, KeyError, TypeError) as exc:
            lines.append(f"{w.name}: no status ({exc!r})")
    return "\n".join(lines)


def test_workers_join_and_leave_while_the_disk_is_full(kafka: str, tmp_path: Path, small_disk: Path) -> None:
    """A rebalance while the output is blocked: the old owners give their partitions up at once (dropping
    the unfinished files unacknowledged), a stopping worker stops, the new owners take over without crashing,
    and once there is room every measurement is written exactly once.

    Measurements keep arriving after the remount, as they do in production: Faust may drop a batch it fetched
    when the group generation changes in the middle of it, and the stream notices the hole (and seeks back)
    only when a later message of that partition arrives.
    """
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1)
    p.output_dir = small_disk
    w1 = p.worker("w1").start()
    w2 = p.worker("w2").start()
    wait_for(lambda: len(_active(w1)) + len(_active(w2)) == 8 and _active(w1) and _active(w2), 60, what="2 owners")
    batch = _batch(60_000)
    produce(kafka, p.topic, [encode(m) for m in batch])
    wait_for(lambda: _output_blocked(w1) and _output_blocked(w2), 90, what="both workers to report the full disk")

    w3 = p.worker("w3").start(wait_ready=False)  # joins: partitions move from blocked owners to it
    wait_for(lambda: _active(w3) and "airq: output of partition" in w3.log_text(), 90, what="w3 to take over")
    wait_for(lambda: _settled(w3), 60, what="w3 to recover its tables")
    assert len(_active(w1)) + len(_active(w2)) + len(_active(w3)) == 8

    started = time.monotonic()
    code = w2.stop(timeout=60)  # leaves while blocked: SIGTERM must not hang on the full disk
    took = time.monotonic() - started
    assert code == 0, f"w2 exited with {code} after {took:.0f} s:\n{w2.log_tail()}"
    assert took < 30
    wait_for(lambda: _active(w1) | _active(w3) == set(range(8)), 90, what="w1 and w3 to own every partition")
    assert w1.alive() and w3.alive()

    logs = w1.log_text() + w2.log_text() + w3.log_text()
    assert "dropped the unfinished file" in logs  # a blocked partition was really handed over
    assert "output lock not released" not in logs

    grow(small_disk)
    later = _batch(60_000, hours=range(6, 7))
    produce(kafka, p.topic, [encode(m) for m in later])
    expected = {(m["sensor_id"], m["datetime_utc"]) for m in batch + later}
    try:
        wait_for(
            lambda: {(r["sensor_id"], r["datetime_utc"]) for r in finished_records(small_disk)} >= expected,
            120,
            what="every measurement written",
        )
    except AssertionError as exc:
        counts = Counter((r["sensor_id"], r["datetime_utc"]) for r in finished_records(small_disk))
        assert not counts or max(counts.values()) == 1, "a measurement written twice"
        diagnosis = _diagnosis(small_disk, [w1, w3])
        for w in (w1, w3):
            if _lagging(w):
                w.dump_stacks("stalled")  # into its log, to see where a stalled stream waits
        raise AssertionError(f"{exc}\n{diagnosis}") from None
    counts = Counter((r["sensor_id"], r["datetime_utc"]) for r in finished_records(small_disk))
    assert set(counts) == expected and max(counts.values()) == 1
    assert w1.stop() == 0 and w3.stop() == 0
    assert not list(small_disk.rglob("*.inprogress"))
