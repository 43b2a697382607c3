"""RocksDB tables, changelogged and co-partitioned with `air_quality_telematics` (key = location id).

Every table is written only while processing a message, so its changelog partition is the message's
partition: the worker that owns a topic partition owns the matching table partitions.
"""

from __future__ import annotations

from airq_app.application import app, settings

# Bounded RocksDB memory per partition DB (Faust's default block cache is 2 GiB per partition).
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 1024 * 1024,
    "block_cache_size": 16 * 1024 * 1024,
    "block_cache_compressed_size": 4 * 1024 * 1024,
}

# (sensor id, UTC time) -> [partition, offset, epoch seconds] of the message that was accepted for it.
# Expired by event time (see agents.sweep_seen), so it grows with the number of sensors, not with time.
seen = app.Table(
    "seen",
    key_type=str,
    partitions=settings.partitions,
    options=dict(ROCKSDB_OPTIONS),
    help="Measurements already accepted, for de-duplication.",
)

# sensor id -> {"newest": epoch, "hours": {hour: value}, "recent": [values]}: NowCast input and stuck check.
sensor_history = app.Table(
    "sensor_history",
    key_type=str,
    partitions=settings.partitions,
    options=dict(ROCKSDB_OPTIONS),
    help="Last 12 hourly values and the newest time of each sensor.",
)

# location id -> {"location": {...}, "parameters": {name: latest record summary}}; served by any worker.
latest_by_location = app.Table(
    "latest_by_location",
    key_type=str,
    partitions=settings.partitions,
    options=dict(ROCKSDB_OPTIONS),
    help="Latest value and AQI of each parameter at each location.",
)
