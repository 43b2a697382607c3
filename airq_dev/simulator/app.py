"""The aiohttp application: every route of the simulator in one table, so the surface is readable at a glance."""

from __future__ import annotations

from aiohttp import web

from airq_dev.simulator import archive
from airq_dev.simulator import control as c
from airq_dev.simulator import handlers as h
from airq_dev.simulator.config import WorldConfig
from airq_dev.simulator.middleware import openaq_middleware
from airq_dev.simulator.state import SIM_KEY, Simulator


def build_app(world_config: WorldConfig | None = None) -> web.Application:
    """The aiohttp application; `app[SIM_KEY]` is the `Simulator` (world, stats, faults)."""
    sim = Simulator(world_config or WorldConfig())
    app = web.Application(middlewares=[openaq_middleware])
    app[SIM_KEY] = sim
    r = app.router
    r.add_get("/v3/locations", h.list_locations, name="locations")
    r.add_get("/v3/locations/{location_id}", h.get_location, name="location")
    r.add_get("/v3/locations/{location_id}/latest", h.location_latest, name="location_latest")
    r.add_get("/v3/locations/{location_id}/sensors", h.location_sensors, name="location_sensors")
    r.add_get("/v3/locations/{location_id}/flags", h.location_flags, name="location_flags")
    r.add_get("/v3/parameters", h.list_parameters, name="parameters")
    r.add_get("/v3/parameters/{parameter_id}", h.get_parameter, name="parameter")
    r.add_get("/v3/parameters/{parameter_id}/latest", h.parameter_latest, name="parameter_latest")
    r.add_get("/v3/sensors/{sensor_id}", h.get_sensor, name="sensor")
    r.add_get("/v3/sensors/{sensor_id}/hours", h.sensor_hours, name="sensor_hours")
    r.add_get("/v3/sensors/{sensor_id}/measurements", h.sensor_measurements, name="sensor_measurements")
    r.add_get("/v3/sensors/{sensor_id}/flags", h.sensor_flags, name="sensor_flags")
    r.add_get(archive.ROUTE, archive.archive_file, name="archive")
    r.add_get("/_sim/stats", c.control_stats)
    r.add_get("/_sim/served", c.control_served)
    r.add_get("/_sim/faults", c.control_get_faults)
    r.add_post("/_sim/faults", c.control_set_faults)
    r.add_post("/_sim/reset", c.control_reset)
    r.add_get("/_sim/clock", c.control_clock)
    r.add_post("/_sim/clock", c.control_clock)
    r.add_get("/_sim/world", c.control_world)
    r.add_post("/_sim/world", c.control_world)
    r.add_get("/_sim/values", c.control_values)
    r.add_get("/_sim/revisions", c.control_revisions)
    r.add_get("/_sim/quality", c.control_quality)
    r.add_get("/_sim/archive", c.control_archive)
    return app
