"""Throughput: airq against a hand-written aiokafka loop doing the same work, on the real local broker.

N realistic raw measurements (a share of them repeats), one message per location and hour as the poller sends them
(`--single`: one per measurement), are pre-loaded into a topic; then
1. one airq worker (`faust -A airq_app worker`, a subprocess) runs until every distinct measurement is in
   finished files: measurements per second from its start, and its peak RSS;
2. the baseline: one aiokafka consumer, batches of up to 2,000, the same pure functions (`parse_message`,
   `airq_app.domain.decide`), the same per-sensor state in RocksDB (rocksdict), JSON Lines written per partition and
   renamed when done, offsets committed after the write; measured the same way, in its own process;
3. the same job in Quix Streams (`bench/quix_peer.py`), on the baseline's topic, in its own process; its files
   are checked record by record against the baseline's.

    python -m bench.throughput --messages 1000000 --repeats 0.2

Every figure counts measurements per second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from airq_dev.harness import Pipeline, create_topic, delete_topics, measurement, produce, wait_for
from bench.job import RETENTION_S, measurements_of

if TYPE_CHECKING:
    from airq_app.domain.record import OutputRecord


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.5)


def workload(
    n: int, repeats: float, sensors: int = 10_000, seed: int = 5, per_location: bool = True
) -> tuple[list[tuple[bytes, bytes]], int]:
    """About `n` measurements (a share `repeats` of them sent again) as Kafka messages keyed by location, and how
    many distinct measurements they hold. Five sensors share a location and report hourly, newest hour first.

    `per_location`: one message per location and hour holding its sensors' measurements, as the poller sends them;
    otherwise one message per measurement. A repeated message is a location's poll sent again."""
    rng = random.Random(seed)
    distinct = int(n * (1 - repeats))
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    groups: list[list[dict[str, Any]]] = []
    for i in range(distinct):
        sensor = 100_000 + i % sensors
        when = top - timedelta(hours=i // sensors)  # hourly, newest first: every (sensor, time) once
        when_s = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        m = measurement(sensor, when_s, value=round(rng.uniform(1, 90), 1), location_id=sensor // 5)
        last = groups[-1] if groups else None
        same = last is not None and last[0]["location_id"] == m["location_id"] and last[0]["datetime_utc"] == when_s
        if per_location and last is not None and same:
            last.append(m)
        else:
            groups.append([m])
    rows = [(str(g[0]["location_id"]).encode(), orjson.dumps(g if per_location else g[0])) for g in groups]
    size = [len(g) for g in groups]
    total = distinct
    while total < n:
        i = rng.randrange(len(groups))
        rows.append(rows[i])
        total += size[i]
    head, tail = rows[: len(groups) // 2], rows[len(groups) // 2 :]
    rng.shuffle(tail)
    return head + tail, distinct


def measurements_in(messages: list[tuple[bytes, bytes]]) -> int:
    """How many measurements the messages hold (a message is one measurement or a list of them)."""
    return sum(value.count(b'"sensor_id"') for _key, value in messages)


def bench_airq(
    bootstrap: str,
    base: Path,
    messages: list[tuple[bytes, bytes]],
    n: int,
    distinct: int,
    workers: int = 1,
    run: int = 1,
) -> dict[str, Any]:
    """`workers` airq workers on a topic holding `messages` (`n` measurements) until `distinct` are written."""
    p = Pipeline(
        base / f"airq-{workers}-{run}",
        bootstrap,
        output__rotate_max_age_s=2,
        filters__max_age_hours=8760,
        dedup__retention_hours=8760,
    )
    create_topic(bootstrap, p.topic)
    produce(bootstrap, p.topic, messages)
    ws = [p.worker(f"bench{i}") for i in range(workers)]
    started = time.perf_counter()
    peaks = []
    for w in ws:
        w.start(wait_ready=False)
        assert w.proc is not None
        peaks.append(PeakRss(w.proc.pid))
        peaks[-1].start()
    try:
        wait_for(lambda: sum(_written(w) for w in ws) >= distinct, 7200, interval=0.1, what="airq to write everything")
        elapsed = time.perf_counter() - started
    finally:
        for peak in peaks:
            peak.running = False
        p.stop_all()
    return {
        "msgs_per_s": round(n / elapsed),
        "elapsed_s": round(elapsed, 1),
        "peak_rss_mb": round(max(peak.peak for peak in peaks)),
    }


def _written(w: Any) -> int:
    try:
        return int(w.status()["counters"]["written"])
    except Exception:
        return 0


def _baseline_process(bootstrap: str, topic: str, out: str, distinct: int, result: Any) -> None:
    result.update(asyncio.run(_baseline(bootstrap, topic, Path(out), distinct)))


def baseline_step(db: Any, value: bytes, source: dict[str, Any], cfg: Any, now: datetime) -> list[OutputRecord]:
    """The baseline's work on one message: the records to write. `db` maps state keys (the sensor's main entry,
    its hour buckets: `airq_app.domain.dedup`) as bytes to orjson values (a rocksdict `Rdict`, or a dict in tests);
    `decide` is called as `airq_app.domain.decide.decide_in` calls it, for each measurement of the message."""
    from airq_app.domain import dedup
    from airq_app.domain.decide import decide
    from airq_app.domain.timeutil import utc_seconds

    out: list[OutputRecord] = []
    for m in measurements_of(value):
        sensor = m["sensor_id"]
        raw = db.get(str(sensor).encode())
        raw_bucket = db.get(dedup.bucket_key(sensor, dedup.hour_of(utc_seconds(m["datetime_utc"]))).encode())
        d = decide(
            m,
            source,
            orjson.loads(raw) if raw is not None else None,
            cfg,
            RETENTION_S,
            now,
            orjson.loads(raw_bucket) if raw_bucket is not None else None,
        )
        if d.outcome != "write":
            continue
        for key, state in d.writes.items():
            if state is None:
                with contextlib.suppress(KeyError):  # an Rdict deletes an absent key quietly, a dict raises
                    del db[key.encode()]
            else:
                db[key.encode()] = orjson.dumps(state)
        assert d.record is not None
        out.append(d.record)
    return out


async def _baseline(bootstrap: str, topic: str, out: Path, distinct: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer
    from rocksdict import Options, Rdict

    from airq_app.domain.filters import FilterConfig

    opts = Options()
    opts.create_if_missing(True)
    db = Rdict(str(out / "state.db"), opts)
    cfg = FilterConfig(max_age_hours=8760)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"baseline-{os.getpid()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
    )
    started = time.perf_counter()
    await consumer.start()
    written = 0
    files: dict[int, Any] = {}
    try:
        while written < distinct:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            now = datetime.now(UTC)
            for tp, records in batch.items():
                lines = []
                for r in records:
                    source = {"topic": tp.topic, "partition": tp.partition, "offset": r.offset}
                    for record in baseline_step(db, r.value, source, cfg, now):
                        lines.append(orjson.dumps(record) + b"\n")
                if lines:
                    f = files.get(tp.partition)
                    if f is None:
                        f = files[tp.partition] = open(out / f"part-{tp.partition:05d}.inprogress", "ab")
                    await asyncio.to_thread(f.write, b"".join(lines))
                    written += len(lines)
            for f in files.values():
                f.flush()
            await consumer.commit()
        for partition, f in files.items():
            os.fsync(f.fileno())
            f.close()
            os.rename(out / f"part-{partition:05d}.inprogress", out / f"part-{partition:05d}.jsonl")
    finally:
        await consumer.stop()
        db.close()
    return {"elapsed_s": time.perf_counter() - started}


def spawned(target: Any, *args: Any) -> tuple[float, float, dict[str, Any]]:
    """Run `target(*args, result)` in a fresh interpreter, not a fork of this one (a fork counts the bench's
    million messages in its RSS); returns its wall time from start to exit, its peak RSS in MB and its result."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        result = manager.dict()
        started = time.perf_counter()
        proc = ctx.Process(target=target, args=(*args, result))
        proc.start()
        peak = PeakRss(proc.pid or 0)
        peak.start()
        proc.join()
        elapsed = time.perf_counter() - started
        peak.running = False
        assert proc.exitcode == 0, f"{getattr(target, '__name__', target)} exited with {proc.exitcode}"
        return elapsed, peak.peak, dict(result)


def load_topic(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> str:
    """A new topic holding `messages`, read by the baseline and by the Quix Streams peer."""
    topic = f"baseline-{os.getpid()}-{int(time.time())}"
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, messages)
    return topic


def bench_baseline(bootstrap: str, topic: str, out: Path, n: int, distinct: int) -> dict[str, Any]:
    out.mkdir(parents=True)
    elapsed, peak, _ = spawned(_baseline_process, bootstrap, topic, str(out), distinct)
    lines = sum(1 for f in out.glob("*.jsonl") for _ in f.open("rb"))
    assert lines == distinct, f"baseline wrote {lines} of {distinct}"
    return {"msgs_per_s": round(n / elapsed), "elapsed_s": round(elapsed, 1), "peak_rss_mb": round(peak)}


def bench_quix(bootstrap: str, topic: str, out: Path, n: int, distinct: int, expected: Path) -> dict[str, Any]:
    """The Quix Streams peer on the baseline's topic; its files must equal the baseline's, record by record."""
    from bench import quix_peer

    out.mkdir(parents=True)
    group = f"bench-quix-{os.getpid()}-{int(time.time())}"
    changelog = f"changelog__{group}--"
    try:
        elapsed, peak, _ = spawned(quix_peer.run_process, bootstrap, topic, str(out), distinct, group)
        compared = quix_peer.compare_outputs(expected, out)
        assert compared == distinct, f"Quix Streams wrote {compared} of {distinct}"
        changelog_messages = messages_in(bootstrap, changelog)
    finally:
        delete_topics(bootstrap, changelog)
    return {
        "msgs_per_s": round(n / elapsed),
        "elapsed_s": round(elapsed, 1),
        "peak_rss_mb": round(peak),
        "changelog_messages": changelog_messages,
    }


def messages_in(bootstrap: str, prefix: str) -> int:
    """How many messages were ever written to the topics whose names start with `prefix` (end minus start)."""

    async def go() -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(prefix)]
            described = await admin.describe_topics(names) if names else []
        finally:
            await admin.close()
        tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
        if not tps:
            return 0
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            ends, starts = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
            return sum(ends[tp] - starts[tp] for tp in tps)
        finally:
            await consumer.stop()

    return asyncio.run(go())


def run(
    bootstrap: str, n: int, repeats: float, scale: bool = True, per_location: bool = True, pairs: int = 2
) -> dict[str, Any]:
    """All three on the same workload; every `*_msgs_per_s` counts measurements per second, whatever the messages
    carry (one location's measurements of an hour per message with `per_location`, as the poller sends them).

    airq and the Quix Streams peer run `pairs` times each, in mirrored order (airq, Quix, Quix, airq, ...), and
    their figures are the means: a machine that slows down or speeds up during the run then weighs on both
    alike, not on whichever ran last."""
    base = Path(tempfile.mkdtemp(prefix="airq-bench-"))
    airq: list[dict[str, Any]] = []
    quix: list[dict[str, Any]] = []
    try:
        messages, distinct = workload(n, repeats, per_location=per_location)
        total = measurements_in(messages)
        topic = load_topic(bootstrap, messages)
        baseline = bench_baseline(bootstrap, topic, base / "baseline", total, distinct)
        order = [("airq", "quix") if i % 2 == 0 else ("quix", "airq") for i in range(pairs)]
        for i, names in enumerate(order):
            for name in names:
                if name == "airq":
                    airq.append(bench_airq(bootstrap, base, messages, total, distinct, run=i))
                else:
                    quix.append(bench_quix(bootstrap, topic, base / f"quix-{i}", total, distinct, base / "baseline"))
        two = bench_airq(bootstrap, base, messages, total, distinct, workers=2) if scale else None
    finally:
        shutil.rmtree(base, ignore_errors=True)
    scaled = (
        {"airq_2_workers_msgs_per_s": two["msgs_per_s"], "airq_2_workers_peak_rss_mb": two["peak_rss_mb"]}
        if two
        else {}
    )
    airq_rate = round(sum(r["msgs_per_s"] for r in airq) / len(airq))
    quix_rate = round(sum(r["msgs_per_s"] for r in quix) / len(quix))
    return {
        **scaled,
        "messages": total,
        "kafka_messages": len(messages),
        "layout": "per_location" if per_location else "single",
        "distinct": distinct,
        "airq_msgs_per_s": airq_rate,
        "airq_runs_msgs_per_s": [r["msgs_per_s"] for r in airq],
        "airq_peak_rss_mb": max(r["peak_rss_mb"] for r in airq),
        "baseline_msgs_per_s": baseline["msgs_per_s"],
        "baseline_peak_rss_mb": baseline["peak_rss_mb"],
        "ratio": round(airq_rate / baseline["msgs_per_s"], 3),
        "quix_msgs_per_s": quix_rate,
        "quix_runs_msgs_per_s": [r["msgs_per_s"] for r in quix],
        "quix_peak_rss_mb": max(r["peak_rss_mb"] for r in quix),
        "quix_changelog_messages": quix[0]["changelog_messages"],
        "ratio_vs_quix": round(airq_rate / quix_rate, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=float, default=0.2)
    parser.add_argument("--broker", default="127.0.0.1:9092")
    parser.add_argument("--single", action="store_true", help="one measurement per message")
    parser.add_argument("--one-worker", action="store_true", help="skip the two-worker run")
    parser.add_argument("--pairs", type=int, default=2, help="runs of airq and of the Quix Streams peer, each")
    args = parser.parse_args()
    print(json.dumps(run(args.broker, args.messages, args.repeats, not args.one_worker, not args.single, args.pairs)))


if __name__ == "__main__":
    main()
