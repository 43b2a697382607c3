"""Parsing and validating raw messages from `air_quality_telematics` (pure; no I/O).

An unusable message raises `InvalidMessage` (`category: detail`: `empty_message`, `not_json`, `wrong_schema`,
`bad_coordinates`, `bad_datetime`), which the agent dead-letters. Plain dicts are checked against tables built once
from the `Measurement` record (the hot path builds no record); `backfill` must be a boolean (False when absent). A
checked measurement carries `datetime_utc` as `...Z` and `epoch`, so no later step parses the time again.
"""

from __future__ import annotations

import math
import typing
from types import UnionType
from typing import Any

import orjson

from airq_app.domain.measurement import FIELD_TYPES
from airq_app.domain.timeutil import utc_instant

__all__ = [
    "OPTIONAL",
    "REQUIRED",
    "InvalidMessage",
    "check_measurement",
    "parse_measurement",
    "parse_message",
]


def _field_checks(fields: dict[str, Any]) -> tuple[dict[str, tuple[type, ...]], dict[str, tuple[type, ...]]]:
    """(required, optional): each field's accepted JSON types, from the record's field types. A field whose type
    admits None is optional; a float field takes an int too (JSON has one kind of number)."""
    required: dict[str, tuple[type, ...]] = {}
    optional: dict[str, tuple[type, ...]] = {}
    for name, hint in fields.items():
        union = typing.get_origin(hint) in (typing.Union, UnionType)
        members = typing.get_args(hint) if union else (hint,)
        accepted = tuple(t for t in members if t is not type(None))
        table = optional if len(accepted) < len(members) else required
        table[name] = (int, *accepted) if float in accepted else accepted
    return required, optional


REQUIRED, OPTIONAL = _field_checks(FIELD_TYPES)


class InvalidMessage(ValueError):
    """The message is not a usable measurement; `str()` is the dead-letter reason."""


MAX_BATCH = 10_000  # measurements in one message (a location's sensors over a poll: a few dozen)


def _decode(raw: bytes | str | None) -> Any:
    if raw is None or raw == b"" or raw == "":
        raise InvalidMessage("empty_message: no value")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"not_json: {exc}") from None


def parse_measurement(raw: bytes | str | None) -> dict[str, Any]:
    """Decode and check one message; return the measurement with `datetime_utc` normalised to `...Z` and its
    `epoch`."""
    return check_measurement(_decode(raw))


def parse_message(raw: bytes | str | None) -> list[dict[str, Any] | InvalidMessage]:
    """Decode one message: a measurement object, or a list of them (one location's measurements of one poll).

    Each element is checked on its own: a bad one is returned as its `InvalidMessage`, the others stay usable.
    """
    data = _decode(raw)
    if not isinstance(data, list):
        return [check_measurement(data)]
    if not data:
        raise InvalidMessage("empty_message: an empty list")
    if len(data) > MAX_BATCH:
        raise InvalidMessage(f"wrong_schema: {len(data)} measurements in one message (at most {MAX_BATCH})")
    out: list[dict[str, Any] | InvalidMessage] = []
    for i, item in enumerate(data):
        try:
            out.append(check_measurement(item))
        except InvalidMessage as exc:
            out.append(InvalidMessage(f"{exc} (element {i})"))
    return out


def check_measurement(data: Any) -> dict[str, Any]:
    """Check one decoded measurement; return it with `datetime_utc` normalised to `...Z` and its `epoch`."""
    if not isinstance(data, dict):
        raise InvalidMessage(f"wrong_schema: expected a JSON object, got {type(data).__name__}")
    # Faust records may carry their own metadata; it is not part of the measurement.
    data.pop("__faust", None)
    for name, types in REQUIRED.items():
        value = data.get(name)
        if value is None:
            raise InvalidMessage(f"wrong_schema: missing field {name}")
        if isinstance(value, bool) or not isinstance(value, types):
            raise InvalidMessage(f"wrong_schema: {name} has type {type(value).__name__}")
    for name, types in OPTIONAL.items():
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise InvalidMessage(f"wrong_schema: {name} has type {type(value).__name__}")
        data.setdefault(name, None)
    backfill = data.get("backfill")
    if backfill is not None and not isinstance(backfill, bool):
        raise InvalidMessage(f"wrong_schema: backfill has type {type(backfill).__name__}")
    data["backfill"] = bool(backfill)
    if not math.isfinite(data["value"]):
        raise InvalidMessage("wrong_schema: value is not a finite number")
    data["value"] = float(data["value"])
    for coord, bound in (("latitude", 90.0), ("longitude", 180.0)):
        if data[coord] is not None:
            data[coord] = float(data[coord])
            if not -bound <= data[coord] <= bound:  # also NaN and infinity
                raise InvalidMessage(f"bad_coordinates: {coord} {data[coord]!r} is outside [-{bound:g}, {bound:g}]")
    if data["sensor_id"] <= 0 or data["location_id"] <= 0:
        raise InvalidMessage("wrong_schema: ids must be positive")
    if not data["parameter"].strip():
        raise InvalidMessage("wrong_schema: empty parameter")
    try:
        data["datetime_utc"], data["epoch"] = utc_instant(data["datetime_utc"])
    except ValueError:
        raise InvalidMessage(f"bad_datetime: {data['datetime_utc'][:40]!r}") from None
    return data
