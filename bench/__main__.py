"""`make bench`: throughput against a hand-written aiokafka baseline, state size, poller cost.

Writes bench/results.json and prints a table. Sizes are settable, e.g.
`BENCH_MESSAGES=200000 BENCH_RATE=2000 BENCH_STATE=1000000,10000000 make bench`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from airq_app import local_kafka
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

    results: dict[str, object] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}

    def save() -> None:  # after every part, so a long run that fails late keeps what it measured
        RESULTS.write_text(json.dumps(results, indent=2))

    print(f"throughput: {messages} messages ...", flush=True)
    results.update(throughput.run(bootstrap, messages, 0.2))
    save()
    rate = int(os.environ.get("BENCH_RATE", "2000"))
    print(f"latency: {rate} messages/s for 30 s ...", flush=True)
    results["latency"] = latency.run(bootstrap, rate, 30.0)
    results["p50_latency_ms"] = results["latency"]["p50_latency_ms"]
    results["p99_latency_ms"] = results["latency"]["p99_latency_ms"]
    save()
    print(f"state: {checkpoints} measurements over 10,000 sensors ...", flush=True)
    rows = state.run(bootstrap, 10_000, checkpoints)
    results["state"] = rows
    results["rss_mb_1m"] = next((r["rss_mb"] for r in rows if 1_000_000 <= r["measurements"] < 10_000_000), None)
    results["rss_mb_10m"] = next((r["rss_mb"] for r in rows if r["measurements"] >= 10_000_000), None)
    save()
    print(f"poller: one cycle over {locations} simulated locations ...", flush=True)
    results["poller"] = poller.run(locations, 60.0)
    save()
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
        "airq_2_workers_msgs_per_s",
        "airq_peak_rss_mb",
        "baseline_peak_rss_mb",
        "p50_latency_ms",
        "p99_latency_ms",
        "rss_mb_1m",
        "rss_mb_10m",
    )
    for key in keys:
        print(f"| {key} | {results.get(key)} |")
    for row in rows:
        print(f"| state after {row['measurements']:,} | RocksDB {row['rocksdb_mb']} MB, RSS {row['rss_mb']} MB |")
    pr = results["poller"]
    print(
        f"| poller cycle ({pr['locations']} locations) | {pr['requests_per_cycle']} requests, "
        f"{pr['cycle_wall_s']} s, max {pr['max_requests_in_a_minute']}/min, {pr['rate_limited_429']} x 429 |"
    )
    lat = results["latency"]
    print(
        f"| latency at {lat['rate_sent']} msg/s sent | p50 {lat['p50_latency_ms']} ms, p99 {lat['p99_latency_ms']} ms |"
    )
    print(f"| sink alone | {results['sink']['records_per_s']} records/s to finished files |")
    print(f"\nmachine: {results['machine']}; written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
