"""The `/v3` endpoints: query parsing with the real server's 422 bodies, then locations, parameters, sensors, latest
values, hourly series and flagged periods built from the world.

Each handler that returns measurements puts them in `request[SERVED_KEY]`, and the middleware records them once the
response is known to go out whole.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from aiohttp import web

from airq_app.openaq.catalogue import PARAMETERS, Parameter
from airq_dev.simulator.config import HOUR
from airq_dev.simulator.model import Location, Sensor, hour_to_dt, zone
from airq_dev.simulator.quality import Flag
from airq_dev.simulator.responses import META_BASE, ApiError, QueryError, json_response
from airq_dev.simulator.state import SERVED_KEY, SIM_KEY
from airq_dev.simulator.world import World

# -- query parsing -------------------------------------------------------------------------------------------------


def _int_arg(request: web.Request, name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(name, "Input should be a valid integer", raw) from None
    if value < lo or (hi is not None and value > hi):
        bound = f"greater than or equal to {lo}" if value < lo else f"less than or equal to {hi}"
        raise QueryError(name, f"Input should be {bound}", raw)
    return value


def _paging(request: web.Request) -> tuple[int, int]:
    return _int_arg(request, "limit", 100, 1, 1000), _int_arg(request, "page", 1, 1)


def _int_list(request: web.Request, name: str) -> set[int] | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return {int(v) for v in raw.split(",") if v.strip()}
    except ValueError:
        raise QueryError(name, "Input should be a list of integers", raw) from None


def _bool_arg(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise QueryError(name, "Input should be a valid boolean", raw)


def _parse_when(raw: str, name: str, tz: str) -> datetime:
    """A datetime or date query value; without an offset it is station-local time, as on the real server."""
    text = raw.strip()
    if len(text) > 10 and text[-6] == " ":  # an unescaped "+" arrives as a space
        text = text[:-6] + "+" + text[-5:]
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(name, "Input should be a valid datetime or date", raw) from None
    return dt.replace(tzinfo=zone(tz)) if dt.tzinfo is None else dt


def _page_meta(page: int, limit: int, found: int | str) -> dict[str, Any]:
    return {**META_BASE, "page": page, "limit": limit, "found": found}


def _rows_found(rows: int, limit: int) -> int | str:
    """`found` of non-counting endpoints: the rows on the page, or ">limit" for a full page."""
    return f">{limit}" if rows >= limit else rows


def _envelope(results: list[Any], page: int, limit: int, found: int | str) -> web.Response:
    return json_response({"meta": _page_meta(page, limit, found), "results": results})


def _path_int(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise QueryError(name, "Input should be a valid integer", request.match_info[name]) from None


# -- /v3 handlers --------------------------------------------------------------------------------------------------


def _haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


async def list_locations(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    world = sim.world
    q = request.query
    limit, page = _paging(request)
    iso = q.get("iso")
    countries = _int_list(request, "countries_id")
    if iso and countries:
        raise QueryError("iso", "Cannot pass both countries_id and iso code", iso)
    if iso and (len(iso) != 2 or not iso.isalpha()):
        raise QueryError("iso", "String should match pattern '^[A-Za-z]{2}$'", iso)
    params = _int_list(request, "parameters_id")
    providers = _int_list(request, "providers_id")
    monitor = _bool_arg(request, "monitor")
    mobile = _bool_arg(request, "mobile")
    bbox = None
    if q.get("bbox"):
        if q.get("coordinates") or q.get("radius"):
            raise QueryError("bbox", "Cannot pass both bounding box and coordinate/radius query in the same URL")
        try:
            bbox = [round(float(v), 4) for v in q["bbox"].split(",")]
        except ValueError:
            raise QueryError("bbox", "bbox must be four numbers", q["bbox"]) from None
        if len(bbox) != 4 or not (-180 <= bbox[0] <= bbox[2] <= 180) or not (-90 <= bbox[1] <= bbox[3] <= 90):
            raise QueryError("bbox", "bbox must be minX,minY,maxX,maxY in WGS84", q["bbox"])
    near = None
    if q.get("coordinates") or q.get("radius"):
        try:
            lat, lon = (float(v) for v in q["coordinates"].split(","))
            radius = float(q["radius"])
        except (KeyError, ValueError):
            raise QueryError("coordinates", "coordinates=lat,lon and radius are required together") from None
        if not 0 < radius <= 25_000:
            raise QueryError("radius", "Input should be less than or equal to 25000", q["radius"])
        near = (lat, lon, radius)
    if q.get("order_by", "id") != "id":
        raise QueryError("order_by", "Input should be 'id'", q.get("order_by"))
    sort_desc = q.get("sort_order", "asc").lower() == "desc"

    def keep(loc: Location) -> bool:
        if iso and loc.country["code"] != iso.upper():
            return False
        if countries is not None and loc.country["id"] not in countries:
            return False
        if params is not None and not any(s.parameter.id in params for s in loc.sensors):
            return False
        if providers is not None and loc.provider["id"] not in providers:
            return False
        if monitor is not None and loc.is_monitor != monitor:
            return False
        if mobile:  # every simulated location is stationary
            return False
        if bbox is not None and not (bbox[0] <= loc.longitude <= bbox[2] and bbox[1] <= loc.latitude <= bbox[3]):
            return False
        return near is None or _haversine_m(near[0], near[1], loc.latitude, loc.longitude) <= near[2]

    matching = [loc for loc in world.locations if keep(loc)]
    matching.sort(key=lambda loc: loc.id, reverse=sort_desc)
    chunk = matching[(page - 1) * limit : page * limit]
    now_hour = world.now_hour()
    results = [world.location_json(loc, now_hour) for loc in chunk]
    if near is not None:
        for r, loc in zip(results, chunk, strict=True):
            r["distance"] = round(_haversine_m(near[0], near[1], loc.latitude, loc.longitude), 1)
    return _envelope(results, page, limit, _rows_found(len(results), limit))


def _location(request: web.Request) -> Location:
    loc = request.app[SIM_KEY].world.by_location.get(_path_int(request, "location_id"))
    if loc is None:
        raise ApiError(404, {"detail": "Location not found"})
    return loc


async def get_location(request: web.Request) -> web.Response:
    world = request.app[SIM_KEY].world
    loc = _location(request)
    return _envelope([world.location_json(loc, world.now_hour())], 1, 100, 1)


def _latest_response(request: web.Request, sensors: list[Sensor], datetime_min: datetime | None) -> web.Response:
    world = request.app[SIM_KEY].world
    limit, page = _paging(request)
    now_hour = world.now_hour()
    rows: list[tuple[Sensor, int]] = []
    for s in sensors:
        hour = world.latest_hour(s, now_hour)
        if hour is None or (datetime_min is not None and hour_to_dt(hour) <= datetime_min):
            continue
        rows.append((s, hour))
    chunk = rows[(page - 1) * limit : page * limit]
    results = [world.latest_json(s, h) for s, h in chunk]
    dup = world.config.faults.duplicate_rate
    if dup:
        sim = request.app[SIM_KEY]
        results = [r for item in results for r in ([item, item] if sim.chance(dup) else [item])]
    request[SERVED_KEY] = [(r["sensorsId"], r["datetime"]["utc"], r["value"], "latest") for r in results]
    return _envelope(results, page, limit, len(rows))


def _datetime_min(request: web.Request) -> datetime | None:
    raw = request.query.get("datetime_min")
    return _parse_when(raw, "datetime_min", "UTC") if raw else None


async def location_latest(request: web.Request) -> web.Response:
    loc = _location(request)
    return _latest_response(request, loc.sensors, _datetime_min(request))


async def location_sensors(request: web.Request) -> web.Response:
    world = request.app[SIM_KEY].world
    loc = _location(request)
    now_hour = world.now_hour()
    results = [world.sensor_json(s, now_hour) for s in loc.sensors]
    return _envelope(results, 1, 100, len(results))


async def list_parameters(request: web.Request) -> web.Response:
    limit, page = _paging(request)
    rows = sorted(PARAMETERS.values(), key=lambda p: p.id)
    chunk = rows[(page - 1) * limit : page * limit]
    results = [World.parameter_json(p) | {"description": None} for p in chunk]
    return _envelope(results, page, limit, len(rows))


def _parameter(request: web.Request) -> Parameter:
    p = PARAMETERS.get(_path_int(request, "parameter_id"))
    if p is None:
        raise ApiError(404, {"detail": "Parameter not found"})
    return p


async def get_parameter(request: web.Request) -> web.Response:
    return _envelope([World.parameter_json(_parameter(request)) | {"description": None}], 1, 100, 1)


async def parameter_latest(request: web.Request) -> web.Response:
    p = _parameter(request)
    return _latest_response(request, request.app[SIM_KEY].world.by_parameter.get(p.id, []), _datetime_min(request))


async def get_sensor(request: web.Request) -> web.Response:
    world = request.app[SIM_KEY].world
    s = world.sensors.get(_path_int(request, "sensor_id"))
    if s is None:
        raise ApiError(404, {"detail": "Sensor not found"})
    return _envelope([world.sensor_json(s, world.now_hour())], 1, 100, 1)


def _series(request: web.Request, label: str) -> web.Response:
    world = request.app[SIM_KEY].world
    limit, page = _paging(request)
    s = world.sensors.get(_path_int(request, "sensor_id"))
    if s is None:  # the real server answers an unknown sensor with an empty list
        return _envelope([], page, limit, 0)
    tz = s.location.timezone
    last = world.latest_hour(s)
    if last is None:
        return _envelope([], page, limit, 0)
    q = request.query
    to_dt = _parse_when(q["datetime_to"], "datetime_to", tz) if q.get("datetime_to") else None
    from_dt = _parse_when(q["datetime_from"], "datetime_from", tz) if q.get("datetime_from") else None
    if to_dt is not None and from_dt is not None and to_dt <= from_dt:
        return json_response("datetime_to must be after datetime_from", 422)
    # period ends h with from < h <= to (from is exclusive, to inclusive)
    lo = s.first_hour
    if from_dt is not None:
        lo = max(lo, math.floor(from_dt.timestamp() / HOUR) + 1)
    hi = last if to_dt is None else min(last, math.floor(to_dt.timestamp() / HOUR))
    start = lo + (page - 1) * limit
    hours = range(start, min(hi, start + limit - 1) + 1)
    results = [world.hour_row_json(s, h, label) for h in hours]
    kind = "hours" if label != "raw" else "measurements"
    request[SERVED_KEY] = [(s.id, r["period"]["datetimeTo"]["utc"], r["value"], kind) for r in results]
    return _envelope(results, page, limit, _rows_found(len(results), limit))


async def sensor_hours(request: web.Request) -> web.Response:
    return _series(request, "1hour")


async def sensor_measurements(request: web.Request) -> web.Response:
    return _series(request, "raw")


# -- flags ---------------------------------------------------------------------------------------------------------


def _positive_path_int(request: web.Request, name: str) -> int:
    """A path id the real server checks with `ge=1`."""
    value = _path_int(request, name)
    if value < 1:
        raise QueryError(name, "Input should be greater than or equal to 1", request.match_info[name], where="path")
    return value


def _flag_window(request: web.Request) -> tuple[float | None, float | None]:
    """`datetime_from` and `datetime_to` as epoch seconds; without an offset they are UTC (the real server hands them
    to the database as they are)."""
    q = request.query
    lo = _parse_when(q["datetime_from"], "datetime_from", "UTC") if q.get("datetime_from") else None
    hi = _parse_when(q["datetime_to"], "datetime_to", "UTC") if q.get("datetime_to") else None
    if lo is not None and hi is not None and hi <= lo:
        msg = f"Date/time from must be older than the date/time to. User passed {lo} - {hi}"
        raise QueryError("datetime_to", msg, q["datetime_to"])
    return (None if lo is None else lo.timestamp()), (None if hi is None else hi.timestamp())


def _flags_response(request: web.Request, flags: list[Flag]) -> web.Response:
    """Oldest first, `found` the count of all matching flags. The real server's query has no LIMIT: it returns
    every flag whatever the page, which only shows when there are more than `limit`."""
    limit, page = _paging(request)
    chunk = flags[(page - 1) * limit : page * limit]
    return _envelope([f.api_json() for f in chunk], page, limit, len(flags))


async def location_flags(request: web.Request) -> web.Response:
    """`/v3/locations/{id}/flags`: the location's flagged periods overlapping the window, for the whole station
    (`sensorIds` empty) or for named sensors. An unknown location has none (the real server does not look it up)."""
    world = request.app[SIM_KEY].world
    loc = world.by_location.get(_positive_path_int(request, "location_id"))
    lo, hi = _flag_window(request)
    return _flags_response(request, [] if loc is None else world.quality.flags(loc, lo, hi))


async def sensor_flags(request: web.Request) -> web.Response:
    """`/v3/sensors/{id}/flags`: the flagged periods naming this sensor. Station-wide flags are not among them, as on
    the real server, whose query matches only flags that list sensors."""
    world = request.app[SIM_KEY].world
    sensor = world.sensors.get(_positive_path_int(request, "sensor_id"))
    lo, hi = _flag_window(request)
    flags = [] if sensor is None else world.quality.flags(sensor.location, lo, hi)
    return _flags_response(request, [f for f in flags if sensor is not None and sensor.id in f.sensor_ids])
