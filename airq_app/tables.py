"""RocksDB tables, changelogged and co-partitioned with `air_quality_telematics` (key = location id).

Every table is written only while processing a message, so its changelog partition is the message's
partition: the worker that owns a topic partition owns the matching table partitions.
"""

from __future__ import annotations

from airq_app.application import app, settings
from airq_app.settings import ROCKSDB_OPTIONS

# sensor id -> {"newest": epoch, "hours": {hour: value}, "recent": [values], "seen": {epoch: [partition, offset]}}:
# the de-duplication window (times accepted within `dedup.retention_hours` of the newest), the NowCast input
# and the stuck check, in one entry so that each message costs one read and one write.
sensor_history = app.Table(
    "sensor_history",
    key_type=str,
    partitions=settings.partitions,
    options=dict(ROCKSDB_OPTIONS),
    help="De-duplication window, last 12 hourly values and recent values of each sensor.",
)

# location id -> {"location": {...}, "parameters": {name: latest record summary}}; served by any worker.
latest_by_location = app.Table(
    "latest_by_location",
    key_type=str,
    partitions=settings.partitions,
    options=dict(ROCKSDB_OPTIONS),
    help="Latest value and AQI of each parameter at each location.",
)
