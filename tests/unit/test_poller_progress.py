"""Ingest progress: the poller's acknowledgement handling (the gap bookkeeping itself: test_ingest_gaps.py).

The poller runs against fakes: a client serving /latest and /sensors/{id}/hours rows shaped like OpenAQ's, a `send`
whose delivery futures the test resolves or fails itself, and a `save_progress` that records what it is asked to
write. The poller's wall clock (`time.time`) is the test's (March 2024), so catch-up sees the same hours as the
backlog.
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
from airq_app.ingest.gaps import GivenUp, SensorProgress, hour_text
from airq_app.ingest.poller import Poller
from airq_app.ingest.progress import GIVEN_UP_KEY
from airq_app.metrics import Metrics
from airq_app.settings import load_settings
from airq_app.status import WorkerStatus
from airq_dev.harness import ROOT
from tests.unit.test_ingest_gaps import H9, H10, H11, H12, at

pytestmark = pytest.mark.unit


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
