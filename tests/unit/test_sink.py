"""The JSON Lines sink on real files: finishing, recovery of the finished offset, ownership, back-pressure."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from airq_app.sink import JsonLinesSink, SinkClosed

pytestmark = pytest.mark.unit


def line(i: int) -> bytes:
    return json.dumps({"sensor_id": i, "datetime_utc": "2026-11-24T10:00:00Z"}).encode() + b"\n"


def finished(out: Path) -> list[Path]:
    return sorted(out.rglob("*.jsonl"))


def test_file_is_finished_atomically_then_acked(tmp_path: Path) -> None:
    acked: list[int] = []

    async def go() -> None:
        sink = JsonLinesSink(tmp_path, "w1", max_bytes=10**9, max_age_s=3600)
        assert await sink.open_partition(3) == -1
        for offset in range(10, 15):
            await sink.write(3, offset, line(offset), lambda o=offset: acked.append(o))
        await sink.tick()  # flushes, not old enough to finish
        assert finished(tmp_path) == [] and acked == []
        inprogress = list(tmp_path.rglob("*.inprogress"))
        assert len(inprogress) == 1 and inprogress[0].read_bytes().count(b"\n") == 5
        await sink.close()

    asyncio.run(go())
    files = finished(tmp_path)
    assert [f.name for f in files] == ["part-00003-000000000010-000000000014.jsonl"]
    assert files[0].parent.name.startswith("date=")
    assert [json.loads(x)["sensor_id"] for x in files[0].read_text().splitlines()] == [10, 11, 12, 13, 14]
    assert acked == [10, 11, 12, 13, 14]
    assert not list(tmp_path.rglob("*.inprogress"))
    assert json.loads((tmp_path / "_state" / "partition-00003.json").read_text())["last_offset"] == 14


def test_rotates_by_size_and_by_age(tmp_path: Path) -> None:
    async def go() -> None:
        sink = JsonLinesSink(tmp_path, "w1", max_bytes=len(line(0)) * 3, max_age_s=0.05)
        await sink.open_partition(0)
        for offset in range(7):
            await sink.write(0, offset, line(offset), lambda: None)
        assert len(finished(tmp_path)) == 2  # 3 + 3 by size; one record still open
        await asyncio.sleep(0.1)
        await sink.tick()
        assert len(finished(tmp_path)) == 3  # the last one by age
        await sink.close()

    asyncio.run(go())
    names = [f.name for f in finished(tmp_path)]
    assert names == [
        "part-00000-000000000000-000000000002.jsonl",
        "part-00000-000000000003-000000000005.jsonl",
        "part-00000-000000000006-000000000006.jsonl",
    ]


def test_recovery_finds_finished_offset_and_drops_unfinished(tmp_path: Path) -> None:
    async def first() -> None:
        sink = JsonLinesSink(tmp_path, "w1", max_bytes=10**9, max_age_s=3600)
        await sink.open_partition(1)
        for offset in range(5):
            await sink.write(1, offset, line(offset), lambda: None)
        await sink.close_partition(1)
        await sink.open_partition(1)
        for offset in range(5, 8):
            await sink.write(1, offset, line(offset), lambda: None)
        await sink.tick()
        # The checkpoint is lost and the worker dies here: 5..7 are only in an in-progress file.
        os.unlink(tmp_path / "_state" / "partition-00001.json")
        os.close(sink.partitions[1].lock_fd)  # what the kernel does when the process dies

    asyncio.run(first())
    assert len(list(tmp_path.rglob("*.inprogress"))) == 1

    async def second() -> int:
        sink = JsonLinesSink(tmp_path, "w2")
        return await sink.open_partition(1)

    assert asyncio.run(second()) == 4  # from the finished file's name
    assert not list(tmp_path.rglob("*.inprogress"))


def test_writes_for_a_partition_not_owned_are_refused(tmp_path: Path) -> None:
    async def go() -> None:
        sink = JsonLinesSink(tmp_path, "w1")
        with pytest.raises(SinkClosed):
            await sink.write(2, 0, line(0), lambda: None)
        await sink.open_partition(2, generation=5)
        with pytest.raises(SinkClosed):
            await sink.write(2, 0, line(0), lambda: None, generation=4)
        await sink.close()

    asyncio.run(go())


def test_second_owner_waits_for_the_first(tmp_path: Path) -> None:
    async def go() -> float:
        a = JsonLinesSink(tmp_path, "a")
        b = JsonLinesSink(tmp_path, "b")
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


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_blocks_then_resumes_without_loss(tmp_path: Path) -> None:
    _blocked_then_resumed(tmp_path, lambda d: d.chmod(stat.S_IRUSR | stat.S_IXUSR), lambda d: d.chmod(0o755))


def test_storage_error_blocks_then_resumes_without_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk, simulated at the write: the sink blocks, keeps the data, and resumes."""
    import errno

    import airq_app.sink as sink_module

    real_rename = sink_module.aiofiles.os.rename
    state = {"full": True}

    async def rename(src: object, dst: object) -> None:
        if state["full"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        await real_rename(src, dst)

    monkeypatch.setattr(sink_module.aiofiles.os, "rename", rename)
    _blocked_then_resumed(tmp_path, lambda d: None, lambda d: state.update(full=False))


def _blocked_then_resumed(tmp_path: Path, break_it, fix_it) -> None:
    reasons: list[str | None] = []
    acked: list[int] = []
    out = tmp_path / "out"
    out.mkdir()

    async def go() -> None:
        sink = JsonLinesSink(out, "w1", max_bytes=10**9, max_age_s=0.01, on_blocked=reasons.append)
        await sink.open_partition(0)
        await sink.write(0, 0, line(0), lambda: acked.append(0))
        day_dirs = list(out.glob("date=*"))
        for d in day_dirs or [out]:
            break_it(d)
        await asyncio.sleep(0.05)
        await sink.tick()
        assert sink.blocked is not None and acked == []
        blocked_write = asyncio.create_task(sink.write(0, 1, line(1), lambda: acked.append(1)))
        await asyncio.sleep(0.1)
        assert not blocked_write.done()  # back-pressure
        for d in day_dirs or [out]:
            fix_it(d)
        await sink.tick()
        assert sink.blocked is None
        await blocked_write
        await sink.close()

    asyncio.run(go())
    assert reasons[0] is not None and reasons[-1] is None
    assert "No space left" in reasons[0] or "disk full" in reasons[0] or "permission" in reasons[0]
    records = [json.loads(x)["sensor_id"] for f in finished(out) for x in f.read_text().splitlines()]
    assert records == [0, 1] and acked == [0, 1]


def test_records_appended_while_flushing_or_finishing_are_not_lost(tmp_path: Path) -> None:
    """The stream keeps writing while the timer flushes and finishes files (they interleave at every await)."""
    acked: list[int] = []
    n = 3000

    async def go() -> None:
        sink = JsonLinesSink(tmp_path, "w1", max_bytes=40_000, max_age_s=0.01, flush_bytes=2_000)
        await sink.open_partition(0)

        async def ticker() -> None:
            while True:
                await sink.tick()
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        for offset in range(n):
            await sink.write(0, offset, line(offset), lambda o=offset: acked.append(o))
            if offset % 7 == 0:
                await asyncio.sleep(0)
        t.cancel()
        await sink.close()

    asyncio.run(go())
    ids = [json.loads(x)["sensor_id"] for f in finished(tmp_path) for x in f.read_text().splitlines()]
    assert sorted(ids) == list(range(n))
    assert len(finished(tmp_path)) > 3
    assert sorted(acked) == list(range(n))
    for f in finished(tmp_path):  # each name states exactly the offsets inside
        first, last = (int(x) for x in f.stem.split("-")[2:4])
        got = [json.loads(x)["sensor_id"] for x in f.read_text().splitlines()]
        assert got == list(range(first, last + 1))
