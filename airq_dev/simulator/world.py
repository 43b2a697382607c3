"""The simulated world: locations and sensors built from the seed, and the value of any (sensor, hour).

Nothing is stored per hour: a value is a pure function of (seed, sensor, hour), so a world of any size holds any
length of history for free and every endpoint (the API and the archive) agrees on it. Gases are generated in ppb
and converted with the molecular weights of `airq_app.domain.units`, the one place the project keeps them.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

from airq_app.openaq.catalogue import PARAMETERS, Parameter
from airq_dev.simulator.config import HOUR, WorldConfig
from airq_dev.simulator.model import (
    Location,
    Sensor,
    dt_object,
    hour_to_dt,
    sig3,
    uniform,
    zone,
)
from airq_dev.simulator.quality import Quality
from airq_dev.simulator.regions import GAS_LEVEL_PPB, H2016, H2025, LOWCOST_PROVIDERS, PROFILES, REGIONS


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
        # world-clock time a revised (sensor id, hour) was first served; only revised sensor-hours are kept
        self.first_served: dict[tuple[int, int], float] = {}
        self.quality = Quality(self)

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
                    H2025 + rng.randrange(8760) if rng.random() < self.config.inactive_fraction else None
                ),
            )
            pm = region.pm_level * rng.uniform(0.5, 1.6)
            first = H2016 + rng.randrange(6 * 8760)
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
        every = self.batch_hours(sensor)
        if every > 1:
            hour -= hour % every  # its last upload: the hours since then are not published yet
        inactive = sensor.location.inactive_last_hour
        if inactive is not None:
            hour = min(hour, inactive)
        faults = self.config.faults
        if faults.stale_rate and uniform(self.seed, sensor.id, "stale") < faults.stale_rate:
            hour -= faults.stale_hours
        return hour if hour >= sensor.first_hour else None

    def batch_hours(self, sensor: Sensor) -> int:
        """How many hours the sensor's uploads hold: 1, or 2, 3 or 4 for a `batch_fraction` share of sensors."""
        fraction = self.config.batch_fraction
        if not fraction or uniform(self.seed, sensor.id, "batch") >= fraction:
            return 1
        return 2 + int(uniform(self.seed, sensor.id, "batch-size") * 3)

    def clean_value(self, sensor: Sensor, hour: int) -> float:
        """The value without injected faults, in the sensor's unit."""
        local_hour = hour_to_dt(hour).astimezone(zone(sensor.location.timezone)).hour
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
        level = sensor.base * cycle * (0.6 + uniform(self.seed, sensor.location.id, "day", day))
        level *= 0.85 + 0.3 * uniform(self.seed, sensor.id, "hour", hour)
        return sig3(max(level * sensor.unit_factor, 0.0))

    def published_value(self, sensor: Sensor, hour: int) -> float:
        """The value first published for (sensor, hour): with the data-quality faults of `quality`, then the -999 and
        negative faults (all deterministic too)."""
        value = self.quality.value(sensor, hour) if self.quality.enabled else self.clean_value(sensor, hour)
        faults = self.config.faults
        if faults.sentinel_rate and uniform(self.seed, sensor.id, "sentinel", hour) < faults.sentinel_rate:
            return -999.0
        if faults.negative_rate and uniform(self.seed, sensor.id, "negative", hour) < faults.negative_rate:
            return -sig3(max(value, 0.001) * (0.05 + uniform(self.seed, sensor.id, "neg", hour)))
        return value

    # -- revisions -------------------------------------------------------------------------------------------------

    def is_revised(self, sensor: Sensor, hour: int) -> bool:
        """Whether the provider corrects this sensor-hour after publishing it (a `revision_rate` share of them)."""
        rate = self.config.revision_rate
        return rate > 0 and uniform(self.seed, sensor.id, "revision", hour) < rate

    def revised_value(self, sensor: Sensor, hour: int) -> float:
        """The correction of a revised sensor-hour: the clean value scaled by 0.75 to 1.25, never within 5 % of it
        (so it differs from the published value after rounding to three significant digits)."""
        factor = 0.75 + 0.5 * uniform(self.seed, sensor.id, "revised", hour)
        if abs(factor - 1.0) < 0.05:
            factor += 0.1
        clean = self.clean_value(sensor, hour)
        revised = sig3(clean * factor)
        published = self.published_value(sensor, hour)
        return revised if revised != published else sig3(revised * 1.1 + 0.001)

    def revision_due(self, sensor: Sensor, hour: int) -> float | None:
        """World-clock time from which a revised sensor-hour serves its correction; None until it was first served
        (or when it is never revised)."""
        first = self.first_served.get((sensor.id, hour))
        return None if first is None else first + self.config.revision_delay_s

    def value(self, sensor: Sensor, hour: int) -> float:
        """The value served now for (sensor, hour): the published value, or its correction once `revision_delay_s`
        of world-clock time has passed since the sensor-hour was first served. Serving a revised sensor-hour for
        the first time starts that delay."""
        if not self.is_revised(sensor, hour):
            return self.published_value(sensor, hour)
        now = self.now()
        first = self.first_served.setdefault((sensor.id, hour), now)
        if now - first >= self.config.revision_delay_s:
            return self.revised_value(sensor, hour)
        return self.published_value(sensor, hour)

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
            "flagInfo": {"hasFlags": value <= -999 or self.quality.has_flags(sensor, hour)},
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
