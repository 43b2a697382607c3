"""The stream's decision for one message, as a pure function of the message and table state."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from airq_app.domain.decide import Decision, decide, decide_in, location_summary, merge_location
from airq_app.domain.dedup import GRACE_S, MAX_REVISIONS, bucket_key
from airq_app.domain.filters import FilterConfig
from airq_app.domain.record import OutputRecord
from airq_app.domain.validation import parse_measurement
from airq_dev.harness import encode, measurement

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
CFG = FilterConfig()
RETENTION = 72 * 3600
FAR_CFG = FilterConfig(max_age_hours=8760)


def m(sensor: int = 71, hour: str = "2026-11-24T12:00:00Z", **kw: Any) -> dict:
    return parse_measurement(encode(measurement(sensor, hour, **kw))[1])


def rec(d: Decision) -> OutputRecord:
    """The record of a write (only writes have one)."""
    assert d.record is not None, d
    return d.record


def src(offset: int, partition: int = 3) -> dict:
    return {"topic": "air_quality_telematics", "partition": partition, "offset": offset}


def test_first_time_is_written_and_remembered() -> None:
    state: dict = {}
    d = decide_in(state, m(value=35.4), src(10), CFG, RETENTION, NOW)
    assert d.outcome == "write"
    epoch = int(datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp())
    assert state[bucket_key(71, epoch // 3600)] == {"0": [[3, 10, 35.4]]}
    assert rec(d)["value"] == 35.4 and rec(d)["aqi"] == 100 and rec(d)["aqi_category"] == "Moderate"
    assert rec(d)["aqi_basis"] == "instant" and rec(d)["source"] == src(10)
    assert rec(d)["revision"] == 0 and rec(d)["previous_value"] is None
    assert state["71"]["newest"] == epoch and d.history == state["71"]


def test_repeat_is_a_duplicate_but_own_replay_is_written_again() -> None:
    state: dict = {}
    decide_in(state, m(), src(10), CFG, RETENTION, NOW)
    before = dict(state)
    assert decide_in(state, m(), src(55), CFG, RETENTION, NOW).outcome == "duplicate"
    replay = decide_in(state, m(), src(10), CFG, RETENTION, NOW)
    assert replay.outcome == "write" and state == before
    assert rec(replay)["source"] == src(10) and rec(replay)["revision"] == 0
    # The state that accepted it is written again, unchanged: a SIGKILL may have kept its first write from the
    # changelog, and the replay's file must not be finished before the changelog holds it.
    assert replay.writes == before


def test_replay_is_written_even_when_the_clock_says_too_old() -> None:
    state: dict = {}
    decide_in(state, m(), src(10), CFG, RETENTION, NOW)
    much_later = datetime(2026, 12, 24, tzinfo=UTC)
    assert decide_in({}, m(), src(11), CFG, RETENTION, much_later).reason == "too_old"
    assert decide_in(state, m(), src(10), CFG, RETENTION, much_later).outcome == "write"


def test_nowcast_from_sensor_history() -> None:
    state: dict = {}
    for h, v in ((10, 20.0), (11, 30.0)):
        decide_in(state, m(hour=f"2026-11-24T{h}:00:00Z", value=v), src(h), CFG, RETENTION, NOW)
    d = decide_in(state, m(value=40.0), src(12), CFG, RETENTION, NOW)
    # w = 20/40 = 0.5: (40 + 15 + 5) / (1 + 0.5 + 0.25) = 34.28... -> truncated 34.2
    assert rec(d)["nowcast"] == 34.2 and rec(d)["aqi_basis"] == "nowcast"
    assert rec(d)["aqi"] == 98  # 51 + 49/26.3 * (34.2 - 9.1) = 97.76


def test_revisions_are_numbered_with_the_value_they_replace_and_rescored() -> None:
    state: dict = {}
    first = decide_in(state, m(value=35.4), src(10), CFG, RETENTION, NOW)
    assert (rec(first)["revision"], rec(first)["previous_value"], rec(first)["aqi"]) == (0, None, 100)
    second = decide_in(state, m(value=55.5), src(11), CFG, RETENTION, NOW)
    assert second.outcome == "write"
    assert (rec(second)["revision"], rec(second)["previous_value"]) == (1, 35.4)
    assert rec(second)["value"] == 55.5 and rec(second)["aqi"] == 151  # 55.5 starts the Unhealthy row
    third = decide_in(state, m(value=12.0), src(12), CFG, RETENTION, NOW)
    assert (rec(third)["revision"], rec(third)["previous_value"]) == (2, 55.5)
    hour = "2026-11-24T12:00:00Z"
    assert state["71"]["hours"][hour] == 12.0  # the hourly state holds the latest revision
    # The next hour's NowCast uses the revised value: w = 12/40 -> 0.5, (40 + 6) / 1.5 = 30.66 -> 30.6
    an_hour_later = NOW + timedelta(hours=1)
    after = decide_in(state, m(hour="2026-11-24T13:00:00Z", value=40.0), src(13), CFG, RETENTION, an_hour_later)
    assert rec(after)["nowcast"] == 30.6


def test_copies_of_any_accepted_revision_are_duplicates_and_replays_keep_their_revision() -> None:
    state: dict = {}
    decide_in(state, m(value=10.0), src(10), CFG, RETENTION, NOW)
    decide_in(state, m(value=11.0), src(20), CFG, RETENTION, NOW)
    for value, offset in ((10.0, 30), (11.0, 31)):  # a stale copy of revision 0, a copy of revision 1
        assert decide_in(state, m(value=value), src(offset), CFG, RETENTION, NOW).outcome == "duplicate"
    snapshot = {k: dict(v) for k, v in state.items()}
    replay0 = decide_in(state, m(value=10.0), src(10), CFG, RETENTION, NOW)
    replay1 = decide_in(state, m(value=11.0), src(20), CFG, RETENTION, NOW)
    assert (rec(replay0)["revision"], rec(replay0)["previous_value"], rec(replay0)["value"]) == (0, None, 10.0)
    assert (rec(replay1)["revision"], rec(replay1)["previous_value"]) == (1, 10.0)
    assert state == snapshot  # replays change no state
    # The same offset in another partition is another message.
    other = decide_in(state, m(value=12.0), src(10, partition=4), CFG, RETENTION, NOW)
    assert rec(other)["revision"] == 2


def test_a_revision_lost_with_the_state_is_numbered_the_same_again() -> None:
    """After a crash the changelog may hold the state up to revision 0 only: the replayed revision gets 1 again."""
    state: dict = {}
    decide_in(state, m(value=10.0), src(10), CFG, RETENTION, NOW)
    recovered = {k: dict(v) for k, v in state.items()}
    original = decide_in(state, m(value=11.0), src(20), CFG, RETENTION, NOW)
    again = decide_in(recovered, m(value=11.0), src(20), CFG, RETENTION, NOW)
    assert rec(original)["revision"] == rec(again)["revision"] == 1
    assert recovered == state


def test_revisions_per_time_are_capped() -> None:
    state: dict = {}
    for n in range(MAX_REVISIONS):
        assert rec(decide_in(state, m(value=10.0 + n), src(n), CFG, RETENTION, NOW))["revision"] == n
    d = decide_in(state, m(value=99.0), src(100), CFG, RETENTION, NOW)
    assert (d.outcome, d.reason) == ("filtered", "revision_limit")


def test_a_filtered_revision_is_dropped_and_the_accepted_value_stays() -> None:
    state: dict = {}
    decide_in(state, m(value=10.0), src(1), CFG, RETENTION, NOW)
    assert decide_in(state, m(value=-999.0), src(2), CFG, RETENTION, NOW).reason == "sentinel"
    assert decide_in(state, m(value=10.0), src(3), CFG, RETENTION, NOW).outcome == "duplicate"


def test_seen_entries_expire_with_the_sensor_window() -> None:
    state: dict = {}
    retention = 2 * 3600
    start = datetime(2026, 11, 20, tzinfo=UTC)
    for h in range(0, 60):
        when = (start + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert decide_in(state, m(hour=when), src(h), FAR_CFG, retention, NOW).outcome == "write"
    newest_hour = int((start + timedelta(hours=59)).timestamp()) // 3600
    buckets = sorted(int(k.split("/")[1]) for k in state if "/" in k)
    # Kept: the retention (2 h) plus the grace (24 h) behind the newest hour, nothing older.
    assert buckets == list(range(newest_hour - 2 - GRACE_S // 3600, newest_hour + 1))
    at = lambda h: (start + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    # Behind the retention: a copy still in the grace is a duplicate, a new value there or anything older too_old.
    assert decide_in(state, m(hour=at(56)), src(99), FAR_CFG, retention, NOW).outcome == "duplicate"
    assert decide_in(state, m(hour=at(56), value=1.0), src(99), FAR_CFG, retention, NOW).reason == "too_old"
    assert decide_in(state, m(hour=at(10)), src(99), FAR_CFG, retention, NOW).reason == "too_old"


def test_state_per_sensor_is_bounded_by_time_whatever_the_rate() -> None:
    """A sensor reporting every minute for three days: every write stays small, and the keys kept cover the
    retention in hours, however many messages came."""
    state: dict = {}
    retention = 24 * 3600
    start = datetime(2026, 11, 21, tzinfo=UTC)
    largest = 0
    minutes = 3 * 24 * 60
    for n in range(minutes):
        when = (start + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        d = decide_in(state, m(hour=when, value=10.0 + n % 7), src(n), FAR_CFG, retention, NOW)
        assert d.outcome == "write"
        largest = max(largest, *(len(orjson.dumps(v)) for v in d.writes.values() if v is not None))
    assert largest < 2_500, largest  # one hour of one sensor at most: 60 times
    assert len(state) <= 1 + (retention + GRACE_S) // 3600 + 2
    total = sum(len(orjson.dumps(v)) for v in state.values())
    assert total < 100_000, total


def test_history_is_kept_for_the_retention_and_backfill_skips_max_age() -> None:
    state: dict = {}
    year = 400 * 86400
    live = decide_in(state, m(value=20.0), src(1), CFG, year, NOW)
    assert live.outcome == "write"
    old = m(hour="2026-06-01T12:00:00Z", value=30.0)
    assert decide_in(state, old, src(2), CFG, year, NOW).reason == "too_old"  # a live copy: max_age_hours
    backfilled = m(hour="2026-06-01T12:00:00Z", value=30.0, backfill=True)
    d = decide_in(state, backfilled, src(3), CFG, year, NOW)
    assert d.outcome == "write" and rec(d)["revision"] == 0
    assert decide_in(state, backfilled, src(4), CFG, year, NOW).outcome == "duplicate"
    too_far = m(hour="2025-06-01T12:00:00Z", value=30.0, backfill=True)
    assert decide_in(state, too_far, src(5), CFG, year, NOW).reason == "too_old"  # beyond the retention


def test_backfill_never_moves_the_live_nowcast_backwards() -> None:
    state: dict = {}
    for h, v in ((10, 20.0), (11, 30.0)):
        decide_in(state, m(hour=f"2026-11-24T{h}:00:00Z", value=v), src(h), CFG, RETENTION, NOW)
    live_hours = dict(state["71"]["hours"])
    # A month back, three hours in a row: scored from their own window, the live one untouched.
    for h, v in ((8, 100.0), (9, 100.0), (10, 100.0)):
        old = m(hour=f"2026-10-24T{h:02d}:00:00Z", value=v, backfill=True)
        d = decide_in(state, old, src(100 + h), CFG, RETENTION * 100, NOW)
    assert rec(d)["nowcast"] == 100.0 and rec(d)["aqi_basis"] == "nowcast"
    assert state["71"]["hours"] == live_hours
    assert state["71"]["newest"] == int(datetime(2026, 11, 24, 11, tzinfo=UTC).timestamp())
    d = decide_in(state, m(value=40.0), src(12), CFG, RETENTION, NOW)
    assert rec(d)["nowcast"] == 34.2  # as if no history had been loaded


def test_entries_written_before_buckets_still_deduplicate() -> None:
    epoch = int(datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp())
    state: dict = {"71": {"newest": epoch, "hours": {}, "recent": [], "seen": {str(epoch): [3, 10]}}}
    assert decide_in(state, m(value=1.0), src(11), CFG, RETENTION, NOW).outcome == "duplicate"
    replay = decide_in(state, m(value=1.0), src(10), CFG, RETENTION, NOW)
    assert replay.outcome == "write" and rec(replay)["revision"] == 0


def test_filtered_and_unit_unknown() -> None:
    assert decide(m(value=-999.0), src(1), None, CFG, RETENTION, NOW).reason == "sentinel"
    assert decide(m(unit="furlongs"), src(1), None, CFG, RETENTION, NOW).reason == "unit_unknown"


def test_gas_in_ppm_is_normalised_to_ppb() -> None:
    d = decide(m(parameter="no2", unit="ppm", value=0.101), src(1), None, CFG, RETENTION, NOW)
    assert rec(d)["value"] == pytest.approx(101.0) and rec(d)["unit"] == "ppb"
    assert rec(d)["raw_value"] == 0.101 and rec(d)["raw_unit"] == "ppm"
    assert rec(d)["aqi"] == 101  # NO2 1h: 101 ppb is the first value of the USG row


def test_stuck_sensor_is_flagged_not_dropped() -> None:
    history = None
    flags = []
    for h in range(0, 7):
        d = decide(m(hour=f"2026-11-24T{h:02d}:00:00Z", value=12.0), src(h), history, CFG, RETENTION, NOW)
        history = d.history
        flags.append("stuck" in rec(d)["flags"])
    assert flags == [False] * 5 + [True, True]


def test_location_summary_keeps_the_newest_per_parameter() -> None:
    a = rec(decide(m(hour="2026-11-24T11:00:00Z", value=5.0), src(1), None, CFG, RETENTION, NOW))
    b = rec(decide(m(value=60.0), src(2), None, CFG, RETENTION, NOW))
    o3 = rec(decide(m(sensor=81, parameter="o3", unit="ppm", value=0.03), src(3), None, CFG, RETENTION, NOW))
    entry = location_summary(location_summary(None, b), o3)
    assert entry is not None
    assert location_summary(entry, a) is None  # older than what is shown
    assert entry["parameters"]["pm25"]["value"] == 60.0
    assert set(entry["parameters"]) == {"pm25", "o3"}
    assert entry["aqi"] == entry["parameters"]["pm25"]["aqi"] and entry["aqi_category"] == "Unhealthy"


@pytest.mark.parametrize("seed", range(8))
def test_merging_a_message_at_once_equals_merging_its_records_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    params = [("pm25", "µg/m³", 5.0, 400.0), ("o3", "ppm", 0.01, 0.2), ("no2", "ppm", 0.01, 0.5), ("co", "ppm", 0.1, 9)]
    hours = [f"2026-11-24T{h:02d}:00:00Z" for h in range(8, 13)]
    summary = None
    for offset in range(12):
        records = []
        for sensor, (parameter, unit, low, high) in enumerate(rng.sample(params, rng.randint(1, 4))):
            value = round(rng.uniform(low, high), 3)
            mm = m(sensor=90 + sensor, hour=rng.choice(hours), parameter=parameter, unit=unit, value=value)
            record = decide(mm, src(offset), None, CFG, RETENTION, NOW).record
            assert record is not None
            records.append(record)
        one_by_one = summary
        for record in records:
            one_by_one = location_summary(one_by_one, record) or one_by_one
        merged = merge_location(summary, records)
        assert (merged or summary) == one_by_one
        assert (merged is None) == (one_by_one is summary)
        summary = one_by_one


@pytest.mark.parametrize("seed", range(6))
def test_the_main_entry_bounds_the_hours_that_can_have_a_bucket(seed: int) -> None:
    """`dedup.may_have_bucket` lets the stream skip the bucket lookup: whatever the order, repeats, revisions,
    backfill and expiry, every bucket in the state lies within the hours its sensor's main entry allows."""
    import random

    from airq_app.domain.dedup import may_have_bucket

    rng = random.Random(seed)
    state: dict = {}
    retention = rng.choice([2, 6, 72]) * 3600
    start = datetime(2026, 11, 20, tzinfo=UTC)
    for offset in range(400):
        h = rng.randrange(0, 120)
        when = (start + timedelta(hours=h, minutes=rng.choice([0, 0, 30]))).strftime("%Y-%m-%dT%H:%M:%SZ")
        value = rng.choice([10.0, 10.0, 12.5])
        kw = {"backfill": True} if rng.random() < 0.2 else {}
        decide_in(
            state, m(sensor=rng.choice([71, 72]), hour=when, value=value, **kw), src(offset), FAR_CFG, retention, NOW
        )
        for key in state:
            if "/" in key:
                sensor, hour = key.split("/")
                assert may_have_bucket(state[sensor], int(hour)), (key, state[sensor].get("oldest"))
    assert any("/" in k for k in state)
