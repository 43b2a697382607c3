"""Dead-letter entries stay sendable whatever the message was."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from airq_app.stream.dead_letter import MAX_VALUE_BYTES, dead_letter_entry

pytestmark = pytest.mark.unit


def message(value: bytes | None, key: bytes | None = b"7") -> SimpleNamespace:
    return SimpleNamespace(value=value, key=key, topic="t", partition=3, offset=41, timestamp=1.0)


def test_a_near_1_mb_message_is_kept_truncated_with_its_size_and_offset() -> None:
    # JSON escaping makes a value of quotes and control characters up to six times longer.
    raw = b'"\x01' * 475_000
    entry = dead_letter_entry(message(raw), "not_json: ...")
    assert len(entry) < 8 * MAX_VALUE_BYTES < 1_000_000
    decoded = orjson.loads(entry)
    assert decoded["value_truncated"] is True and decoded["value_size"] == len(raw)
    assert decoded["source"] == {"topic": "t", "partition": 3, "offset": 41, "timestamp": 1.0}


def test_small_values_are_kept_whole_and_binary_as_base64() -> None:
    assert orjson.loads(dead_letter_entry(message(b"hello"), "r"))["value"] == "hello"
    binary = orjson.loads(dead_letter_entry(message(b"\xff\xfe"), "r"))
    assert binary["value"] is None and binary["value_base64"] == "//4="
    assert orjson.loads(dead_letter_entry(message(None, key=None), "r"))["value"] is None
