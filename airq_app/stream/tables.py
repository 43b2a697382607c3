"""RocksDB tables, changelogged and co-partitioned with `air_quality_telematics` (key = location id).

Every table is written only while processing a message (or, for location summaries, on behalf of a partition this
worker still owns), so its changelog partition is the message's partition: the worker that owns a topic
partition owns the matching table partitions. Values are JSON objects as bytes (`airq_app.stream.table_values`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import faust

# Bounded RocksDB memory per partition DB (Faust's default block cache is 2 GiB per partition).
ROCKSDB_OPTIONS: dict[str, Any] = {
    "write_buffer_size": 2 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 8 * 1024 * 1024,
    "block_cache_size": 4 * 1024 * 1024,
    "block_cache_compressed_size": 1 * 1024 * 1024,
    # Bits per key of the bloom filters that answer "not there" without reading a block (Faust's default is 3,
    # about a third of them wrong); most lookups of an hour's bucket are for one that does not exist yet.
    "bloom_filter_size": 10,
}


@dataclass(frozen=True)
class StreamTables:
    # "{sensor id}" -> the sensor's main entry (newest time, NowCast hours, recent values) and "{sensor id}/{hour}" ->
    # the revisions accepted in that hour, with the message of each: the de-duplication state (`airq_app.domain.dedup`).
    sensor_history: faust.Table
    # location id -> {"location": {...}, "parameters": {name: latest record summary}}; served by any worker.
    latest_by_location: faust.Table


def declare(app: faust.App, partitions: int) -> StreamTables:
    def json_table(name: str, help: str) -> faust.Table:
        table = app.Table(
            name,
            key_type=str,
            value_type=bytes,  # stored and sent as is ("raw")
            partitions=partitions,
            options=dict(ROCKSDB_OPTIONS),
            help=help,
        )
        # `App.Table` is typed as the abstract TableT; what it makes is app.conf.Table, faust.Table unless configured
        # otherwise, whose `changelog_topic_name` airq uses.
        return cast(faust.Table, table)

    return StreamTables(
        json_table("sensor_history", "Per-sensor NowCast hours, recent values and hourly de-duplication buckets."),
        json_table("latest_by_location", "Latest value and AQI of each parameter at each location."),
    )
