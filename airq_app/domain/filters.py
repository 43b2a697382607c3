"""Configurable data-quality rules for raw measurements (pure, no I/O).

`check()` returns the first rule a measurement breaks, as a short stable reason, or None; `stuck_flag()` flags
rather than drops. It takes a measurement `validation.parse_measurement` accepted, so the time and the value's
finiteness are not checked again here. The rules, their order and their defaults: docs/stream.md, step 2 (Filter).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any

from airq_app.domain.indices import IndexConfig
from airq_app.domain.selection import Selection

DEFAULT_PARAMETERS: tuple[str, ...] = ("pm25", "pm10", "o3", "no2", "so2", "co")
DEFAULT_SENTINELS: tuple[float, ...] = (-999.0, -9999.0)
DEFAULT_PLAUSIBLE_MAX: Mapping[str, float] = MappingProxyType(
    {
        "pm1": 1000.0,
        "pm25": 1000.0,
        "pm4": 1000.0,
        "pm10": 1500.0,
        "bc": 200.0,
        "o3": 0.5,  # ppm
        "no2": 500.0,  # ppb
        "so2": 2000.0,  # ppb
        "co": 100.0,  # ppm
    }
)


@dataclass(frozen=True)
class FilterConfig:
    """Data-quality settings; build it from the `filters` block of pipeline.json with `from_dict`."""

    parameters: tuple[str, ...] = DEFAULT_PARAMETERS
    sentinels: tuple[float, ...] = DEFAULT_SENTINELS
    drop_negative: bool = True
    plausible_max: Mapping[str, float] = field(default_factory=lambda: DEFAULT_PLAUSIBLE_MAX)
    max_future_skew_s: float = 900.0
    max_age_hours: float = 72.0
    countries: tuple[str, ...] = ()  # empty: all countries
    bbox: tuple[float, float, float, float] | None = None  # (min lon, min lat, max lon, max lat)
    stuck_hours: int = 6
    indices: IndexConfig = field(default_factory=IndexConfig)  # which national index a record gets (`indices`)

    @cached_property
    def selection(self) -> Selection:
        """The parameters, countries and bbox as the pipeline's one selection rule (`airq_app.domain.selection`)."""
        return Selection(frozenset(self.parameters), frozenset(self.countries), self.bbox, frozenset())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> FilterConfig:
        """Build from a plain dict (JSON types); missing keys keep their defaults.

        ValueError names the key for an unknown key or a bad value.
        """
        d = dict(d or {})
        known = [f.name for f in fields(cls)]  # same order as the checks below
        for key in d:
            if key not in known:
                raise ValueError(f"filters: unknown key {key!r} (known: {', '.join(sorted(known))})")
        kw: dict[str, Any] = {}
        try:
            if "parameters" in d:
                kw["parameters"] = tuple(str(p).lower() for p in _seq(d["parameters"]))
            if "sentinels" in d:
                kw["sentinels"] = tuple(_number(v) for v in _seq(d["sentinels"]))
            if "drop_negative" in d:
                if not isinstance(d["drop_negative"], bool):
                    raise ValueError("must be true or false")
                kw["drop_negative"] = d["drop_negative"]
            if "plausible_max" in d:
                given = d["plausible_max"]
                if not isinstance(given, Mapping):
                    raise ValueError("must be an object of parameter → maximum")
                merged = dict(DEFAULT_PLAUSIBLE_MAX)
                merged.update({str(k).lower(): _number(v, positive=True) for k, v in given.items()})
                kw["plausible_max"] = MappingProxyType(merged)
            if "max_future_skew_s" in d:
                kw["max_future_skew_s"] = _number(d["max_future_skew_s"], non_negative=True)
            if "max_age_hours" in d:
                kw["max_age_hours"] = _number(d["max_age_hours"], positive=True)
            if "countries" in d:
                kw["countries"] = tuple(str(c).upper() for c in _seq(d["countries"]))
            if "bbox" in d:
                kw["bbox"] = _bbox(d["bbox"])
            if "stuck_hours" in d:
                v = d["stuck_hours"]
                if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                    raise ValueError("must be an integer ≥ 2")
                kw["stuck_hours"] = v
            if "indices" in d:
                v = d["indices"]
                kw["indices"] = v if isinstance(v, IndexConfig) else IndexConfig.from_dict(v)
        except ValueError as exc:
            # Keys are checked in field order, so the first given key without a result is the bad one.
            key = next((k for k in known if k in d and k not in kw), "?")
            raise ValueError(f"filters.{key}: {exc}") from None
        return cls(**kw)


def _seq(v: Any) -> Sequence[Any]:
    if isinstance(v, str | bytes) or not isinstance(v, Sequence):
        raise ValueError("must be a list")
    return v


def _number(v: Any, *, positive: bool = False, non_negative: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"{v!r} is not a finite number")
    if positive and v <= 0:
        raise ValueError(f"{v!r} must be > 0")
    if non_negative and v < 0:
        raise ValueError(f"{v!r} must be ≥ 0")
    return float(v)


def _bbox(v: Any) -> tuple[float, float, float, float] | None:
    if v is None:
        return None
    items = tuple(_number(x) for x in _seq(v))
    if len(items) != 4:
        raise ValueError("must be [min lon, min lat, max lon, max lat]")
    min_lon, min_lat, max_lon, max_lat = items
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise ValueError("must be [min lon, min lat, max lon, max lat] with min ≤ max inside ±180/±90")
    return min_lon, min_lat, max_lon, max_lat


def check(m: Mapping[str, Any], normalised_value: float | None, cfg: FilterConfig, now: datetime) -> str | None:
    """The drop reason for measurement `m` (a `Measurement` as a dict), or None when it passes.

    `m` has passed `validation.parse_measurement` (its time in `epoch`, finite float `value`).
    `normalised_value` is the value in the output unit (`units.normalise`), None when the unit is unknown.
    `now` must be timezone-aware (naive is taken as UTC).
    """
    outside = cfg.selection.reason(m)
    if outside is not None:
        return outside
    parameter = m.get("parameter")
    when = m["epoch"]
    now_s = (now.replace(tzinfo=UTC) if now.tzinfo is None else now).timestamp()
    if when > now_s + cfg.max_future_skew_s:
        return "future"
    if when < now_s - cfg.max_age_hours * 3600 and not m.get("backfill"):
        return "too_old"  # backfilled history is bounded by the de-duplication retention instead
    raw = m["value"]
    if raw in cfg.sentinels:
        return "sentinel"
    if normalised_value is None:
        return "unit_unknown"
    if not math.isfinite(normalised_value):
        return "implausible"  # a finite raw value whose conversion overflowed (e.g. 1e308 ppm in ppb)
    if cfg.drop_negative and normalised_value < 0:
        return "negative"
    limit = cfg.plausible_max.get(parameter) if parameter is not None else None
    if limit is not None and normalised_value > limit:
        return "implausible"
    return None


def stuck_flag(previous_values: Sequence[float], value: float, hours: int | None = None) -> bool:
    """True when the sensor looks stuck: `value` and the hourly values before it are all identical.

    `previous_values`: the sensor's earlier hourly values, oldest first. With `hours` (e.g.
    `FilterConfig.stuck_hours`) the last `hours` values including `value` must be identical and at least
    `hours - 1` earlier values must exist. Without it the caller has already cut the window, and every value
    given must equal `value` (an empty list is not stuck). A stuck value is flagged, never dropped.
    """
    if hours is not None:
        if hours < 2 or len(previous_values) < hours - 1:
            return False
        window = list(previous_values[len(previous_values) - (hours - 1) :])
    else:
        window = list(previous_values)
    return bool(window) and all(v == value for v in window)
