"""Exactly-once files under SIGKILL: two workers share one output directory and get killed over and over."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airq_dev.harness import Pipeline, encode, measurement, produce, wait_for
from airq_dev.harness import output_counts as read_output

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SENSORS = 5000
HOURS = 10  # 50,000 distinct measurements
REPEAT_SHARE = 0.3
KILLS = 10


def workload(seed: int = 7) -> tuple[list[tuple[bytes, bytes]], set[tuple[int, str]]]:
    rng = random.Random(seed)
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    distinct = []
    for h in range(HOURS, 0, -1):
        hour = (top - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for s in range(SENSORS):
            sensor = 100_000 + s
            distinct.append(measurement(sensor, hour, value=round(rng.uniform(1, 80), 1), location_id=sensor // 5))
    repeats = rng.choices(distinct, k=int(len(distinct) * REPEAT_SHARE / (1 - REPEAT_SHARE)))
    messages = [encode(m) for m in distinct] + [encode(m) for m in repeats]
    # Repeats come a little later than their original, as a poller sends them on its next cycles.
    messages = messages[: len(distinct) // 2] + sorted(messages[len(distinct) // 2 :], key=lambda _: rng.random())
    return messages, {(m["sensor_id"], m["datetime_utc"]) for m in distinct}


def test_sigkill_chaos_leaves_every_measurement_exactly_once(kafka: str, tmp_path: Path) -> None:
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=2, output__flush_interval_s=0.5, app__session_timeout_s=6)
    messages, expected = workload()
    workers = [p.worker("a"), p.worker("b")]
    try:
        for w in workers:
            w.start()
        chunks = [messages[i : i + 5000] for i in range(0, len(messages), 5000)]
        done = threading.Event()

        def feed() -> None:
            for chunk in chunks:
                produce(p.bootstrap, p.topic, chunk)
                time.sleep(1.5)
            done.set()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        rng = random.Random(11)
        kills = 0
        while kills < KILLS or not done.is_set():
            time.sleep(rng.uniform(2.0, 5.0))
            victim = rng.choice(workers)
            victim.kill()
            kills += 1
            time.sleep(rng.uniform(0.0, 1.5))
            victim.start(wait_ready=False)
        feeder.join()

        def drained() -> bool:
            counts, _ = read_output(p.output_dir)
            return set(counts) >= expected

        wait_for(drained, 300, interval=2, what="every measurement in finished files")
        for w in workers:  # a clean stop finishes whatever is still open
            w.stop()
        counts, bad = read_output(p.output_dir)
        missing = expected - set(counts)
        duplicates = {k: n for k, n in counts.items() if n > 1}
        extra = set(counts) - expected
        print(
            f"\nchaos: {len(messages)} messages, {len(expected)} distinct, {kills} SIGKILLs, "
            f"{len(missing)} missing, {len(duplicates)} duplicated, {bad} bad lines, "
            f"{len(list(p.output_dir.rglob('*.jsonl')))} files"
        )
        assert kills >= KILLS
        assert not missing and not duplicates and not extra and bad == 0
        assert not list(p.output_dir.rglob("*.inprogress"))
    finally:
        p.stop_all()
