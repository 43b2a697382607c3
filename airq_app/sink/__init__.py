"""JSON Lines sink: exactly-once files from at-least-once Kafka delivery.

A partition's records go to one open file at a time, finished (fsync, rename, checkpoint) before its messages are
acknowledged; a lock file keeps two workers off one partition. The layout and the durability protocol:
docs/output.md, "Exactly once" and "The output directory".
"""

from airq_app.sink.core import JsonLinesSink, SinkClosed

__all__ = ["JsonLinesSink", "SinkClosed"]
