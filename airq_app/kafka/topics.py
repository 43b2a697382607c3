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


@dataclass(frozen=True)
class TopicNames:
    measurements: str
    dead_letter: str
    poller_election: str

    @classmethod
    def with_prefix(cls, prefix: str) -> TopicNames:
        return cls(prefix + MEASUREMENTS, prefix + DEAD_LETTER, prefix + POLLER_ELECTION)


@dataclass(frozen=True)
class Topics:
    names: TopicNames
    measurements: TopicT
    dead_letter: TopicT


def declare(app: faust.App, names: TopicNames, partitions: int) -> Topics:
    def raw(name: str) -> TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
            internal=False,  # created by airq's admin step, with airq's replication and configs
        )

    return Topics(names, raw(names.measurements), raw(names.dead_letter))
