"""Reading and writing a sensor's de-duplication state (`airq_app.domain.dedup`) in the `sensor_history` table.

At most two reads per measurement (the sensor's main entry, and the bucket of its hour unless the main entry
shows that none exists) and, for a record written, the keys `airq_app.domain.decide` returns, through the table's
`TableBuffer`. Every key is written or deleted while one of the partition's messages is processed, and goes to
that partition's changelog, where the sensor's main entry lives too. An expired bucket is deleted only when it is
there, so a sensor with gaps sends no needless tombstones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airq_app.domain import dedup
from airq_app.stream.table_buffer import TableBuffer


def load(
    table: TableBuffer, partition: int, m: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(main entry, bucket of the measurement's hour) of the measurement's sensor, each None when absent; `m` is
    a checked measurement (`airq_app.domain.validation`: its hour is that of its `epoch`)."""
    sensor = m["sensor_id"]
    hour = dedup.hour_of(m["epoch"])
    history = table.get(partition, str(sensor))
    if history is None or not dedup.may_have_bucket(history, hour):
        return history, None  # one lookup, not two: a live sensor's next hour, or history before its oldest
    return history, table.get(partition, dedup.bucket_key(sensor, hour))


def store(table: TableBuffer, partition: int, writes: Mapping[str, dict[str, Any] | None]) -> None:
    """Apply a decision's writes: a value is stored, None deletes the key when it is present."""
    for key, value in writes.items():
        if value is not None:
            table.put(partition, key, value)
        else:
            table.delete(partition, key)
