"""JSON Lines sink: exactly-once files from at-least-once Kafka delivery.

Layout under the output directory::

    date=2026-11-24/part-00003-000000001200-000000001857.jsonl    finished: never changes again
    date=2026-11-24/part-00003-000000001858.w6066.inprogress       being written (not *.jsonl)
    _state/partition-00003.json                                    last finished offset of partition 3
    _state/partition-00003.lock                                    held by the worker that owns partition 3

- One open file per source partition; records are appended in offset order. The date directory is the UTC
  date on which the file was started (each line carries its own `datetime_utc`).
- A file is finished by flush + fsync, an atomic rename to `part-<partition>-<first>-<last>.jsonl`, an fsync of
  the directory, then the partition checkpoint. Only then are its source messages acknowledged, so the
  consumer never commits an offset whose output is not durable.
- The finished offset of a partition (checkpoint, or the newest finished file if the checkpoint lags) tells the
  stream which replayed messages are already in finished files; those are skipped.
- A worker holds an exclusive `flock` on a partition's lock file while it owns the partition, so two workers
  sharing the output directory never write the same partition at once; the kernel frees the lock when a
  worker dies, even by SIGKILL.
- Disk full or a read-only directory: the data stays in memory, the sink reports itself blocked (and the worker
  not ready), stops accepting records (back-pressure on the stream) and retries until the write succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiofiles
import aiofiles.os

log = logging.getLogger("airq.sink")

FINISHED = re.compile(r"^part-(\d{5})-(\d{12})-(\d{12})\.jsonl$")
RETRY_S = 2.0


@dataclass
class OpenFile:
    partition: int
    first_offset: int
    tmp_path: Path
    opened_at: float
    last_offset: int = -1
    size: int = 0  # bytes on disk
    records: int = 0
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0
    acks: list[Callable[[], object]] = field(default_factory=list)
    handle: object | None = None
    renamed: bool = False
    finished: bool = False
    io_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class PartitionState:
    lock_fd: int
    finished_offset: int
    generation: int
    file: OpenFile | None = None  # the file new records go to
    closing: list[OpenFile] = field(default_factory=list)  # detached, being finished in order


class SinkClosed(RuntimeError):
    """The partition is not (or no longer) owned by this worker; the record must not be written."""


class JsonLinesSink:
    def __init__(
        self,
        output_dir: Path,
        worker_id: str,
        *,
        max_bytes: int = 16 * 1024 * 1024,
        max_age_s: float = 30.0,
        flush_bytes: int = 1024 * 1024,
        on_blocked: Callable[[str | None], None] | None = None,
        on_finished: Callable[[int, int], None] | None = None,
        before_finish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.state_dir = output_dir / "_state"
        self.worker_id = re.sub(r"[^A-Za-z0-9_.-]", "_", worker_id)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.flush_bytes = flush_bytes
        self.partitions: dict[int, PartitionState] = {}
        self.blocked: str | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._on_blocked = on_blocked or (lambda reason: None)
        self._on_finished = on_finished or (lambda partition, records: None)
        # Made durable before a file is: the state that decided its records (the tables' changelog).
        self._before_finish = before_finish
        self._locks: dict[int, asyncio.Lock] = {}

    # -- ownership -------------------------------------------------------------------------------------

    def _lock(self, partition: int) -> asyncio.Lock:
        return self._locks.setdefault(partition, asyncio.Lock())

    async def open_partition(self, partition: int, generation: int = 0, wait_s: float = 120.0) -> int:
        """Take ownership of a partition; return its finished offset (-1 when nothing is finished)."""
        async with self._lock(partition):
            state = self.partitions.get(partition)
            if state is not None:
                state.generation = generation
                return state.finished_offset
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.state_dir / f"partition-{partition:05d}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            deadline = time.monotonic() + wait_s
            warned = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not warned:
                        log.warning("airq: partition %d output is still held by another worker; waiting", partition)
                        warned = True
                    if time.monotonic() > deadline:
                        os.close(fd)
                        raise TimeoutError(
                            f"partition {partition} output lock not released in {wait_s:.0f} s"
                        ) from None
                    await asyncio.sleep(0.2)
            try:
                finished = await asyncio.to_thread(self._recover_partition, partition)
            except BaseException:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                raise
            self.partitions[partition] = PartitionState(lock_fd=fd, finished_offset=finished, generation=generation)
            return finished

    def _recover_partition(self, partition: int) -> int:
        """Finished offset from the checkpoint and the finished files; drop files a dead writer left."""
        finished = -1
        checkpoint = self.state_dir / f"partition-{partition:05d}.json"
        with contextlib.suppress(FileNotFoundError, ValueError):
            finished = int(json.loads(checkpoint.read_text())["last_offset"])
        prefix = f"part-{partition:05d}-"
        for day in self.output_dir.glob("date=*"):
            for entry in os.scandir(day):
                if not entry.name.startswith(prefix):
                    continue
                m = FINISHED.match(entry.name)
                if m:
                    finished = max(finished, int(m.group(3)))
                elif entry.name.endswith(".inprogress"):
                    # Never finished, never acknowledged: its messages are replayed from Kafka.
                    os.unlink(entry.path)
        return finished

    def finished_offset(self, partition: int) -> int:
        state = self.partitions.get(partition)
        return state.finished_offset if state is not None else -1

    def owns(self, partition: int, generation: int | None = None) -> bool:
        state = self.partitions.get(partition)
        return state is not None and (generation is None or state.generation == generation)

    async def wait_owned(
        self,
        partition: int,
        generation: int | None,
        still_current: Callable[[], bool],
        ready: Callable[[], bool] = lambda: True,
        timeout: float = 180.0,
    ) -> bool:
        """Wait until the partition is opened for `generation` (its assignment handler may still be running)."""
        deadline = time.monotonic() + timeout
        while not (self.owns(partition, generation) and ready()):
            if not still_current() or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def close_partition(self, partition: int) -> None:
        """Finish the partition's open file and give up ownership."""
        async with self._lock(partition):
            state = self.partitions.get(partition)
            if state is None:
                return
            try:
                await self._finish_until_done(state)
            finally:
                self.partitions.pop(partition, None)
                fcntl.flock(state.lock_fd, fcntl.LOCK_UN)
                os.close(state.lock_fd)

    async def close(self) -> None:
        for partition in list(self.partitions):
            await self.close_partition(partition)

    # -- writing -----------------------------------------------------------------------------------------

    async def write(
        self, partition: int, offset: int, line: bytes, ack: Callable[[], object], generation: int | None = None
    ) -> None:
        """Append one JSON line (with its trailing newline) from source `offset`; `ack` runs once durable."""
        await self._writable.wait()
        state = self.partitions.get(partition)
        if state is None or (generation is not None and state.generation != generation):
            raise SinkClosed(f"partition {partition} is not owned by this worker")
        f = state.file
        if f is None:
            f = state.file = self._new_file(partition, offset)
        f.pending.append(line)
        f.pending_bytes += len(line)
        f.last_offset = offset
        f.records += 1
        f.acks.append(ack)
        if f.size + f.pending_bytes >= self.max_bytes:
            async with self._lock(partition):
                await self._finish_until_done(state)
        elif f.pending_bytes >= self.flush_bytes:
            async with self._lock(partition):
                await self._guarded(self._flush, f)

    def _new_file(self, partition: int, first_offset: int) -> OpenFile:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        directory = self.output_dir / f"date={day}"
        name = f"part-{partition:05d}-{first_offset:012d}.{self.worker_id}.inprogress"
        return OpenFile(partition, first_offset, directory / name, time.monotonic())

    async def tick(self) -> None:
        """Periodic work: flush what is pending, finish files past their age, retry when blocked.

        Partitions are done concurrently: one after the other, finishing eight files (each an fsync, a rename,
        a directory fsync and a checkpoint) took up to 0.4 s, which every record of the last one waited for.
        """
        now = time.monotonic()
        await asyncio.gather(*(self._tick_partition(p, state, now) for p, state in list(self.partitions.items())))

    async def _tick_partition(self, partition: int, state: PartitionState, now: float) -> None:
        if state.file is None and not state.closing:
            return
        async with self._lock(partition):
            if self.partitions.get(partition) is not state:
                return
            f = state.file
            if state.closing or (f is not None and now - f.opened_at >= self.max_age_s):
                self._detach(state)
                await self._guarded(self._finish_closing, state)
            elif f is not None and f.pending:
                await self._guarded(self._flush, f)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval if self.blocked is None else RETRY_S)
            await self.tick()

    # -- the durable steps -------------------------------------------------------------------------------

    async def _flush(self, f: OpenFile) -> None:
        # Shielded: a cancelled caller (a timer stopped at shutdown) must not abandon a write that a worker
        # thread is already doing, or the batch would be both on disk and back in `pending`.
        await asyncio.shield(self._flush_now(f))

    async def _flush_now(self, f: OpenFile) -> None:
        async with f.io_lock:
            await self._flush_locked(f)

    async def _flush_locked(self, f: OpenFile) -> None:
        if not f.pending:
            return
        # Take the batch before awaiting: the stream keeps appending to the open file meanwhile.
        batch, f.pending, f.pending_bytes = f.pending, [], 0
        try:
            if f.handle is None:
                await aiofiles.os.makedirs(f.tmp_path.parent, exist_ok=True)
                f.handle = await aiofiles.open(f.tmp_path, "ab")
            data = b"".join(batch)
            handle = f.handle
            try:
                await handle.write(data)  # type: ignore[attr-defined]
                await handle.flush()  # type: ignore[attr-defined]
            except OSError:
                # A partial write may have reached the file: cut it back so the retry starts clean.
                f.handle = None
                with contextlib.suppress(OSError):
                    await handle.close()  # type: ignore[attr-defined]
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(os.truncate, f.tmp_path, f.size)
                raise
        except BaseException:
            f.pending = batch + f.pending
            f.pending_bytes = sum(len(x) for x in f.pending)
            raise
        f.size += len(data)

    def _detach(self, state: PartitionState) -> None:
        """Close the current file to new records; it is finished by `_finish_closing`."""
        if state.file is not None:
            state.closing.append(state.file)
            state.file = None

    async def _finish_closing(self, state: PartitionState) -> None:
        while state.closing:
            await self._finish_file(state, state.closing[0])
            state.closing.pop(0)

    async def _finish_file(self, state: PartitionState, f: OpenFile) -> None:
        await asyncio.shield(self._finish_file_now(state, f))  # see _flush: never half-done on cancellation

    async def _finish_file_now(self, state: PartitionState, f: OpenFile) -> None:
        async with f.io_lock:
            if not f.finished:
                await self._finish_locked(state, f)

    async def _finish_locked(self, state: PartitionState, f: OpenFile) -> None:
        await self._flush_locked(f)
        if f.handle is not None:
            handle = f.handle
            await asyncio.to_thread(os.fsync, handle.fileno())  # type: ignore[attr-defined]
            await handle.close()  # type: ignore[attr-defined]
            f.handle = None
        final = f.tmp_path.with_name(f"part-{f.partition:05d}-{f.first_offset:012d}-{f.last_offset:012d}.jsonl")
        if not f.renamed and self._before_finish is not None:
            # Once the file is finished its messages are never replayed, so the table updates they made (which
            # mark them as seen) must be in Kafka first; otherwise a worker that recovers the tables without
            # them would accept a later repeat as new.
            await self._before_finish()
        if not f.renamed:  # a retry after a failed checkpoint must not rename twice
            await aiofiles.os.rename(f.tmp_path, final)
            f.renamed = True
            await asyncio.to_thread(_fsync_dir, final.parent)
        await asyncio.to_thread(self._write_checkpoint, f.partition, f.last_offset, final)
        state.finished_offset = max(state.finished_offset, f.last_offset)
        f.finished = True
        acks, f.acks = f.acks, []
        for ack in acks:
            ack()
        self._on_finished(f.partition, f.records)

    def _write_checkpoint(self, partition: int, last_offset: int, final: Path) -> None:
        path = self.state_dir / f"partition-{partition:05d}.json"
        tmp = path.with_suffix(f".{self.worker_id}.tmp")
        tmp.write_text(json.dumps({"last_offset": last_offset, "file": str(final.relative_to(self.output_dir))}))
        os.replace(tmp, path)

    async def _finish_until_done(self, state: PartitionState) -> None:
        self._detach(state)
        while state.closing:
            if await self._guarded(self._finish_closing, state):
                return
            await asyncio.sleep(RETRY_S)

    async def _guarded(self, step: Callable[..., object], *args: object) -> bool:
        """Run a durable step; on a storage error block the sink (never drop data) and report it."""
        try:
            await step(*args)  # type: ignore[misc]
        except Exception as exc:
            reason = _storage_reason(exc) if isinstance(exc, OSError) else f"state not durable: {exc!r}"[:300]
            if self.blocked != reason:
                log.error("airq: output blocked, not consuming until it can write again: %s", reason)
            self.blocked = reason
            self._writable.clear()
            self._on_blocked(reason)
            return False
        if self.blocked is not None:
            log.warning("airq: output writable again; resuming")
            self.blocked = None
            self._writable.set()
            self._on_blocked(None)
        return True


def _storage_reason(exc: OSError) -> str:
    names = {
        errno.ENOSPC: "disk full",
        errno.EACCES: "permission denied",
        errno.EROFS: "read-only file system",
        errno.EDQUOT: "disk quota exceeded",
    }
    what = names.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    return f"{what} ({exc.filename or 'output directory'})"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
