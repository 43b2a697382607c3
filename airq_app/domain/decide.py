"""What the stream does with one valid measurement, as a pure function of the message and table state.

`decide()` returns the outcome, the record and the table writes; the agent only reads and writes the tables and
hands the record to the sink. The state it reads is `airq_app.domain.dedup`'s; backfilled messages skip
`filters.max_age_hours` and are scored from their own window (`past`), so history never moves the live NowCast
backwards. The rules: docs/stream.md, steps 4-5, and docs/output.md, "Exactly once".
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airq_app.domain import dedup, filters, scoring, units
from airq_app.domain.record import OutputRecord

STUCK_WINDOW = 24  # recent values kept per sensor for the stuck check
LIVE_WINDOW_S = 24 * 3600  # values this far behind the sensor's newest one feed its live hours; older ones `past`


@dataclass(frozen=True)
class Decision:
    outcome: str  # "write", "duplicate" or "filtered"
    reason: str | None = None  # filter reason
    record: OutputRecord | None = None
    history: dict[str, Any] | None = None  # new main entry of the sensor (None: unchanged)
    # Every `sensor_history` key to write: the main entry, the bucket, and expired buckets (None: delete if present).
    writes: dict[str, dict[str, Any] | None] = field(default_factory=dict)


def decide(
    m: dict[str, Any],
    source: dict[str, Any],
    history: dict[str, Any] | None,
    cfg: filters.FilterConfig,
    retention_s: float,
    now: datetime,
    bucket: dict[str, Any] | None = None,
) -> Decision:
    """Outcome of one valid measurement given its sensor's state.

    `m` is a measurement as `validation.parse_message` returns it: normalised `datetime_utc`, its time in `epoch`.
    `history` is the sensor's main entry and `bucket` the bucket of the measurement's hour (`dedup.bucket_key`),
    either None when absent. Values more than `retention_s` behind the sensor's newest time are `too_old`.
    """
    partition, offset = source["partition"], source["offset"]
    epoch = m["epoch"]
    raw = float(m["value"])
    history = history or {}
    revisions = dedup.revisions_in(bucket, epoch) or dedup.legacy_revisions(history, epoch)
    own = dedup.find_own(revisions, partition, offset)
    replay = own is not None
    if not replay and revisions:
        if dedup.is_known_value(revisions, raw):
            return Decision("duplicate")
        if len(revisions) >= dedup.MAX_REVISIONS:
            return Decision("filtered", "revision_limit")

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

    revision = own if own is not None else len(revisions)
    previous = revisions[revision - 1][2] if revision > 0 else None
    live = epoch > newest - LIVE_WINDOW_S
    context: dict[str, Any] = history if live else history.get("past", {})
    hours, window = scoring.hourly_window(context.get("hours", {}), epoch, value)
    recent = list(context.get("recent", []))
    flags: list[str] = []
    if filters.stuck_flag(recent, value, hours=cfg.stuck_hours):
        flags.append("stuck")

    writes: dict[str, dict[str, Any] | None] = {}
    new_history: dict[str, Any] | None = None
    if not replay:
        # A new value (or revision): the state takes it.
        if revision == 0:
            recent = (recent + [value])[-STUCK_WINDOW:]
        new_history = dict(history)
        if live:
            new_history["hours"], new_history["recent"] = hours, recent
        else:
            new_history["past"] = {"hours": hours, "recent": recent}
        newest = max(newest, epoch)
        new_history["newest"] = newest
        hour = dedup.hour_of(epoch)
        oldest = history.get("oldest")
        expired, oldest = dedup.expiry(oldest, newest, retention_s)
        new_history["oldest"] = hour if oldest is None else min(oldest, hour)
        dedup.prune_legacy(new_history, newest - retention_s)
        sensor = m["sensor_id"]
        writes[str(sensor)] = new_history
        writes[dedup.bucket_key(sensor, hour)] = dedup.with_revision(bucket, epoch, partition, offset, raw)
        for old in expired:
            writes[dedup.bucket_key(sensor, old)] = None
    else:
        # A replay changes nothing, but the state that accepted it is written again: the first time it went to this
        # worker's RocksDB at once and to the changelog only later, and a SIGKILL in between leaves it on this disk
        # alone. Its file must not be finished before the changelog holds it, or the partition's next owner would
        # accept a later copy as new.
        sensor = m["sensor_id"]
        if history:
            writes[str(sensor)] = history
        if bucket is not None:
            writes[dedup.bucket_key(sensor, dedup.hour_of(epoch))] = bucket

    aqi, basis, nowcast = scoring.score(m["parameter"], value, unit, window)
    local = scoring.local_index(m, unit, window, cfg.indices)
    record = scoring.shape_record(m, value, unit, aqi, basis, source, flags, local_index=local)
    if nowcast is not None:
        record["nowcast"] = nowcast
    record["revision"] = revision
    record["previous_value"] = previous
    return Decision("write", record=record, history=new_history, writes=writes)


def decide_in(
    state: MutableMapping[str, dict[str, Any]],
    m: dict[str, Any],
    source: dict[str, Any],
    cfg: filters.FilterConfig,
    retention_s: float,
    now: datetime,
) -> Decision:
    """`decide` against a plain mapping of key -> state value (tests, benchmarks), with its writes applied."""
    sensor = m["sensor_id"]
    bucket = state.get(dedup.bucket_key(sensor, dedup.hour_of(m["epoch"])))
    d = decide(m, source, state.get(str(sensor)), cfg, retention_s, now, bucket)
    for key, value in d.writes.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return d


def location_summary(current: dict[str, Any] | None, record: OutputRecord) -> dict[str, Any] | None:
    """Merge a written record into its location's latest-values entry; None when it is not newer.

    Per parameter: the latest value, its US AQI and its national sub-index (`local_index`); for the location: the
    highest AQI and the overall national index (`scoring.overall_local_index`: the worst sub-index, or the AQHI).
    """
    return merge_location(current, (record,))


def merge_location(current: dict[str, Any] | None, records: Iterable[OutputRecord]) -> dict[str, Any] | None:
    """`location_summary` of several records of one location at once (one message's): the same entry as merging
    them one by one, with the location's figures computed once; None when none is newer than what `current` shows.
    """
    params: dict[str, Any] = (current or {}).get("parameters", {})
    newest: OutputRecord | None = None
    for record in records:
        shown = params.get(record["parameter"])
        if shown is not None and shown["datetime_utc"] > record["datetime_utc"]:
            continue
        if newest is None:
            params = dict(params)  # copied once, at the first record that changes it
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
        newest = record
    if newest is None:
        return None
    entry = dict(current or {})
    entry["location"] = {
        "location_id": newest["location_id"],
        "name": newest.get("location_name"),
        "country": newest.get("country"),
        "latitude": newest.get("latitude"),
        "longitude": newest.get("longitude"),
    }
    entry["parameters"] = params
    scored = [p for p in params.values() if p.get("aqi") is not None]
    top = max(scored, key=lambda p: p["aqi"], default=None)
    entry["aqi"] = top["aqi"] if top else None
    entry["aqi_category"] = top["aqi_category"] if top else None
    prefer = (newest.get("local_index") or {}).get("index")
    local = {name: p.get("local_index") for name, p in params.items()}
    entry["local_index"] = scoring.overall_local_index(local, prefer)
    return entry
