"""OpenAQ payloads → what the poller sends: the sensor index built from `/v3/locations`, and one `Measurement`
dict per `/latest` or `/hours` row (pure functions, no I/O).

`/latest` rows carry no parameter or unit, only a sensor id: they are mapped through the sensors of
`/v3/locations` (https://docs.openaq.org/resources/latest, https://docs.openaq.org/resources/locations).
Payloads are untrusted: a row that cannot be used gives a reason (counted by the caller), never an exception.
Values are kept as reported (negative and -999 included): judging them is the stream's job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime
from typing import Any

from airq_app.domain import timeutil
from airq_app.openaq.catalogue import PARAMETERS

log = logging.getLogger("airq.openaq")

# Reasons a row does not become a measurement (for counters).
REASON_MALFORMED = "malformed"
REASON_UNKNOWN_SENSOR = "unknown_sensor"
REASON_BAD_VALUE = "bad_value"
REASON_BAD_DATETIME = "bad_datetime"
REASON_BAD_LOCATION = "bad_location"  # index_locations: a location skipped

Reasons = MutableMapping[str, int]


def _obj(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        f = float(v)
    except OverflowError:  # an int beyond the float range
        return None
    return f if math.isfinite(f) else None


def _coord(v: Any, bound: float) -> float | None:
    """A latitude (bound 90) or longitude (bound 180); None outside the range, which the stream would reject."""
    f = _float(v)
    return f if f is not None and -bound <= f <= bound else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _count(reasons: Reasons | None, reason: str) -> None:
    if reasons is not None:
        reasons[reason] = reasons.get(reason, 0) + 1


def _location_sensors(loc: Any) -> dict[int, dict[str, Any]]:
    """The index entries of one location; TypeError/ValueError when the location itself is malformed (no integer
    id, or `sensors` that is not a list). Malformed sensors inside a good location are skipped one by one."""
    if not isinstance(loc, Mapping):
        raise TypeError(f"a location is an object, not {type(loc).__name__}")
    loc_id = _int(loc.get("id"))
    if loc_id is None:
        raise ValueError("no integer id")
    sensors = loc.get("sensors")
    if sensors is None:
        return {}
    if not isinstance(sensors, list):
        raise TypeError(f"sensors is {type(sensors).__name__}, not a list")
    coords = _obj(loc.get("coordinates"))
    base = {
        "location_id": loc_id,
        "location_name": _str(loc.get("name")),
        "country": _str(_obj(loc.get("country")).get("code")),
        "latitude": _coord(coords.get("latitude"), 90),
        "longitude": _coord(coords.get("longitude"), 180),
        "timezone": _str(loc.get("timezone")),
        "provider": _str(_obj(loc.get("provider")).get("name")),
    }
    entries: dict[int, dict[str, Any]] = {}
    for sensor in sensors:
        if not isinstance(sensor, Mapping):
            continue
        sensor_id = _int(sensor.get("id"))
        param = _obj(sensor.get("parameter"))
        name = _str(param.get("name"))
        if sensor_id is None or name is None:
            continue
        pid = _int(param.get("id"))
        unit = _str(param.get("units")) or (PARAMETERS[pid].units if pid in PARAMETERS else None)
        if unit is None:
            continue
        entries[sensor_id] = {**base, "parameter": name, "parameter_id": pid, "unit": unit}
    return entries


def _location_id(loc: Any) -> str:
    return repr(loc.get("id"))[:40] if isinstance(loc, Mapping) else f"<{type(loc).__name__}>"


def index_locations(
    locations: Iterable[Mapping[str, Any]], *, reasons: Reasons | None = None
) -> dict[int, dict[str, Any]]:
    """sensor id → what a measurement needs about it (JSON-serialisable, so it can be cached on disk):
    location_id, location_name, country, latitude, longitude, timezone, provider, parameter, parameter_id, unit.

    A malformed location (not an object, no integer id, `sensors` not a list, or anything else that fails) is
    skipped with one log line naming its id, and counted as `REASON_BAD_LOCATION` in `reasons`: one bad
    location never costs the others."""
    index: dict[int, dict[str, Any]] = {}
    for loc in locations:
        try:
            entries = _location_sensors(loc)
        except Exception as exc:  # one malformed location must not stop the index
            _count(reasons, REASON_BAD_LOCATION)
            log.warning("openaq: location %s skipped: malformed (%s)", _location_id(loc), str(exc)[:100])
            continue
        index.update(entries)
    return index


def _fetched(fetched_at: datetime | str | None) -> str | None:
    # The poller passes one "...Z" string per cycle: skip re-parsing it for every row.
    if isinstance(fetched_at, str) and fetched_at.endswith("Z"):
        return fetched_at
    return timeutil.normalise_utc_or_none(fetched_at)


def _measurement(
    sensor_index: Mapping[int, Mapping[str, Any]],
    sensor_id: int,
    value: Any,
    dt: Mapping[str, Any],
    coords: Mapping[str, Any],
    fetched_at: datetime | str | None,
    reasons: Reasons | None,
) -> dict[str, Any] | None:
    meta = sensor_index.get(sensor_id)
    if meta is None:
        _count(reasons, REASON_UNKNOWN_SENSOR)
        return None
    number = _float(value)
    if number is None:
        _count(reasons, REASON_BAD_VALUE)
        return None
    utc = timeutil.normalise_utc_or_none(dt.get("utc"))
    if utc is None:
        _count(reasons, REASON_BAD_DATETIME)
        return None
    lat = _coord(coords.get("latitude"), 90)
    lon = _coord(coords.get("longitude"), 180)
    if lat is None or lon is None:  # mobile rows carry their own position; stationary ones may be null
        lat, lon = meta.get("latitude"), meta.get("longitude")
    return {
        "location_id": meta["location_id"],
        "sensor_id": sensor_id,
        "parameter": meta["parameter"],
        "value": number,
        "unit": meta["unit"],
        "datetime_utc": utc,
        "parameter_id": meta.get("parameter_id"),
        "datetime_local": _str(dt.get("local")),
        "location_name": meta.get("location_name"),
        "country": meta.get("country"),
        "latitude": lat,
        "longitude": lon,
        "timezone": meta.get("timezone"),
        "provider": meta.get("provider"),
        "fetched_at": _fetched(fetched_at),
    }


def measurement_from_latest(
    item: Any,
    sensor_index: Mapping[int, Mapping[str, Any]],
    fetched_at: datetime | str | None,
    *,
    reasons: Reasons | None = None,
) -> dict[str, Any] | None:
    """One `/latest` row → Measurement dict, or None; the reason (`REASON_*`) is counted in `reasons` when
    given. The time is the period end (`datetime.utc`)."""
    sensor_id = _int(item.get("sensorsId")) if isinstance(item, Mapping) else None
    if sensor_id is None:
        _count(reasons, REASON_MALFORMED)
        return None
    dt, coords = _obj(item.get("datetime")), _obj(item.get("coordinates"))
    return _measurement(sensor_index, sensor_id, item.get("value"), dt, coords, fetched_at, reasons)


def measurement_from_hour(
    row: Any,
    sensor_id: int,
    sensor_index: Mapping[int, Mapping[str, Any]],
    fetched_at: datetime | str | None,
    *,
    reasons: Reasons | None = None,
) -> dict[str, Any] | None:
    """One `/sensors/{id}/hours` or `/measurements` row (which carries no sensor id) → Measurement dict, or
    None with the reason counted in `reasons`. The time is the period end (`period.datetimeTo`), as in `/latest`."""
    if not isinstance(row, Mapping):
        _count(reasons, REASON_MALFORMED)
        return None
    dt, coords = _obj(_obj(row.get("period")).get("datetimeTo")), _obj(row.get("coordinates"))
    return _measurement(sensor_index, sensor_id, row.get("value"), dt, coords, fetched_at, reasons)
