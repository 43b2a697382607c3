"""Data-quality faults real networks show: stuck sensors, one-hour spikes, PM2.5 above PM10, and OpenAQ's flagged
periods (served at `/v3/locations/{id}/flags` and `/v3/sensors/{id}/flags`).

They exist so that quality checks can be tested against known faults. Like every value, each fault is a pure
function of the seed and the sensor, location and hour: every endpoint agrees on it and `/_sim/quality` lists exactly
what was injected. Faults recur: time is cut into 72-hour cycles (from the epoch) and a chosen sensor or location has
one episode per cycle, so any window of a few days holds some.

Precedence keeps each fault's defining property: a stuck hour is nothing else; PM2.5-above-PM10 skips hours when
either sensor of the pair is stuck; a spike needs an hour and neighbours that are neither stuck nor (for the pair)
inverted. The -999 and negative faults and revisions apply on top of these values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Protocol

from airq_dev.simulator.config import HOUR, WorldConfig
from airq_dev.simulator.model import Location, Sensor, dt_object_ts, sig3, uniform, utc_str


class ValueSource(Protocol):
    """What the faults need of the world (`world.World`): its config, locations, clock and clean values."""

    config: WorldConfig
    seed: int
    locations: list[Location]

    def clean_value(self, sensor: Sensor, hour: int) -> float: ...

    def now(self) -> float: ...


CYCLE_HOURS = 72  # one episode of each fault per chosen sensor or location and cycle
SPIKE_BLOCK = 4  # a spike sits at position 1 or 2 of a 4-hour block: neighbours never spike, spike_rate <= 0.25

# OpenAQ's flag types (openaq-db `tables/flags.sql`): id, level, label, and the simulator's note for each.
FLAG_TYPES: dict[int, tuple[str, str, str]] = {
    1: ("INFO", "Read me", "Station relocated within the site; values comparable"),
    2: ("WARNING", "Settings updated", "Instrument settings changed; values may have issues"),
    3: ("ERROR", "Error", "Unknown error reported by the provider"),
    4: ("ERROR", "Limits exceeded", "Values outside the instrument's measuring range"),
}
_FLAG_TYPE_WEIGHTS = ((1, 0.2), (2, 0.3), (3, 0.15), (4, 0.35))
_LOCATION_WIDE_SHARE = 0.4  # flags for the whole station (no sensor ids); the rest name one sensor


@lru_cache(maxsize=1 << 17)
def drawn(seed: int, *parts: object) -> float:
    """`uniform`, remembered: for the draws made per sensor, location or cycle, which every hour asks again."""
    return uniform(seed, *parts)


@dataclass(frozen=True, eq=False)
class Flag:
    """A flagged period of a location, for the whole station (`sensor_ids` empty) or for the sensors named."""

    location: Location
    sensor_ids: tuple[int, ...]
    type_id: int
    start_s: int  # period start, epoch seconds
    end_s: int  # period end (exclusive), epoch seconds

    @property
    def level(self) -> str:
        return FLAG_TYPES[self.type_id][0]

    @property
    def label(self) -> str:
        return FLAG_TYPES[self.type_id][1]

    @property
    def note(self) -> str:
        return FLAG_TYPES[self.type_id][2]

    @property
    def invalidates(self) -> bool:
        """ERROR-level flags invalidate the data: the level replaced openaq-db's former `invalidates` column."""
        return self.level == "ERROR"

    def applies_to(self, sensor: Sensor) -> bool:
        return sensor.location is self.location and (not self.sensor_ids or sensor.id in self.sensor_ids)

    @property
    def hours(self) -> range:
        """Period ends of the hourly rows that carry `flagInfo.hasFlags`: as on the real server, those whose closed
        hour [end - 1 h, end] overlaps the flagged period."""
        return range(math.ceil(self.start_s / HOUR), math.ceil(self.end_s / HOUR) + 1)

    def api_json(self) -> dict[str, Any]:
        """One result of the flags endpoints, keys as the real API's `LocationFlag` model orders them."""
        tz = self.location.timezone
        return {
            "locationId": self.location.id,
            "flagType": {"id": self.type_id, "label": self.label, "level": self.level},
            "datetimeFrom": dt_object_ts(self.start_s, tz),
            "datetimeTo": dt_object_ts(self.end_s, tz),
            "sensorIds": list(self.sensor_ids),
            "note": self.note,
        }


class Quality:
    """The data-quality faults of a world, read from its config's rates at every call (they change at runtime)."""

    def __init__(self, world: ValueSource) -> None:
        self.world = world
        self.config = world.config
        self.seed = world.seed

    @cached_property
    def pairs(self) -> dict[int, tuple[Sensor, Sensor]]:
        """Location id -> its (pm25, pm10) sensors, for locations that have both."""
        out: dict[int, tuple[Sensor, Sensor]] = {}
        for loc in self.world.locations:
            by_name = {s.parameter.name: s for s in loc.sensors}
            if "pm25" in by_name and "pm10" in by_name:
                out[loc.id] = (by_name["pm25"], by_name["pm10"])
        return out

    @property
    def enabled(self) -> bool:
        c = self.config
        return bool(c.stuck_rate or c.spike_rate or c.pm25_gt_pm10_rate)

    # -- stuck sensors ---------------------------------------------------------------------------------------------

    def is_stuck_sensor(self, sensor: Sensor) -> bool:
        rate = self.config.stuck_rate
        return rate > 0 and drawn(self.seed, sensor.id, "stuck") < rate

    def stuck_run(self, sensor: Sensor, hour: int) -> tuple[int, int] | None:
        """(first, last) hour of the stuck run that `hour` is in, or None. A run never touches its cycle's edges, so
        the hours before and after it are normal."""
        if not self.is_stuck_sensor(sensor):
            return None
        first, last = self._stuck_run_in(sensor, hour // CYCLE_HOURS)
        return (first, last) if first <= hour <= last else None

    def _stuck_run_in(self, sensor: Sensor, cycle: int) -> tuple[int, int]:
        length = self.config.stuck_hours
        offset = 1 + int(drawn(self.seed, sensor.id, "stuck-at", cycle) * (CYCLE_HOURS - length - 1))
        first = cycle * CYCLE_HOURS + offset
        return first, first + length - 1

    # -- PM2.5 above PM10 ------------------------------------------------------------------------------------------

    def is_inverting_location(self, loc: Location) -> bool:
        rate = self.config.pm25_gt_pm10_rate
        return rate > 0 and loc.id in self.pairs and drawn(self.seed, loc.id, "pm-inversion") < rate

    def inverted(self, loc: Location, hour: int) -> bool:
        """Whether the location's PM2.5 exceeds its PM10 at `hour`: 3 to 8 hours a cycle, none while either is stuck."""
        if not self.is_inverting_location(loc):
            return False
        cycle = hour // CYCLE_HOURS
        length = 3 + int(drawn(self.seed, loc.id, "pm-inversion-length", cycle) * 6)
        offset = 1 + int(drawn(self.seed, loc.id, "pm-inversion-at", cycle) * (CYCLE_HOURS - length - 1))
        first = cycle * CYCLE_HOURS + offset
        if not first <= hour < first + length:
            return False
        pm25, pm10 = self.pairs[loc.id]
        return self.stuck_run(pm25, hour) is None and self.stuck_run(pm10, hour) is None

    # -- spikes ----------------------------------------------------------------------------------------------------

    def is_spike(self, sensor: Sensor, hour: int) -> bool:
        """Whether (sensor, hour) is a one-hour spike: `spike_rate` of sensor-hours, never next to another spike, a
        stuck hour or (for PM2.5 and PM10 of an inverting location) an inverted hour."""
        rate = self.config.spike_rate
        if rate <= 0:
            return False
        block = hour // SPIKE_BLOCK
        if uniform(self.seed, sensor.id, "spike", block) >= rate * SPIKE_BLOCK:
            return False
        position = 1 + int(uniform(self.seed, sensor.id, "spike-at", block) * 2)
        if hour != block * SPIKE_BLOCK + position:
            return False
        around = (hour - 1, hour, hour + 1)
        if any(self.stuck_run(sensor, h) is not None for h in around):
            return False
        loc = sensor.location
        pair = self.pairs.get(loc.id)
        in_pair = pair is not None and (sensor is pair[0] or sensor is pair[1])
        return not (in_pair and any(self.inverted(loc, h) for h in around))

    def spike_value(self, sensor: Sensor, hour: int) -> float:
        """750 to 1000 µg/m³ for PM2.5 (what broken optical counters report), 8 to 16 times the sensor's typical level
        for the rest; always far above any normal value."""
        u = uniform(self.seed, sensor.id, "spike-value", hour)
        typical = sensor.base * sensor.unit_factor
        if sensor.parameter.name == "pm25":
            return sig3(max(750 + 250 * u, 8 * typical))
        return sig3(typical * (8 + 8 * u))

    # -- values ----------------------------------------------------------------------------------------------------

    def value(self, sensor: Sensor, hour: int) -> float:
        """The value with the quality faults, before the -999 and negative faults and revisions."""
        world = self.world
        run = self.stuck_run(sensor, hour)
        if run is not None:
            return world.clean_value(sensor, run[0])
        loc = sensor.location
        pair = self.pairs.get(loc.id)
        if pair is not None and sensor is pair[0] and self.inverted(loc, hour):
            factor = 1.15 + 0.45 * uniform(self.seed, loc.id, "pm-inversion-factor", hour)
            return sig3(world.clean_value(pair[1], hour) * factor)
        if self.is_spike(sensor, hour):
            return self.spike_value(sensor, hour)
        return world.clean_value(sensor, hour)

    # -- flags -----------------------------------------------------------------------------------------------------

    def is_flagged_location(self, loc: Location) -> bool:
        rate = self.config.flag_rate
        return rate > 0 and drawn(self.seed, loc.id, "flag") < rate

    def _flag_in(self, loc: Location, cycle: int) -> Flag:
        """The location's flag of a cycle: 2 to 12 hours, starting and ending a few minutes past an hour."""

        def u(tag: str) -> float:
            return drawn(self.seed, loc.id, tag, cycle)

        length = 2 + int(u("flag-length") * 11)
        start_hour = cycle * CYCLE_HOURS + int(u("flag-at") * (CYCLE_HOURS - length - 1))
        start_s = start_hour * HOUR + 60 * (5 + int(u("flag-start-minute") * 51))
        end_s = (start_hour + length) * HOUR + 60 * (5 + int(u("flag-end-minute") * 51))
        pick, type_id = u("flag-type"), 4
        for candidate, weight in _FLAG_TYPE_WEIGHTS:
            if pick < weight:
                type_id = candidate
                break
            pick -= weight
        sensor_ids: tuple[int, ...] = ()
        if u("flag-scope") >= _LOCATION_WIDE_SHARE:
            sensor_ids = (loc.sensors[int(u("flag-sensor") * len(loc.sensors))].id,)
        return Flag(loc, sensor_ids, type_id, start_s, end_s)

    def flags(self, loc: Location, from_s: float | None = None, to_s: float | None = None) -> list[Flag]:
        """The location's flags that have started by the world clock and overlap [from_s, to_s] (either end open),
        oldest first; none before the location's first measurement."""
        if not self.is_flagged_location(loc):
            return []
        now = self.world.now()
        first_s = min(s.first_hour for s in loc.sensors) * HOUR
        lo = first_s if from_s is None else max(from_s, first_s)
        hi = now if to_s is None else min(to_s, now)
        if hi < lo:
            return []
        out = []
        for cycle in range(int(lo // HOUR) // CYCLE_HOURS, int(hi // HOUR) // CYCLE_HOURS + 1):  # flags stay in one
            flag = self._flag_in(loc, cycle)
            if flag.start_s <= hi and flag.end_s > lo and flag.start_s <= now:
                out.append(flag)
        return out

    def has_flags(self, sensor: Sensor, hour: int) -> bool:
        """`flagInfo.hasFlags` of the hourly row ending at `hour`: a flag of the sensor's location for the whole
        station or for this sensor overlaps that hour."""
        if not self.is_flagged_location(sensor.location):
            return False
        flags = self.flags(sensor.location, (hour - 1) * HOUR, hour * HOUR)
        return any(f.applies_to(sensor) and hour in f.hours for f in flags)

    # -- what /_sim/quality reports --------------------------------------------------------------------------------

    def report(self, lo: int, hi: int, locations: list[Location]) -> dict[str, Any]:
        """Every fault of `locations` whose hours (period ends, UTC) fall in [lo, hi]: stuck runs (whole, even when
        they reach outside the window), spikes, PM2.5-above-PM10 hours and flags, with the values they give."""
        world = self.world
        sensors = [s for loc in locations for s in loc.sensors]
        stuck: list[dict[str, Any]] = []
        for s in sensors:
            if not self.is_stuck_sensor(s):
                continue
            for cycle in range(lo // CYCLE_HOURS, hi // CYCLE_HOURS + 1):
                first, last = self._stuck_run_in(s, cycle)
                if first <= hi and last >= lo:
                    stuck.append(
                        {
                            "sensor_id": s.id,
                            "location_id": s.location.id,
                            "first": utc_str(first),
                            "last": utc_str(last),
                            "hours": [utc_str(h) for h in range(first, last + 1)],
                            "value": world.clean_value(s, first),
                        }
                    )
        spikes = [
            {"sensor_id": s.id, "location_id": s.location.id, "datetime": utc_str(h), "value": self.spike_value(s, h)}
            for s in sensors
            for h in range(lo, hi + 1)
            if self.is_spike(s, h)
        ]
        inverting = [loc for loc in locations if self.is_inverting_location(loc)]
        inversions = []
        for loc in inverting:
            pm25, pm10 = self.pairs[loc.id]
            for h in range(lo, hi + 1):
                if self.inverted(loc, h):
                    inversions.append(
                        {
                            "location_id": loc.id,
                            "pm25_sensor_id": pm25.id,
                            "pm10_sensor_id": pm10.id,
                            "datetime": utc_str(h),
                            "pm25": self.value(pm25, h),
                            "pm10": self.value(pm10, h),
                        }
                    )
        flagged = [loc for loc in locations if self.is_flagged_location(loc)]
        flags = [
            {
                "location_id": f.location.id,
                "sensor_ids": list(f.sensor_ids) or [s.id for s in f.location.sensors],
                "location_wide": not f.sensor_ids,
                "flag_type": {"id": f.type_id, "label": f.label, "level": f.level},
                "invalidates": f.invalidates,
                "datetime_from": dt_object_ts(f.start_s, "UTC")["utc"],
                "datetime_to": dt_object_ts(f.end_s, "UTC")["utc"],
                "note": f.note,
                "hours": [utc_str(h) for h in f.hours],
            }
            for loc in flagged
            for f in self.flags(loc, (lo - 1) * HOUR, hi * HOUR)
        ]
        return {
            "from": utc_str(lo),
            "to": utc_str(hi),
            "cycle_hours": CYCLE_HOURS,
            "options": {
                name: getattr(self.config, name)
                for name in ("stuck_rate", "stuck_hours", "spike_rate", "pm25_gt_pm10_rate", "flag_rate")
            },
            "stuck_sensors": [s.id for s in sensors if self.is_stuck_sensor(s)],
            "stuck": stuck,
            "spikes": spikes,
            "pm25_gt_pm10_locations": [loc.id for loc in inverting],
            "pm25_gt_pm10": inversions,
            "flagged_locations": [loc.id for loc in flagged],
            "flags": flags,
        }
