"""The output record: one definition of a written line (docs/output.md lists its fields and their meaning).

`scoring.shape_record` builds it, `decide` adds the revision, the stream writes it and summarises it per location,
the backfill writes it through the same stream. A `TypedDict`: the stream keeps plain dicts (orjson writes them
as they are), and the type checker holds every reader to these fields.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Source(TypedDict):
    """Where the measurement came from: its message's topic, partition and offset."""

    topic: str | None
    partition: int
    offset: int


class OutputRecord(TypedDict):
    """One line of `output/date=*/part-*.jsonl`."""

    sensor_id: int
    location_id: int
    location_name: str | None
    country: str | None
    latitude: float | None
    longitude: float | None
    parameter: str
    parameter_id: int | None
    value: float
    unit: str
    raw_value: float
    raw_unit: str
    datetime_utc: str
    datetime_local: str | None
    timezone: str | None
    provider: str | None
    aqi: int | None
    aqi_category: str | None
    aqi_basis: str | None
    aqi_table: str | None
    nowcast: float | None
    flags: list[str]
    source: Source
    processed_at: str
    local_index: dict[str, Any] | None
    revision: NotRequired[int]  # set by `decide`: 0 for a first value, then 1, 2, ... for corrections
    previous_value: NotRequired[float | None]  # the value a correction replaces
