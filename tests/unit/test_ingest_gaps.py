"""Ingest progress: the pure gap bookkeeping (`airq_app.ingest.gaps`); the poller's acknowledgement handling is in
test_poller_progress.py.

The backlog is driven with hours and wall times of the test's own (March 2024), never today's clock.
"""

from __future__ import annotations

import orjson
import pytest

from airq_app.ingest.gaps import MAX_RETRY_DOUBLINGS, Backlog, GivenUp, SensorProgress, hour_of, hour_text

pytestmark = pytest.mark.unit

H9 = hour_of("2024-03-05T09:00:00Z")  # epoch hours: 09:00 UTC on 5 March 2024 and the hours around it
H10, H11, H12 = H9 + 1, H9 + 2, H9 + 3


def at(hour: int, minutes: int = 0) -> float:
    """A wall time (epoch seconds) `minutes` into the epoch hour `hour`."""
    return hour * 3600 + minutes * 60.0


# -- hours ----------------------------------------------------------------------------------------------------------


def test_hour_of_drops_minutes_and_seconds_and_reads_offsets() -> None:
    assert H9 == 1709629200 // 3600
    assert hour_of("2024-03-05T09:59:59Z") == H9
    assert hour_of("2024-03-05T10:00:00Z") == H10
    assert hour_of("2024-03-05T10:30:00+01:00") == H9


def test_hour_text_names_the_start_of_the_epoch_hour() -> None:
    assert hour_text(H9) == "2024-03-05T09:00:00Z"
    assert hour_text(hour_of("2024-03-05T23:45:00Z") + 1) == "2024-03-06T00:00:00Z"


# -- opening hours ----------------------------------------------------------------------------------------------------


def test_a_two_hour_jump_opens_the_hour_between() -> None:
    b = Backlog(24)
    b.seen(1, H9)
    b.acknowledged(1, [H9])
    b.seen(1, H11)
    assert b.sensors[1].open == {H10: 0}
    assert b.sensors[1].newest == H9


def test_jumps_of_three_and_four_hours_open_every_hour_between() -> None:
    b = Backlog(24)
    b.seen(1, H9)
    b.acknowledged(1, [H9])
    b.seen(1, H9 + 3)  # a batch three hours on: 10 and 11 are missing
    assert sorted(b.sensors[1].open) == [H10, H11]
    b.acknowledged(1, [H9 + 3])
    b.seen(1, H9 + 7)  # four hours on: 13, 14 and 15 are missing too
    assert sorted(b.sensors[1].open) == [H10, H11, H9 + 4, H9 + 5, H9 + 6]
    assert b.sensors[1].newest == H9 + 3


def test_the_next_hour_opens_nothing() -> None:
    b = Backlog(24)
    b.seen(1, H9)
    b.acknowledged(1, [H9])
    b.seen(1, H10)
    b.seen(1, H9)  # the same hour again, as /latest shows it every cycle until a newer value
    assert b.sensors[1].open == {}


def test_a_first_sighting_opens_nothing_by_default() -> None:
    b = Backlog(24)
    b.seen(7, H12)
    assert b.sensors[7].open == {}
    assert b.sensors[7].newest is None


def test_a_first_sighting_opens_the_first_sight_lookback_when_asked() -> None:
    b = Backlog(24, first_sight_lookback_hours=3)
    b.seen(7, H12)
    assert sorted(b.sensors[7].open) == [H9, H10, H11]
    b.acknowledged(7, [H12])
    b.seen(7, H12 + 1)  # no longer a first sighting: the look-back is not applied again
    assert sorted(b.sensors[7].open) == [H9, H10, H11]


def test_a_jump_after_a_send_that_kafka_refused_still_opens_the_hours_between() -> None:
    b = Backlog(24)
    b.seen(7, H9)
    b.failed(7, [H9])
    b.seen(7, H12)
    b.acknowledged(7, [H12])
    assert sorted(b.sensors[7].open) == [H9, H10, H11] and b.sensors[7].newest == H12


def test_the_first_sight_lookback_is_capped_by_the_lookback() -> None:
    b = Backlog(2, first_sight_lookback_hours=5)
    assert b.first_sight_lookback_hours == 2
    b.seen(7, H12)
    assert sorted(b.sensors[7].open) == [H10, H11]


def test_seen_alone_never_moves_newest() -> None:
    b = Backlog(24)
    b.seen(1, H9)
    b.acknowledged(1, [H9])
    b.seen(1, H12)
    b.seen(1, H12 + 1)
    assert b.sensors[1].newest == H9
    b.acknowledged(1, [H12 + 1])
    assert b.sensors[1].newest == H12 + 1


def test_an_older_hour_acknowledged_after_a_newer_one_closes_it_and_keeps_newest() -> None:
    b = Backlog(24)
    b.acknowledged(1, [H9])
    b.seen(1, H12)  # opens 10 and 11
    b.acknowledged(1, [H12])
    b.acknowledged(1, [H10])  # caught up after the newer hour
    assert b.sensors[1].newest == H12
    assert b.sensors[1].open == {H11: 0}


def test_seeing_an_older_hour_after_a_newer_one_opens_nothing_and_keeps_newest() -> None:
    b = Backlog(24)
    b.acknowledged(1, [H12])
    b.seen(1, H9)
    assert b.sensors[1].open == {}
    assert b.sensors[1].newest == H12


def test_acknowledging_several_hours_moves_newest_to_the_highest() -> None:
    b = Backlog(24)
    b.acknowledged(1, [H9])
    b.seen(1, H12)
    b.acknowledged(1, [H12, H10, H11])
    assert b.sensors[1].newest == H12
    assert b.sensors[1].open == {}


# -- failing, retrying, giving up ---------------------------------------------------------------------------------


def test_a_failed_hour_opens_and_stays_open_until_acknowledged() -> None:
    b = Backlog(24)
    b.acknowledged(1, [H9])
    b.seen(1, H10)
    b.failed(1, [H10])
    assert b.sensors[1].open == {H10: 0}
    assert b.sensors[1].newest == H9
    b.failed(1, [H10])  # failing again keeps it open, once
    assert b.sensors[1].open == {H10: 0}
    b.acknowledged(1, [H10])
    assert b.sensors[1].open == {}
    assert b.sensors[1].newest == H10


def test_a_failed_send_of_the_acknowledged_newest_hour_does_not_reopen_it() -> None:
    b = Backlog(24)
    b.acknowledged(1, [H10])
    b.failed(1, [H10])  # /latest shows the same hour again and this send fails: Kafka already has it
    assert b.sensors[1].open == {}


def test_a_failed_hour_of_an_unknown_sensor_opens_it() -> None:
    b = Backlog(24)
    b.failed(5, [H10, H11])
    assert b.sensors[5].open == {H10: 0, H11: 0}
    assert b.sensors[5].newest is None


def test_unanswered_hours_back_off_doubling_and_new_hours_stay_due() -> None:
    b = Backlog(24, retry_s=600.0)
    b.acknowledged(1, [H9])
    b.seen(1, H11)  # opens 10
    now = at(H11, 5)
    b.unanswered(1, [H10], now)
    assert b.sensors[1].open == {H10: 1}
    assert b.sensors[1].not_before == {H10: now + 600.0}
    assert b.due(now) == []
    assert b.due(now + 599.0) == []
    assert b.due(now + 600.0) == [(1, [H10])]

    b.acknowledged(1, [H11])
    b.seen(1, H12 + 1)  # opens 12: due at once, while 10 still waits
    assert b.due(now + 60.0) == [(1, [H12])]

    later = now + 600.0
    b.unanswered(1, [H10], later)
    assert b.sensors[1].not_before[H10] == later + 1200.0
    b.unanswered(1, [H10], later)
    assert b.sensors[1].not_before[H10] == later + 2400.0
    assert b.sensors[1].open[H10] == 3
    assert b.due(later + 2399.0) == [(1, [H12])]
    assert b.due(later + 2400.0) == [(1, [H10, H12])]


def test_the_back_off_stops_doubling_after_six_doublings() -> None:
    b = Backlog(24 * 30, retry_s=10.0)
    b.failed(1, [H10])
    for _ in range(MAX_RETRY_DOUBLINGS + 4):
        b.unanswered(1, [H10], 1000.0)
    assert MAX_RETRY_DOUBLINGS == 6
    assert b.sensors[1].open[H10] == 10
    assert b.sensors[1].not_before[H10] == 1000.0 + 10.0 * 64


def test_unanswered_ignores_unknown_sensors_and_hours_that_are_not_open() -> None:
    b = Backlog(24)
    b.unanswered(3, [H10], at(H11))
    assert 3 not in b.sensors
    b.acknowledged(1, [H10])
    b.unanswered(1, [H10], at(H11))
    assert b.sensors[1].open == {}
    assert b.sensors[1].not_before == {}


def test_acknowledging_an_hour_clears_its_back_off() -> None:
    b = Backlog(24)
    b.failed(1, [H10])
    b.unanswered(1, [H10], at(H11))
    b.acknowledged(1, [H10])
    assert b.sensors[1].not_before == {}
    assert b.sensors[1].open == {}


def test_expire_gives_up_hours_older_than_the_lookback_and_counts_them() -> None:
    b = Backlog(24)
    now = at(H12, 30)  # the look-back reaches back to 12:00 the day before
    b.failed(1, [H12 - 26, H12 - 25, H12 - 24, H12 - 1])
    b.failed(2, [H12 - 30])
    b.unanswered(1, [H12 - 25], now - 60)
    b.failed(3, [H12 - 2])

    expired = b.expire(now)

    assert expired == {1: [H12 - 26, H12 - 25], 2: [H12 - 30]}
    assert sorted(b.sensors[1].open) == [H12 - 24, H12 - 1]
    assert b.sensors[1].not_before == {}
    assert b.sensors[2].open == {}
    assert b.sensors[3].open == {H12 - 2: 0}
    assert b.given_up.hours == 3
    assert b.given_up.days == ["2024-03-04"]
    assert b.expire(now) == {}  # nothing is given up twice
    assert b.given_up.hours == 3


def test_given_up_hours_add_up_across_days_and_keep_the_last_62_days() -> None:
    g = GivenUp()
    g.add([H9, H10])
    g.add([H9 - 24 * 3])
    assert g.hours == 3
    assert g.days == ["2024-03-02", "2024-03-05"]
    g.add([H9 - 24 * d for d in range(100)])
    assert g.hours == 103
    assert len(g.days) == 62
    assert g.days[0] == hour_text(H9 - 24 * 61)[:10]
    assert g.days[-1] == "2024-03-05"


def test_due_orders_sensors_by_their_oldest_open_hour() -> None:
    b = Backlog(48)
    b.failed(30, [H11, H10])
    b.failed(10, [H12])
    b.failed(20, [H9, H12])
    b.failed(5, [H10])  # ties with sensor 30 on 10:00: the lower sensor id first
    assert b.due(at(H12, 30)) == [(20, [H9, H12]), (5, [H10]), (30, [H10, H11]), (10, [H12])]


def test_summary_reports_the_open_hours_and_their_age() -> None:
    b = Backlog(24)
    b.acknowledged(1, [H9])
    b.acknowledged(2, [H9])
    b.seen(1, H12)  # opens 10 and 11
    b.failed(3, [H9 - 30])
    b.expire(at(H12, 15))  # gives up sensor 3's hour
    summary = b.summary(at(H12, 15))
    assert summary == {
        "sensors": 3,
        "sensors_with_gaps": 1,
        "open_sensor_hours": 2,
        "oldest_open_hour": "2024-03-05T10:00:00Z",
        "oldest_open_sensor": 1,
        "oldest_open_hour_age_s": 2 * 3600 + 15 * 60,
        "given_up_hours": 1,
        "given_up_days": ["2024-03-04"],
    }


def test_summary_of_a_backlog_without_gaps_reports_no_oldest_hour() -> None:
    b = Backlog(24)
    b.acknowledged(1, [H9])
    summary = b.summary(at(H12))
    assert summary["open_sensor_hours"] == 0
    assert summary["oldest_open_hour"] is None
    assert summary["oldest_open_hour_age_s"] == 0
    assert summary["given_up_hours"] == 0


# -- records ----------------------------------------------------------------------------------------------------------


def test_a_progress_record_survives_an_encode_decode_round_trip() -> None:
    p = SensorProgress(newest=H12, open={H11: 2, H9: 0}, not_before={H11: 123.0})
    back = SensorProgress.decode(p.encode())
    assert back.newest == H12
    assert back.open == {H9: 0, H11: 2}
    assert back.not_before == {}  # back-off times are local: after a read every open hour is due at once
    assert orjson.loads(p.encode()) == {"newest": H12, "open": [[H9, 0], [H11, 2]]}
    empty = SensorProgress.decode(SensorProgress().encode())
    assert empty.newest is None and empty.open == {}


def test_a_given_up_record_survives_an_encode_decode_round_trip() -> None:
    g = GivenUp(5, ["2024-03-04", "2024-03-05"])
    assert GivenUp.decode(g.encode()) == g
    assert GivenUp.decode(GivenUp().encode()) == GivenUp(0, [])


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"null",
        b"[1, 2]",
        b"{}",
        b'{"newest": 5}',
        b'{"open": []}',
        b'{"newest": "5", "open": []}',
        b'{"newest": 5.5, "open": []}',
        b'{"newest": 5, "open": [[1]]}',
        b'{"newest": 5, "open": [["x", 0]]}',
        b'{"newest": 5, "open": 3}',
    ],
)
def test_decoding_garbage_as_a_progress_record_raises_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a progress record"):
        SensorProgress.decode(raw)


@pytest.mark.parametrize(
    "raw", [b"", b"garbage", b"null", b"{}", b'{"hours": 3}', b'{"hours": "x", "days": []}', b'{"days": []}']
)
def test_decoding_garbage_as_a_given_up_record_raises_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a given-up record"):
        GivenUp.decode(raw)
