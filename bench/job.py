"""airq's job per message as the bench's own contenders do it: the hand-written baseline (`bench.throughput`) and
the Quix Streams peer (`bench.quix_peer`) both take a message's measurements from here, with the same window.

airq's modules are imported when first used: the bench's own process need not load them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

RETENTION_S = 8760 * 3600  # the bench's de-duplication window (and the maximum age its filters accept)


def measurements_of(value: bytes) -> Iterator[dict[str, Any]]:
    """The valid measurements of one raw message (one, or a location's list), each (sensor, time) once, as airq's
    stream takes them."""
    from airq_app.domain.validation import InvalidMessage, parse_message

    try:
        items = parse_message(value)
    except InvalidMessage:
        return
    in_message: set[tuple[int, str]] = set()
    for m in items:
        if isinstance(m, InvalidMessage) or (m["sensor_id"], m["datetime_utc"]) in in_message:
            continue
        in_message.add((m["sensor_id"], m["datetime_utc"]))
        yield m
