"""The benchmarks' workloads hold what they claim: the distinct measurements they count, and the repeats."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from bench.state import measurements
from bench.throughput import measurements_in, workload

pytestmark = pytest.mark.unit


def test_throughput_workload_counts_distinct_measurements_exactly() -> None:
    rows, distinct = workload(5_000, 0.2, sensors=100, per_location=False)
    keys = [(m["sensor_id"], m["datetime_utc"]) for m in (orjson.loads(v) for _, v in rows)]
    assert len(rows) == 5_000
    assert len(set(keys)) == distinct == 4_000


def test_per_location_workload_holds_a_location_hour_per_message() -> None:
    rows, distinct = workload(5_000, 0.2, sensors=100)
    messages = [orjson.loads(v) for _, v in rows]
    assert all(isinstance(m, list) for m in messages)
    for (key, _), items in zip(rows, messages, strict=True):
        assert {(m["location_id"], m["datetime_utc"]) for m in items} == {(int(key), items[0]["datetime_utc"])}
    keys = [(m["sensor_id"], m["datetime_utc"]) for items in messages for m in items]
    assert len(set(keys)) == distinct == 4_000
    assert 5_000 <= len(keys) < 5_005 and measurements_in(rows) == len(keys)
    assert len({v for _, v in rows}) == 4_000 // 5


def test_state_workload_is_hourly_per_sensor() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [orjson.loads(v) for _, v in measurements(0, 300, 100, start)]
    assert len({(m["sensor_id"], m["datetime_utc"]) for m in rows}) == 300
    assert {m["datetime_utc"] for m in rows if m["sensor_id"] == 100_007} == {
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:00:00Z",
        "2026-01-01T02:00:00Z",
    }
