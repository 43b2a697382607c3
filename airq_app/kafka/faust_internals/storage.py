"""Table storage: reads and writes of a table's store outside Faust's per-key path, and a bounded RocksDB store.

Faust internals relied on (faust-streaming and rocksdict at `PINNED_VERSIONS`; the fingerprints in
`tests/unit/test_faust_internals.py` name each upstream object):

- `Collection._verify_source_topic_partitions`: raises `PartitionsMismatch` before a write, so the stream can check
  both tables before writing either.
- `Table.data` (the store) for one-lookup reads (`store_get`), and `Collection.send_changelog` for a write on
  behalf of a partition outside any event (location summaries flushed when their partition is revoked).
- The RocksDB store (`faust.stores.rocksdb.Store`): `_db_for_partition` and `_dbs` (one rocksdict `Rdict` per
  partition, opened in raw mode), `persisted_offset`, and `offset_key`, the key under which
  `set_persisted_offset` keeps the changelog offset. `StoreBatch` writes as `apply_changelog_batch` +
  `set_persisted_offset` do, in one rocksdict `WriteBatch(raw_mode=True)`.
- The store's options (`RocksDBOptions.as_options`, built by `Store.__init__` as `rocksdb_options`): Faust's
  rocksdict options do not pass `max_log_file_size` / `keep_log_file_num`, so airq's store uses an options class
  that does: RocksDB writes a text `LOG` beside each partition's database and by default never rotates it away,
  so it can outgrow the data. The store is registered under `STORES.aliases`.
"""

from __future__ import annotations

from typing import Any

import rocksdict
from faust.stores import STORES
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP


def verify_writable(table: Any, source_topic: str) -> None:
    """Raise `PartitionsMismatch` when the table's changelog cannot take a write from `source_topic` yet."""
    table._verify_source_topic_partitions(source_topic)


def store_get(table: Any, key: Any) -> Any:
    """The stored value for `key` with one store lookup (`Table.get` does two)."""
    return table.data.get(key)


def send_changelog_for(table: Any, partition: int, key: Any, value: Any) -> None:
    """Queue a changelog message for `partition` without a current event (the table's own write needs one)."""
    table.send_changelog(partition, key, value)


# -- RocksDB: a store whose info LOG is bounded -------------------------------------------------------------------

BOUNDED_ROCKSDB_URL = "airq-rocksdb://"
ROCKSDB_MAX_LOG_FILE_SIZE = 1024 * 1024
ROCKSDB_KEEP_LOG_FILE_NUM = 3


class BoundedLogOptions(faust_rocksdb.RocksDBOptions):
    def as_options(self) -> Any:
        options = super().as_options()
        if self.use_rocksdict:
            options.set_max_log_file_size(ROCKSDB_MAX_LOG_FILE_SIZE)
            options.set_keep_log_file_num(ROCKSDB_KEEP_LOG_FILE_NUM)
        return options


class BoundedLogStore(faust_rocksdb.Store):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rocksdb_options = BoundedLogOptions(**(self.options or {}), use_rocksdict=self.use_rocksdict)


def register_bounded_rocksdb() -> str:
    """Make `BoundedLogStore` available to Faust; returns the store URL to configure."""
    STORES.aliases["airq-rocksdb"] = f"{__name__}:BoundedLogStore"
    return BOUNDED_ROCKSDB_URL


# -- Table writes outside Faust's per-key path (`airq_app.stream.table_buffer`) ------------------------------------


def read_raw(table: Any, partition: int, key: str, encoded_key: bytes) -> bytes | None:
    """The stored bytes of `key` in the table's `partition` (one RocksDB lookup), or None."""
    data = table.data
    if isinstance(data, faust_rocksdb.Store):
        value: bytes | None = data._db_for_partition(partition).get(encoded_key)
        return value
    return data.get(key)  # Faust's in-memory store (unit tests): keys as they are


def persisted_offset(table: Any, partition: int) -> int | None:
    """The last changelog offset the table's RocksDB `partition` holds (-1: none); None for another store."""
    data = table.data
    if not isinstance(data, faust_rocksdb.Store):
        return None
    offset = data.persisted_offset(TP(table.changelog_topic_name, partition))
    return -1 if offset is None else int(offset)


class StoreBatch:
    """Writes to one partition of a table's store, applied together by `commit`: for RocksDB one atomic write batch
    with the changelog offset they reach, as Faust's `apply_changelog_batch` + `set_persisted_offset` do."""

    def __init__(self, table: Any, partition: int) -> None:
        self.data = table.data
        self.partition = partition
        self.rocksdb = isinstance(self.data, faust_rocksdb.Store)
        self.batch = rocksdict.WriteBatch(raw_mode=True) if self.rocksdb else None
        self.items: list[tuple[str, bytes | None]] = []  # Faust's in-memory store (unit tests): keys as they are
        self.size = 0

    def add(self, key: str, encoded_key: bytes, value: bytes | None) -> None:
        """`value` None deletes the key."""
        self.size += 1
        batch = self.batch
        if batch is None:
            self.items.append((key, value))
        elif value is None:
            batch.delete(encoded_key)
        else:
            batch.put(encoded_key, value)

    def commit(self, changelog_offset: int) -> bool:
        """Apply the writes; False (nothing written) when the partition's database is not open here any more
        (revoked: its next owner recovers them from the changelog)."""
        if self.batch is None:
            for key, value in self.items:
                if value is None:
                    self.data.pop(key, None)
                else:
                    self.data[key] = value
            return True
        db = self.data._dbs.get(self.partition)
        if db is None:
            return False
        self.batch.put(faust_rocksdb.Store.offset_key, str(changelog_offset).encode())
        db.write(self.batch)
        return True
