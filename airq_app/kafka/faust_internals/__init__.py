"""Every place airq relies on faust-streaming internals (and through them aiokafka's and mode-streaming's), one
module per thing patched; each module's docstring lists the internals it uses.

- `consumer`: the hand-over of messages to the streams, seeks in the consumer's thread, its stop, commits.
- `producer`: the idempotent producer, replicated topics, the producer buffer that outlives an outage.
- `storage`: table reads and writes outside Faust's per-key path, the RocksDB store with a bounded info log.
- `tables`: the table manager and its changelog queue.
- `monitor`: the monitor without per-message statistics.

Written against `PINNED_VERSIONS`: `tests/unit/test_faust_internals.py` fails on another version or a changed
upstream object (naming the patch to re-read). The names the app uses are re-exported here.
"""

from __future__ import annotations

from importlib.metadata import version

from faust.transport.drivers import aiokafka as aiokafka_driver

from airq_app.kafka.faust_internals.consumer import Consumer, commit_offsets, resume_fetching
from airq_app.kafka.faust_internals.monitor import QuietMonitor
from airq_app.kafka.faust_internals.producer import (
    Producer,
    kafka_producer,
    leader_topic_name,
    producer_problem,
    set_producer_buffer_limit,
    set_replication,
)
from airq_app.kafka.faust_internals.storage import (
    StoreBatch,
    persisted_offset,
    read_raw,
    register_bounded_rocksdb,
    send_changelog_for,
    store_get,
    verify_writable,
)
from airq_app.kafka.faust_internals.tables import TableManager

#: The distributions whose internals the patches use, at the versions they were written against (the pins in
#: setup.cfg and constraints.txt), and the modules of this package to re-read before moving a pin.
PINNED_VERSIONS: dict[str, str] = {
    "faust-streaming": "0.15.3",
    "aiokafka": "0.14.0",
    "mode-streaming": "0.7.1",
    "rocksdict": "0.3.29",
}
RELIED_ON_BY: dict[str, tuple[str, ...]] = {
    "faust-streaming": ("consumer", "producer", "storage", "tables", "monitor"),
    "aiokafka": ("consumer", "producer"),
    "mode-streaming": ("consumer", "tables"),
    "rocksdict": ("storage",),
}


def installed_version(distribution: str = "faust-streaming") -> str:
    """The installed version of `distribution`, from its package metadata."""
    return version(distribution)


class Transport(aiokafka_driver.Transport):
    """Faust's aiokafka transport with this package's consumer and producer (`Transport.create_consumer` and
    `create_producer` make them); `AirqApp._new_transport` installs it."""

    Consumer = Consumer
    Producer = Producer


__all__ = [
    "PINNED_VERSIONS",
    "RELIED_ON_BY",
    "QuietMonitor",
    "StoreBatch",
    "TableManager",
    "Transport",
    "commit_offsets",
    "installed_version",
    "kafka_producer",
    "leader_topic_name",
    "persisted_offset",
    "producer_problem",
    "read_raw",
    "register_bounded_rocksdb",
    "resume_fetching",
    "send_changelog_for",
    "set_producer_buffer_limit",
    "set_replication",
    "store_get",
    "verify_writable",
]
