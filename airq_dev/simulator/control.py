"""The `/_sim` control endpoints: what tests and benchmarks read (stats, served values) and switch (faults, clock).

They need no key and are never rate limited or faulted.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import orjson
from aiohttp import web

from airq_dev.simulator.config import HOUR, RUNTIME_OPTIONS
from airq_dev.simulator.model import utc_str
from airq_dev.simulator.responses import json_response
from airq_dev.simulator.state import SIM_KEY

# -- control endpoints ---------------------------------------------------------------------------------------------


async def control_stats(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    include = request.query.get("served", "0").lower() in ("1", "true", "yes")
    out = sim.stats.snapshot(include)
    out["faults"] = asdict(sim.faults)
    out["now"] = datetime.fromtimestamp(sim.world.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out["rate_limit_per_minute"] = sim.config.rate_limit_per_minute
    out["minute_seconds"] = sim.config.minute_seconds
    return json_response(out)


async def control_served(request: web.Request) -> web.Response:
    """Served measurements from index `since` on: {"served": [[sensor_id, datetime_utc, value, kind]...], "next"}."""
    sim = request.app[SIM_KEY]
    since = max(0, int(request.query.get("since", "0")))
    with sim.stats.lock:
        rows = [list(r) for r in sim.stats.served[since:]]
        total = len(sim.stats.served)
    return json_response({"served": rows, "next": total, "dropped": sim.stats.served_dropped})


async def control_get_faults(request: web.Request) -> web.Response:
    return json_response(asdict(request.app[SIM_KEY].faults))


async def control_set_faults(request: web.Request) -> web.Response:
    try:
        changes = await request.json(loads=orjson.loads)
    except ValueError:
        return json_response({"detail": "body must be a JSON object"}, 400)
    if not isinstance(changes, dict):
        return json_response({"detail": "body must be a JSON object"}, 400)
    return json_response(request.app[SIM_KEY].set_faults(**changes))


async def control_reset(request: web.Request) -> web.Response:
    request.app[SIM_KEY].reset_stats()
    return json_response({"ok": True})


async def control_clock(request: web.Request) -> web.Response:
    """`{"advance_hours": n}`, `{"advance_seconds": n}` or `{"offset_hours": n}` moves the simulated clock; GET
    shows it."""
    sim = request.app[SIM_KEY]
    if request.method == "POST":
        body = await request.json(loads=orjson.loads)
        if "offset_hours" in body:
            sim.config.time_offset_s = float(body["offset_hours"]) * HOUR
        if "advance_hours" in body:
            sim.advance(float(body["advance_hours"]))
        if "advance_seconds" in body:
            sim.advance(float(body["advance_seconds"]) / HOUR)
    now = sim.world.now()
    return json_response(
        {
            "now": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "latest_hour": utc_str(int(now // HOUR)),
            "offset_hours": sim.config.time_offset_s / HOUR,
        }
    )


async def control_world(request: web.Request) -> web.Response:
    """GET: the world's shape and options. POST any of the runtime options (`config.RUNTIME_OPTIONS`: revisions,
    archive lag, batch uploads, data-quality faults) changes them."""
    sim = request.app[SIM_KEY]
    world = sim.world
    if request.method == "POST":
        changes = await request.json(loads=orjson.loads)
        if not isinstance(changes, dict):
            return json_response({"detail": "body must be a JSON object"}, 400)
        sim.set_world(**changes)
    return json_response(
        {
            "seed": world.seed,
            "locations": len(world.locations),
            "sensors": len(world.sensors),
            "sensors_by_parameter": {str(k): len(v) for k, v in sorted(world.by_parameter.items())},
            "rate_limit_per_minute": sim.config.rate_limit_per_minute,
            "rate_limit_per_hour": sim.config.rate_limit_per_hour,
            "minute_seconds": sim.config.minute_seconds,
        }
        | {name: getattr(sim.config, name) for name in RUNTIME_OPTIONS}
    )


async def control_quality(request: web.Request) -> web.Response:
    """The data-quality faults injected, so a test can compute the expected flags of every served hour:
    `?from=&to=` (UTC ISO; hour ends within, default the last 72 hours, at most 31 days), `?location_id=1,2`.
    `{"from", "to", "cycle_hours", "options", "stuck_sensors", "stuck": [{"sensor_id", "location_id", "first",
    "last", "hours", "value"}], "spikes": [{"sensor_id", "location_id", "datetime", "value"}],
    "pm25_gt_pm10_locations", "pm25_gt_pm10": [{"location_id", "pm25_sensor_id", "pm10_sensor_id", "datetime",
    "pm25", "pm10"}], "flagged_locations", "flags": [{"location_id", "sensor_ids", "location_wide", "flag_type",
    "invalidates", "datetime_from", "datetime_to", "note", "hours"}]}`. Values are before the -999 and negative
    faults and revisions; a flag's `hours` are the period ends whose rows carry `flagInfo.hasFlags`."""
    q = request.query
    ids = [int(v) for v in q["location_id"].split(",") if v.strip()] if q.get("location_id") else None
    return json_response(request.app[SIM_KEY].quality_report(q.get("from"), q.get("to"), ids))


async def control_values(request: web.Request) -> web.Response:
    """Every distinct value served per (sensor, datetime), in the order first served:
    `{"values": [[sensor_id, datetime_utc, [value, ...]], ...], "keys", "revised", "dropped"}`.
    `?revised=1` keeps only the keys served with more than one value; `?sensor_id=N` one sensor."""
    sim = request.app[SIM_KEY]
    revised_only = request.query.get("revised", "0").lower() in ("1", "true", "yes")
    raw = request.query.get("sensor_id")
    return json_response(sim.stats.values_snapshot(revised_only, int(raw) if raw else None))


async def control_revisions(request: web.Request) -> web.Response:
    """The revised sensor-hours served so far: `{"revisions": [{"sensor_id", "datetime", "published", "revised",
    "first_served", "due", "visible"}, ...]}`, in the order first served (times as UTC ISO strings)."""
    sim = request.app[SIM_KEY]
    world = sim.world
    now = world.now()
    out = []
    for (sid, hour), first in list(world.first_served.items()):
        sensor = world.sensors[sid]
        due = first + sim.config.revision_delay_s
        out.append(
            {
                "sensor_id": sid,
                "datetime": utc_str(hour),
                "published": world.published_value(sensor, hour),
                "revised": world.revised_value(sensor, hour),
                "first_served": _iso(first),
                "due": _iso(due),
                "visible": now >= due,
            }
        )
    return json_response({"revisions": out, "now": _iso(now)})


async def control_archive(request: web.Request) -> web.Response:
    """Archive files served: `{"files": [{"location_id", "day": "YYYY-MM-DD", "requests", "rows"}, ...],
    "not_found"}`; `rows` counts the rows of the last response for that file."""
    return json_response(request.app[SIM_KEY].stats.archive_snapshot())


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
