"""The simulator's switches: the world's shape (`WorldConfig`) and the faults it injects (`Faults`).

Both are plain dataclasses so tests build them directly and the control endpoints change them at runtime; they hold
no server state, which lives in `state.Simulator`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

HOUR = 3600


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
    kinds: list[str] | None = None  # path kinds (route names, "archive") request-level faults apply to; None = all
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
    # Providers correct values after publishing them: this share of sensor-hours (chosen from the seed) gets one
    # new value once revision_delay_s of world-clock time has passed since the sensor-hour was first served.
    revision_rate: float = 0.0
    revision_delay_s: float = 20.0
    archive_lag_hours: int = 0  # the archive (/records/...) ends this many hours before the world clock's hour
    # Networks that upload in batches: this share of sensors (chosen from the seed) posts every 2, 3 or 4 hours, so
    # their /latest jumps that many hours at once and the hours between appear only in /sensors/{id}/hours.
    batch_fraction: float = 0.0
    # Data-quality faults real networks show (see `quality`), chosen from the seed, one episode per 72-hour cycle:
    stuck_rate: float = 0.0  # share of sensors that repeat one value for stuck_hours hours, then recover
    stuck_hours: int = 8  # 2 to 48
    spike_rate: float = 0.0  # share of sensor-hours that jump to a spike for one hour (at most 0.25)
    pm25_gt_pm10_rate: float = 0.0  # share of locations with PM2.5 and PM10 whose PM2.5 exceeds PM10 for some hours
    flag_rate: float = 0.0  # share of locations with flagged periods (/v3/locations/{id}/flags, /v3/sensors/{id}/flags)
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.locations <= 20_000:
            raise ValueError("locations must be between 1 and 20000")
        if self.minute_seconds <= 0:
            raise ValueError("minute_seconds must be positive")
        self.update(**{name: getattr(self, name) for name in RUNTIME_OPTIONS})

    def update(self, **changes: Any) -> None:
        """Change the options that may change while the server runs (`POST /_sim/world`), checked."""
        unknown = set(changes) - set(RUNTIME_OPTIONS)
        if unknown:
            raise ValueError(f"unknown or fixed world option(s): {', '.join(sorted(unknown))}")
        values = {name: RUNTIME_OPTIONS[name](value) for name, value in changes.items()}
        for name, value in values.items():
            lo, hi = OPTION_RANGES.get(name, (0, None))
            if hi is None and value < lo:
                raise ValueError(f"{name} must not be negative")
            if hi is not None and not lo <= value <= hi:
                raise ValueError(f"{name} must be within [{lo:g}, {hi:g}]")
        for name, value in values.items():
            setattr(self, name, value)


# World options that can change at runtime, with their types.
RUNTIME_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "revision_rate": float,
    "revision_delay_s": float,
    "archive_lag_hours": int,
    "batch_fraction": float,
    "stuck_rate": float,
    "stuck_hours": int,
    "spike_rate": float,
    "pm25_gt_pm10_rate": float,
    "flag_rate": float,
}

# (lowest, highest) of runtime options; those not listed must not be negative.
OPTION_RANGES: dict[str, tuple[float, float | None]] = {
    "revision_rate": (0, 1),
    "batch_fraction": (0, 1),
    "stuck_rate": (0, 1),
    "stuck_hours": (2, 48),
    "spike_rate": (0, 0.25),  # a spike needs normal neighbours: at most one hour in four
    "pm25_gt_pm10_rate": (0, 1),
    "flag_rate": (0, 1),
}
