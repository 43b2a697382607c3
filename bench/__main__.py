"""`make bench`: throughput against a hand-written aiokafka baseline and a Quix Streams peer, state size, poller cost.

Writes bench/results.json and prints a table. Sizes are settable, e.g.
`BENCH_MESSAGES=200000 BENCH_RATE=2000 BENCH_STATE=1000000,10000000 make bench` (`BENCH_LAYOUT=single`: one
measurement per Kafka message instead of one location's per message; `BENCH_PAIRS=2`: runs of airq and of the
Quix Streams peer each, in mirrored order, averaged), and `BENCH_PARTS` runs some
parts only (`throughput,latency,state,poller,sink`), keeping the other figures already in bench/results.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from airq_dev import local_kafka
from bench import latency, poller, sink, state, throughput

RESULTS = Path(__file__).with_name("results.json")


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024**2:.0f} GiB"
    except OSError:
        pass
    return f"{platform.machine()}, {cpus} cores, {mem}, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    messages = int(os.environ.get("BENCH_MESSAGES", "1000000"))
    checkpoints = [int(x) for x in os.environ.get("BENCH_STATE", "1000000,10000000").split(",")]
    locations = int(os.environ.get("BENCH_LOCATIONS", "20000"))
    broker = local_kafka.configured_broker()
    bootstrap = broker.split("://", 1)[-1] if broker else local_kafka.start()

    parts = set(os.environ.get("BENCH_PARTS", "throughput,latency,state,poller,sink").split(","))
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() and len(parts) < 5 else {}
    results.update({"machine": machine(), "date": time.strftime("%Y-%m-%d")})

    def save() -> None:  # after every part, so a long run that fails late keeps what it measured
        RESULTS.write_text(json.dumps(results, indent=2))

    if "throughput" in parts:
        single = os.environ.get("BENCH_LAYOUT") == "single"
        print(f"throughput: {messages} measurements ...", flush=True)
        pairs = int(os.environ.get("BENCH_PAIRS", "2"))
        results.update(throughput.run(bootstrap, messages, 0.2, per_location=not single, pairs=pairs))
        save()
    if "latency" in parts:
        rate = int(os.environ.get("BENCH_RATE", "2000"))
        print(f"latency: {rate} messages/s for 30 s ...", flush=True)
        results["latency"] = latency.run(bootstrap, rate, 30.0)
        results["p50_latency_ms"] = results["latency"]["p50_latency_ms"]
        results["p99_latency_ms"] = results["latency"]["p99_latency_ms"]
        save()
    if "state" in parts:
        print(f"state: {checkpoints} measurements over 10,000 sensors ...", flush=True)
        rows = state.run(bootstrap, 10_000, checkpoints)
        results["state"] = rows
        results["rss_mb_1m"] = next((r["rss_mb"] for r in rows if 1_000_000 <= r["measurements"] < 10_000_000), None)
        results["rss_mb_10m"] = next((r["rss_mb"] for r in rows if r["measurements"] >= 10_000_000), None)
        save()
    if "poller" in parts:
        print(f"poller: one cycle over {locations} simulated locations ...", flush=True)
        results["poller"] = poller.run(locations, 60.0)
        save()
    if "sink" in parts:
        print("sink: 1,000,000 records to finished files ...", flush=True)
        results["sink"] = sink.run(1_000_000, 8)
        save()

    print()
    print("| measure | value |")
    print("|---|---|")
    keys = (
        "airq_msgs_per_s",
        "baseline_msgs_per_s",
        "ratio",
        "quix_msgs_per_s",
        "ratio_vs_quix",
        "airq_runs_msgs_per_s",
        "quix_runs_msgs_per_s",
        "airq_2_workers_msgs_per_s",
        "airq_peak_rss_mb",
        "baseline_peak_rss_mb",
        "quix_peak_rss_mb",
        "p50_latency_ms",
        "p99_latency_ms",
        "rss_mb_1m",
        "rss_mb_10m",
    )
    for key in keys:
        print(f"| {key} | {results.get(key)} |")
    for row in results.get("state", []):
        print(f"| state after {row['measurements']:,} | RocksDB {row['rocksdb_mb']} MB, RSS {row['rss_mb']} MB |")
    if pr := results.get("poller"):
        print(
            f"| poller cycle ({pr['locations']} locations) | {pr['requests_per_cycle']} requests, "
            f"{pr['cycle_wall_s']} s, max {pr['max_requests_in_a_minute']}/min, {pr['rate_limited_429']} x 429 |"
        )
    if lat := results.get("latency"):
        print(
            f"| latency at {lat['rate_sent']} msg/s sent | p50 {lat['p50_latency_ms']} ms, "
            f"p99 {lat['p99_latency_ms']} ms |"
        )
    if sk := results.get("sink"):
        print(f"| sink alone | {sk['records_per_s']} records/s to finished files |")
    print(f"\nmachine: {results['machine']}; written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
