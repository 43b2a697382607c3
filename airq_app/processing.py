"""What the stream does with one valid measurement, as a pure function of the message and table state.

`decide()` returns the outcome and the new table values; the agent only reads and writes the tables and hands
the record to the sink. Exactly-once rests on the `seen` entry holding the source (partition, offset) that was
accepted: a replayed message finds its *own* entry and is written again (its earlier file never finished),
any other message for the same (sensor, time) is a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airq_app import filters, transform, units
from airq_app.validation import utc_seconds

STUCK_WINDOW = 24  # recent values kept per sensor for the stuck check


@dataclass(frozen=True)
class Decision:
    outcome: str  # "write", "duplicate" or "filtered"
    reason: str | None = None  # filter reason
    record: dict[str, Any] | None = None
    history: dict[str, Any] | None = None  # new value for the sensor's `sensor_history` entry, when it changes


def decide(
    m: dict[str, Any],
    source: dict[str, Any],
    history: dict[str, Any] | None,
    cfg: filters.FilterConfig,
    retention_s: float,
    now: datetime,
) -> Decision:
    """Outcome of one valid measurement given its sensor's state.

    The sensor's state holds, besides its NowCast hours and recent values, `seen`: every accepted time within
    `retention_s` of its newest time, with the (partition, offset) of the message that was accepted for it.
    One entry per sensor keeps de-duplication to one read and one write per message, and bounded: times
    that fall out of the window are dropped as the sensor moves on.
    """
    partition, offset = source["partition"], source["offset"]
    epoch = utc_seconds(m["datetime_utc"])
    history = history or {}
    seen: dict[str, list[int]] = history.get("seen", {})
    accepted = seen.get(str(epoch))
    replay = accepted is not None and accepted[0] == partition and accepted[1] == offset
    if accepted is not None and not replay:
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
    newest = max(newest, epoch)
    horizon = newest - retention_s
    kept = {t: src for t, src in seen.items() if int(t) >= horizon}
    kept[str(epoch)] = [partition, offset]
    new_history = {"newest": newest, "hours": hours, "recent": recent, "seen": kept}

    aqi, basis, nowcast = transform.score(m["parameter"], value, unit, window)
    local = transform.local_index(m, unit, window, cfg.indices)
    record = transform.shape_record(m, value, unit, aqi, basis, source, flags, local_index=local)
    if nowcast is not None:
        record["nowcast"] = nowcast
    return Decision("write", record=record, history=new_history)


def location_summary(current: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any] | None:
    """Merge a written record into its location's latest-values entry; None when it is not newer.

    Per parameter: the latest value, its US AQI and its national sub-index (`local_index`); for the location: the
    highest AQI and the overall national index (`transform.overall_local_index`: the worst sub-index, or the AQHI).
    """
    prev = (current or {}).get("parameters", {}).get(record["parameter"])
    if prev is not None and prev["datetime_utc"] > record["datetime_utc"]:
        return None
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
            "local_index": record.get("local_index"),
        }
    entry["parameters"] = params
    scored = [p for p in params.values() if p.get("aqi") is not None]
    top = max(scored, key=lambda p: p["aqi"], default=None)
    entry["aqi"] = top["aqi"] if top else None
    entry["aqi_category"] = top["aqi_category"] if top else None
    prefer = (record.get("local_index") or {}).get("index")
    local = {name: p.get("local_index") for name, p in params.items()}
    entry["local_index"] = transform.overall_local_index(local, prefer)
    return entry
