"""State size: the stream's per-sensor state in RocksDB after N distinct measurements over S sensors.

Feeds measurements through the same pure processing (`processing.decide`) and stores the sensor state the way
the worker's `sensor_history` table does (RocksDB through rocksdict, JSON values, the worker's RocksDB options),
without Kafka, so that 10 million measurements take minutes rather than hours. Prints and returns the RocksDB
size on disk and the process RSS at each checkpoint.

    python -m bench.state --sensors 10000 --checkpoints 1000000,10000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rocksdict import Options, Rdict

from airq_app.filters import FilterConfig
from airq_app.processing import decide
from airq_app.settings import ROCKSDB_OPTIONS
from airq_app.validation import format_utc


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024**2


def open_db(path: Path) -> Rdict:
    opts = Options()
    opts.create_if_missing(True)
    opts.set_write_buffer_size(ROCKSDB_OPTIONS["write_buffer_size"])
    opts.set_max_write_buffer_number(ROCKSDB_OPTIONS["max_write_buffer_number"])
    opts.set_target_file_size_base(ROCKSDB_OPTIONS["target_file_size_base"])
    return Rdict(str(path), opts)


def run(sensors: int, checkpoints: list[int], retention_h: float = 72.0) -> list[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="airq-state-"))
    db = open_db(base / "sensor_history.db")
    cfg = FilterConfig(max_age_hours=10**6)  # the measurements span months of event time
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = start + timedelta(hours=checkpoints[-1] // sensors + 2)
    results = []
    t0 = time.perf_counter()
    n = 0
    try:
        for checkpoint in checkpoints:
            while n < checkpoint:
                sensor = 100_000 + n % sensors
                hour = start + timedelta(hours=n // sensors)  # every sensor reports once an hour
                m = {
                    "location_id": sensor // 5,
                    "sensor_id": sensor,
                    "parameter": "pm25",
                    "value": float(n % 53),
                    "unit": "µg/m³",
                    "datetime_utc": format_utc(hour),
                    "parameter_id": 2,
                    "datetime_local": None,
                    "location_name": None,
                    "country": "US",
                    "latitude": 40.0,
                    "longitude": -105.0,
                    "timezone": None,
                    "provider": None,
                    "fetched_at": None,
                }
                key = str(sensor).encode()
                raw = db.get(key)
                history = orjson.loads(raw) if raw is not None else None
                d = decide(
                    m, {"topic": "t", "partition": sensor % 8, "offset": n}, history, cfg, retention_h * 3600, now
                )
                if d.history is not None:
                    db[key] = orjson.dumps(d.history)
                n += 1
            db.flush()
            elapsed = time.perf_counter() - t0
            row = {
                "measurements": n,
                "sensors": sensors,
                "rocksdb_mb": round(dir_mb(base), 1),
                "rss_mb": round(rss_mb(), 1),
                "elapsed_s": round(elapsed, 1),
                "per_s": round(n / elapsed),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    finally:
        db.close()
        shutil.rmtree(base, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--checkpoints", default="1000000,10000000")
    args = parser.parse_args()
    os.environ.setdefault("AIRQ_PIPELINE", str(Path(__file__).resolve().parent.parent / "pipeline.json"))
    run(args.sensors, [int(x) for x in args.checkpoints.split(",")])


if __name__ == "__main__":
    main()
