"""Dead-letter entries: the original message (bytes or text), the reason, and where it came from.

An entry must itself fit in a Kafka message: JSON escaping can multiply a near-1 MB garbage value several times,
so a value over `MAX_VALUE_BYTES` is kept truncated, with its full size, and found again by its source offset.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson

MAX_VALUE_BYTES = 64 * 1024


def dead_letter_entry(msg: Any, reason: str, now: datetime | None = None) -> bytes:
    raw: bytes | None = msg.value if isinstance(msg.value, bytes | None) else bytes(msg.value)
    entry: dict[str, Any] = {
        "reason": reason,
        "source": {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset, "timestamp": msg.timestamp},
        "key": msg.key.decode("utf-8", "replace")[:1024] if isinstance(msg.key, bytes) else msg.key,
        "dead_lettered_at": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if raw is not None and len(raw) > MAX_VALUE_BYTES:
        entry["value_truncated"] = True
        entry["value_size"] = len(raw)
        raw = raw[:MAX_VALUE_BYTES]
    try:
        entry["value"] = raw.decode("utf-8") if raw is not None else None
    except UnicodeDecodeError:
        entry["value"] = None
        entry["value_base64"] = base64.b64encode(raw).decode("ascii") if raw is not None else None
    return orjson.dumps(entry)
