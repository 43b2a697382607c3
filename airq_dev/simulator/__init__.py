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

OpenAQ's public archive layout is served at the same base URL, without key or rate limit, computed from the same
world: `/records/csv.gz/locationid={id}/year={yyyy}/month={mm}/location-{id}-{yyyymmdd}.csv.gz` (see `archive`;
`GET /_sim/archive` counts the files and rows served).

Modules: `config` (switches), `regions` and `world` (the world model), `state` (counters, rate limits),
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
