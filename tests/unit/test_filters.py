from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from airq_app.domain.filters import FilterConfig, check, stuck_flag
from airq_app.domain.validation import check_measurement

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
DEFAULT = FilterConfig()


def measurement(**over: Any) -> dict[str, Any]:
    """A measurement as the filters get it: checked by validation (normalised time, its `epoch`)."""
    m: dict[str, Any] = {
        "location_id": 10,
        "sensor_id": 100,
        "parameter": "pm25",
        "value": 12.0,
        "unit": "µg/m³",
        "datetime_utc": "2025-06-01T11:00:00Z",
        "country": "US",
        "latitude": 40.0,
        "longitude": -75.0,
    }
    m.update(over)
    return check_measurement(m)


def test_defaults():
    assert DEFAULT.parameters == ("pm25", "pm10", "o3", "no2", "so2", "co")
    assert -999.0 in DEFAULT.sentinels and -9999.0 in DEFAULT.sentinels
    assert DEFAULT.drop_negative is True
    assert DEFAULT.max_future_skew_s == 900
    assert DEFAULT.max_age_hours == 72
    assert DEFAULT.countries == ()
    assert DEFAULT.bbox is None
    assert DEFAULT.stuck_hours == 6
    assert DEFAULT.plausible_max["pm25"] == 1000
    assert DEFAULT.plausible_max["pm10"] == 1500
    assert DEFAULT.plausible_max["o3"] == 0.5
    assert DEFAULT.plausible_max["co"] == 100
    assert DEFAULT.plausible_max["no2"] == 500
    assert DEFAULT.plausible_max["so2"] == 2000


def test_clean_measurement_passes():
    assert check(measurement(), 12.0, DEFAULT, NOW) is None


def test_parameter_allow_list():
    assert check(measurement(parameter="temperature", value=20, unit="c"), 20.0, DEFAULT, NOW) == (
        "parameter_not_allowed"
    )
    cfg = FilterConfig.from_dict({"parameters": ["pm25", "temperature"]})
    assert check(measurement(parameter="temperature", value=20, unit="c"), 20.0, cfg, NOW) is None
    assert check(measurement(parameter="o3", value=0.03, unit="ppm"), 0.03, cfg, NOW) == "parameter_not_allowed"


def test_sentinel():
    assert check(measurement(value=-999), -999.0, DEFAULT, NOW) == "sentinel"
    assert check(measurement(value=-9999.0), -9999.0, DEFAULT, NOW) == "sentinel"
    # Sentinels are matched on the raw value, whatever the unit.
    assert check(measurement(parameter="no2", value=-999, unit="ppm"), -999000.0, DEFAULT, NOW) == "sentinel"
    cfg = FilterConfig.from_dict({"sentinels": [], "drop_negative": False})
    assert check(measurement(value=-999), -999.0, cfg, NOW) is None


def test_negative():
    assert check(measurement(value=-0.1), -0.1, DEFAULT, NOW) == "negative"
    assert check(measurement(value=0.0), 0.0, DEFAULT, NOW) is None
    cfg = FilterConfig.from_dict({"drop_negative": False})
    assert check(measurement(value=-0.1), -0.1, cfg, NOW) is None


def test_a_conversion_that_overflows_is_implausible():
    # A finite raw value (validation lets nothing else through) whose normalised value is not finite.
    from airq_app.domain.units import normalise

    m = measurement(parameter="no2", value=1e308, unit="ppm")
    normalised = normalise("no2", 1e308, "ppm")
    assert normalised is not None
    value, _unit = normalised
    assert value == float("inf")
    assert check(m, value, DEFAULT, NOW) == "implausible"
    no_limits = FilterConfig.from_dict({"drop_negative": False})
    assert check(measurement(parameter="no2", value=-1e308, unit="ppm"), -value, no_limits, NOW) == "implausible"


def test_implausible():
    assert check(measurement(value=1000.0), 1000.0, DEFAULT, NOW) is None
    assert check(measurement(value=1000.1), 1000.1, DEFAULT, NOW) == "implausible"
    # A µg/m³ O3 value mislabelled ppm.
    assert check(measurement(parameter="o3", value=98.0, unit="ppm"), 98.0, DEFAULT, NOW) == "implausible"
    assert check(measurement(parameter="o3", value=0.05, unit="ppm"), 0.05, DEFAULT, NOW) is None
    cfg = FilterConfig.from_dict({"plausible_max": {"pm25": 2000}})
    assert check(measurement(value=1500.0), 1500.0, cfg, NOW) is None
    assert cfg.plausible_max["pm10"] == 1500  # other defaults kept


def test_future():
    assert check(measurement(datetime_utc="2025-06-01T12:15:00Z"), 12.0, DEFAULT, NOW) is None
    assert check(measurement(datetime_utc="2025-06-01T12:15:01Z"), 12.0, DEFAULT, NOW) == "future"
    cfg = FilterConfig.from_dict({"max_future_skew_s": 0})
    assert check(measurement(datetime_utc="2025-06-01T12:00:01+00:00"), 12.0, cfg, NOW) == "future"


def test_too_old():
    assert check(measurement(datetime_utc="2025-05-29T12:00:00Z"), 12.0, DEFAULT, NOW) is None
    assert check(measurement(datetime_utc="2025-05-29T11:59:59+00:00"), 12.0, DEFAULT, NOW) == "too_old"
    cfg = FilterConfig.from_dict({"max_age_hours": 1})
    assert check(measurement(datetime_utc="2025-06-01T10:30:00Z"), 12.0, cfg, NOW) == "too_old"


def test_timestamp_formats():
    assert check(measurement(datetime_utc="2025-06-01T11:00:00+00:00"), 12.0, DEFAULT, NOW) is None
    assert check(measurement(datetime_utc="2025-06-01T13:00:00+02:00"), 12.0, DEFAULT, NOW) is None


def test_country():
    cfg = FilterConfig.from_dict({"countries": ["us", "CA"]})
    assert cfg.countries == ("US", "CA")
    assert check(measurement(country="US"), 12.0, cfg, NOW) is None
    assert check(measurement(country="DE"), 12.0, cfg, NOW) == "country"
    assert check(measurement(country=None), 12.0, cfg, NOW) == "country"
    assert check(measurement(country="DE"), 12.0, DEFAULT, NOW) is None


def test_bbox():
    cfg = FilterConfig.from_dict({"bbox": [-80, 35, -70, 45]})
    assert check(measurement(longitude=-75.0, latitude=40.0), 12.0, cfg, NOW) is None
    assert check(measurement(longitude=-80.0, latitude=45.0), 12.0, cfg, NOW) is None  # edges are inside
    assert check(measurement(longitude=-81.0, latitude=40.0), 12.0, cfg, NOW) == "bbox"
    assert check(measurement(longitude=-75.0, latitude=46.0), 12.0, cfg, NOW) == "bbox"
    assert check(measurement(longitude=None, latitude=None), 12.0, cfg, NOW) == "bbox"


def test_unit_unknown():
    assert check(measurement(unit="furlongs"), None, DEFAULT, NOW) == "unit_unknown"


def test_from_dict_unknown_key():
    with pytest.raises(ValueError, match="max_age_days"):
        FilterConfig.from_dict({"max_age_days": 3})


@pytest.mark.parametrize(
    "d,key",
    [
        ({"drop_negative": "yes"}, "drop_negative"),
        ({"stuck_hours": 1}, "stuck_hours"),
        ({"max_age_hours": 0}, "max_age_hours"),
        ({"bbox": [1, 2, 3]}, "bbox"),
        ({"bbox": [10, 0, 0, 10]}, "bbox"),
        ({"parameters": "pm25"}, "parameters"),
        ({"drop_negative": True, "sentinels": ["x"]}, "sentinels"),
        ({"plausible_max": {"pm25": -1}}, "plausible_max"),
    ],
)
def test_from_dict_bad_value_names_key(d: dict[str, Any], key: str):
    with pytest.raises(ValueError, match=key):
        FilterConfig.from_dict(d)


def test_from_dict_pipeline_block():
    cfg = FilterConfig.from_dict(
        {"drop_negative": True, "max_future_skew_s": 900, "max_age_hours": 72, "stuck_hours": 6}
    )
    assert cfg == FilterConfig()
    assert FilterConfig.from_dict({}) == FilterConfig()
    assert FilterConfig.from_dict(None) == FilterConfig()


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        DEFAULT.drop_negative = False  # type: ignore[misc]


def test_stuck_flag_with_window_given_by_caller():
    assert stuck_flag([5.0, 5.0, 5.0, 5.0, 5.0], 5.0) is True
    assert stuck_flag([5.0, 5.0, 4.0, 5.0, 5.0], 5.0) is False
    assert stuck_flag([5.0, 5.0], 6.0) is False
    assert stuck_flag([], 5.0) is False


def test_stuck_flag_with_hours():
    # Six identical hourly values including this one.
    assert stuck_flag([1.0, 7.0, 7.0, 7.0, 7.0, 7.0], 7.0, hours=6) is True
    # Only five identical so far.
    assert stuck_flag([1.0, 1.0, 7.0, 7.0, 7.0, 7.0], 7.0, hours=6) is False
    # Not enough history yet.
    assert stuck_flag([7.0, 7.0, 7.0], 7.0, hours=6) is False
    assert stuck_flag([3.0, 3.0], 3.0, hours=3) is True
