"""RocksDB tables, changelogged and co-partitioned with `air_quality_telematics` (key = location id).

Every table is written only while processing a message, so its changelog partition is the message's
partition: the worker that owns a topic partition owns the matching table partitions.

Values are JSON objects as bytes; `airq_app.table_values` reads and writes them.
"""

from __future__ import annotations

from faust.types import TableT

from airq_app.application import app, settings
from airq_app.settings import ROCKSDB_OPTIONS
from airq_app.table_values import LocationSummaries


def _json_table(name: str, help: str) -> TableT:
    return app.Table(
        name,
        key_type=str,
        value_type=bytes,  # stored and sent as is ("raw")
        partitions=settings.partitions,
        options=dict(ROCKSDB_OPTIONS),
        help=help,
    )


# sensor id -> {"newest": epoch, "hours": {hour: value}, "recent": [values], "seen": {epoch: [partition, offset]}}:
# the de-duplication window (times accepted within `dedup.retention_hours` of the newest), the NowCast input
# and the stuck check, in one entry so that each message costs one read and one write.
sensor_history = _json_table(
    "sensor_history", "De-duplication window, last 12 hourly values and recent values of each sensor."
)

# location id -> {"location": {...}, "parameters": {name: latest record summary}}; served by any worker.
latest_by_location = _json_table("latest_by_location", "Latest value and AQI of each parameter at each location.")


location_summaries = LocationSummaries(latest_by_location)
