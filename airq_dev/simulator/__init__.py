"""An OpenAQ-v3-compatible HTTP server for tests and offline runs.

    python -m airq_dev.simulator --port 8765 --locations 200 [--seed 1] [--rate-limit-per-minute 60]
                                 [--minute-seconds 60] [--faults '{"error_rate": 0.05}'] ...

The world is deterministic: locations, sensors and every value come from the seed. A sensor's value for an hour is
a function of (seed, sensor, hour), so repeated polls within an hour return the same measurement, and time follows
the real clock (hourly, time-ending timestamps, `utc` ending in `Z`). Stations report gases the way real networks
do: US AirNow in ppm (location 2178 "Del Norte" is reproduced with its real sensor ids), European and Indian
stations in µg/m³, Taiwanese, Thai and Chilean ones in ppb; low-cost sensors report particles only.

It behaves like the real API where a client can tell: the `{"meta", "results"}` envelope with `found` as the
string ">{limit}" on full pages of non-counting endpoints, camelCase keys, 401 with the WAF body without
`X-API-Key` (any non-empty key is accepted unless keys are configured), a fixed per-calendar-minute limit per key
with the four `x-ratelimit-*` headers and 429 `{"detail":"Too many requests"}`, 404/422 bodies.

Faults can be switched at start (CLI) and at runtime (`POST /_sim/faults`); `GET /_sim/stats` reports counters
and what was served. Providers' corrections are simulated too: with `revision_rate` > 0 that share of sensor-hours
gets one new value `revision_delay_s` after it was first served, on every endpoint; `GET /_sim/values` lists every
distinct value served per (sensor, datetime) and `GET /_sim/revisions` the corrections and when they show.
`--minute-seconds` shortens the rate-limit window so tests of rate limiting take seconds.

Data-quality faults real networks show, each off by default and set by WorldConfig, `POST /_sim/world` and a flag
(see `quality`; one episode per chosen sensor or location every 72 hours, all from the seed): `stuck_rate` of sensors
repeat one value for `stuck_hours` (8) hours and recover; `spike_rate` (at most 0.25) of sensor-hours jump for one hour
between normal neighbours (750-1000 µg/m³ for PM2.5, 8-16 times the usual level otherwise); `pm25_gt_pm10_rate` of
locations with both report PM2.5 above PM10 for 3-8 hours; `flag_rate` of locations have flagged periods, served as
the real API does at `/v3/locations/{id}/flags` and `/v3/sensors/{id}/flags` (`locationId`, `flagType` {id, label,
level INFO/WARNING/ERROR}, `datetimeFrom`/`datetimeTo` {utc, local}, `sensorIds` empty for the whole station, `note`;
an unknown id has none, 422 for a bad id or window) and as `flagInfo.hasFlags` on the hourly rows they overlap. These
endpoints count against the rate limit like any other. `GET /_sim/quality` (`SimulatorThread.quality`) lists which
sensor-hours are stuck, spiked or inverted and which periods are flagged, with the values served (the -999 and
negative faults and revisions apply on top).

OpenAQ's public archive layout is served at the same base URL, without key or rate limit, computed from the same
world: `/records/csv.gz/locationid={id}/year={yyyy}/month={mm}/location-{id}-{yyyymmdd}.csv.gz` (see `archive`;
`GET /_sim/archive` counts the files and rows served).

Modules: `config` (switches), `regions`, `world` and `quality` (the world model), `state` (counters, rate limits),
`responses`, `middleware`, `handlers`, `archive` and `control` (HTTP), `app` (routes), `runner` (thread,
subprocess, CLI).
"""

from airq_dev.simulator.app import build_app
from airq_dev.simulator.config import HOUR, Faults, WorldConfig
from airq_dev.simulator.runner import SimulatorThread, config_from_args, main, start_subprocess
from airq_dev.simulator.state import SIM_KEY, Simulator
from airq_dev.simulator.world import World

__all__ = [
    "HOUR",
    "SIM_KEY",
    "Faults",
    "Simulator",
    "SimulatorThread",
    "World",
    "WorldConfig",
    "build_app",
    "config_from_args",
    "main",
    "start_subprocess",
]
