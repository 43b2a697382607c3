"""Ingest progress: the pure gap bookkeeping (`airq_app.ingest.gaps`) and the poller's acknowledgement handling.

The backlog is driven with hours and wall times of the test's own (March 2024), never today's clock. The poller
runs against fakes: a client serving /latest and /sensors/{id}/hours rows shaped like OpenAQ's, a `send` whose
delivery futures the test resolves or fails itself, and a `save_progress` that records what it is asked to write.
The poller's wall clock (`time.time`) is the test's, so catch-up sees the same hours as the backlog.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from airq_app import openaq
from airq_app.ingest import poller as poller_module
from airq_app.ingest.gaps import MAX_RETRY_DOUBLINGS, Backlog, GivenUp, SensorProgress, hour_of, hour_text
from airq_app.ingest.poller import Poller
from airq_app.ingest.progress import GIVEN_UP_KEY
from airq_app.metrics import Metrics
from airq_app.settings import load_settings
from airq_app.status import WorkerStatus
from airq_dev.harness import ROOT

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


# -- the poller -------------------------------------------------------------------------------------------------------

LOCATIONS = [
    {
        "id": loc_id,
        "name": f"Station {loc_id}",
        "country": {"code": "DE"},
        "coordinates": {"latitude": 52.5, "longitude": 13.4},
        "timezone": "Europe/Berlin",
        "provider": {"name": "Umweltbundesamt"},
        "sensors": [{"id": sensor_id, "parameter": {"id": 2, "name": "pm25", "units": "µg/m³"}}],
    }
    for loc_id, sensor_id in ((11, 101), (22, 202), (33, 303))
]
LOCATION_OF = {101: 11, 202: 22, 303: 33}


def latest_item(sensor_id: int, hour: int, value: float = 7.5) -> dict[str, Any]:
    return {
        "sensorsId": sensor_id,
        "value": value,
        "datetime": {"utc": hour_text(hour), "local": hour_text(hour).replace("Z", "+00:00")},
        "coordinates": {"latitude": 52.5, "longitude": 13.4},
    }


def hour_row(hour: int, value: float = 4.0) -> dict[str, Any]:
    return {
        "value": value,
        "period": {"datetimeTo": {"utc": hour_text(hour), "local": hour_text(hour).replace("Z", "+00:00")}},
        "coordinates": {"latitude": 52.5, "longitude": 13.4},
    }


class FakeBudget:
    per_minute = 60
    per_hour = 2000
    hour_seconds = 3600.0

    def wait_time(self) -> float:
        return 0.0

    def used(self) -> dict[str, int]:
        return {"minute": 0, "hour": 0}


class FakeClient:
    """What the poller uses of `OpenAQClient`; records every request in `calls` (shared with the fake send)."""

    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls
        self.request_count = 0
        self.budget = FakeBudget()
        self.status_counts: dict[int, int] = {}
        self.last_rate_limit_remaining: int | None = None
        self.latest: dict[int, list[dict[str, Any]]] = {}  # parameter id -> /latest rows
        self.hours: dict[int, list[dict[str, Any]]] = {}  # sensor id -> /sensors/{id}/hours rows

    def list_locations(self, filters: Any = None, *, limit: int = 1000) -> list[dict[str, Any]]:
        self.request_count += 1
        self.calls.append(("locations",))
        return LOCATIONS

    def latest_for_parameter(self, parameter_id: int, *, limit: int = 1000, **_: Any) -> list[dict[str, Any]]:
        self.request_count += 1
        self.calls.append(("latest", parameter_id))
        return self.latest.get(parameter_id, [])

    def sensor_hours(self, sensor_id: int, since: str, until: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        self.request_count += 1
        self.calls.append(("hours", sensor_id, since, until))
        return self.hours.get(sensor_id, [])


class Clock:
    """The poller module's `time`: the wall clock is the test's, the monotonic clock stays real (budgets)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return time.monotonic()


class Rig:
    """A poller with fake Kafka: `send` returns a future the test settles (or an already acknowledged one)."""

    def __init__(self, tmp_path: Path, *, ack_at_once: bool = False, progress: dict[int, SensorProgress] | None = None):
        env = {"AIRQ_PIPELINE": str(ROOT / "pipeline.json"), "AIRQ_DATA_DIR": str(tmp_path), "AIRQ_ROLE": "ingest"}
        self.settings = load_settings(env, dotenv=False)
        self.calls: list[tuple[Any, ...]] = []
        self.client = FakeClient(self.calls)
        self.ack_at_once = ack_at_once
        self.deliveries: list[asyncio.Future[None]] = []
        self.messages: list[tuple[bytes, list[dict[str, Any]]]] = []
        self.saved: list[tuple[bytes, bytes]] = []
        self.raise_on_send: Exception | None = None
        self.progress = progress or {}
        self.status = WorkerStatus()
        self.poller = Poller(
            self.settings,
            self.status,
            Metrics(),
            self.send,
            self.save,
            self.load,
            client=self.client,  # type: ignore[arg-type]
        )
        self.poller._leading = True

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        if self.raise_on_send is not None:
            raise self.raise_on_send
        self.calls.append(("send", key))
        self.messages.append((key, orjson.loads(value)))
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.ack_at_once:
            delivery.set_result(None)
        self.deliveries.append(delivery)
        return delivery

    async def save(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.saved.append((key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def load(self) -> tuple[dict[int, SensorProgress], GivenUp]:
        return self.progress, GivenUp()

    def saved_for(self, key: bytes) -> list[bytes]:
        return [v for k, v in self.saved if k == key]

    def measurement(self, sensor_id: int, hour: int) -> dict[str, Any]:
        m = openaq.measurement_from_latest(
            latest_item(sensor_id, hour), self.poller.sensor_index, "2024-03-05T12:05:00Z"
        )
        assert m is not None
        return m


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(at(H12, 10))
    monkeypatch.setattr(poller_module, "time", c)
    return c


def run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


async def settle_callbacks() -> None:
    for _ in range(3):  # done callbacks run on the loop's next turns
        await asyncio.sleep(0)


def test_progress_moves_only_when_kafka_acknowledges_the_send(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path)
    poller = rig.poller
    poller.sensor_index = openaq.index_locations(LOCATIONS)
    poller.backlog.load({101: SensorProgress(newest=H10)}, GivenUp())

    async def main() -> None:
        poller.backlog.seen(101, H12)  # opens 11
        await poller.queue(rig.measurement(101, H12))
        await poller.flush()
        assert [k for k, _ in rig.messages] == [b"11"]
        assert [m["datetime_utc"] for m in rig.messages[0][1]] == ["2024-03-05T12:00:00Z"]
        await settle_callbacks()
        assert poller.backlog.sensors[101].newest == H10  # not acknowledged yet
        await poller.save_progress()
        assert rig.saved_for(b"101") == []

        rig.deliveries[0].set_result(None)
        await settle_callbacks()
        assert poller.backlog.sensors[101].newest == H12
        await poller.save_progress()
        written = rig.saved_for(b"101")
        assert len(written) == 1
        record = SensorProgress.decode(written[0])
        assert record.newest == H12
        assert record.open == {H11: 0}
        assert poller.status.counters["send_failed"] == 0
        await poller.save_progress()  # nothing changed since: nothing written again
        assert len(rig.saved_for(b"101")) == 1

    run(main)


def test_a_refused_send_leaves_its_hour_open_and_catch_up_sends_it_again(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path)
    poller = rig.poller
    poller.sensor_index = openaq.index_locations(LOCATIONS)
    poller.backlog.load({101: SensorProgress(newest=H11)}, GivenUp())
    rig.client.hours[101] = [hour_row(H12, 9.25)]

    async def main() -> None:
        poller.backlog.seen(101, H12)
        await poller.queue(rig.measurement(101, H12))
        await poller.flush()
        rig.deliveries[0].set_exception(RuntimeError("NOT_ENOUGH_REPLICAS"))
        await settle_callbacks()
        progress = poller.backlog.sensors[101]
        assert progress.newest == H11
        assert progress.open == {H12: 0}
        assert poller.status.counters["send_failed"] == 1
        await poller.save_progress()
        assert SensorProgress.decode(rig.saved_for(b"101")[-1]).open == {H12: 0}

        sent = await poller.catch_up("2024-03-05T12:10:00Z", [])
        assert sent == 1
        assert ("hours", 101, "2024-03-05T11:00:00Z", "2024-03-05T12:00:00Z") in rig.calls
        assert len(rig.messages) == 2
        key, again = rig.messages[1]
        assert key == b"11"
        assert [(m["sensor_id"], m["datetime_utc"], m["value"]) for m in again] == [(101, "2024-03-05T12:00:00Z", 9.25)]
        rig.deliveries[1].set_result(None)
        await settle_callbacks()
        assert progress.newest == H12
        assert progress.open == {}
        assert poller.status.counters["caught_up"] == 1

    run(main)


def test_a_send_the_producer_rejects_at_once_leaves_its_hour_open(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path)
    poller = rig.poller
    poller.sensor_index = openaq.index_locations(LOCATIONS)
    poller.backlog.load({101: SensorProgress(newest=H11)}, GivenUp())
    rig.raise_on_send = BufferError("local queue full")

    async def main() -> None:
        await poller.queue(rig.measurement(101, H12))
        await poller.flush()
        assert poller.backlog.sensors[101].open == {H12: 0}
        assert poller.backlog.sensors[101].newest == H11
        assert poller.status.counters["send_failed"] == 1
        assert poller._in_flight == set()

    run(main)


def test_catch_up_sends_each_sensors_hours_before_asking_for_the_next_sensor(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path)
    poller = rig.poller
    poller.sensor_index = openaq.index_locations(LOCATIONS)
    poller.backlog.load(
        {
            202: SensorProgress(newest=H12, open={H10: 0, H11: 0}),
            101: SensorProgress(newest=H12, open={H9: 0}),
        },
        GivenUp(),
    )
    rig.client.hours[101] = [hour_row(H9)]
    rig.client.hours[202] = [hour_row(H10, 1.0), hour_row(H11, 2.0), hour_row(H12, 3.0)]  # 12 is not missing

    async def main() -> int:
        return await poller.catch_up("2024-03-05T12:10:00Z", [])

    assert run(main) == 3
    assert rig.calls == [
        ("hours", 101, "2024-03-05T08:00:00Z", "2024-03-05T09:00:00Z"),
        ("send", b"11"),
        ("hours", 202, "2024-03-05T09:00:00Z", "2024-03-05T11:00:00Z"),
        ("send", b"22"),
    ]
    assert [m["datetime_utc"] for m in rig.messages[1][1]] == ["2024-03-05T10:00:00Z", "2024-03-05T11:00:00Z"]
    assert poller.status.counters["caught_up"] == 3


def test_an_hour_catch_up_does_not_get_is_asked_again_only_after_the_back_off(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path)
    poller = rig.poller
    poller.sensor_index = openaq.index_locations(LOCATIONS)
    poller.backlog.load({101: SensorProgress(newest=H12, open={H10: 0, H11: 0})}, GivenUp())
    rig.client.hours[101] = [hour_row(H10)]  # 11 is not uploaded yet

    async def main() -> None:
        await poller.catch_up("2024-03-05T12:10:00Z", [])
        assert poller.backlog.sensors[101].open == {H10: 0, H11: 1}  # 10 is in flight, 11 backs off
        assert poller.backlog.sensors[101].not_before == {H11: clock.now + 600.0}
        rig.deliveries[0].set_result(None)
        await settle_callbacks()
        assert poller.backlog.sensors[101].open == {H11: 1}

        clock.now += 599.0
        await poller.catch_up("2024-03-05T12:20:00Z", [])
        assert [c for c in rig.calls if c[0] == "hours"] == [
            ("hours", 101, "2024-03-05T09:00:00Z", "2024-03-05T11:00:00Z")
        ]
        clock.now += 1.0
        await poller.catch_up("2024-03-05T12:20:00Z", [])
        assert [c for c in rig.calls if c[0] == "hours"][-1] == (
            "hours",
            101,
            "2024-03-05T10:00:00Z",
            "2024-03-05T11:00:00Z",
        )
        assert poller.backlog.sensors[101].open == {H11: 2}
        assert poller.backlog.sensors[101].not_before == {H11: clock.now + 1200.0}

    run(main)


def test_catch_up_gives_up_hours_older_than_the_lookback_and_writes_the_count(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path)
    poller = rig.poller
    poller.sensor_index = openaq.index_locations(LOCATIONS)
    lookback = rig.settings.openaq.lookback_hours
    old = H12 - lookback - 1
    poller.backlog.load({303: SensorProgress(newest=H12, open={old: 0, old - 1: 0})}, GivenUp())

    async def main() -> None:
        await poller.catch_up("2024-03-05T12:10:00Z", [])
        await poller.settle(1.0)  # as the cycle does after catch-up: writes what changed

    run(main)
    assert lookback == 24
    assert [c for c in rig.calls if c[0] == "hours"] == []  # nothing left to ask for
    assert poller.status.counters["gaps_given_up"] == 2
    assert GivenUp.decode(rig.saved_for(GIVEN_UP_KEY)[-1]) == GivenUp(2, ["2024-03-04"])
    assert SensorProgress.decode(rig.saved_for(b"303")[-1]).open == {}
    assert poller.summary()["backfill"] is not None and "FROM=2024-03-04 TO=2024-03-04" in poller.summary()["backfill"]


def test_catch_up_asks_nothing_when_this_worker_no_longer_polls(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path)
    poller = rig.poller
    poller.sensor_index = openaq.index_locations(LOCATIONS)
    poller.backlog.load({101: SensorProgress(newest=H12, open={H11: 0})}, GivenUp())
    poller._leading = False

    async def main() -> int:
        return await poller.catch_up("2024-03-05T12:10:00Z", [])

    assert run(main) == 0
    assert rig.calls == []
    assert poller.backlog.sensors[101].open == {H11: 0}


def test_a_poll_cycle_fills_a_two_hour_jump_from_the_sensor_hours(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path, ack_at_once=True, progress={101: SensorProgress(newest=H10)})
    rig.client.latest[2] = [latest_item(101, H12, 12.5), latest_item(999, H12)]  # 999: not in the index
    rig.client.hours[101] = [hour_row(H11, 11.5)]

    summary = run(rig.poller.poll_cycle)

    assert summary["sent"] == 2
    assert summary["outcome"] == "ok"
    hours_calls = [c for c in rig.calls if c[0] == "hours"]
    assert hours_calls == [("hours", 101, "2024-03-05T10:00:00Z", "2024-03-05T11:00:00Z")]
    assert rig.calls.index(hours_calls[0]) > rig.calls.index(("latest", 2))
    assert [(k, [(m["datetime_utc"], m["value"]) for m in ms]) for k, ms in rig.messages] == [
        (b"11", [("2024-03-05T12:00:00Z", 12.5)]),
        (b"11", [("2024-03-05T11:00:00Z", 11.5)]),
    ]
    progress = rig.poller.backlog.sensors[101]
    assert progress.newest == H12
    assert progress.open == {}
    final = SensorProgress.decode(rig.saved_for(b"101")[-1])
    assert final.newest == H12 and final.open == {}
    assert rig.status.counters["polled"] == 2
    assert rig.status.counters["poll_skipped"] == 1
    assert rig.status.counters["caught_up"] == 1
    assert rig.status.counters["produced"] == 2
    assert rig.poller.summary()["open_sensor_hours"] == 0


def test_a_worker_that_stops_polling_reads_the_progress_again_when_it_polls_again(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path, ack_at_once=True, progress={101: SensorProgress(newest=H10)})
    run(rig.poller.poll_cycle)
    assert rig.poller.backlog.sensors[101].newest == H10
    # Meanwhile another worker polled and wrote its progress; this one lost the election while a cycle ran.
    rig.progress = {101: SensorProgress(newest=H12)}

    async def lost_then_regained() -> None:
        async with rig.poller._cycle:
            await rig.poller.tick(False)  # during a cycle: nothing happens yet
        await rig.poller.tick(False)  # once it ended: the hand-over is seen even though the flag was already off
        assert not rig.poller._loaded
        rig.poller._last_start = 0.0
        await rig.poller.tick(True)

    run(lost_then_regained)
    assert rig.poller.backlog.sensors[101].newest == H12
