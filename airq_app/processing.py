"""What the stream does with one valid measurement, as a pure function of the message and table state.

`decide()` returns the outcome and the new table values; the agent only reads and writes the tables and hands
the record to the sink. Exactly-once rests on the `seen` entry holding the source (partition, offset) that was
accepted: a replayed message finds its *own* entry and is written again (its earlier file never finished),
any other message for the same (sensor, time) is a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airq_app import filters, transform, units
from airq_app.validation import parse_utc

STUCK_WINDOW = 24  # recent values kept per sensor for the stuck check


@dataclass(frozen=True)
class Decision:
    outcome: str  # "write", "duplicate" or "filtered"
    reason: str | None = None  # filter reason
    record: dict[str, Any] | None = None
    seen_entry: list[int] | None = None  # new value for `seen`, when it changes
    history: dict[str, Any] | None = None  # new value for `sensor_history`, when it changes
    expired: tuple[str, ...] = ()  # `seen` keys that fell out of the sensor's de-duplication window


def filter_config(settings: Any) -> filters.FilterConfig:
    """The stream's filter rules: the `filters` section plus the `selection` (parameters, countries, bbox)."""
    return filters.FilterConfig.from_dict(
        {
            **settings.filters,
            "parameters": list(settings.parameters),
            "countries": list(settings.countries),
            "bbox": list(settings.bbox) if settings.bbox else None,
        }
    )


def seen_key(m: dict[str, Any]) -> str:
    return f"{m['sensor_id']}|{m['datetime_utc']}"


def decide(
    m: dict[str, Any],
    source: dict[str, Any],
    seen_entry: list[int] | None,
    history: dict[str, Any] | None,
    cfg: filters.FilterConfig,
    retention_s: float,
    now: datetime,
) -> Decision:
    partition, offset = source["partition"], source["offset"]
    replay = seen_entry is not None and seen_entry[0] == partition and seen_entry[1] == offset
    if seen_entry is not None and not replay:
        return Decision("duplicate")

    normalised = units.normalise(m["parameter"], m["value"], m["unit"])
    if not replay:
        # A replayed message was accepted once: it is written again whatever the clock says now.
        if normalised is None:
            return Decision("filtered", "unit_unknown")
        reason = filters.check(m, normalised[0], cfg, now)
        if reason is not None:
            return Decision("filtered", reason)
    if normalised is None:
        normalised = (m["value"], m["unit"])
    value, unit = normalised

    epoch = int(parse_utc(m["datetime_utc"]).timestamp())
    history = dict(history or {})
    newest = int(history.get("newest", epoch))
    if not replay and epoch < newest - retention_s:
        # Older than the de-duplication window of this sensor: it can no longer be told apart from a repeat.
        return Decision("filtered", "too_old")

    hours, window = transform.hourly_window(history.get("hours", {}), m["datetime_utc"], value)
    recent = list(history.get("recent", []))
    flags: list[str] = []
    if filters.stuck_flag(recent, value, hours=cfg.stuck_hours):
        flags.append("stuck")
    recent = (recent + [value])[-STUCK_WINDOW:]
    # The sensor's accepted times inside the window; older ones leave `seen`, which keeps it bounded.
    newest = max(newest, epoch)
    accepted = sorted(set(history.get("seen", [])) | {epoch})
    keep = [t for t in accepted if t >= newest - retention_s]
    expired = tuple(f"{m['sensor_id']}|{format_utc_epoch(t)}" for t in accepted if t < newest - retention_s)
    new_history = {"newest": newest, "hours": hours, "recent": recent, "seen": keep}

    aqi, basis, nowcast = transform.score(m["parameter"], value, unit, window)
    record = transform.shape_record(m, value, unit, aqi, basis, source, flags)
    if nowcast is not None:
        record["nowcast"] = nowcast
    entry = seen_entry if replay else [partition, offset, epoch]
    return Decision("write", record=record, seen_entry=entry, history=new_history, expired=expired)


def format_utc_epoch(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def location_summary(current: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
    """Merge a written record into its location's latest-values entry (newest time per parameter wins)."""
    entry = dict(current or {})
    entry["location"] = {
        "location_id": record["location_id"],
        "name": record.get("location_name"),
        "country": record.get("country"),
        "latitude": record.get("latitude"),
        "longitude": record.get("longitude"),
    }
    params = dict(entry.get("parameters", {}))
    prev = params.get(record["parameter"])
    if prev is None or prev["datetime_utc"] <= record["datetime_utc"]:
        params[record["parameter"]] = {
            "value": record["value"],
            "unit": record["unit"],
            "aqi": record.get("aqi"),
            "aqi_category": record.get("aqi_category"),
            "aqi_basis": record.get("aqi_basis"),
            "datetime_utc": record["datetime_utc"],
            "sensor_id": record["sensor_id"],
        }
    entry["parameters"] = params
    scored = [p for p in params.values() if p.get("aqi") is not None]
    top = max(scored, key=lambda p: p["aqi"], default=None)
    entry["aqi"] = top["aqi"] if top else None
    entry["aqi_category"] = top["aqi_category"] if top else None
    return entry
