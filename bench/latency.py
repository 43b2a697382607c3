"""End-to-end latency at a steady rate: from a message's Kafka timestamp to its record in a finished file.

A paced producer sends distinct measurements at `rate` per second for `seconds`; one airq worker processes
them. Each record's latency is its file's rename time (the inode change time: it is fsynced and renamed when it is
finished, and never touched again) minus the produce timestamp of its source message, found by reading the
topic back. Prints and returns p50/p99/max and the rate actually sent.

    python -m bench.latency --rate 2000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from airq_dev.harness import Pipeline, consume_all, create_topic, measurement, wait_for


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def paced_send(bootstrap: str, topic: str, rate: int, seconds: float) -> int:
    """Send distinct measurements in 10-ms slices at `rate` per second; returns how many were sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    sent = 0
    started = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - started) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                sensor = 200_000 + sent % 10_000
                hour = top - timedelta(hours=sent // 10_000)
                m = measurement(
                    sensor, hour.strftime("%Y-%m-%dT%H:%M:%SZ"), value=10 + sent % 40, location_id=sensor // 5
                )
                await producer.send(topic, key=str(m["location_id"]).encode(), value=orjson.dumps(m))
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def run(bootstrap: str, rate: int = 2000, seconds: float = 30.0) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="airq-latency-"))
    try:
        p = Pipeline(base, bootstrap, output__rotate_max_age_s=0.5, output__flush_interval_s=0.1)
        create_topic(bootstrap, p.topic)
        worker = p.worker("latency").start()
        try:
            started = time.perf_counter()
            sent = asyncio.run(paced_send(bootstrap, p.topic, rate, seconds))
            sent_rate = sent / (time.perf_counter() - started)
            files: dict[tuple[int, int], float] = {}
            read: set[Path] = set()

            def collect() -> int:
                for path in p.output_dir.rglob("*.jsonl"):
                    if path in read:
                        continue  # a finished file never changes: read each once
                    read.add(path)
                    finished_at = path.stat().st_ctime  # the rename (finishing) changes the inode
                    for line in path.read_bytes().splitlines():
                        src = orjson.loads(line)["source"]
                        files[(src["partition"], src["offset"])] = finished_at
                return len(files)

            wait_for(lambda: collect() >= sent, 1800, interval=1.0, what="every record in a finished file")
        finally:
            worker.stop()
        produced = {(m.partition, m.offset): m.timestamp / 1000 for m in consume_all(bootstrap, p.topic, timeout=30)}
        latencies = [files[k] - ts for k, ts in produced.items() if k in files]
        ms = [x * 1000 for x in latencies]
        return {
            "rate_target": rate,
            "rate_sent": round(sent_rate),
            "records": len(ms),
            "p50_latency_ms": round(percentile(ms, 0.50)),
            "p99_latency_ms": round(percentile(ms, 0.99)),
            "max_latency_ms": round(max(ms)),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--broker", default="127.0.0.1:9092")
    args = parser.parse_args()
    print(json.dumps(run(args.broker, args.rate, args.seconds)))


if __name__ == "__main__":
    main()
