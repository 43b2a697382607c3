"""UTC instants as airq reads and writes them: one parser, one format, one place that decides what is invalid.

Input is ISO 8601 (`...Z`, `+00:00` or a local offset; naive means UTC); output is always `YYYY-MM-DDTHH:MM:SSZ`
(fractions dropped). An instant outside what UTC `datetime` represents (`9999-12-31T23:59:59-01:00`) is a
`ValueError` like unparseable text. The string functions cache short strings: a cycle's measurements share a few
dozen hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TEXT = 64  # the longest instant `fromisoformat` reads ("...T00:00:00.000000+00:00:00.000000") has 42
_SECOND = timedelta(seconds=1)


def parse_utc(value: str | datetime) -> datetime:
    """An ISO 8601 instant (`Z`, `+00:00` or any offset; naive taken as UTC) as an aware UTC datetime.

    ValueError when `value` is not such an instant, including instants outside the range of `datetime` in UTC.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > MAX_TEXT:
            raise ValueError(f"not an ISO 8601 instant: {value[:40]!r}")
        if text[-1] in "Zz":
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)  # ValueError for junk
    else:
        raise ValueError(f"not an ISO 8601 instant: {type(value).__name__}")
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"instant outside the representable range: {dt.isoformat()}") from None


def parse_utc_or_none(value: Any) -> datetime | None:
    """`parse_utc`, or None for anything that is not an instant (None, numbers, junk, out of range)."""
    try:
        return parse_utc(value)
    except ValueError:
        return None


def format_utc(dt: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` (fractions dropped, years zero-padded); naive is taken as UTC.

    ValueError when an aware time cannot be converted to UTC.
    """
    dt = parse_utc(dt)
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}Z"


@lru_cache(maxsize=65536)
def _normalise(text: str) -> str:
    return format_utc(parse_utc(text))


def normalise_utc(text: str) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` for an ISO 8601 instant; ValueError when it is not one (cached)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise ValueError(f"not an ISO 8601 instant: {str(text)[:40]!r}")
    return _normalise(text)


def normalise_utc_or_none(value: Any) -> str | None:
    """`normalise_utc` of a string or `format_utc` of a datetime, or None for anything else."""
    try:
        return format_utc(value) if isinstance(value, datetime) else normalise_utc(value)
    except ValueError:
        return None


def epoch_seconds(dt: datetime) -> int:
    """Whole seconds since 1970-01-01T00:00:00Z, rounded down (naive is taken as UTC)."""
    return (parse_utc(dt) - EPOCH) // _SECOND


@lru_cache(maxsize=65536)
def _utc_seconds(text: str) -> int:
    return epoch_seconds(parse_utc(text))


def utc_seconds(text: str) -> int:
    """Seconds since the epoch of an ISO 8601 instant, rounded down; ValueError when it is not one (cached)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise ValueError(f"not an ISO 8601 instant: {str(text)[:40]!r}")
    return _utc_seconds(text)


@lru_cache(maxsize=65536)
def _utc_instant(text: str) -> tuple[str, int]:
    dt = parse_utc(text)
    return format_utc(dt), epoch_seconds(dt)


def utc_instant(text: str) -> tuple[str, int]:
    """(`YYYY-MM-DDTHH:MM:SSZ`, whole seconds since the epoch) of an ISO 8601 instant, both from one parse;
    ValueError when it is not one (cached). What a message's time is read as, once, at validation."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise ValueError(f"not an ISO 8601 instant: {str(text)[:40]!r}")
    return _utc_instant(text)


@lru_cache(maxsize=8192)
def format_epoch(seconds: int) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` of whole seconds since the epoch (cached: hour keys and the clock repeat)."""
    return format_utc(EPOCH + timedelta(seconds=seconds))


def now_utc() -> str:
    """The clock as `YYYY-MM-DDTHH:MM:SSZ`."""
    return format_utc(datetime.now(UTC))
