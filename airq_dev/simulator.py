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
and what was served. `--minute-seconds` shortens the rate-limit window so tests of rate limiting take seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from airq_app.openaq import PARAMETERS, Parameter

HOUR = 3600
MOLAR_VOLUME_L = 24.45  # 25 °C, 1 atm
MOLECULAR_WEIGHT = {"o3": 48.00, "no2": 46.01, "so2": 64.07, "co": 28.01, "no": 30.01, "nox": 46.01}
WAF_UNAUTHORIZED = {"message": "Unauthorized. A valid API key must be provided in the X-API-Key header."}
INVALID_CREDENTIALS = {"detail": "Invalid credentials"}
TOO_MANY_REQUESTS = {"detail": "Too many requests"}
DB_TIMEOUT = {"detail": "Connection timed out: Try to provide more specific query parameters or a smaller time frame."}
META_BASE = {"name": "openaq-api", "website": "/"}

# --------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class Faults:
    """Fault switches. Rates are fractions in [0, 1]."""

    error_rate: float = 0.0  # requests answered 500/502/503/504
    timeout_rate: float = 0.0  # requests answered 408 (database timeout)
    slow_rate: float = 0.0  # requests delayed by delay_s
    delay_s: float = 0.0
    malformed_rate: float = 0.0  # 200 bodies cut in half (truncated JSON)
    sentinel_rate: float = 0.0  # (sensor, hour) values replaced by -999
    negative_rate: float = 0.0  # (sensor, hour) values made negative
    stale_rate: float = 0.0  # sensors whose latest value is stale_hours old
    stale_hours: int = 72
    repeat_rate: float = 0.0  # requests answered with the body served before for the same URL (a stale cache)
    duplicate_rate: float = 0.0  # /latest rows that appear twice in their page
    kinds: list[str] | None = None  # path kinds the request-level faults apply to; None = all
    # The next matching requests get these answers, in order: an HTTP status (e.g. 429, 503, 404),
    # "malformed" (truncated 200 body) or "slow" (delay_s, or 1 s when delay_s is 0).
    fail_next: list[int | str] = field(default_factory=list)

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known - {"reset"}
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if changes.get("reset"):
            for f in fields(self):
                setattr(self, f.name, getattr(Faults(), f.name))
        for name, value in changes.items():
            if name == "reset":
                continue
            if name == "kinds":
                value = None if value is None else [str(k) for k in value]
            elif name == "fail_next":
                items = value.replace("|", ",").split(",") if isinstance(value, str) else list(value)
                value = [int(v) if str(v).strip().isdigit() else str(v).strip() for v in items if str(v).strip()]
            elif name == "stale_hours":
                value = int(value)
            else:
                value = float(value)
                if name.endswith("_rate") and not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name} must be within [0, 1]")
            setattr(self, name, value)


@dataclass
class WorldConfig:
    locations: int = 200
    seed: int = 1
    rate_limit_per_minute: int = 60  # per key per calendar minute; 0 = unlimited
    rate_limit_per_hour: int = 0  # per key per calendar hour; 0 = unlimited (the real server reports none)
    minute_seconds: float = 60.0  # length of the rate-limit "minute" (an "hour" is 60 of them)
    api_keys: list[str] | None = None  # None: any non-empty key is valid
    inactive_fraction: float = 0.02  # locations whose data stopped long ago
    record_served: bool = True
    max_served: int = 2_000_000
    time_offset_s: float = 0.0  # shifts the simulated clock (also via POST /_sim/clock)
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.locations <= 20_000:
            raise ValueError("locations must be between 1 and 20000")
        if self.minute_seconds <= 0:
            raise ValueError("minute_seconds must be positive")


# --------------------------------------------------------------------------------------------------------------
# The world


def _u(seed: int, *parts: object) -> float:
    """A deterministic uniform number in [0, 1) from the seed and parts."""
    digest = hashlib.blake2b(f"{seed}|{'|'.join(map(str, parts))}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sig3(x: float) -> float:
    """Three significant digits, as the API's `sig_digits` does for aggregates."""
    return 0.0 if x == 0 else float(f"{x:.3g}")


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _hour_to_dt(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR, UTC)


def dt_object(hour: int, tz: str) -> dict[str, str]:
    """The API's datetime object: utc with Z, local with the station's offset."""
    dt = _hour_to_dt(hour)
    return {"utc": dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "local": dt.astimezone(_zone(tz)).isoformat()}


def utc_str(hour: int) -> str:
    return _hour_to_dt(hour).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Region:
    code: str
    country_id: int
    country: str
    timezone: str
    lat: tuple[float, float]
    lon: tuple[float, float]
    profile: str
    weight: int
    provider: tuple[int, str]
    pm_level: float  # typical PM2.5, µg/m³
    cities: tuple[str, ...]


REGIONS: tuple[Region, ...] = (
    Region(
        "US",
        155,
        "United States",
        "America/Los_Angeles",
        (32.6, 47.0),
        (-123.0, -116.5),
        "airnow",
        3,
        (119, "AirNow"),
        9.0,
        ("Los Angeles", "Fresno", "Sacramento", "Portland", "Seattle", "San Diego"),
    ),
    Region(
        "US",
        155,
        "United States",
        "America/Denver",
        (33.0, 45.0),
        (-112.0, -104.5),
        "airnow",
        2,
        (119, "AirNow"),
        7.0,
        ("Denver", "Albuquerque", "Salt Lake City", "Boise", "Colorado Springs"),
    ),
    Region(
        "US",
        155,
        "United States",
        "America/Chicago",
        (29.5, 44.0),
        (-97.5, -87.5),
        "airnow",
        2,
        (119, "AirNow"),
        8.5,
        ("Chicago", "Houston", "Dallas", "St. Louis", "Minneapolis"),
    ),
    Region(
        "US",
        155,
        "United States",
        "America/New_York",
        (33.8, 44.5),
        (-84.0, -71.0),
        "airnow",
        3,
        (119, "AirNow"),
        8.0,
        ("New York", "Philadelphia", "Boston", "Atlanta", "Pittsburgh", "Baltimore"),
    ),
    Region(
        "GB",
        79,
        "United Kingdom",
        "Europe/London",
        (50.5, 55.8),
        (-4.5, 0.5),
        "eea",
        2,
        (70, "EEA"),
        9.0,
        ("London", "Manchester", "Birmingham", "Leeds", "Bristol"),
    ),
    Region(
        "DE",
        50,
        "Germany",
        "Europe/Berlin",
        (47.8, 54.5),
        (6.5, 14.5),
        "eea",
        2,
        (70, "EEA"),
        10.0,
        ("Berlin", "Hamburg", "München", "Köln", "Stuttgart", "Leipzig"),
    ),
    Region(
        "FR",
        22,
        "France",
        "Europe/Paris",
        (43.3, 50.5),
        (-1.5, 7.5),
        "eea",
        2,
        (70, "EEA"),
        10.0,
        ("Paris", "Lyon", "Marseille", "Lille", "Toulouse", "Strasbourg"),
    ),
    Region(
        "ES",
        67,
        "Spain",
        "Europe/Madrid",
        (36.5, 43.3),
        (-8.5, 3.0),
        "eea",
        1,
        (70, "EEA"),
        11.0,
        ("Madrid", "Barcelona", "Valencia", "Sevilla", "Bilbao"),
    ),
    Region(
        "IN",
        9,
        "India",
        "Asia/Kolkata",
        (12.0, 29.0),
        (72.5, 88.5),
        "cpcb",
        2,
        (168, "CPCB"),
        55.0,
        ("Delhi", "Mumbai", "Kolkata", "Lucknow", "Patna", "Bengaluru"),
    ),
    Region(
        "TW",
        173,
        "Taiwan",
        "Asia/Taipei",
        (22.0, 25.2),
        (120.1, 121.8),
        "ppb",
        1,
        (180, "Taiwan MOENV"),
        16.0,
        ("Taipei", "Taichung", "Kaohsiung", "Tainan"),
    ),
    Region(
        "TH",
        111,
        "Thailand",
        "Asia/Bangkok",
        (13.4, 18.9),
        (98.9, 100.9),
        "ppb",
        1,
        (201, "Thailand PCD"),
        25.0,
        ("Bangkok", "Chiang Mai", "Nakhon Sawan", "Lampang"),
    ),
    Region(
        "CL",
        3,
        "Chile",
        "America/Santiago",
        (-38.0, -30.0),
        (-72.5, -70.3),
        "ppb_co",
        1,
        (164, "Chile - SINCA"),
        20.0,
        ("Santiago", "Temuco", "Rancagua", "Talca"),
    ),
    Region(
        "AU",
        5,
        "Australia",
        "Australia/Sydney",
        (-34.5, -32.5),
        (150.3, 151.5),
        "ppm",
        1,
        (150, "Australia - New South Wales"),
        7.0,
        ("Sydney", "Newcastle", "Wollongong"),
    ),
)

# Parameter ids a profile may carry, with the chance a station has each.
PROFILES: dict[str, tuple[tuple[int, float], ...]] = {
    "airnow": ((2, 0.95), (1, 0.6), (10, 0.7), (7, 0.45), (8, 0.3), (9, 0.25)),
    "ppm": ((2, 0.9), (1, 0.8), (10, 0.7), (7, 0.6), (8, 0.4), (9, 0.3)),
    "eea": ((2, 0.75), (1, 0.85), (3, 0.6), (5, 0.85), (6, 0.3), (4, 0.2)),
    "cpcb": ((2, 0.95), (1, 0.85), (3, 0.7), (5, 0.8), (6, 0.6), (4, 0.6)),
    "ppb": ((2, 0.9), (1, 0.8), (32, 0.8), (15, 0.8), (101, 0.6), (8, 0.6)),
    "ppb_co": ((2, 0.9), (1, 0.7), (32, 0.6), (15, 0.6), (101, 0.5), (102, 0.4)),
    "lowcost": ((2, 1.0), (1, 0.5)),
}
LOWCOST_PROVIDERS = ((166, "PurpleAir"), (209, "AirGradient"))
GAS_LEVEL_PPB = {"o3": 30.0, "no2": 14.0, "so2": 2.5, "co": 350.0, "no": 6.0, "nox": 20.0}

# 2016-01-01 and 2025-01-01 as epoch hours: history starts and inactive stations stop within fixed ranges.
_H2016 = int(datetime(2016, 1, 1, tzinfo=UTC).timestamp()) // HOUR
_H2025 = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp()) // HOUR


@dataclass
class Sensor:
    id: int
    parameter: Parameter
    location: Location
    base: float  # typical level in the canonical unit (µg/m³ for particles, ppb for gases)
    lag_h: int  # hours the provider is behind
    first_hour: int

    @property
    def name(self) -> str:
        return f"{self.parameter.name} {self.parameter.units}"


@dataclass
class Location:
    id: int
    name: str | None
    locality: str | None
    timezone: str
    country: dict[str, Any]
    owner: dict[str, Any]
    provider: dict[str, Any]
    is_monitor: bool
    latitude: float
    longitude: float
    licenses: list[dict[str, Any]] | None
    inactive_last_hour: int | None
    sensors: list[Sensor] = field(default_factory=list)


class World:
    """The deterministic set of locations and sensors, and the value function."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.seed = config.seed
        self.locations: list[Location] = []
        self._build()
        self.by_location: dict[int, Location] = {loc.id: loc for loc in self.locations}
        self.sensors: dict[int, Sensor] = {s.id: s for loc in self.locations for s in loc.sensors}
        self.by_parameter: dict[int, list[Sensor]] = {}
        for loc in self.locations:
            for s in loc.sensors:
                self.by_parameter.setdefault(s.parameter.id, []).append(s)

    # -- building --------------------------------------------------------------------------------------------------

    def _build(self) -> None:
        rng = random.Random(self.seed)
        self.locations.append(self._del_norte())
        weights = [r.weight for r in REGIONS]
        next_id = 10_000
        for i in range(1, self.config.locations):
            region = rng.choices(REGIONS, weights)[0]
            next_id += 1 + rng.randrange(7)  # sparse ids, like the real ones
            lowcost = rng.random() < 0.3
            city = rng.choice(region.cities)
            if lowcost:
                provider = dict(zip(("id", "name"), rng.choice(LOWCOST_PROVIDERS), strict=True))
                owner = {"id": 1000 + rng.randrange(500), "name": "Unknown Private Owner"}
                name = f"{city} sensor {rng.randrange(1, 9999)}"
                profile = "lowcost"
                licenses = None
            else:
                provider = {"id": region.provider[0], "name": region.provider[1]}
                owner = {"id": 4, "name": "Unknown Governmental Organization"}
                name = f"{city} - {rng.choice(('Central', 'North', 'South', 'East', 'West', 'Airport', 'Harbour'))}"
                profile = region.profile
                licenses = [
                    {
                        "id": 33,
                        "name": "US Public Domain" if region.code == "US" else "CC BY 4.0",
                        "attribution": {"name": owner["name"], "url": None},
                        "dateFrom": "2016-01-30",
                        "dateTo": None,
                    }
                ]
            loc = Location(
                id=next_id,
                name=None if rng.random() < 0.01 else name,  # the API allows a null name
                locality=None if rng.random() < 0.15 else city,
                timezone=region.timezone,
                country={"id": region.country_id, "code": region.code, "name": region.country},
                owner=owner,
                provider=provider,
                is_monitor=not lowcost,
                latitude=round(rng.uniform(*region.lat), 5),
                longitude=round(rng.uniform(*region.lon), 5),
                licenses=licenses,
                inactive_last_hour=(
                    _H2025 + rng.randrange(8760) if rng.random() < self.config.inactive_fraction else None
                ),
            )
            pm = region.pm_level * rng.uniform(0.5, 1.6)
            first = _H2016 + rng.randrange(6 * 8760)
            params = [pid for pid, p in PROFILES[profile] if rng.random() < p] or [2]
            for k, pid in enumerate(params):
                param = PARAMETERS[pid]
                base = pm * (1.8 if param.name == "pm10" else 1.0)
                if param.name in GAS_LEVEL_PPB:
                    base = GAS_LEVEL_PPB[param.name] * rng.uniform(0.5, 1.6)
                loc.sensors.append(
                    Sensor(
                        id=1_000_000 + i * 16 + k,
                        parameter=param,
                        location=loc,
                        base=base,
                        lag_h=rng.choices((0, 1, 2), (70, 25, 5))[0],
                        first_hour=first,
                    )
                )
            self.locations.append(loc)

    def _del_norte(self) -> Location:
        """Location 2178 as the real API describes it: AirNow, gases in ppm."""
        loc = Location(
            id=2178,
            name="Del Norte",
            locality="Albuquerque",
            timezone="America/Denver",
            country={"id": 155, "code": "US", "name": "United States"},
            owner={"id": 4, "name": "Unknown Governmental Organization"},
            provider={"id": 119, "name": "AirNow"},
            is_monitor=True,
            latitude=35.1353,
            longitude=-106.584702,
            licenses=[
                {
                    "id": 33,
                    "name": "US Public Domain",
                    "attribution": {"name": "Unknown Governmental Organization", "url": None},
                    "dateFrom": "2016-01-30",
                    "dateTo": None,
                }
            ],
            inactive_last_hour=None,
        )
        first = int(datetime(2016, 3, 6, 20, tzinfo=UTC).timestamp()) // HOUR
        for sid, pid in ((25227, 8), (4272226, 35), (3916, 7), (4272103, 19840), (3917, 10), (3919, 1),
                         (3920, 2), (3918, 9)):  # fmt: skip
            param = PARAMETERS[pid]
            base = GAS_LEVEL_PPB.get(param.name, 7.0 * (1.8 if param.name == "pm10" else 1.0))
            loc.sensors.append(Sensor(sid, param, loc, base, 0, first))
        return loc

    # -- time and values -------------------------------------------------------------------------------------------

    def now(self) -> float:
        return self.config.clock() + self.config.time_offset_s

    def now_hour(self) -> int:
        return int(self.now() // HOUR)

    def latest_hour(self, sensor: Sensor, now_hour: int | None = None) -> int | None:
        """The period end of the sensor's newest value, or None when it has none yet."""
        now_hour = self.now_hour() if now_hour is None else now_hour
        hour = now_hour - sensor.lag_h
        inactive = sensor.location.inactive_last_hour
        if inactive is not None:
            hour = min(hour, inactive)
        faults = self.config.faults
        if faults.stale_rate and _u(self.seed, sensor.id, "stale") < faults.stale_rate:
            hour -= faults.stale_hours
        return hour if hour >= sensor.first_hour else None

    def clean_value(self, sensor: Sensor, hour: int) -> float:
        """The value without injected faults, in the sensor's unit."""
        local_hour = _hour_to_dt(hour).astimezone(_zone(sensor.location.timezone)).hour
        name = sensor.parameter.name
        phase = 2 * math.pi * local_hour / 24
        if name == "o3":
            cycle = 1 + 0.6 * math.cos(phase - 2 * math.pi * 15 / 24)  # afternoon photochemistry
        elif name in ("no2", "no", "nox", "co"):
            cycle = 1 + 0.35 * math.cos(2 * phase - 2 * math.pi * 16 / 24)  # rush hours around 08 and 20
        elif name == "so2":
            cycle = 1 + 0.2 * math.cos(phase - 2 * math.pi * 11 / 24)
        else:
            cycle = 1 + 0.25 * math.cos(phase - 2 * math.pi * 8 / 24) + 0.15 * math.cos(2 * phase)
        day = (hour + 12) // 24
        level = sensor.base * cycle * (0.6 + _u(self.seed, sensor.location.id, "day", day))
        level *= 0.85 + 0.3 * _u(self.seed, sensor.id, "hour", hour)
        units = sensor.parameter.units
        if name in MOLECULAR_WEIGHT:  # gases are generated in ppb
            if units == "ppm":
                level /= 1000.0
            elif units == "µg/m³":
                level = level * MOLECULAR_WEIGHT[name] / MOLAR_VOLUME_L
        return sig3(max(level, 0.0))

    def value(self, sensor: Sensor, hour: int) -> float:
        """The value served for (sensor, hour), including -999 and negative faults (deterministic as well)."""
        value = self.clean_value(sensor, hour)
        faults = self.config.faults
        if faults.sentinel_rate and _u(self.seed, sensor.id, "sentinel", hour) < faults.sentinel_rate:
            return -999.0
        if faults.negative_rate and _u(self.seed, sensor.id, "negative", hour) < faults.negative_rate:
            return -sig3(max(value, 0.001) * (0.05 + _u(self.seed, sensor.id, "neg", hour)))
        return value

    # -- JSON shapes -----------------------------------------------------------------------------------------------

    @staticmethod
    def parameter_json(p: Parameter, *, display: bool = True) -> dict[str, Any]:
        return {"id": p.id, "name": p.name, "units": p.units, "displayName": p.display_name if display else None}

    def coordinates(self, loc: Location) -> dict[str, float]:
        return {"latitude": loc.latitude, "longitude": loc.longitude}

    def location_json(self, loc: Location, now_hour: int) -> dict[str, Any]:
        lasts = [h for s in loc.sensors if (h := self.latest_hour(s, now_hour)) is not None]
        first = min(s.first_hour for s in loc.sensors)
        return {
            "id": loc.id,
            "name": loc.name,
            "locality": loc.locality,
            "timezone": loc.timezone,
            "country": loc.country,
            "owner": loc.owner,
            "provider": loc.provider,
            "isMobile": False,
            "isMonitor": loc.is_monitor,
            "instruments": [
                {"id": 2, "name": "Government Monitor"} if loc.is_monitor else {"id": 3, "name": "Air Sensor"}
            ],
            "sensors": [
                {"id": s.id, "name": s.name, "parameter": self.parameter_json(s.parameter)} for s in loc.sensors
            ],
            "coordinates": self.coordinates(loc),
            "licenses": loc.licenses,
            "bounds": [loc.longitude, loc.latitude, loc.longitude, loc.latitude],
            "distance": None,
            "datetimeFirst": dt_object(first, loc.timezone),
            "datetimeLast": dt_object(max(lasts), loc.timezone) if lasts else None,
        }

    def latest_json(self, sensor: Sensor, hour: int) -> dict[str, Any]:
        loc = sensor.location
        return {
            "datetime": dt_object(hour, loc.timezone),
            "value": self.value(sensor, hour),
            "coordinates": self.coordinates(loc),
            "sensorsId": sensor.id,
            "locationsId": loc.id,
        }

    def hour_row_json(self, sensor: Sensor, hour: int, label: str) -> dict[str, Any]:
        """A `/hours` ("1hour") or raw `/measurements` ("raw") row for the period ending at `hour`."""
        tz = sensor.location.timezone
        value = self.value(sensor, hour)
        start, end = dt_object(hour - 1, tz), dt_object(hour, tz)
        summary = None
        if label != "raw":
            summary = {k: value for k in ("min", "q02", "q25", "median", "q75", "q98", "max", "avg")} | {"sd": None}
        return {
            "value": value,
            "flagInfo": {"hasFlags": value <= -999},
            "parameter": self.parameter_json(sensor.parameter, display=False),
            "period": {"label": label, "interval": "01:00:00", "datetimeFrom": start, "datetimeTo": end},
            "coordinates": None,
            "summary": summary,
            "coverage": {
                "expectedCount": 1,
                "expectedInterval": "01:00:00",
                "observedCount": 1,
                "observedInterval": "01:00:00",
                "percentComplete": 100.0,
                "percentCoverage": 100.0,
                "datetimeFrom": start,
                "datetimeTo": end,
            },
        }

    def sensor_json(self, sensor: Sensor, now_hour: int) -> dict[str, Any]:
        last = self.latest_hour(sensor, now_hour)
        tz = sensor.location.timezone
        latest = None
        if last is not None:
            latest = {
                "datetime": dt_object(last, tz),
                "value": self.value(sensor, last),
                "coordinates": self.coordinates(sensor.location),
            }
        return {
            "id": sensor.id,
            "name": sensor.name,
            "parameter": self.parameter_json(sensor.parameter),
            "datetimeFirst": dt_object(sensor.first_hour, tz),
            "datetimeLast": dt_object(last, tz) if last is not None else None,
            "coverage": None,
            "latest": latest,
            "summary": None if latest is None else {"min": None, "max": None, "avg": None, "sd": None},
        }


# --------------------------------------------------------------------------------------------------------------
# Request handling


class ApiError(Exception):
    """An error answer with the real server's JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class QueryError(ApiError):
    """A 422 with a pydantic-style body."""

    def __init__(self, name: str, msg: str, value: Any = None) -> None:
        super().__init__(422, {"detail": [{"type": "value_error", "loc": ["query", name], "msg": msg, "input": value}]})


class Stats:
    """Counters kept by the server (thread-safe: tests read them from another thread)."""

    def __init__(self, minute_seconds: float, max_served: int) -> None:
        self.lock = threading.Lock()
        self.minute_seconds = minute_seconds
        self.max_served = max_served
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.by_kind: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.rate_limited = 0
        self.unauthorized = 0
        self._minute = (-1, 0)
        self._hour = (-1, 0)
        self.max_per_minute = 0
        self.max_per_hour = 0
        self.served: list[tuple[int, str, float, str]] = []
        self.served_total = 0
        self.served_dropped = 0

    def count_request(self, kind: str, now: float) -> None:
        minute = int(now // self.minute_seconds)
        hour = int(now // (self.minute_seconds * 60))
        with self.lock:
            self.total += 1
            self.by_kind[kind] += 1
            self._minute = (minute, self._minute[1] + 1 if self._minute[0] == minute else 1)
            self._hour = (hour, self._hour[1] + 1 if self._hour[0] == hour else 1)
            self.max_per_minute = max(self.max_per_minute, self._minute[1])
            self.max_per_hour = max(self.max_per_hour, self._hour[1])

    def record_served(self, rows: Iterable[tuple[int, str, float, str]]) -> None:
        with self.lock:
            for row in rows:
                self.served_total += 1
                if len(self.served) < self.max_served:
                    self.served.append(row)
                else:
                    self.served_dropped += 1

    def snapshot(self, include_served: bool) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {
                "requests_total": self.total,
                "requests_by_kind": dict(self.by_kind),
                "responses_by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "max_requests_per_minute": self.max_per_minute,
                "max_requests_per_hour": self.max_per_hour,
                "rate_limited": self.rate_limited,
                "unauthorized": self.unauthorized,
                "faults_injected": dict(self.faults),
                "served_total": self.served_total,
                "served_dropped": self.served_dropped,
            }
            if include_served:
                out["served"] = [list(r) for r in self.served]
            return out


class Simulator:
    """Server state: the world, rate-limit windows, faults, stats and the repeat cache."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.world = World(config)
        self.stats = Stats(config.minute_seconds, config.max_served)
        self._rng = random.Random(config.seed ^ 0x5EED)
        self._minute_used: dict[str, tuple[int, int]] = {}
        self._hour_used: dict[str, tuple[int, int]] = {}
        self._cache: OrderedDict[str, tuple[bytes, list[tuple[int, str, float, str]]]] = OrderedDict()
        self.lock = threading.Lock()

    @property
    def faults(self) -> Faults:
        return self.config.faults

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        with self.lock:
            self.faults.update(changes)
            return asdict(self.faults)

    def advance(self, hours: float) -> None:
        self.config.time_offset_s += hours * HOUR

    def reset_stats(self) -> None:
        with self.lock:
            self.stats.reset()
            self._minute_used.clear()
            self._hour_used.clear()
            self._cache.clear()

    # -- rate limit ------------------------------------------------------------------------------------------------

    def rate_check(self, key: str, now: float) -> tuple[bool, dict[str, str]]:
        """Count the request against the key's calendar minute (and hour); (allowed, headers)."""
        limit = self.config.rate_limit_per_minute
        if limit <= 0:
            return True, {}
        ms = self.config.minute_seconds
        window = int(now // ms)
        with self.lock:
            w, used = self._minute_used.get(key, (window, 0))
            if w != window:
                used = 0
            allowed = used < limit
            hour_limit = self.config.rate_limit_per_hour
            hw, hused = self._hour_used.get(key, (int(now // (ms * 60)), 0))
            if hw != int(now // (ms * 60)):
                hused = 0
            if hour_limit > 0 and hused >= hour_limit:
                allowed = False
            if allowed:
                used += 1
                hused += 1
            self._minute_used[key] = (window, used)
            self._hour_used[key] = (int(now // (ms * 60)), hused)
        reset = max(1, math.ceil((window + 1) * ms - now))
        return allowed, self.rate_headers(limit, used, reset)

    @staticmethod
    def rate_headers(limit: int, used: int, reset: int) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-used": str(used),
            "x-ratelimit-remaining": str(max(limit - used, 0)),
            "x-ratelimit-reset": str(reset),
        }

    def forced_429_headers(self, key: str, now: float) -> dict[str, str]:
        limit = self.config.rate_limit_per_minute or 60  # unlimited servers still report the real default
        ms = self.config.minute_seconds
        return self.rate_headers(limit, limit, max(1, math.ceil((int(now // ms) + 1) * ms - now)))

    def chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate


SIM_KEY: web.AppKey[Simulator] = web.AppKey("simulator", Simulator)
ServedRows = list[tuple[int, str, float, str]]
SERVED_KEY: web.RequestKey[ServedRows] = web.RequestKey("served", list)  # rows a handler put in its response
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json")


def _kind(request: web.Request) -> str:
    route = request.match_info.route
    name = getattr(route, "name", None)
    if name:
        return name
    return "control" if request.path.startswith("/_sim/") else "other"


@web.middleware
async def openaq_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    if not request.path.startswith("/v3/"):
        return await _control_errors(request, handler)
    now = sim.world.now()
    kind = _kind(request)
    sim.stats.count_request(kind, time.time())
    key = request.headers.get("X-API-Key", "")

    def finish(resp: web.Response, rate_headers: dict[str, str]) -> web.Response:
        resp.headers.update(rate_headers)
        if resp.status < 500:
            resp.headers["Cache-Control"] = "public, max-age=900"
        with sim.stats.lock:
            sim.stats.by_status[resp.status] += 1
        return resp

    if not key:
        with sim.stats.lock:
            sim.stats.unauthorized += 1
        return finish(_json_response(WAF_UNAUTHORIZED, 401), {})
    if sim.config.api_keys is not None and key not in sim.config.api_keys:
        with sim.stats.lock:
            sim.stats.unauthorized += 1
        return finish(_json_response(INVALID_CREDENTIALS, 401), {})

    faults = sim.faults
    applies = faults.kinds is None or kind in faults.kinds
    forced: int | str | None = None
    if applies and faults.fail_next:
        with sim.lock:
            forced = faults.fail_next.pop(0) if faults.fail_next else None
    if forced == 429:
        with sim.stats.lock:
            sim.stats.rate_limited += 1
            sim.stats.faults["forced_429"] += 1
        return finish(_json_response(TOO_MANY_REQUESTS, 429), sim.forced_429_headers(key, now))

    allowed, rate_headers = sim.rate_check(key, time.time())
    if not allowed:
        with sim.stats.lock:
            sim.stats.rate_limited += 1
        return finish(_json_response(TOO_MANY_REQUESTS, 429), rate_headers)

    if isinstance(forced, int):
        with sim.stats.lock:
            sim.stats.faults[f"forced_{forced}"] += 1
        return finish(_error_response(forced), rate_headers)
    if forced == "slow" or (applies and sim.chance(faults.slow_rate)):
        with sim.stats.lock:
            sim.stats.faults["slow"] += 1
        await asyncio.sleep(faults.delay_s or (1.0 if forced == "slow" else 0.0))
    if applies and sim.chance(faults.error_rate):
        status = sim._rng.choice((500, 502, 503, 504))
        with sim.stats.lock:
            sim.stats.faults[f"error_{status}"] += 1
        return finish(_error_response(status), rate_headers)
    if applies and sim.chance(faults.timeout_rate):
        with sim.stats.lock:
            sim.stats.faults["timeout_408"] += 1
        return finish(_json_response(DB_TIMEOUT, 408), rate_headers)

    url = str(request.rel_url)
    cached = None
    if applies and faults.repeat_rate and sim.chance(faults.repeat_rate):
        with sim.lock:
            cached = sim._cache.get(url)
    if cached is not None:
        body, served = cached
        with sim.stats.lock:
            sim.stats.faults["repeat"] += 1
        resp = web.Response(body=body, content_type="application/json")
    else:
        try:
            resp = await handler(request)
        except ApiError as exc:
            return finish(_json_response(exc.body, exc.status), rate_headers)
        except web.HTTPNotFound:
            return finish(_json_response({"detail": "Not Found"}, 404), rate_headers)
        except web.HTTPMethodNotAllowed:
            return finish(_json_response({"detail": "Method Not Allowed"}, 405), rate_headers)
        if not isinstance(resp, web.Response):
            return resp
        served = request.get(SERVED_KEY, [])
        if resp.status == 200 and faults.repeat_rate and isinstance(resp.body, bytes):
            with sim.lock:
                sim._cache[url] = (resp.body, served)
                while len(sim._cache) > 512:
                    sim._cache.popitem(last=False)

    if resp.status == 200 and (forced == "malformed" or (applies and sim.chance(faults.malformed_rate))):
        body = resp.body if isinstance(resp.body, bytes) else b""
        with sim.stats.lock:
            sim.stats.faults["malformed"] += 1
        return finish(web.Response(body=body[: max(len(body) // 2, 1)], content_type="application/json"), rate_headers)
    if resp.status == 200 and served and sim.config.record_served:
        sim.stats.record_served(served)
    return finish(resp, rate_headers)


async def _control_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _json_response({"detail": exc.reason}, exc.status)
    except (ValueError, TypeError) as exc:
        return _json_response({"detail": str(exc)}, 400)


def _error_response(status: int) -> web.Response:
    if status == 408:
        return _json_response(DB_TIMEOUT, 408)
    if status == 500:
        return _json_response({"detail": "simulated database error"}, 500)
    if status in (502, 503, 504):  # gateway answers are not the app's JSON
        text = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}[status]
        return web.Response(text=f"<html><body><h1>{status} {text}</h1></body></html>", status=status,
                            content_type="text/html")  # fmt: skip
    if status == 404:
        return _json_response({"detail": "Not Found"}, 404)
    if status == 401:
        return _json_response(INVALID_CREDENTIALS, 401)
    if status == 403:
        return _json_response({"message": "Forbidden. violation of rate limit policy. Contact dev@openaq.org"}, 403)
    return _json_response({"detail": f"simulated HTTP {status}"}, status)


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
    return dt.replace(tzinfo=_zone(tz)) if dt.tzinfo is None else dt


def _page_meta(page: int, limit: int, found: int | str) -> dict[str, Any]:
    return {**META_BASE, "page": page, "limit": limit, "found": found}


def _rows_found(rows: int, limit: int) -> int | str:
    """`found` of non-counting endpoints: the rows on the page, or ">limit" for a full page."""
    return f">{limit}" if rows >= limit else rows


def _envelope(results: list[Any], page: int, limit: int, found: int | str) -> web.Response:
    return _json_response({"meta": _page_meta(page, limit, found), "results": results})


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
        if hour is None or (datetime_min is not None and _hour_to_dt(hour) <= datetime_min):
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
        return _json_response("datetime_to must be after datetime_from", 422)
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


# -- control endpoints ---------------------------------------------------------------------------------------------


async def control_stats(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    include = request.query.get("served", "0").lower() in ("1", "true", "yes")
    out = sim.stats.snapshot(include)
    out["faults"] = asdict(sim.faults)
    out["now"] = datetime.fromtimestamp(sim.world.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out["rate_limit_per_minute"] = sim.config.rate_limit_per_minute
    out["minute_seconds"] = sim.config.minute_seconds
    return _json_response(out)


async def control_served(request: web.Request) -> web.Response:
    """Served measurements from index `since` on: {"served": [[sensor_id, datetime_utc, value, kind]...], "next"}."""
    sim = request.app[SIM_KEY]
    since = max(0, int(request.query.get("since", "0")))
    with sim.stats.lock:
        rows = [list(r) for r in sim.stats.served[since:]]
        total = len(sim.stats.served)
    return _json_response({"served": rows, "next": total, "dropped": sim.stats.served_dropped})


async def control_get_faults(request: web.Request) -> web.Response:
    return _json_response(asdict(request.app[SIM_KEY].faults))


async def control_set_faults(request: web.Request) -> web.Response:
    try:
        changes = await request.json(loads=orjson.loads)
    except ValueError:
        return _json_response({"detail": "body must be a JSON object"}, 400)
    if not isinstance(changes, dict):
        return _json_response({"detail": "body must be a JSON object"}, 400)
    return _json_response(request.app[SIM_KEY].set_faults(**changes))


async def control_reset(request: web.Request) -> web.Response:
    request.app[SIM_KEY].reset_stats()
    return _json_response({"ok": True})


async def control_clock(request: web.Request) -> web.Response:
    """`{"advance_hours": n}` or `{"offset_hours": n}` moves the simulated clock; GET shows it."""
    sim = request.app[SIM_KEY]
    if request.method == "POST":
        body = await request.json(loads=orjson.loads)
        if "offset_hours" in body:
            sim.config.time_offset_s = float(body["offset_hours"]) * HOUR
        if "advance_hours" in body:
            sim.advance(float(body["advance_hours"]))
    now = sim.world.now()
    return _json_response(
        {
            "now": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "latest_hour": utc_str(int(now // HOUR)),
            "offset_hours": sim.config.time_offset_s / HOUR,
        }
    )


async def control_world(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    world = sim.world
    return _json_response(
        {
            "seed": world.seed,
            "locations": len(world.locations),
            "sensors": len(world.sensors),
            "sensors_by_parameter": {str(k): len(v) for k, v in sorted(world.by_parameter.items())},
            "rate_limit_per_minute": sim.config.rate_limit_per_minute,
            "rate_limit_per_hour": sim.config.rate_limit_per_hour,
            "minute_seconds": sim.config.minute_seconds,
        }
    )


def build_app(world_config: WorldConfig | None = None) -> web.Application:
    """The aiohttp application; `app[SIM_KEY]` is the `Simulator` (world, stats, faults)."""
    sim = Simulator(world_config or WorldConfig())
    app = web.Application(middlewares=[openaq_middleware])
    app[SIM_KEY] = sim
    r = app.router
    r.add_get("/v3/locations", list_locations, name="locations")
    r.add_get("/v3/locations/{location_id}", get_location, name="location")
    r.add_get("/v3/locations/{location_id}/latest", location_latest, name="location_latest")
    r.add_get("/v3/locations/{location_id}/sensors", location_sensors, name="location_sensors")
    r.add_get("/v3/parameters", list_parameters, name="parameters")
    r.add_get("/v3/parameters/{parameter_id}", get_parameter, name="parameter")
    r.add_get("/v3/parameters/{parameter_id}/latest", parameter_latest, name="parameter_latest")
    r.add_get("/v3/sensors/{sensor_id}", get_sensor, name="sensor")
    r.add_get("/v3/sensors/{sensor_id}/hours", sensor_hours, name="sensor_hours")
    r.add_get("/v3/sensors/{sensor_id}/measurements", sensor_measurements, name="sensor_measurements")
    r.add_get("/_sim/stats", control_stats)
    r.add_get("/_sim/served", control_served)
    r.add_get("/_sim/faults", control_get_faults)
    r.add_post("/_sim/faults", control_set_faults)
    r.add_post("/_sim/reset", control_reset)
    r.add_get("/_sim/clock", control_clock)
    r.add_post("/_sim/clock", control_clock)
    r.add_get("/_sim/world", control_world)
    return app


# --------------------------------------------------------------------------------------------------------------
# Running it: in a background thread (tests), as a subprocess, or as this module's main


class SimulatorThread:
    """The simulator served from a background thread with its own event loop."""

    def __init__(self, config: WorldConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = build_app(config)
        self.sim = self.app[SIM_KEY]
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="openaq-simulator", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner = web.AppRunner(self.app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            self._loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> SimulatorThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"simulator did not start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # conveniences for tests (the same as the control endpoints)
    def set_faults(self, **changes: Any) -> dict[str, Any]:
        return self.sim.set_faults(**changes)

    def stats(self, include_served: bool = True) -> dict[str, Any]:
        return self.sim.stats.snapshot(include_served)

    def served(self, kind: str | None = None) -> list[tuple[int, str, float, str]]:
        with self.sim.stats.lock:
            return [r for r in self.sim.stats.served if kind is None or r[3] == kind]

    def reset(self) -> None:
        self.sim.reset_stats()


def run_in_thread(config: WorldConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> SimulatorThread:
    """Start the simulator in a background thread (port 0: an ephemeral port); `.url`, `.stop()`."""
    return SimulatorThread(config, host=host, port=port).start()


def start_subprocess(
    args: list[str] | None = None, *, python: str = sys.executable, timeout: float = 30.0
) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m airq_dev.simulator ARGS` (default `--port 0`); returns (process, base URL) once it
    listens. Stop it with `proc.terminate()`."""
    args = list(args) if args is not None else ["--port", "0"]
    proc = subprocess.Popen(
        [python, "-m", "airq_dev.simulator", *args], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].split()[0]
    proc.kill()
    raise RuntimeError("the simulator subprocess did not report where it listens")


def _parse_faults_arg(text: str) -> dict[str, Any]:
    """`--faults` as JSON (`{"error_rate": 0.1}`) or `name=value,name=value`."""
    text = text.strip()
    if text.startswith("{"):
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise ValueError("--faults JSON must be an object")
        return data
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        out[name.strip()] = value.strip()
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m airq_dev.simulator", description="OpenAQ v3 simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--locations", type=int, default=200, help="1 to 20000")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate-limit-per-minute", type=int, default=60, help="per key; 0 = unlimited")
    p.add_argument("--rate-limit-per-hour", type=int, default=0, help="per key; 0 = unlimited")
    p.add_argument("--minute-seconds", type=float, default=60.0, help="length of a rate-limit minute (tests)")
    p.add_argument("--api-key", action="append", dest="api_keys", help="accept only these keys (repeatable)")
    p.add_argument("--inactive-fraction", type=float, default=0.02)
    p.add_argument("--time-offset-hours", type=float, default=0.0)
    p.add_argument("--no-record-served", action="store_true", help="do not keep the list of served values")
    p.add_argument("--faults", default=None, help='JSON object or name=value,... (e.g. "error_rate=0.1")')
    for name in ("error", "timeout", "slow", "malformed", "sentinel", "negative", "stale", "repeat", "duplicate"):
        p.add_argument(f"--{name}-rate", type=float, default=None, dest=f"{name}_rate")
    p.add_argument("--delay", type=float, default=None, dest="delay_s", help="seconds for slow responses")
    p.add_argument("--stale-hours", type=int, default=None)
    p.add_argument("--fault-kinds", default=None, help="comma list of path kinds the request faults apply to")
    return p


def config_from_args(ns: argparse.Namespace) -> WorldConfig:
    faults = Faults()
    if ns.faults:
        faults.update(_parse_faults_arg(ns.faults))
    flags = {
        f"{n}_rate": getattr(ns, f"{n}_rate")
        for n in ("error", "timeout", "slow", "malformed", "sentinel", "negative", "stale", "repeat", "duplicate")
    }
    flags |= {"delay_s": ns.delay_s, "stale_hours": ns.stale_hours}
    faults.update({k: v for k, v in flags.items() if v is not None})
    if ns.fault_kinds:
        faults.kinds = [k.strip() for k in ns.fault_kinds.split(",") if k.strip()]
    return WorldConfig(
        locations=ns.locations,
        seed=ns.seed,
        rate_limit_per_minute=ns.rate_limit_per_minute,
        rate_limit_per_hour=ns.rate_limit_per_hour,
        minute_seconds=ns.minute_seconds,
        api_keys=ns.api_keys,
        inactive_fraction=ns.inactive_fraction,
        record_served=not ns.no_record_served,
        time_offset_s=ns.time_offset_hours * HOUR,
        faults=faults,
    )


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sim = app[SIM_KEY]
    actual = runner.addresses[0][1]
    rate = sim.config.rate_limit_per_minute
    print(
        f"airq-simulator: listening on http://{host}:{actual} ({len(sim.world.locations)} locations, "
        f"{len(sim.world.sensors)} sensors, seed {sim.config.seed}, "
        f"{f'{rate} requests per {sim.config.minute_seconds:g} s per key' if rate > 0 else 'no rate limit'})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    try:
        config = config_from_args(ns)
    except ValueError as exc:
        print(f"airq-simulator: {exc}", file=sys.stderr)
        return 2
    app = build_app(config)
    try:
        asyncio.run(_serve(app, ns.host, ns.port))
    except OSError as exc:
        print(f"airq-simulator: cannot listen on {ns.host}:{ns.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
