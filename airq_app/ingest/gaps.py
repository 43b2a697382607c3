"""Each sensor's ingest progress: the newest hour Kafka acknowledged, and the hours still missing before it.

Pure bookkeeping: the poller feeds it what /latest shows and what Kafka acknowledged and asks which hours to fetch;
`airq_app.ingest.progress` keeps it in Kafka. Hours are epoch hours of a value's period end. An hour is *open*
between two known hours, when its send was not acknowledged, or within `first_sight_lookback_hours` of a first
sighting; it closes when a value is acknowledged, is asked again after a back-off, and is given up (and counted)
past the look-back. docs/workers.md, "How the poller finds every hour".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from airq_app.domain import timeutil

HOUR_S = 3600
MAX_RETRY_DOUBLINGS = 6  # an unanswered hour is asked again after retry_s, 2x, 4x ... 64x retry_s


def hour_of(datetime_utc: str) -> int:
    """The epoch hour of a `YYYY-MM-DDTHH:MM:SSZ` period end (minutes and seconds are dropped)."""
    return timeutil.utc_seconds(datetime_utc) // HOUR_S


def hour_text(hour: int) -> str:
    return timeutil.format_epoch(hour * HOUR_S)


def day_text(hour: int) -> str:
    return timeutil.format_epoch(hour * HOUR_S)[:10]


@dataclass
class SensorProgress:
    newest: int | None = None  # newest hour whose value Kafka acknowledged
    open: dict[int, int] = field(default_factory=dict)  # missing hour -> times asked without an answer
    not_before: dict[int, float] = field(default_factory=dict)  # missing hour -> wall time it may be asked again

    def encode(self) -> bytes:
        return orjson.dumps({"newest": self.newest, "open": sorted(self.open.items())})

    @classmethod
    def decode(cls, raw: bytes) -> SensorProgress:
        """A record of the progress topic; ValueError when it is not one."""
        try:
            data = orjson.loads(raw)
            newest = data["newest"]
            opened = {int(h): int(n) for h, n in data["open"]}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a progress record: {exc}") from None
        if newest is not None and (not isinstance(newest, int) or isinstance(newest, bool)):
            raise ValueError("not a progress record: newest is not an hour")
        return cls(newest, opened)


@dataclass
class GivenUp:
    hours: int = 0
    days: list[str] = field(default_factory=list)  # UTC days that hold given-up hours, oldest first, the last 62

    def add(self, hours: list[int]) -> None:
        self.hours += len(hours)
        self.days = sorted(set(self.days) | {day_text(h) for h in hours})[-62:]

    def encode(self) -> bytes:
        return orjson.dumps({"hours": self.hours, "days": self.days})

    @classmethod
    def decode(cls, raw: bytes) -> GivenUp:
        try:
            data = orjson.loads(raw)
            if not isinstance(data["days"], list):
                raise TypeError("days is not a list")
            return cls(int(data["hours"]), [str(d) for d in data["days"]])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a given-up record: {exc}") from None


class Backlog:
    """Every sensor's progress, with the rules that open, close, retry and give up hours."""

    def __init__(self, lookback_hours: int, first_sight_lookback_hours: int = 0, retry_s: float = 600.0) -> None:
        self.lookback_hours = lookback_hours
        self.first_sight_lookback_hours = min(first_sight_lookback_hours, lookback_hours)
        self.retry_s = retry_s
        self.sensors: dict[int, SensorProgress] = {}
        self.given_up = GivenUp()

    def load(self, sensors: dict[int, SensorProgress], given_up: GivenUp) -> None:
        self.sensors, self.given_up = sensors, given_up

    def seen(self, sensor_id: int, hour: int) -> None:
        """/latest shows a value for `hour` (before it is sent): open the hours between it and what is known."""
        p = self.sensors.get(sensor_id)
        if p is None:
            p = self.sensors[sensor_id] = SensorProgress()
            for h in range(hour - self.first_sight_lookback_hours, hour):
                p.open.setdefault(h, 0)
            return
        # The newest hour known to exist: acknowledged, or sent and refused (then it is open itself).
        known = p.newest if p.newest is not None else max(p.open, default=None)
        if known is not None and hour > known + 1:
            for h in range(known + 1, hour):
                p.open.setdefault(h, 0)

    def acknowledged(self, sensor_id: int, hours: list[int]) -> None:
        """Kafka has these hours' values: they are no longer missing, and `newest` moves up to them."""
        p = self.sensors.setdefault(sensor_id, SensorProgress())
        for h in hours:
            p.open.pop(h, None)
            p.not_before.pop(h, None)
        top = max(hours)
        if p.newest is None or top > p.newest:
            p.newest = top

    def failed(self, sensor_id: int, hours: list[int]) -> None:
        """Kafka did not take these hours' values: they stay (or become) missing, to be fetched again."""
        p = self.sensors.setdefault(sensor_id, SensorProgress())
        for h in hours:
            if p.newest is None or h != p.newest:
                p.open.setdefault(h, 0)

    def unanswered(self, sensor_id: int, hours: list[int], now: float) -> None:
        """Asked for, not served (not uploaded yet): asked again after a back-off that doubles each time."""
        p = self.sensors.get(sensor_id)
        if p is None:
            return
        for h in hours:
            if h in p.open:
                tries = p.open[h] = p.open[h] + 1
                p.not_before[h] = now + self.retry_s * 2 ** min(tries - 1, MAX_RETRY_DOUBLINGS)

    def expire(self, now: float) -> dict[int, list[int]]:
        """Give up the open hours older than the look-back; returns them per sensor."""
        oldest = int(now) // HOUR_S - self.lookback_hours
        expired: dict[int, list[int]] = {}
        for sensor_id, p in self.sensors.items():
            old = [h for h in p.open if h < oldest]
            for h in old:
                del p.open[h]
                p.not_before.pop(h, None)
            if old:
                expired[sensor_id] = sorted(old)
                self.given_up.add(old)
        return expired

    def due(self, now: float) -> list[tuple[int, list[int]]]:
        """Sensors with hours to ask for now, oldest missing hour first; each with its due hours, ascending."""
        found = []
        for sensor_id, p in self.sensors.items():
            hours = sorted(h for h in p.open if p.not_before.get(h, 0.0) <= now)
            if hours:
                found.append((sensor_id, hours))
        found.sort(key=lambda item: (item[1][0], item[0]))
        return found

    def summary(self, now: float) -> dict[str, Any]:
        """What is still missing, for status and metrics."""
        open_hours = [(h, s) for s, p in self.sensors.items() for h in p.open]
        oldest, oldest_sensor = min(open_hours) if open_hours else (None, None)
        return {
            "sensors": len(self.sensors),
            "sensors_with_gaps": sum(1 for p in self.sensors.values() if p.open),
            "open_sensor_hours": len(open_hours),
            "oldest_open_hour": hour_text(oldest) if oldest is not None else None,
            "oldest_open_hour_age_s": max(0, int(now) - oldest * HOUR_S) if oldest is not None else 0,
            "oldest_open_sensor": oldest_sensor,
            "given_up_hours": self.given_up.hours,
            "given_up_days": list(self.given_up.days),
        }
