"""Shaping of output records, their US AQI and their national index (pure, apart from `processed_at` defaulting to
the clock).

A sensor's last `HISTORY_HOURS` hourly values (`hourly_window`) give the running means (`running_means`, each
defined when `required_hours` of its hours have a value); `score` turns them into the US AQI and `local_index` into
the national index. The rules: docs/stream.md, step 4 (Score), and docs/indices.md, "In the stream".
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from airq_app.domain import aqi as aqi_mod
from airq_app.domain import indices, units
from airq_app.domain.record import OutputRecord
from airq_app.domain.timeutil import format_epoch, format_utc, utc_seconds

PM = ("pm25", "pm10")
NOWCAST_HOURS = 12
HISTORY_HOURS = 24  # hours of values kept per sensor: the longest running mean
MEAN_HOURS = (1, 3, 4, 8, 12, 24)  # the running means computed: every period the indices' tables use
EIGHT_HOUR = ("o3", "co")  # pollutants the US AQI scores from their 8-hour running mean
DEFAULT_INDICES = indices.IndexConfig()  # every country its default index


@lru_cache(maxsize=8192)
def _key_of_hour(hour: int) -> str:
    """`...T13:00:00Z` for an hour number (hours since the epoch); cached, every sensor asks for the same."""
    return format_epoch(hour * 3600)


@lru_cache(maxsize=8192)
def _hour_of_key(key: str) -> int:
    return utc_seconds(key) // 3600


def hourly_window(
    existing: Mapping[str, float], epoch: int, value: float, keep_hours: int = HISTORY_HOURS
) -> tuple[dict[str, float], list[float | None]]:
    """Merge one hourly value into a sensor's `{hour: value}` map and list its hours for the NowCast and the means.

    The hour is the measurement's time (`epoch`, seconds) floored to the hour, kept under its key `...T13:00:00Z`;
    a later value for the same hour replaces the earlier one. Returns the map to store — only hours within
    `keep_hours` of the newest hour in it — and the newest-first list for *this* measurement: index 0 is its hour,
    then the `keep_hours - 1` hours before it, None where no value is known.
    """
    hour = epoch // 3600
    merged = dict(existing)
    merged[_key_of_hour(hour)] = value
    window: list[float | None] = [merged.get(_key_of_hour(hour - i)) for i in range(keep_hours)]
    newest = max(_hour_of_key(k) for k in merged)
    kept = {k: v for k, v in merged.items() if _hour_of_key(k) > newest - keep_hours}
    return kept, window


def required_hours(hours: int) -> int:
    """Hours with a value a mean over `hours` needs: 75 %, rounded up (18 of 24, 9 of 12, 6 of 8, 3 of 3)."""
    return math.ceil(hours * 3 / 4)


REQUIRED = {hours: required_hours(hours) for hours in MEAN_HOURS}


def _mean_of(total: float, n: int) -> float:
    # 12 significant digits: a mean that is a short decimal (0.071 ppm) is exactly that number, not
    # 0.07099999999999999, so the EPA's truncation of it gives what a hand calculation gives.
    return float(f"{total / n:.12g}")


def running_means(hourly_newest_first: Sequence[float | None] | None) -> dict[int, float | None]:
    """The sensor's means over 1, 3, 4, 8, 12 and 24 hours ending at the measurement's hour (index 0 of the window
    from `hourly_window`); None where fewer than `required_hours` of that period have a value. A mean is the
    arithmetic mean of the hours present. One pass over the window: every period extends the one before it.
    """
    hourly = hourly_newest_first or ()
    means: dict[int, float | None] = {}
    total, n, i, size = 0.0, 0, 0, len(hourly)
    for hours in MEAN_HOURS:
        while i < hours and i < size:
            v = hourly[i]
            if v is not None:
                total += v
                n += 1
            i += 1
        means[hours] = _mean_of(total, n) if n and n >= REQUIRED[hours] else None
    return means


def _mean(hourly: Sequence[float | None], hours: int) -> float | None:
    present = [v for v in hourly[:hours] if v is not None]
    return _mean_of(math.fsum(present), len(present)) if len(present) >= REQUIRED[hours] else None


def _higher(*candidates: tuple[tuple[int, str] | None, str]) -> tuple[tuple[int, str] | None, str | None]:
    """The highest of (AQI, basis) candidates; on a tie the first listed wins."""
    best: tuple[tuple[int, str] | None, str | None] = (None, None)
    for result, basis in candidates:
        if result is not None and (best[0] is None or result[0] > best[0][0]):
            best = (result, basis)
    return best


def score(
    parameter: str, value: float, unit: str, hourly_newest_first: Sequence[float | None] | None
) -> tuple[tuple[int, str] | None, str | None, float | None]:
    """(AQI and category, basis `nowcast`/`mean_8h`/`instant`, NowCast value) for one normalised hourly value.

    `hourly_newest_first` is the sensor's hourly window from `hourly_window`, index 0 being this value (the PM
    NowCast uses its first 12 hours, O3 and CO their 8-hour mean). The table each pollutant uses: docs/stream.md,
    step 4. The basis is None whenever the index is.
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
    if parameter in EIGHT_HOUR:
        mean = _mean(list(hourly_newest_first or ()), 8)
        from_mean = aqi_mod.us_aqi(parameter, mean, unit, "8h") if mean is not None else None
        one_hour = aqi_mod.us_aqi("o3", value, unit, "1h") if parameter == "o3" else None
        if from_mean is None and (mean is None or one_hour is None):
            # No 8-hour mean yet (or one above the 8-hour table with the hour below the 1-hour table): the hour
            # itself through the 8-hour table, as an indicative sub-index.
            from_mean = aqi_mod.us_aqi(parameter, value, unit, "8h")
            best, basis = _higher((from_mean, "instant"), (one_hour, "instant"))
        else:
            best, basis = _higher((from_mean, "mean_8h"), (one_hour, "instant"))
        return best, basis, None
    averaging = {"so2": "1h", "no2": "1h"}.get(parameter)
    if averaging is None:
        return None, None, None
    result = aqi_mod.us_aqi(parameter, value, unit, averaging)
    return result, ("instant" if result else None), None


def local_index(
    m: Mapping[str, Any],
    unit: str,
    hourly_newest_first: Sequence[float | None] | None,
    config: indices.IndexConfig | None = None,
) -> dict[str, Any] | None:
    """The record's `local_index`: the national index of the location's country for this measurement, from the
    sensor's running means (`running_means` of the window from `hourly_window`, all in the normalised `unit`).

    `config` is the `pipeline.json` section `indices` (default: enabled, every country its own default index).
    None where the section is disabled, the country has no index, or no period the index defines for the
    pollutant has a defined mean yet.
    """
    index_id = (config or DEFAULT_INDICES).index_for(m.get("country"))
    if index_id is None:
        return None
    return indices.local_index(index_id, m["parameter"], running_means(hourly_newest_first), unit)


def overall_local_index(
    sub_indices: Mapping[str, Mapping[str, Any] | None], prefer: str | None = None
) -> dict[str, Any] | None:
    """A location's overall national index from its parameters' latest sub-index objects (parameter → object).

    The worst sub-index, or for Canada's AQHI the formula over the NO2, O3 and PM2.5 3-hour means (None until all
    three are known): `airq_app.domain.indices.overall_index`. Should the objects name different indices (the `indices`
    section changed while a location's older values are still shown), those of `prefer` (the index of the record
    just merged) count, else those of the index most parameters have.
    """
    objects = [o for o in sub_indices.values() if o]
    if not objects:
        return None
    ids = [o["index"] for o in objects]
    chosen = prefer if prefer in ids else max(sorted(set(ids)), key=ids.count)
    return indices.overall_index(o for o in objects if o["index"] == chosen)


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
    local_index: Mapping[str, Any] | None = None,
) -> OutputRecord:
    """One output line (the fields the README lists under Output) from measurement `m` (a `Measurement` as
    `validation.parse_message` returns it: `datetime_utc` already normalised) and its normalised value.

    Extras beyond the required fields: `parameter_id`, `datetime_local`, `provider`, `timezone`, `flags` (list;
    `beyond_aqi` is added when the index is above 500), `nowcast`, `aqi_table`, `processed_at` and `local_index`
    (the object from `local_index`, or None).
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
        "datetime_utc": m["datetime_utc"],
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
        "local_index": dict(local_index) if local_index is not None else None,
    }
