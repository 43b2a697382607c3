"""The topics airq uses, declared on the Faust app with pinned partition counts.

Raw bytes in both directions: the stream parses and validates each message itself, so that a garbage message
becomes a dead-letter entry instead of a decode error inside Faust. Topics are created by
`AirqApp.on_first_start` (`airq_app.kafka.admin.ensure_topics`), in one place, before anything uses them; the broker
never auto-creates.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TopicT

MEASUREMENTS = "air_quality_telematics"
DEAD_LETTER = "air_quality_telematics_dlq"
POLLER_ELECTION = "airq_poller_election"  # one partition; its holder in the poller group is the polling worker
POLLER_PROGRESS = "airq_poller_progress"  # compacted, keyed by sensor id: each sensor's acknowledged ingest progress


@dataclass(frozen=True)
class TopicNames:
    measurements: str
    dead_letter: str
    poller_election: str
    poller_progress: str

    @classmethod
    def with_prefix(cls, prefix: str) -> TopicNames:
        return cls(prefix + MEASUREMENTS, prefix + DEAD_LETTER, prefix + POLLER_ELECTION, prefix + POLLER_PROGRESS)


@dataclass(frozen=True)
class Topics:
    names: TopicNames
    measurements: TopicT
    dead_letter: TopicT


def raw_topic(app: faust.App, name: str, partitions: int) -> TopicT:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=False,  # created by airq's admin step, with airq's replication and configs
    )


def declare(app: faust.App, names: TopicNames, partitions: int) -> Topics:
    return Topics(names, raw_topic(app, names.measurements, partitions), raw_topic(app, names.dead_letter, partitions))
