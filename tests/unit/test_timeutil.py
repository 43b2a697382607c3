"""The one place airq reads and writes UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from airq_app.domain import timeutil

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text",
    [
        "2025-06-01T11:00:00Z",
        "2025-06-01T11:00:00z",
        "2025-06-01T11:00:00+00:00",
        "2025-06-01T11:00:00",
        "2025-06-01T13:00:00+02:00",
        "2025-06-01T06:00:00-0500",
        "2025-06-01T11:00:00.000Z",
        " 2025-06-01T11:00:00Z ",
    ],
)
def test_parse_utc(text: str) -> None:
    dt = timeutil.parse_utc(text)
    assert dt == datetime(2025, 6, 1, 11, 0, 0, tzinfo=UTC)
    assert dt.utcoffset() == timedelta(0)
    assert timeutil.normalise_utc(text) == "2025-06-01T11:00:00Z"
    assert timeutil.utc_seconds(text) == 1748775600
    assert timeutil.utc_instant(text) == ("2025-06-01T11:00:00Z", 1748775600)


@pytest.mark.parametrize(
    "value",
    [
        "not a time",
        "",
        "9999-12-31T23:59:59-01:00",  # after datetime.max once in UTC: OverflowError in Python
        "0001-01-01T00:00:00+01:00",  # before datetime.min
        "2025-06-01T11:00:00Z" * 10,
        None,
        5,
    ],
)
def test_what_is_not_an_instant_is_a_value_error(value: object) -> None:
    for fn in (timeutil.parse_utc, timeutil.normalise_utc, timeutil.utc_seconds, timeutil.utc_instant):
        with pytest.raises(ValueError):
            fn(value)  # type: ignore[arg-type]
    assert timeutil.parse_utc_or_none(value) is None
    assert timeutil.normalise_utc_or_none(value) is None


def test_format_utc() -> None:
    assert timeutil.format_utc(datetime(2025, 6, 1, 11, 0, 5, 987654, tzinfo=UTC)) == "2025-06-01T11:00:05Z"
    assert timeutil.format_utc(datetime(2025, 6, 1, 11, 0, 5)) == "2025-06-01T11:00:05Z"
    tz2 = timezone(timedelta(hours=2))
    assert timeutil.format_utc(datetime(2025, 6, 1, 13, 0, 0, tzinfo=tz2)) == "2025-06-01T11:00:00Z"
    assert timeutil.format_utc(datetime(1, 1, 1)) == "0001-01-01T00:00:00Z"  # zero-padded, unlike strftime
    assert timeutil.normalise_utc("2024-09-25T22:00:00.5Z") == "2024-09-25T22:00:00Z"  # fractions dropped
    with pytest.raises(ValueError):
        timeutil.format_utc(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-1))))


def test_epoch_seconds_round_down() -> None:
    assert timeutil.utc_seconds("1970-01-01T00:00:00Z") == 0
    assert timeutil.utc_seconds("1969-12-31T23:59:59.5Z") == -1
    assert timeutil.epoch_seconds(datetime(2025, 6, 1, 13, tzinfo=timezone(timedelta(hours=2)))) == 1748775600
    assert timeutil.format_epoch(1748775600) == "2025-06-01T11:00:00Z"
    assert timeutil.normalise_utc_or_none(datetime(2025, 6, 1, 11, tzinfo=UTC)) == "2025-06-01T11:00:00Z"


def test_now_utc() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    now = timeutil.parse_utc(timeutil.now_utc())
    assert before <= now <= datetime.now(UTC) and timeutil.now_utc().endswith("Z")
