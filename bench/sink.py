"""Sink throughput alone: records per second into finished JSON Lines files (no Kafka, no processing).

python -m bench.sink --records 1000000 --partitions 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from airq_app.settings import OutputSettings
from airq_app.sink import JsonLinesSink


async def _run(out: Path, records: int, partitions: int) -> float:
    output = OutputSettings(directory=out, rotate_max_bytes=16 * 1024 * 1024, rotate_max_age_s=5.0)
    sink = JsonLinesSink(output, "bench")
    for p in range(partitions):
        await sink.open_partition(p)
    acked = 0

    def ack() -> None:
        nonlocal acked
        acked += 1

    record = {
        "sensor_id": 0,
        "location_id": 1,
        "location_name": "Station",
        "country": "US",
        "latitude": 40.0,
        "longitude": -105.0,
        "parameter": "pm25",
        "value": 12.3,
        "unit": "µg/m³",
        "raw_value": 12.3,
        "raw_unit": "µg/m³",
        "datetime_utc": "2026-11-24T10:00:00Z",
        "aqi": 57,
        "aqi_category": "Moderate",
        "aqi_basis": "nowcast",
        "source": {"topic": "air_quality_telematics", "partition": 0, "offset": 0},
    }
    ticker = asyncio.create_task(sink.run(1.0))
    started = time.perf_counter()
    for i in range(records):
        record["sensor_id"] = i
        await sink.write(i % partitions, i // partitions, orjson.dumps(record) + b"\n", ack)
    await sink.close()
    elapsed = time.perf_counter() - started
    ticker.cancel()
    assert acked == records
    return elapsed


def run(records: int, partitions: int) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="airq-sink-"))
    try:
        elapsed = asyncio.run(_run(out, records, partitions))
        files = len(list(out.rglob("*.jsonl")))
        size = sum(f.stat().st_size for f in out.rglob("*.jsonl"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "records": records,
        "records_per_s": round(records / elapsed),
        "files": files,
        "mb_per_s": round(size / elapsed / 1024**2, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(run(args.records, args.partitions)))


if __name__ == "__main__":
    main()
