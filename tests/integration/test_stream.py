"""The stream on the real broker, with a worker started as a user starts it."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airq_dev.harness import Pipeline, consume_all, encode, finished_records, measurement, produce, wait_for

pytestmark = pytest.mark.integration


def hours_ago(n: int) -> str:
    t = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=n)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def fast(kafka: str, tmp_path: Path):
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1, output__flush_interval_s=0.2)
    yield p
    p.stop_all()


def keys(records: list[dict]) -> Counter:
    return Counter((r["sensor_id"], r["datetime_utc"]) for r in records)


def wait_written(p: Pipeline, n: int, timeout: float = 60) -> list[dict]:
    return wait_for(
        lambda: (r := finished_records(p.output_dir)) and len(r) >= n and r,
        timeout,
        what=f"{n} records in finished files",
    )


def test_repeated_polls_give_one_record_per_measurement(fast: Pipeline) -> None:
    worker = fast.worker().start()
    batch = [measurement(1000 + s, hours_ago(h), value=10.0 + s + h) for s in range(20) for h in range(1, 4)]
    for _ in range(3):  # the poller sends the same latest values every cycle
        produce(fast.bootstrap, fast.topic, [encode(m) for m in batch])
    records = wait_written(fast, len(batch))
    wait_for(lambda: worker.status()["counters"]["consumed"] >= 3 * len(batch), 30, what="all consumed")
    records = finished_records(fast.output_dir)
    assert keys(records) == Counter({(m["sensor_id"], m["datetime_utc"]): 1 for m in batch})
    counters = worker.status()["counters"]
    assert counters["duplicates"] == 2 * len(batch)
    assert counters["written"] == len(batch)
    r = next(r for r in records if r["sensor_id"] == 1000 and r["datetime_utc"] == hours_ago(1))
    assert r["value"] == 11.0 and r["unit"] == "µg/m³" and r["raw_value"] == 11.0
    assert r["aqi_basis"] in ("nowcast", "instant") and isinstance(r["aqi"], int)
    assert r["source"]["topic"] == fast.topic and isinstance(r["source"]["offset"], int)


def test_garbage_goes_to_dead_letter_and_the_stream_goes_on(fast: Pipeline) -> None:
    worker = fast.worker().start()
    good_before = measurement(2001, hours_ago(1))
    good_after = measurement(2002, hours_ago(1))
    wrong_schema = {"sensor_id": "abc", "hello": "world"}
    produce(
        fast.bootstrap,
        fast.topic,
        [
            encode(good_before),
            (b"7", b"\x00\x01garbage\xff"),
            (b"7", json.dumps(wrong_schema).encode()),
            (b"7", b""),
            encode(good_after),
        ],
    )
    records = wait_written(fast, 2)
    assert {r["sensor_id"] for r in records} == {2001, 2002}
    dlq = wait_for(
        lambda: (m := consume_all(fast.bootstrap, fast.dlq_topic)) and len(m) >= 3 and m, 30, what="3 dead letters"
    )
    entries = [json.loads(m.value) for m in dlq]
    reasons = sorted(e["reason"].split(":")[0] for e in entries)
    assert reasons == ["empty_message", "not_json", "wrong_schema"]
    for e in entries:
        assert e["source"]["topic"] == fast.topic
        assert isinstance(e["source"]["partition"], int) and isinstance(e["source"]["offset"], int)
    garbage = next(e for e in entries if e["reason"].startswith("not_json"))
    import base64

    assert base64.b64decode(garbage["value_base64"]) == b"\x00\x01garbage\xff"
    assert worker.status()["counters"]["dead_lettered"] == 3
    assert worker.alive()


def test_filters_are_counted_by_reason(fast: Pipeline) -> None:
    worker = fast.worker().start()
    produce(
        fast.bootstrap,
        fast.topic,
        [
            encode(measurement(3001, hours_ago(1), value=-999.0)),
            encode(measurement(3002, hours_ago(1), value=-3.0)),
            encode(measurement(3003, hours_ago(1), parameter="temperature", unit="c", value=20.0)),
            encode(measurement(3004, hours_ago(-3))),  # three hours in the future
            encode(measurement(3005, hours_ago(1), value=15.0)),
        ],
    )
    wait_written(fast, 1)
    wait_for(lambda: worker.status()["counters"]["filtered_total"] >= 4, 30, what="4 filtered")
    filtered = worker.status()["counters"]["filtered"]
    assert filtered.get("sentinel") == 1 and filtered.get("negative") == 1
    assert filtered.get("future") == 1
    assert filtered.get("parameter_not_allowed", 0) + filtered.get("unit_unknown", 0) == 1
    assert [r["sensor_id"] for r in finished_records(fast.output_dir)] == [3005]


def test_restart_keeps_the_deduplication(fast: Pipeline) -> None:
    first = [measurement(4000 + s, hours_ago(2)) for s in range(30)]
    second = [measurement(4000 + s, hours_ago(1)) for s in range(30)]
    worker = fast.worker().start()
    produce(fast.bootstrap, fast.topic, [encode(m) for m in first])
    wait_written(fast, len(first))
    assert worker.stop() == 0
    worker.start()
    produce(fast.bootstrap, fast.topic, [encode(m) for m in first + second])
    wait_written(fast, len(first) + len(second))
    wait_for(lambda: worker.status()["counters"]["duplicates"] >= len(first), 30, what="duplicates counted")
    assert keys(finished_records(fast.output_dir)) == Counter(
        {(m["sensor_id"], m["datetime_utc"]): 1 for m in first + second}
    )


def test_clean_stop_finishes_every_open_file(kafka: str, tmp_path: Path) -> None:
    slow = Pipeline(tmp_path, kafka, output__rotate_max_age_s=3600, output__finish_idle_s=0)
    try:
        worker = slow.worker().start()
        batch = [measurement(5000 + s, hours_ago(1)) for s in range(10)]
        produce(slow.bootstrap, slow.topic, [encode(m) for m in batch])
        wait_for(lambda: list(slow.output_dir.rglob("*.inprogress")), 30, what="an open file")
        assert finished_records(slow.output_dir) == []
        assert worker.stop() == 0
        assert not list(slow.output_dir.rglob("*.inprogress"))
        assert len(finished_records(slow.output_dir)) == 10
    finally:
        slow.stop_all()


def test_status_metrics_and_location_views(fast: Pipeline) -> None:
    worker = fast.worker().start()
    batch = [measurement(6000 + s, hours_ago(1), value=30.0 + s, location_id=600) for s in range(3)]
    batch.append(measurement(6010, hours_ago(1), parameter="no2", unit="ppm", value=0.101, location_id=600))
    produce(fast.bootstrap, fast.topic, [encode(m) for m in batch])
    wait_written(fast, len(batch))
    wait_for(lambda: worker.status()["counters"]["written"] >= 4, 10, what="written counter")

    status = worker.status()
    assert set(status["assignment"]) == {"active", "standby"}
    assert status["consumer_lag"] and all(v == 0 for v in status["consumer_lag"].values())
    code, text = worker.get("/metrics")
    assert code == 200
    assert "airq_written_total 4.0" in text
    assert "airq_processing_seconds_count 4.0" in text
    assert "airq_end_to_end_seconds_count 4.0" in text
    assert 'airq_consumer_lag{partition="' in text

    code, loc = worker.get("/airq/locations/600")
    assert code == 200
    assert loc["parameters"]["no2"]["value"] == pytest.approx(101.0) and loc["parameters"]["no2"]["unit"] == "ppb"
    assert loc["parameters"]["pm25"]["sensor_id"] in (6000, 6001, 6002)
    assert loc["aqi"] == max(p["aqi"] for p in loc["parameters"].values())
    assert worker.get("/airq/locations/999999")[0] == 404
