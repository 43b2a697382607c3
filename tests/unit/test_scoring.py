from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from airq_app.domain.scoring import hourly_window, score, shape_record
from airq_app.domain.timeutil import epoch_seconds, format_utc, utc_seconds
from airq_app.domain.validation import check_measurement

pytestmark = pytest.mark.unit

UG = "µg/m³"


def raw(**over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "location_id": 10,
        "sensor_id": 100,
        "parameter": "no2",
        "value": 0.071,
        "unit": "ppm",
        "datetime_utc": "2025-06-01T11:00:00+00:00",
        "parameter_id": 7,
        "datetime_local": "2025-06-01T07:00:00-04:00",
        "location_name": "Somewhere",
        "country": "US",
        "latitude": 40,
        "longitude": -75.5,
        "timezone": "America/New_York",
        "provider": "AirNow",
        "fetched_at": "2025-06-01T11:20:00Z",
    }
    m.update(over)
    return check_measurement(m)


SOURCE = {"topic": "air_quality_telematics", "partition": 3, "offset": 42}
CONTRACT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "sensor_id": int,
    "location_id": int,
    "location_name": (str, type(None)),
    "country": (str, type(None)),
    "latitude": (float, type(None)),
    "longitude": (float, type(None)),
    "parameter": str,
    "value": float,
    "unit": str,
    "raw_value": float,
    "raw_unit": str,
    "datetime_utc": str,
    "aqi": (int, type(None)),
    "aqi_category": (str, type(None)),
    "aqi_basis": (str, type(None)),
    "source": dict,
}


def test_shape_record_fields_and_types():
    when = datetime(2025, 6, 1, 11, 30, tzinfo=UTC)
    rec = shape_record(raw(), 71.0, "ppb", (96, "Moderate"), "instant", SOURCE, ["stuck"], processed_at=when)
    fields = cast(dict[str, Any], rec)  # looked up by name from the contract's table
    for name, kind in CONTRACT_FIELDS.items():
        assert name in fields, name
        assert isinstance(fields[name], kind), name
    assert rec["sensor_id"] == 100 and rec["location_id"] == 10
    assert rec["latitude"] == 40.0 and isinstance(rec["latitude"], float)
    assert rec["value"] == 71.0 and rec["unit"] == "ppb"
    assert rec["raw_value"] == 0.071 and rec["raw_unit"] == "ppm"
    assert rec["datetime_utc"] == "2025-06-01T11:00:00Z"
    assert rec["aqi"] == 96 and rec["aqi_category"] == "Moderate" and rec["aqi_basis"] == "instant"
    assert rec["source"] == {"topic": "air_quality_telematics", "partition": 3, "offset": 42}
    assert rec["parameter_id"] == 7
    assert rec["datetime_local"] == "2025-06-01T07:00:00-04:00"
    assert rec["provider"] == "AirNow"
    assert rec["flags"] == ["stuck"]
    assert rec["processed_at"] == "2025-06-01T11:30:00Z"
    json.dumps(rec)  # plain JSON types only


def test_shape_record_without_aqi_and_optional_fields():
    m = {
        "location_id": 1,
        "sensor_id": 2,
        "parameter": "temperature",
        "value": 21,
        "unit": "c",
        "datetime_utc": "2025-06-01T11:00:00Z",
    }
    rec = shape_record(m, 21.0, "c", None, "instant", {"topic": "t", "partition": 0, "offset": 0})
    assert rec["aqi"] is None and rec["aqi_category"] is None and rec["aqi_basis"] is None
    assert rec["location_name"] is None and rec["country"] is None
    assert rec["latitude"] is None and rec["longitude"] is None
    assert rec["raw_value"] == 21.0 and isinstance(rec["raw_value"], float)
    assert rec["flags"] == []
    assert rec["processed_at"].endswith("Z")


def test_shape_record_beyond_aqi_flag():
    rec = shape_record(raw(parameter="pm25", value=400, unit=UG), 400.0, UG, (649, "Hazardous"), "instant", SOURCE)
    assert rec["flags"] == ["beyond_aqi"]


def test_hourly_window_merges_and_lists_newest_first():
    existing = {"2025-06-01T09:00:00Z": 10.0, "2025-06-01T10:00:00Z": 11.0}
    hours, window = hourly_window(existing, utc_seconds("2025-06-01T12:00:00Z"), 13.0)
    assert hours == {"2025-06-01T09:00:00Z": 10.0, "2025-06-01T10:00:00Z": 11.0, "2025-06-01T12:00:00Z": 13.0}
    assert window == [13.0, None, 11.0, 10.0] + [None] * 20
    assert existing == {"2025-06-01T09:00:00Z": 10.0, "2025-06-01T10:00:00Z": 11.0}  # not mutated


def test_hourly_window_floors_to_hour_and_replaces():
    hours, window = hourly_window({"2025-06-01T12:00:00Z": 5.0}, utc_seconds("2025-06-01T12:40:10+00:00"), 6.0)
    assert hours == {"2025-06-01T12:00:00Z": 6.0}
    assert window[0] == 6.0 and len(window) == 24


def test_hourly_window_keeps_24_hours_per_sensor():
    start = datetime(2025, 6, 1, tzinfo=UTC)
    existing = {format_utc(start + timedelta(hours=h)): float(h) for h in range(0, 24)}
    hours, window = hourly_window(existing, epoch_seconds(start + timedelta(hours=24)), 24.0)
    assert "2025-06-01T00:00:00Z" not in hours  # 24 hours before the newest: out
    assert len(hours) == 24 and "2025-06-01T01:00:00Z" in hours
    assert window == [float(h) for h in range(24, 0, -1)]
    # However long the sensor runs, its state stays at 24 hours.
    for h in range(25, 100):
        hours, _ = hourly_window(hours, epoch_seconds(start + timedelta(hours=h)), float(h))
    assert len(hours) == 24


def test_hourly_window_late_measurement():
    existing = {"2025-06-01T12:00:00Z": 12.0, "2025-06-01T10:00:00Z": 10.0}
    hours, window = hourly_window(existing, utc_seconds("2025-06-01T11:00:00Z"), 11.0)
    assert window[:3] == [11.0, 10.0, None]
    assert hours["2025-06-01T12:00:00Z"] == 12.0
    # A value older than the kept window still heads its own list but is not stored.
    hours, window = hourly_window({"2025-06-02T12:00:00Z": 1.0}, utc_seconds("2025-06-01T12:00:00Z"), 9.0)
    assert window[0] == 9.0
    assert hours == {"2025-06-02T12:00:00Z": 1.0}


def test_score_pm_nowcast():
    # NowCast of [20, 16, 18] = 18.1 → 51+49*9.0/26.3 = 67.77 → 68.
    assert score("pm25", 20.0, UG, [20.0, 16.0, 18.0]) == ((68, "Moderate"), "nowcast", 18.1)


def test_score_pm_instant_when_nowcast_undefined():
    # Only 1 of the 3 newest hours: the hourly value 20 → 51+49*10.9/26.3 = 71.3 → 71.
    assert score("pm25", 20.0, UG, [20.0, None, None, 10.0]) == ((71, "Moderate"), "instant", None)
    assert score("pm10", 100.0, UG, None) == ((73, "Moderate"), "instant", None)


def test_score_pm_window_via_helper():
    hours: dict[str, float] = {}
    for h, v in ((9, 18.0), (10, 16.0)):
        hours, _ = hourly_window(hours, utc_seconds(f"2025-06-01T{h:02d}:00:00Z"), v)
    hours, window = hourly_window(hours, utc_seconds("2025-06-01T11:00:00Z"), 20.0)
    assert score("pm25", 20.0, UG, window) == ((68, "Moderate"), "nowcast", 18.1)


def test_score_ozone_without_an_8_hour_mean_uses_the_hour_higher_of_8h_and_1h():
    # No history: the hour itself. 0.130 ppm: 8h table 226, 1h table 107 → 226.
    assert score("o3", 0.130, "ppm", None) == ((226, "Very Unhealthy"), "instant", None)
    # 0.250 ppm: no 8h index above 0.200; 1h 201+99*45/199 = 223.4 → 223.
    assert score("o3", 0.250, "ppm", None) == ((223, "Very Unhealthy"), "instant", None)
    # 0.060 ppm: 8h only, 51+49*5/15 = 67.3.
    assert score("o3", 0.060, "ppm", None) == ((67, "Moderate"), "instant", None)
    # 5 of 8 hours is not enough for an 8-hour mean: still the hour.
    assert score("o3", 0.130, "ppm", [0.130, 0.05, 0.05, 0.05, 0.05, None, None, None]) == (
        (226, "Very Unhealthy"),
        "instant",
        None,
    )


def test_score_other_gases():
    assert score("co", 5.0, "ppm", None) == ((56, "Moderate"), "instant", None)  # 51+49*0.5/4.9
    assert score("so2", 40.0, "ppb", None) == ((56, "Moderate"), "instant", None)  # 51+49*4/39 = 56.03
    assert score("no2", 120.0, "ppb", None) == ((105, "Unhealthy for Sensitive Groups"), "instant", None)


def test_score_unscored():
    assert score("temperature", 21.0, "c", None) == (None, None, None)
    assert score("no2", -3.0, "ppb", None) == (None, None, None)
