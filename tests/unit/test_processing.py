"""The stream's decision for one message, as a pure function of the message and table state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airq_app.filters import FilterConfig
from airq_app.processing import decide, location_summary
from airq_app.validation import parse_measurement
from airq_dev.harness import encode, measurement

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
CFG = FilterConfig()
RETENTION = 72 * 3600


def m(sensor: int = 71, hour: str = "2026-11-24T12:00:00Z", **kw: object) -> dict:
    return parse_measurement(encode(measurement(sensor, hour, **kw))[1])


def src(offset: int, partition: int = 3) -> dict:
    return {"topic": "air_quality_telematics", "partition": partition, "offset": offset}


def test_first_time_is_written_and_remembered() -> None:
    d = decide(m(value=35.4), src(10), None, CFG, RETENTION, NOW)
    assert d.outcome == "write"
    epoch = int(datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp())
    assert d.history["seen"] == {str(epoch): [3, 10]}
    assert d.record["value"] == 35.4 and d.record["aqi"] == 100 and d.record["aqi_category"] == "Moderate"
    assert d.record["aqi_basis"] == "instant" and d.record["source"] == src(10)
    assert d.history["newest"] == epoch


def test_repeat_is_a_duplicate_but_own_replay_is_written_again() -> None:
    first = decide(m(), src(10), None, CFG, RETENTION, NOW)
    assert decide(m(), src(55), first.history, CFG, RETENTION, NOW).outcome == "duplicate"
    replay = decide(m(), src(10), first.history, CFG, RETENTION, NOW)
    assert replay.outcome == "write" and replay.history["seen"] == first.history["seen"]
    assert replay.record["source"] == src(10)


def test_replay_is_written_even_when_the_clock_says_too_old() -> None:
    first = decide(m(), src(10), None, CFG, RETENTION, NOW)
    much_later = datetime(2026, 12, 24, tzinfo=UTC)
    assert decide(m(), src(11), None, CFG, RETENTION, much_later).reason == "too_old"
    assert decide(m(), src(10), first.history, CFG, RETENTION, much_later).outcome == "write"


def test_nowcast_from_sensor_history() -> None:
    history = None
    for h, v in ((10, 20.0), (11, 30.0)):
        d = decide(m(hour=f"2026-11-24T{h}:00:00Z", value=v), src(h), history, CFG, RETENTION, NOW)
        history = d.history
    d = decide(m(value=40.0), src(12), history, CFG, RETENTION, NOW)
    # w = 20/40 = 0.5: (40 + 15 + 5) / (1 + 0.5 + 0.25) = 34.28... -> truncated 34.2
    assert d.record["nowcast"] == 34.2 and d.record["aqi_basis"] == "nowcast"
    assert d.record["aqi"] == 98  # 51 + 49/26.3 * (34.2 - 9.1) = 97.76


def test_seen_entries_expire_with_the_sensor_window() -> None:
    history = None
    for h in range(0, 6):
        d = decide(m(hour=f"2026-11-24T{h:02d}:00:00Z"), src(h), history, CFG, 2 * 3600, NOW)
        history = d.history
    hour3 = int(datetime(2026, 11, 24, 3, tzinfo=UTC).timestamp())
    assert sorted(history["seen"]) == [str(hour3), str(hour3 + 3600), str(hour3 + 7200)]  # 03, 04, 05 stay
    late = decide(m(hour="2026-11-24T01:00:00Z"), src(9), history, CFG, 2 * 3600, NOW)
    assert late.outcome == "filtered" and late.reason == "too_old"


def test_filtered_and_unit_unknown() -> None:
    assert decide(m(value=-999.0), src(1), None, CFG, RETENTION, NOW).reason == "sentinel"
    assert decide(m(unit="furlongs"), src(1), None, CFG, RETENTION, NOW).reason == "unit_unknown"


def test_gas_in_ppm_is_normalised_to_ppb() -> None:
    d = decide(m(parameter="no2", unit="ppm", value=0.101), src(1), None, CFG, RETENTION, NOW)
    assert d.record["value"] == pytest.approx(101.0) and d.record["unit"] == "ppb"
    assert d.record["raw_value"] == 0.101 and d.record["raw_unit"] == "ppm"
    assert d.record["aqi"] == 101  # NO2 1h: 101 ppb is the first value of the USG row


def test_stuck_sensor_is_flagged_not_dropped() -> None:
    history = None
    flags = []
    for h in range(0, 7):
        d = decide(m(hour=f"2026-11-24T{h:02d}:00:00Z", value=12.0), src(h), history, CFG, RETENTION, NOW)
        history = d.history
        flags.append("stuck" in d.record["flags"])
    assert flags == [False] * 5 + [True, True]


def test_location_summary_keeps_the_newest_per_parameter() -> None:
    a = decide(m(hour="2026-11-24T11:00:00Z", value=5.0), src(1), None, CFG, RETENTION, NOW).record
    b = decide(m(value=60.0), src(2), None, CFG, RETENTION, NOW).record
    o3 = decide(m(sensor=81, parameter="o3", unit="ppm", value=0.03), src(3), None, CFG, RETENTION, NOW).record
    entry = location_summary(location_summary(None, b), o3)
    assert location_summary(entry, a) is None  # older than what is shown
    assert entry["parameters"]["pm25"]["value"] == 60.0
    assert set(entry["parameters"]) == {"pm25", "o3"}
    assert entry["aqi"] == entry["parameters"]["pm25"]["aqi"] and entry["aqi_category"] == "Unhealthy"
