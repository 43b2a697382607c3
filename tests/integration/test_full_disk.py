"""A really full disk under the output directory (a small tmpfs): the worker blocks, says why, loses nothing."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airq_dev.harness import Pipeline, encode, finished_records, measurement, produce, wait_for

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


def test_full_disk_blocks_then_resumes_without_loss(kafka: str, tmp_path: Path, small_disk: Path) -> None:
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1)
    p.output_dir = small_disk  # the worker writes there; AIRQ_OUTPUT_DIR follows
    worker = p.worker("w1")
    worker.start()
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    batch = [
        measurement(50_000 + s, (top - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"), location_id=5_000 + s)
        for h in range(6)
        for s in range(250)
    ]  # 1,500 records of about 700 bytes: about 1 MB, four times the disk
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
