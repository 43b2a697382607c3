"""OpenAQ's public archive layout, served from the same world as the API.

    GET /records/csv.gz/locationid={id}/year={yyyy}/month={mm}/location-{id}-{yyyymmdd}.csv.gz

OpenAQ publishes every location's measurements as one gzip CSV per location and day in a public S3 bucket
(https://docs.openaq.org/aws/about), header `location_id,sensors_id,location,datetime,lat,lon,parameter,units,value`,
`location` as `{name}-{id}`, `datetime` the end of the hour in the station's local time with its offset, `units` as
OpenAQ spells them. The simulated file for UTC day D holds, for every sensor of the location, each hour whose end
falls on D (00:00Z to 23:00Z) and that exists by the world clock: from the sensor's first hour up to its latest hour
as `/latest` and `/hours` show it, less `archive_lag_hours`. Values are those every other endpoint serves for the same
sensor-hour at the same moment, revisions included, so nothing is stored: a file is computed on request.

Like S3 it needs no key and has no rate limit; missing keys get S3's 404 `NoSuchKey` XML body. Request-level faults
apply when their `kinds` include `archive` (or are unset): `fail_next` statuses and `error_rate` come as S3 XML
errors, `slow` delays, `malformed` truncates the gzip stream.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import re
import time
from datetime import UTC, date, datetime
from xml.sax.saxutils import escape

from aiohttp import web

from airq_dev.simulator.config import HOUR
from airq_dev.simulator.model import Location, Sensor, dt_object, utc_str
from airq_dev.simulator.state import SERVED_KEY, SIM_KEY, Handler, Simulator
from airq_dev.simulator.world import World

HEADER = ("location_id", "sensors_id", "location", "datetime", "lat", "lon", "parameter", "units", "value")
ROUTE = "/records/csv.gz/locationid={location_id}/year={year}/month={month}/{filename}"
FILE_KEY: web.RequestKey[tuple[int, str]] = web.RequestKey("archive_file", tuple)  # (location id, "YYYY-MM-DD")
_FILENAME = re.compile(r"location-(\d+)-(\d{4})(\d{2})(\d{2})\.csv\.gz")
_S3_ERRORS = {
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


def archive_path(location_id: int, day: date) -> str:
    """The archive path of a location's day, as OpenAQ lays it out."""
    return (
        f"/records/csv.gz/locationid={location_id}/year={day.year:04d}/month={day.month:02d}/"
        f"location-{location_id}-{day:%Y%m%d}.csv.gz"
    )


def day_rows(world: World, loc: Location, day: date, now_hour: int) -> list[tuple[Sensor, int]]:
    """The (sensor, hour) pairs of the location's file for UTC `day`, in time then sensor order."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) // HOUR
    ceiling = now_hour - world.config.archive_lag_hours
    spans = []
    for sensor in loc.sensors:
        last = world.latest_hour(sensor, now_hour)
        if last is not None:
            spans.append((sensor, max(start, sensor.first_hour), min(start + 23, last, ceiling)))
    return [(s, h) for h in range(start, start + 24) for s, lo, hi in spans if lo <= h <= hi]


def render_csv(world: World, loc: Location, rows: list[tuple[Sensor, int]]) -> tuple[bytes, list[float]]:
    """The file's CSV text (UTF-8) and the values in it, in row order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    label = f"{loc.name or ''}-{loc.id}"
    values = []
    for sensor, hour in rows:
        value = world.value(sensor, hour)
        values.append(value)
        p = sensor.parameter
        local = dt_object(hour, loc.timezone)["local"]
        writer.writerow((loc.id, sensor.id, label, local, loc.latitude, loc.longitude, p.name, p.units, value))
    return out.getvalue().encode("utf-8"), values


def s3_error(status: int, key: str) -> web.Response:
    code, message = _S3_ERRORS.get(status, ("ServiceUnavailable", f"simulated HTTP {status}"))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><Key>{escape(key)}</Key>"
        f"<RequestId>{hashlib.blake2b(key.encode(), digest_size=8).hexdigest().upper()}</RequestId></Error>"
    )
    return web.Response(text=body, status=status, content_type="application/xml")


def _parse(request: web.Request) -> tuple[int, date] | None:
    """(location id, day) when the path is a well-formed archive key whose parts agree, else None."""
    info = request.match_info
    m = _FILENAME.fullmatch(info["filename"])
    if m is None or not (info["year"].isdigit() and len(info["year"]) == 4 and len(info["month"]) == 2):
        return None
    if info["location_id"] != m.group(1) or (info["year"], info["month"]) != (m.group(2), m.group(3)):
        return None
    try:
        return int(m.group(1)), date(int(m.group(2)), int(m.group(3)), int(m.group(4)))
    except ValueError:
        return None


async def archive_file(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    world = sim.world
    key = request.path.lstrip("/")
    parsed = _parse(request)
    loc = world.by_location.get(parsed[0]) if parsed else None
    rows = day_rows(world, loc, parsed[1], world.now_hour()) if parsed and loc else []
    if not parsed or not loc or not rows:
        with sim.stats.lock:
            sim.stats.archive_not_found += 1
        return s3_error(404, key)
    text, values = render_csv(world, loc, rows)
    body = gzip.compress(text, compresslevel=6, mtime=0)
    if request.method == "GET":  # recorded by the middleware once the body goes out whole
        request[SERVED_KEY] = [(s.id, utc_str(h), v, "archive") for (s, h), v in zip(rows, values, strict=True)]
        request[FILE_KEY] = (loc.id, parsed[1].isoformat())
    return web.Response(
        body=body,
        content_type="application/gzip",
        headers={"ETag": f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'},
    )


async def archive_middleware(sim: Simulator, request: web.Request, handler: Handler) -> web.StreamResponse:
    """No key, no rate limit; S3-style errors; request-level faults for kind `archive`."""
    sim.stats.count_request("archive", time.time())
    key = request.path.lstrip("/")
    faults = sim.faults
    applies = faults.kinds is None or "archive" in faults.kinds
    forced: int | str | None = None
    if applies and faults.fail_next:
        with sim.lock:
            forced = faults.fail_next.pop(0) if faults.fail_next else None

    def finish(resp: web.StreamResponse) -> web.StreamResponse:
        with sim.stats.lock:
            sim.stats.by_status[resp.status] += 1
        return resp

    if isinstance(forced, int):
        with sim.stats.lock:
            sim.stats.faults[f"forced_{forced}"] += 1
        return finish(s3_error(forced, key))
    if forced == "slow" or (applies and sim.chance(faults.slow_rate)):
        with sim.stats.lock:
            sim.stats.faults["slow"] += 1
        await asyncio.sleep(faults.delay_s or (1.0 if forced == "slow" else 0.0))
    if applies and sim.chance(faults.error_rate):
        status = sim._rng.choice((500, 503))
        with sim.stats.lock:
            sim.stats.faults[f"error_{status}"] += 1
        return finish(s3_error(status, key))
    try:
        resp = await handler(request)
    except web.HTTPNotFound:
        with sim.stats.lock:
            sim.stats.archive_not_found += 1
        return finish(s3_error(404, key))
    except web.HTTPMethodNotAllowed:
        return finish(s3_error(405, key))
    if resp.status == 200 and isinstance(resp, web.Response) and isinstance(resp.body, bytes):
        if forced == "malformed" or (applies and sim.chance(faults.malformed_rate)):
            with sim.stats.lock:
                sim.stats.faults["malformed"] += 1
            resp.body = resp.body[: max(len(resp.body) // 2, 1)]
        elif FILE_KEY in request and sim.config.record_served:
            served = request[SERVED_KEY]
            sim.stats.record_served(served)
            sim.stats.record_archive_file(*request[FILE_KEY], len(served))
    return finish(resp)
