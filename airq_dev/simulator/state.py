"""Server state: the world, counters of what was requested and served, rate-limit windows, the repeat cache.

Tests read it from another thread while the server's event loop writes it, hence the locks.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from airq_dev.simulator.config import HOUR, RUNTIME_OPTIONS, Faults, WorldConfig
from airq_dev.simulator.world import World


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
        # every distinct value served for a (sensor id, datetime utc), in the order first served
        self.values: dict[tuple[int, str], list[float]] = {}
        self.values_dropped = 0
        # archive files served: (location id, "YYYY-MM-DD") -> [requests, rows in the last one]; and 404s
        self.archive_files: dict[tuple[int, str], list[int]] = {}
        self.archive_not_found = 0

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
                key = (row[0], row[1])
                seen = self.values.get(key)
                if seen is None:
                    if len(self.values) < self.max_served:
                        self.values[key] = [row[2]]
                    else:
                        self.values_dropped += 1
                elif row[2] not in seen:
                    seen.append(row[2])

    def record_archive_file(self, location_id: int, day: str, rows: int) -> None:
        with self.lock:
            entry = self.archive_files.setdefault((location_id, day), [0, 0])
            entry[0] += 1
            entry[1] = rows

    def values_snapshot(self, revised_only: bool, sensor_id: int | None) -> dict[str, Any]:
        """`{"values": [[sensor_id, datetime_utc, [value, ...]], ...], "keys", "revised", "dropped"}`."""
        with self.lock:
            items = [
                [sid, dt, list(vals)]
                for (sid, dt), vals in self.values.items()
                if (not revised_only or len(vals) > 1) and (sensor_id is None or sid == sensor_id)
            ]
            revised = sum(1 for vals in self.values.values() if len(vals) > 1)
            return {"values": items, "keys": len(self.values), "revised": revised, "dropped": self.values_dropped}

    def archive_snapshot(self) -> dict[str, Any]:
        """`{"files": [{"location_id", "day", "requests", "rows"}, ...] (sorted), "not_found"}`."""
        with self.lock:
            files = [
                {"location_id": loc, "day": day, "requests": n, "rows": rows}
                for (loc, day), (n, rows) in sorted(self.archive_files.items())
            ]
            return {"files": files, "not_found": self.archive_not_found}

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
                "values_revised": sum(1 for vals in self.values.values() if len(vals) > 1),
                "archive_files": len(self.archive_files),
                "archive_not_found": self.archive_not_found,
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

    def set_world(self, **changes: Any) -> dict[str, Any]:
        """Change the world options that may change at runtime (`RUNTIME_OPTIONS`); returns them all."""
        with self.lock:
            self.config.update(**changes)
            return {name: getattr(self.config, name) for name in RUNTIME_OPTIONS}

    def quality_report(
        self, start: str | None = None, end: str | None = None, location_ids: list[int] | None = None
    ) -> dict[str, Any]:
        """The data-quality faults (`quality`) whose hours, as period ends, fall in [start, end] (UTC ISO datetimes;
        by default the 72 hours up to the world clock's hour, at most 31 days), for the locations asked or all."""
        world = self.world
        hi = world.now_hour() if end is None else math.floor(_epoch(end) / HOUR)
        lo = hi - 71 if start is None else math.ceil(_epoch(start) / HOUR)
        if hi < lo or hi - lo >= 31 * 24:
            raise ValueError("the window must run forwards and span at most 31 days")
        if location_ids is None:
            locations = world.locations
        else:
            unknown = [i for i in location_ids if i not in world.by_location]
            if unknown:
                raise ValueError(f"unknown location id(s): {', '.join(map(str, unknown))}")
            locations = [world.by_location[i] for i in location_ids]
        return world.quality.report(lo, hi, locations)

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


def _epoch(text: str) -> float:
    """Epoch seconds of an ISO datetime; UTC when it has no offset."""
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()


SIM_KEY: web.AppKey[Simulator] = web.AppKey("simulator", Simulator)
ServedRows = list[tuple[int, str, float, str]]
SERVED_KEY: web.RequestKey[ServedRows] = web.RequestKey("served", list)  # rows a handler put in its response
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
