"""Topics, declared with pinned partition counts and created by the app (the broker never auto-creates)."""

from __future__ import annotations

from faust.types import TopicT

from airq_app.application import app, settings

MEASUREMENTS_TOPIC = settings.topic_prefix + "air_quality_telematics"
DEAD_LETTER_TOPIC = settings.topic_prefix + "air_quality_telematics_dlq"

# Raw bytes in both directions: the stream parses and validates each message itself, so that a
# garbage message becomes a dead-letter entry instead of a decode error inside Faust.


def _raw_topic(name: str) -> TopicT:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        internal=True,
    )


measurements = _raw_topic(MEASUREMENTS_TOPIC)
dead_letter = _raw_topic(DEAD_LETTER_TOPIC)


@app.task
async def declare_topics() -> None:
    """Create both topics at start-up, so a poller-only or consumer-only worker finds them too."""
    for topic in (measurements, dead_letter):
        await topic.maybe_declare()
