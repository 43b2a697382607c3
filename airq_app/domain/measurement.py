"""The message on `air_quality_telematics`: one definition, the `Measurement` record, and the field table derived
from it.

The poller and the backfill write each measurement as the record's fields (`message`); the stream reads messages
as bytes and checks them against the same fields (`airq_app.domain.validation`, from `FIELD_TYPES`), since any
producer may write to the topic. A field added here is sent and checked without another edit.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

import faust


class Measurement(faust.Record, serializer="json", allow_blessed_key=False):
    """One raw OpenAQ measurement as the poller saw it (topic `air_quality_telematics`).

    Values and units are exactly as OpenAQ reported them; normalisation happens in the stream. A field whose type
    admits None is optional (absent or null); the others are required.
    """

    location_id: int
    sensor_id: int
    parameter: str  # OpenAQ parameter name: pm25, pm10, o3, no2, so2, co, ...
    value: float
    unit: str  # as reported: "µg/m³", "ppm", "ppb", ...
    datetime_utc: str  # ISO 8601 ending in Z: end of the measurement period
    parameter_id: int | None = None
    datetime_local: str | None = None
    location_name: str | None = None
    country: str | None = None  # ISO 3166 alpha-2
    latitude: float | None = None
    longitude: float | None = None
    timezone: str | None = None
    provider: str | None = None
    fetched_at: str | None = None  # ISO 8601 Z: when the poller received it


_HINTS = typing.get_type_hints(Measurement)
FIELD_TYPES: dict[str, Any] = {name: _HINTS[name] for name in Measurement.__annotations__}
"""The record's fields in order, each with its type (`int`, `str | None`, ...): the message's schema."""
MEASUREMENT_FIELDS: tuple[str, ...] = tuple(FIELD_TYPES)


def message(m: Mapping[str, Any]) -> dict[str, Any]:
    """The message body of measurement `m`: every field of the record, in its order, as plain JSON values without
    Faust's metadata; keys of `m` that are no field are left out. TypeError when a required field is missing."""
    return Measurement(**{k: m[k] for k in MEASUREMENT_FIELDS if k in m}).asdict()
