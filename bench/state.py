"""State size: RocksDB on disk and worker RSS after N distinct measurements over S sensors, on a real worker.

Every sensor reports once an hour, so after N measurements each sensor has N / S hours behind it. One airq
worker (`faust -A airq_app worker`, the shipped de-duplication window of `dedup.retention_hours`) processes
them from the real local broker; at each checkpoint (records written >= N) the bench reads the worker's RSS
and the size of its data directory (both tables, all partitions). Bounded state means both stay flat once
every sensor's window is full (72 hours: 720,000 measurements over 10,000 sensors). Finished output files are
deleted as they appear (the output itself is not what is measured).

    python -m bench.state --sensors 10000 --checkpoints 1000000,10000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from airq_app.domain.timeutil import format_utc
from airq_dev.harness import Pipeline, create_topic, delete_topics, measurement, produce
from bench.throughput import rss_mb

CHUNK = 250_000


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024**2


def measurements(first: int, last: int, sensors: int, start: datetime) -> Iterator[tuple[bytes, bytes]]:
    """Measurements first..last-1: number n is sensor n % S in hour n // S after `start`."""
    for n in range(first, last):
        sensor = 100_000 + n % sensors
        when = format_utc(start + timedelta(hours=n // sensors))
        m = measurement(sensor, when, value=float(n % 53), location_id=sensor // 5)
        yield str(m["location_id"]).encode(), orjson.dumps(m)


def _sweep(output: Path) -> None:
    for f in output.glob("date=*/*.jsonl"):
        f.unlink(missing_ok=True)


def run(bootstrap: str, sensors: int, checkpoints: list[int], retention_h: float = 72.0) -> list[dict[str, Any]]:
    total = checkpoints[-1]
    hours = total // sensors + 1
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    base = Path(tempfile.mkdtemp(prefix="airq-state-"))
    p = Pipeline(
        base,
        bootstrap,
        dedup__retention_hours=retention_h,
        filters__max_age_hours=hours + 24,  # event times span `hours`; none may be dropped as too old
        output__rotate_max_age_s=5,
    )
    create_topic(bootstrap, p.topic)
    # Produced while the worker runs, a chunk at a time (10 million messages do not fit in a list comfortably).
    produced = [0]

    def feed() -> None:
        for first in range(0, total, CHUNK):
            produce(bootstrap, p.topic, measurements(first, min(first + CHUNK, total), sensors, start))
            produced[0] = min(first + CHUNK, total)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    w = p.worker("state")
    started = time.perf_counter()
    w.start(wait_ready=False)
    assert w.proc is not None
    results: list[dict[str, Any]] = []
    try:
        for checkpoint in checkpoints:
            while True:
                if not w.alive():
                    raise RuntimeError(f"worker exited:\n{w.log_tail()}")
                try:
                    written = int(w.status()["counters"]["written"])
                except Exception:
                    written = 0
                if written >= checkpoint:
                    break
                _sweep(p.output_dir)
                time.sleep(1.0)
            elapsed = time.perf_counter() - started
            row = {
                "measurements": written,
                "sensors": sensors,
                "rocksdb_mb": round(dir_mb(w.data_dir), 1),
                "rss_mb": round(rss_mb(w.proc.pid), 1),
                "elapsed_s": round(elapsed, 1),
                "per_s": round(written / elapsed),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    finally:
        p.stop_all()
        shutil.rmtree(base, ignore_errors=True)
        delete_topics(bootstrap, p.prefix, p.app_id)  # gigabytes on the broker's disk
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--checkpoints", default="1000000,10000000")
    parser.add_argument("--broker", default="127.0.0.1:9092")
    args = parser.parse_args()
    run(args.broker, args.sensors, [int(x) for x in args.checkpoints.split(",")])


if __name__ == "__main__":
    main()
