"""The JSON Lines sink on real files: finishing, recovery of the finished offset, back-pressure (taking partitions
over and giving them up: test_sink_ownership.py)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from airq_app.settings import OutputSettings
from airq_app.sink import JsonLinesSink, SinkClosed

pytestmark = pytest.mark.unit


class FaultyDisk:
    """Storage faults injected at the system calls, for regular files under `root` only.

    `full`: write and fsync fail with ENOSPC (after writing what fits: `room` bytes per call, None = nothing).
    `fsync_failures`: that many fsyncs fail with EIO after "losing" the file's unwritten pages, as Linux does:
    the failed pages are marked clean, so the file then reads back what was on disk (here: zeros).
    `truncate_fails`: os.truncate and os.ftruncate fail with EIO.
    `rename_fails`: os.rename into `root` fails with ENOSPC, naming the file (as a full directory block does).
    """

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(root)
        self.full = False
        self.room: int | None = None
        self.fsync_failures = 0
        self.truncate_fails = False
        self.rename_fails = False
        self.failed_fsync_inodes: list[int] = []
        self.fsynced_inodes: list[int] = []
        real_write, real_fsync = os.write, os.fsync
        real_truncate, real_ftruncate, real_rename = os.truncate, os.ftruncate, os.rename

        def ours(fd: int) -> bool:
            try:
                return stat.S_ISREG(os.fstat(fd).st_mode) and os.readlink(f"/proc/self/fd/{fd}").startswith(self.root)
            except OSError:
                return False

        def write(fd: int, data: bytes) -> int:
            if self.full and ours(fd):
                if self.room:
                    written = real_write(fd, bytes(data)[: self.room])
                    self.room = 0
                    return written
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        def fsync(fd: int) -> None:
            if ours(fd):
                inode = os.fstat(fd).st_ino
                if self.full:
                    raise OSError(errno.ENOSPC, "No space left on device")
                if self.fsync_failures:
                    self.fsync_failures -= 1
                    self.failed_fsync_inodes.append(inode)
                    os.pwrite(fd, b"\0" * os.fstat(fd).st_size, 0)
                    raise OSError(errno.EIO, "Input/output error")
                self.fsynced_inodes.append(inode)
            real_fsync(fd)

        def truncate(path: object, length: int) -> None:
            if self.truncate_fails and str(path).startswith(self.root):
                raise OSError(errno.EIO, "Input/output error", str(path))
            real_truncate(path, length)  # type: ignore[arg-type]

        def ftruncate(fd: int, length: int) -> None:
            if self.truncate_fails and ours(fd):
                raise OSError(errno.EIO, "Input/output error")
            real_ftruncate(fd, length)

        def rename(src: object, dst: object) -> None:
            if self.rename_fails and str(dst).startswith(self.root):
                raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))
            real_rename(src, dst)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "truncate", truncate)
        monkeypatch.setattr(os, "ftruncate", ftruncate)


def output(directory: Path, **values: Any) -> OutputSettings:
    """The `output` section for a sink writing to `directory`: the declared defaults but for `values`."""
    return OutputSettings(directory=directory, **values)


def line(i: int) -> bytes:
    return json.dumps({"sensor_id": i, "datetime_utc": "2026-11-24T10:00:00Z"}).encode() + b"\n"


def finished(out: Path) -> list[Path]:
    return sorted(out.rglob("*.jsonl"))


def test_file_is_finished_atomically_then_acked(tmp_path: Path) -> None:
    acked: list[int] = []

    async def go() -> None:
        sink = JsonLinesSink(output(tmp_path, rotate_max_bytes=10**9, rotate_max_age_s=3600), "w1")
        assert await sink.open_partition(3) == -1
        for offset in range(10, 15):
            await sink.write(3, offset, line(offset), partial(acked.append, offset))
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
        sink = JsonLinesSink(output(tmp_path, rotate_max_bytes=len(line(0)) * 3, rotate_max_age_s=0.05), "w1")
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


def test_a_caught_up_partition_is_finished_once_quiet_not_while_written(tmp_path: Path) -> None:
    acked: list[int] = []

    async def go() -> None:
        sink = JsonLinesSink(output(tmp_path, rotate_max_bytes=10**9, rotate_max_age_s=3600, finish_idle_s=0.1), "w1")
        await sink.open_partition(0)
        await sink.open_partition(1)
        await sink.write(1, 0, line(0), lambda: acked.append(100))  # never caught up: kept open
        started = time.monotonic()
        offset = 0
        while time.monotonic() - started < 0.5:  # caught up after every write, but written every 20 ms
            await sink.write(0, offset, line(offset), partial(acked.append, offset))
            sink.finish_when_quiet(0)
            offset += 1
            await asyncio.sleep(0.02)
        assert finished(tmp_path) == [] and acked == []  # a steady stream is not split
        await asyncio.sleep(0.3)  # quiet: finished without a tick, long before max_age_s
        assert [f.name for f in finished(tmp_path)] == [f"part-00000-000000000000-{offset - 1:012d}.jsonl"]
        assert acked == list(range(offset))
        sink.finish_when_quiet(0)  # no open file: nothing to do
        await sink.write(0, offset, line(offset), lambda: acked.append(-1))
        await asyncio.sleep(0.3)
        assert len(finished(tmp_path)) == 1 and acked[-1] != -1  # a new file, not caught up again: kept open
        await sink.close()

    asyncio.run(go())
    assert acked[-2:] in ([-1, 100], [100, -1])


def test_recovery_finds_finished_offset_and_drops_unfinished(tmp_path: Path) -> None:
    async def first() -> None:
        sink = JsonLinesSink(output(tmp_path, rotate_max_bytes=10**9, rotate_max_age_s=3600), "w1")
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
        sink = JsonLinesSink(output(tmp_path), "w2")
        return await sink.open_partition(1)

    assert asyncio.run(second()) == 4  # from the finished file's name
    assert not list(tmp_path.rglob("*.inprogress"))


def test_writes_for_a_partition_not_owned_are_refused(tmp_path: Path) -> None:
    async def go() -> None:
        sink = JsonLinesSink(output(tmp_path), "w1")
        with pytest.raises(SinkClosed):
            await sink.write(2, 0, line(0), lambda: None)
        await sink.open_partition(2, generation=5)
        with pytest.raises(SinkClosed):
            await sink.write(2, 0, line(0), lambda: None, generation=4)
        await sink.close()

    asyncio.run(go())


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_blocks_then_resumes_without_loss(tmp_path: Path) -> None:
    _blocked_then_resumed(tmp_path, lambda d: d.chmod(stat.S_IRUSR | stat.S_IXUSR), lambda d: d.chmod(0o755))


def test_storage_error_blocks_then_resumes_without_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk, simulated at the write: the sink blocks, keeps the data, and resumes."""
    disk = FaultyDisk(tmp_path, monkeypatch)
    _blocked_then_resumed(tmp_path, lambda d: setattr(disk, "full", True), lambda d: setattr(disk, "full", False))


def _blocked_then_resumed(tmp_path: Path, break_it, fix_it) -> None:
    reasons: list[str | None] = []
    acked: list[int] = []
    out = tmp_path / "out"
    out.mkdir()

    async def go() -> None:
        sink = JsonLinesSink(
            output(out, rotate_max_bytes=10**9, rotate_max_age_s=0.01), "w1", on_blocked=reasons.append
        )
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
        sink = JsonLinesSink(output(tmp_path, rotate_max_bytes=40_000, rotate_max_age_s=0.01), "w1", flush_bytes=2_000)
        await sink.open_partition(0)

        async def ticker() -> None:
            while True:
                await sink.tick()
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        for offset in range(n):
            await sink.write(0, offset, line(offset), partial(acked.append, offset))
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


# -- logging, recovery, failed fsync and truncate -----------------------------------------------------------


def test_a_blocked_sink_logs_the_same_error_once_a_minute_with_a_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FaultyDisk(tmp_path, monkeypatch)
    clock = [1000.0]
    caplog.set_level(logging.INFO, "airq.sink")

    def errors() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    async def go() -> None:
        sink = JsonLinesSink(output(tmp_path, rotate_max_bytes=10**9, rotate_max_age_s=0), "w1")
        sink.log_limiter.clock = lambda: clock[0]
        for p in range(3):
            await sink.open_partition(p)
            await sink.write(p, 0, line(p), lambda: None)
        disk.rename_fails = True  # each partition's error names its own file
        for _ in range(10):
            await sink.tick()
        assert sink.blocked is not None
        assert len(errors()) == 1 and "output blocked" in errors()[0]
        clock[0] += 61
        await sink.tick()
        assert len(errors()) == 2 and "29 more like this" in errors()[1]
        disk.rename_fails = False
        await sink.tick()
        assert sink.blocked is None
        await sink.close()

    asyncio.run(asyncio.wait_for(go(), 20))
    assert sum("output writable again" in r.getMessage() for r in caplog.records) == 1
    assert len(finished(tmp_path)) == 3


@pytest.mark.parametrize(
    "checkpoint",
    [b"{not json", b"[]", b"{}", b'{"last_offset": "x"}', b'{"last_offset": null}', b"\xff\xfe", None],
    ids=["not-json", "list", "empty", "string", "null", "not-utf8", "directory"],
)
def test_a_malformed_checkpoint_falls_back_to_the_finished_files(
    tmp_path: Path, checkpoint: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    day = tmp_path / "date=2026-11-24"
    day.mkdir()
    (day / "part-00003-000000000000-000000000041.jsonl").write_bytes(line(0))
    path = tmp_path / "_state" / "partition-00003.json"
    path.parent.mkdir()
    if checkpoint is None:
        path.mkdir()
    else:
        path.write_bytes(checkpoint)
    caplog.set_level(logging.WARNING, "airq.sink")

    async def go() -> int:
        sink = JsonLinesSink(output(tmp_path), "w1")
        offset = await sink.open_partition(3)
        await sink.close()
        return offset

    assert asyncio.run(go()) == 41
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "partition-00003.json" in warnings[0]


def test_stray_entries_in_the_output_directory_are_ignored_with_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "date=garbage").write_text("a file named like a day directory")
    not_a_day = tmp_path / "date=2026-02-30"
    not_a_day.mkdir()
    (not_a_day / "part-00003-000000000000-000000000500.jsonl").write_bytes(line(0))
    day = tmp_path / "date=2026-11-24"
    day.mkdir()
    (day / "part-00003-000000000000-000000000041.jsonl").write_bytes(line(0))
    (day / "part-00003-garbage").write_text("x")
    (day / "part-00003-000000000042-000000000060.jsonl").mkdir()  # a directory where a file is expected
    (day / "part-00003-000000000061.w9.inprogress").mkdir()
    (day / "part-00003-000000000070.w9.inprogress").write_bytes(b"{}\n")  # a dead writer's: deleted
    (day / "part-00004-000000000000-000000000900.jsonl").write_bytes(line(0))  # another partition's
    (day / "notes.txt").write_text("not the sink's")
    caplog.set_level(logging.WARNING, "airq.sink")

    async def go() -> int:
        sink = JsonLinesSink(output(tmp_path), "w1")
        offset = await sink.open_partition(3)
        await sink.close()
        return offset

    assert asyncio.run(go()) == 41
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert len(warnings) == 5, warnings
    for name in ("date=garbage", "date=2026-02-30", "part-00003-garbage", "000000000060.jsonl", "61.w9.inprogress"):
        assert sum(name in w for w in warnings) == 1, (name, warnings)
    assert not (day / "part-00003-000000000070.w9.inprogress").exists()
    assert (day / "part-00003-000000000061.w9.inprogress").is_dir() and (tmp_path / "date=garbage").is_file()


def test_a_failed_fsync_is_not_retried_on_the_same_descriptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux may drop the dirty pages of a failed fsync and report success on the next one: the file is
    written again from memory before it is finished."""
    disk = FaultyDisk(tmp_path, monkeypatch)
    disk.fsync_failures = 1
    acked: list[int] = []

    async def go() -> None:
        sink = JsonLinesSink(output(tmp_path, rotate_max_bytes=10**9, rotate_max_age_s=0.05), "w1")
        await sink.open_partition(0)
        for offset in range(5):
            await sink.write(0, offset, line(offset), partial(acked.append, offset))
        await sink.tick()
        await asyncio.sleep(0.1)
        await sink.tick()  # the fsync fails
        assert sink.blocked is not None and "Input/output error" in sink.blocked and acked == []
        await sink.tick()  # the retry
        assert sink.blocked is None
        await sink.close()

    asyncio.run(asyncio.wait_for(go(), 20))
    assert disk.failed_fsync_inodes and acked == [0, 1, 2, 3, 4]
    files = finished(tmp_path)
    assert len(files) == 1 and files[0].read_bytes() == b"".join(line(o) for o in range(5))


def test_a_partial_write_whose_truncate_fails_is_rewritten_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FaultyDisk(tmp_path, monkeypatch)
    acked: list[int] = []

    async def go() -> None:
        sink = JsonLinesSink(output(tmp_path, rotate_max_bytes=10**9, rotate_max_age_s=0.05), "w1")
        await sink.open_partition(0)
        await sink.write(0, 0, line(0), lambda: acked.append(0))
        await sink.tick()
        disk.full, disk.room, disk.truncate_fails = True, len(line(1)) // 2, True
        await sink.write(0, 1, line(1), lambda: acked.append(1))
        await sink.tick()  # half of line 1 reaches the file, and cutting it off fails
        assert sink.blocked is not None
        disk.full = False  # the truncate keeps failing: only a fresh file can be trusted
        await asyncio.sleep(0.1)
        await sink.tick()
        assert sink.blocked is None
        await sink.close()

    asyncio.run(asyncio.wait_for(go(), 20))
    files = finished(tmp_path)
    assert len(files) == 1 and files[0].read_bytes() == line(0) + line(1)
    assert acked == [0, 1]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a really full disk, where a large write is cut short (needs root; skipped otherwise)."""
    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_real_partial_write_on_a_full_disk_never_reaches_a_finished_file(
    tiny_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FaultyDisk(tiny_disk, monkeypatch)
    disk.truncate_fails = True
    n = 1500  # about 90 KB in one batch: the write stops where the 64 KiB disk is full

    async def go() -> None:
        sink = JsonLinesSink(output(tiny_disk, rotate_max_bytes=10**9, rotate_max_age_s=0.05), "w1", flush_bytes=10**9)
        await sink.open_partition(0)
        for offset in range(n):
            await sink.write(0, offset, line(offset), lambda: None)
        await asyncio.sleep(0.1)
        await sink.tick()
        assert sink.blocked is not None and "disk full" in sink.blocked
        assert sum(f.stat().st_size for f in tiny_disk.rglob("*.inprogress")) > 0  # part of it got there
        subprocess.run(["mount", "-o", "remount,size=1m", str(tiny_disk)], check=True)
        await sink.tick()
        assert sink.blocked is None
        await sink.close()

    asyncio.run(asyncio.wait_for(go(), 20))
    data = b"".join(f.read_bytes() for f in finished(tiny_disk))
    assert data == b"".join(line(o) for o in range(n))


def test_writes_do_not_wait_while_the_partition_finishes_a_file_until_the_backlog_is_reached(tmp_path: Path) -> None:
    """Finishing a file waits for Kafka (the changelog): the stream keeps appending meanwhile, up to a backlog."""

    async def go() -> tuple[int, bool]:
        release = asyncio.Event()

        async def before_finish() -> None:
            await release.wait()

        size = len(line(99))
        sink = JsonLinesSink(
            output(tmp_path, rotate_max_bytes=10**9, rotate_max_age_s=0.01),
            "w1",
            flush_bytes=size * 4,
            before_finish=before_finish,
        )
        await sink.open_partition(0)
        await sink.write(0, 0, line(0), lambda: None)
        await asyncio.sleep(0.02)
        finishing = asyncio.create_task(sink.tick())  # holds the partition while it waits for before_finish
        await asyncio.sleep(0.05)
        assert not finishing.done()
        # Past flush_bytes (which would flush, under the partition's lock) and up to the backlog, no write waits;
        # at the backlog the stream waits for the finish, so the output's memory stays bounded.
        taken, offset = 0, 0
        while True:
            offset += 1
            write = asyncio.create_task(sink.write(0, offset, line(offset), lambda: None))
            await asyncio.sleep(0.05)
            if not write.done():
                break
            taken += 1
        pending = sink.partitions[0].file.pending_bytes  # type: ignore[union-attr]
        release.set()
        await asyncio.wait_for(asyncio.gather(finishing, write), 5)
        await sink.close()
        return taken, pending >= sink.backlog_bytes

    taken, at_backlog = asyncio.run(asyncio.wait_for(go(), 20))
    assert taken >= 12 and at_backlog
    assert len([r for f in finished(tmp_path) for r in f.read_text().splitlines()]) == taken + 2
