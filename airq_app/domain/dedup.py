"""The de-duplication state of a sensor, in the `sensor_history` table, bounded by time and not by sampling rate.

Keys (written while the sensor's location's messages are processed, so in that location's changelog partition):
`"{sensor}"`, the *main entry*: `newest` (epoch of the newest accepted time), `hours` and `recent` (live NowCast
hours, stuck-check values), `past` (the same for history older than the live window), `oldest` (the oldest hour
that may have a bucket); and `"{sensor}/{hour}"` (hour = epoch // 3600), one *bucket* per sensor-hour with accepted
values: `{"<second within the hour>": [[partition, offset, raw value], ...]}`, one item per revision, revision 0
first. An item names the message accepted for that revision, so a replay of it is recognised. Exactly-once, sizes
and expiry: docs/stream.md, step 5, and docs/output.md, "Exactly once".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HOUR = 3600
GRACE_S = 24 * HOUR
MAX_REVISIONS = 8  # revisions kept per (sensor, time); a further new value is filtered (`revision_limit`)
MAX_EXPIRE_PER_MESSAGE = 48  # bucket hours a single message may delete (bounded work after a long silence)

Revisions = list[list[Any]]  # [[partition, offset, raw value], ...], index = revision number


def hour_of(epoch: int) -> int:
    return epoch // HOUR


def bucket_key(sensor_id: int | str, hour: int) -> str:
    """The table key of a sensor-hour bucket (the main entry's key is the sensor id alone)."""
    return f"{sensor_id}/{hour}"


def may_have_bucket(history: Mapping[str, Any], hour: int) -> bool:
    """Whether the sensor (its main entry) can have a bucket for `hour`: every bucket is written with a main entry
    whose `newest` is at least its hour and whose `oldest` at most its hour, and buckets before `oldest` are deleted
    as it moves on. A main entry without `oldest` (written before buckets) may have any."""
    oldest = history.get("oldest")
    return oldest is None or oldest <= hour <= hour_of(int(history.get("newest", 0)))


def revisions_in(bucket: Mapping[str, Any] | None, epoch: int) -> Revisions:
    """The accepted revisions of `epoch` in its hour's bucket ([] when none)."""
    if not bucket:
        return []
    return list(bucket.get(str(epoch % HOUR), ()))


def legacy_revisions(history: Mapping[str, Any], epoch: int) -> Revisions:
    """Revisions from a main entry written before buckets existed: `seen` = {epoch: [partition, offset]}, no value
    (None: only the accepted message itself is written again; any other copy is a duplicate)."""
    accepted = (history.get("seen") or {}).get(str(epoch))
    return [[accepted[0], accepted[1], None]] if accepted else []


def find_own(revisions: Revisions, partition: int, offset: int) -> int | None:
    """The revision this very message was accepted as, or None."""
    for n, item in enumerate(revisions):
        if item[0] == partition and item[1] == offset:
            return n
    return None


def is_known_value(revisions: Revisions, raw_value: float) -> bool:
    """A copy of a value already accepted for this time (any revision; an unknown legacy value matches all)."""
    return any(item[2] is None or item[2] == raw_value for item in revisions)


def with_revision(bucket: Mapping[str, Any] | None, epoch: int, partition: int, offset: int, raw: float) -> dict:
    """The bucket with one more accepted revision for `epoch`."""
    new = dict(bucket or {})
    slot = str(epoch % HOUR)
    new[slot] = [*new.get(slot, ()), [partition, offset, raw]]
    return new


def expiry(oldest: int | None, newest: int, retention_s: float) -> tuple[list[int], int | None]:
    """(bucket hours to delete now, the new `oldest`): hours from `oldest` that are wholly more than `retention_s`
    plus the grace behind `newest`, at most `MAX_EXPIRE_PER_MESSAGE` of them."""
    if oldest is None:
        return [], None
    before = hour_of(int(newest - retention_s - GRACE_S))  # buckets of hours < before are expired
    end = min(before, oldest + MAX_EXPIRE_PER_MESSAGE)
    if end <= oldest:
        return [], oldest
    return list(range(oldest, end)), end


def prune_legacy(history: dict[str, Any], horizon: float) -> None:
    """Drop `seen` times of a pre-bucket main entry once they are behind `horizon` (the key goes when empty)."""
    seen = history.get("seen")
    if seen is None:
        return
    kept = {t: src for t, src in seen.items() if int(t) >= horizon}
    if kept:
        history["seen"] = kept
    else:
        history.pop("seen", None)
