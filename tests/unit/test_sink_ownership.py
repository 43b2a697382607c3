"""The JSON Lines sink's partition ownership on real files: a second owner waits for the partition lock, a wait
that can be cancelled or ended by a stop, and a partition given up while its output is blocked."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from functools import partial
from pathlib import Path

import pytest

from airq_app.sink import JsonLinesSink, SinkClosed
from tests.unit.test_sink import FaultyDisk, finished, line, output

pytestmark = pytest.mark.unit


def test_second_owner_waits_for_the_first(tmp_path: Path) -> None:
    async def go() -> float:
        a = JsonLinesSink(output(tmp_path), "a")
        b = JsonLinesSink(output(tmp_path), "b")
        await a.open_partition(4)
        await a.write(4, 0, line(0), lambda: None)
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiter = asyncio.create_task(b.open_partition(4, wait_s=10))
        await asyncio.sleep(0.5)
        assert not waiter.done()
        await a.close_partition(4)
        assert await waiter == 0
        await b.close()
        return loop.time() - started

    assert asyncio.run(go()) >= 0.5


# -- hand-over while the output is blocked ------------------------------------------------------------------


def test_close_partition_while_blocked_drops_the_unfinished_file_unacknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FaultyDisk(tmp_path, monkeypatch)
    acked: list[int] = []
    reasons: list[str | None] = []

    async def go() -> float:
        sink = JsonLinesSink(
            output(tmp_path, rotate_max_bytes=10**9, rotate_max_age_s=0.2), "w1", on_blocked=reasons.append
        )
        await sink.open_partition(3)
        await sink.write(3, 0, line(0), lambda: acked.append(0))
        await sink.tick()  # written to the in-progress file, not old enough to finish
        assert len(list(tmp_path.rglob("*.inprogress"))) == 1
        disk.full = True
        await sink.write(3, 1, line(1), lambda: acked.append(1))
        await asyncio.sleep(0.25)
        await sink.tick()  # old enough: finishing fails
        assert sink.blocked is not None and "disk full" in sink.blocked
        started = time.monotonic()
        await asyncio.wait_for(sink.close_partition(3), 5)
        took = time.monotonic() - started
        assert not sink.owns(3) and sink.blocked is None
        other = JsonLinesSink(output(tmp_path), "w2")  # the next owner gets the lock and finds nothing finished
        assert await other.open_partition(3, wait_s=2) == -1
        await other.close()
        return took

    took = asyncio.run(asyncio.wait_for(go(), 20))
    assert took < 3
    assert not list(tmp_path.rglob("*.inprogress")) and finished(tmp_path) == []
    assert acked == []  # replayed from Kafka by the next owner, never acknowledged here
    assert reasons[0] is not None and reasons[-1] is None


def test_stop_while_blocked_returns_promptly_and_releases_every_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FaultyDisk(tmp_path, monkeypatch)
    acked: list[int] = []
    caplog.set_level(logging.INFO, "airq.sink")

    async def go() -> None:
        sink = JsonLinesSink(output(tmp_path, rotate_max_bytes=len(line(0)) * 2, rotate_max_age_s=3600), "w1")
        for p in (0, 1):
            await sink.open_partition(p)
        await sink.write(1, 0, line(0), lambda: acked.append(100))
        disk.full = True
        await sink.write(0, 0, line(0), lambda: acked.append(0))
        await sink.write(0, 1, line(1), lambda: acked.append(1))  # full by size: finishing it fails
        assert sink.blocked is not None
        waiting = asyncio.create_task(sink.write(1, 1, line(1), lambda: acked.append(101)))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # back-pressure while blocked
        await asyncio.wait_for(sink.close(), 5)
        with pytest.raises(SinkClosed):  # the waiting record is refused, so the stream leaves it unacknowledged
            await asyncio.wait_for(waiting, 1)
        assert sink.partitions == {}
        other = JsonLinesSink(output(tmp_path), "w2")
        assert [await other.open_partition(p, wait_s=2) for p in (0, 1)] == [-1, -1]
        await other.close()

    asyncio.run(asyncio.wait_for(go(), 20))
    assert acked == [] and not list(tmp_path.rglob("*.inprogress")) and finished(tmp_path) == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("dropped the unfinished file" in m for m in messages) == 2
    assert not any("writable again" in m for m in messages)  # it was not: its partitions were given up


def test_close_gives_a_hanging_finish_one_bounded_attempt(tmp_path: Path) -> None:
    """The changelog flush before a finish never returns (broker gone): the hand-over still ends in time,
    and the abandoned attempt, when it does return, neither finishes the file nor acknowledges anything."""
    acked: list[int] = []

    async def go() -> float:
        release = asyncio.Event()

        async def before_finish() -> None:
            await release.wait()

        sink = JsonLinesSink(
            output(tmp_path, rotate_max_bytes=10**9, rotate_max_age_s=3600),
            "w1",
            before_finish=before_finish,
            close_timeout_s=0.5,
        )
        await sink.open_partition(2)
        for offset in range(3):
            await sink.write(2, offset, line(offset), partial(acked.append, offset))
        started = time.monotonic()
        await asyncio.wait_for(sink.close_partition(2), 5)
        took = time.monotonic() - started
        other = JsonLinesSink(output(tmp_path), "w2")
        assert await other.open_partition(2, wait_s=2) == -1
        release.set()  # the abandoned attempt goes on now
        await asyncio.sleep(0.3)
        await other.close()
        return took

    took = asyncio.run(asyncio.wait_for(go(), 20))
    assert 0.4 <= took < 3
    assert acked == [] and finished(tmp_path) == [] and not list(tmp_path.rglob("*.inprogress"))


def test_open_partition_waits_for_the_lock_without_a_deadline_and_can_be_cancelled(tmp_path: Path) -> None:
    async def go() -> None:
        a = JsonLinesSink(output(tmp_path), "a")
        b = JsonLinesSink(output(tmp_path), "b")
        await a.open_partition(4)
        fds = len(os.listdir("/proc/self/fd"))
        waiter = asyncio.create_task(b.open_partition(4))
        await asyncio.sleep(0.5)
        assert not waiter.done()
        assert list(b.waiting_for) == [4] and "another worker" in b.waiting_for[4]
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert b.waiting_for == {} and not b.owns(4)
        assert len(os.listdir("/proc/self/fd")) == fds  # the lock file's descriptor is not leaked
        waiter = asyncio.create_task(b.open_partition(4))
        await asyncio.sleep(0.3)
        await a.close_partition(4)
        assert await asyncio.wait_for(waiter, 5) == -1 and b.owns(4) and b.waiting_for == {}
        # Stopping while a partition is still awaited ends that wait instead of hanging the stop, without an
        # error (the caller is an assignment handler, where an exception crashes the worker) and without
        # taking the partition: the open returns the durable finished offset.
        await b.write(4, 0, line(0), lambda: None)
        await b.close_partition(4)
        await b.open_partition(4)
        waiter = asyncio.create_task(a.open_partition(4))
        await asyncio.sleep(0.3)
        await asyncio.wait_for(a.close(), 2)
        assert await asyncio.wait_for(waiter, 2) == 0
        assert not a.owns(4) and a.partitions == {} and a.waiting_for == {}
        with pytest.raises(SinkClosed):
            await a.write(4, 1, line(1), lambda: None)
        await b.close()

    asyncio.run(asyncio.wait_for(go(), 20))


def test_a_stop_during_an_open_neither_fails_nor_keeps_the_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust may run the stop while an assignment handler still opens partitions: an exception there crashes
    the worker, and a partition opened after the stop would stay locked."""
    import airq_app.sink.core as core

    real_recover = core.recover_partition

    def slow_recover(*args: object, **kwargs: object) -> tuple[int, list[str]]:
        time.sleep(0.5)
        return real_recover(*args, **kwargs)  # type: ignore[arg-type]

    day = tmp_path / "date=2026-11-24"
    day.mkdir()
    (day / "part-00001-000000000000-000000000007.jsonl").write_bytes(line(0))
    monkeypatch.setattr(core, "recover_partition", slow_recover)

    async def go() -> None:
        sink = JsonLinesSink(output(tmp_path), "w1")
        opening = asyncio.create_task(sink.open_partition(1))
        await asyncio.sleep(0.1)
        await asyncio.wait_for(sink.close(), 2)
        assert await asyncio.wait_for(opening, 2) == 7
        assert not sink.owns(1) and sink.partitions == {}
        other = JsonLinesSink(output(tmp_path), "w2")
        assert await other.open_partition(1, wait_s=1) == 7  # the lock was let go
        await other.close()

    asyncio.run(asyncio.wait_for(go(), 20))
