"""Shaping of output records and their AQI (pure, apart from `processed_at` defaulting to the clock).

Which index each pollutant gets from one hourly value (`score`):

* pm25, pm10: the NowCast of the sensor's last 12 hours (`aqi_basis = "nowcast"`), fed to the 24-hour table,
  as AirNow does for hourly reporting. When the NowCast is undefined (fewer than 2 of the 3 newest hours), the
  hourly value itself goes through the 24-hour table (`"instant"`, an indicative hourly sub-index).
* o3: the hourly value through the 8-hour table (`"instant"`), and from 0.125 ppm also through the 1-hour table;
  the higher index is reported (TAD: report the more precautionary of the two). Above 0.200 ppm only the 1-hour
  table applies. The AirNow ozone NowCast (a per-site regression since 2019) is not reproduced.
* co: the hourly value through the 8-hour table (`"instant"`).
* so2, no2: the hourly value through their 1-hour tables (`"instant"`); SO2 ≥ 305 ppb gives 200 (see `aqi`).
* anything else: no index.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from airq_app import aqi as aqi_mod
from airq_app import units
from airq_app.timeutil import format_epoch, format_utc, normalise_utc, utc_seconds

PM = ("pm25", "pm10")
NOWCAST_HOURS = 12


@lru_cache(maxsize=8192)
def _key_of_hour(hour: int) -> str:
    """`...T13:00:00Z` for an hour number (hours since the epoch); cached, every sensor asks for the same."""
    return format_epoch(hour * 3600)


@lru_cache(maxsize=8192)
def _hour_of_key(key: str) -> int:
    return utc_seconds(key) // 3600


def hourly_window(
    existing: Mapping[str, float], dt_utc: str, value: float, keep_hours: int = NOWCAST_HOURS
) -> tuple[dict[str, float], list[float | None]]:
    """Merge one hourly value into a sensor's `{hour: value}` map and list the hours for `aqi.nowcast`.

    The hour is `dt_utc` floored to the hour (`...T13:00:00Z`); a later value for the same hour replaces the
    earlier one. Returns the map to store — only hours within `keep_hours` of the newest hour in it — and the
    newest-first list for *this* measurement: index 0 is its hour, then the `keep_hours - 1` hours before it,
    None where no value is known.
    """
    hour = utc_seconds(dt_utc) // 3600
    merged = dict(existing)
    merged[_key_of_hour(hour)] = value
    window: list[float | None] = [merged.get(_key_of_hour(hour - i)) for i in range(keep_hours)]
    newest = max(_hour_of_key(k) for k in merged)
    kept = {k: v for k, v in merged.items() if _hour_of_key(k) > newest - keep_hours}
    return kept, window


def score(
    parameter: str, value: float, unit: str, hourly_newest_first: list[float | None] | None
) -> tuple[tuple[int, str] | None, str | None, float | None]:
    """(AQI and category, basis `nowcast`/`instant`, NowCast value) for one normalised hourly value.

    `hourly_newest_first` is the sensor's hourly window from `hourly_window` (only used for PM; more than 12
    entries are cut to 12). See the module docstring for the table each pollutant uses. The basis is None
    whenever the index is.
    """
    if parameter in PM:
        nc = None
        if hourly_newest_first:
            nc = aqi_mod.nowcast(list(hourly_newest_first[:NOWCAST_HOURS]), parameter)
        if nc is not None:
            result = aqi_mod.us_aqi(parameter, nc, units.UG_M3, "24h")
            if result is not None:
                return result, "nowcast", nc
        instant = aqi_mod.us_aqi(parameter, value, unit, "24h")
        return instant, ("instant" if instant else None), nc
    if parameter == "o3":
        candidates = [aqi_mod.us_aqi("o3", value, unit, "8h"), aqi_mod.us_aqi("o3", value, unit, "1h")]
        found = [c for c in candidates if c is not None]
        best = max(found, key=lambda c: c[0]) if found else None
        return best, ("instant" if best else None), None
    averaging = {"co": "8h", "so2": "1h", "no2": "1h"}.get(parameter)
    if averaging is None:
        return None, None, None
    result = aqi_mod.us_aqi(parameter, value, unit, averaging)
    return result, ("instant" if result else None), None


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def shape_record(
    m: Mapping[str, Any],
    value: float,
    unit: str,
    aqi: tuple[int, str] | None,
    aqi_basis: str | None,
    source: Mapping[str, Any],
    flags: list[str] | None = None,
    *,
    nowcast: float | None = None,
    processed_at: datetime | None = None,
) -> dict[str, Any]:
    """One output line (the fields the README lists under Output) from measurement `m` (a `Measurement` as a
    dict) and its normalised value.

    Extras beyond the required fields: `parameter_id`, `datetime_local`, `provider`, `timezone`, `flags` (list;
    `beyond_aqi` is added when the index is above 500), `nowcast`, `aqi_table` and `processed_at`.
    """
    out_flags = list(flags or [])
    if aqi is not None and aqi[0] > 500 and "beyond_aqi" not in out_flags:
        out_flags.append("beyond_aqi")
    return {
        "sensor_id": int(m["sensor_id"]),
        "location_id": int(m["location_id"]),
        "location_name": m.get("location_name"),
        "country": m.get("country"),
        "latitude": _float_or_none(m.get("latitude")),
        "longitude": _float_or_none(m.get("longitude")),
        "parameter": m["parameter"],
        "parameter_id": m.get("parameter_id"),
        "value": float(value),
        "unit": unit,
        "raw_value": float(m["value"]),
        "raw_unit": m["unit"],
        "datetime_utc": normalise_utc(m["datetime_utc"]),
        "datetime_local": m.get("datetime_local"),
        "timezone": m.get("timezone"),
        "provider": m.get("provider"),
        "aqi": aqi[0] if aqi is not None else None,
        "aqi_category": aqi[1] if aqi is not None else None,
        "aqi_basis": aqi_basis if aqi is not None else None,
        "aqi_table": aqi_mod.AQI_TABLE_VERSION if aqi is not None else None,
        "nowcast": nowcast,
        "flags": out_flags,
        "source": {
            "topic": source.get("topic"),
            "partition": int(source["partition"]),
            "offset": int(source["offset"]),
        },
        "processed_at": format_utc(processed_at) if processed_at else format_epoch(int(time.time())),
    }
