"""The sink itself: owning partitions, writing, finishing, blocking and giving partitions up.

The protocol is described in the package docstring; file-level details in `files`, recovery in `recovery`,
the partition locks in `locks`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airq_app.settings import OutputSettings
from airq_app.sink import files
from airq_app.sink.files import Abandoned, OpenFile, storage_kind, storage_reason
from airq_app.sink.locks import PartitionLocks, peek_finished, unlock
from airq_app.sink.ratelimit import RateLimitedLog
from airq_app.sink.recovery import checkpoint_path, recover_partition

log = logging.getLogger("airq.sink")

RETRY_S = 2.0  # between retries while blocked
DISCARD_S = 2.0  # at most, to delete a dropped file when giving a partition up
FLUSH_BYTES = 1024 * 1024  # an open file's pending lines are written out at this size
CLOSE_TIMEOUT_S = 10.0  # at most, to finish the files of a partition being given up


@dataclass(eq=False)
class PartitionState:
    partition: int
    lock_fd: int
    finished_offset: int
    generation: int
    file: OpenFile | None = None  # the file new records go to
    closing: list[OpenFile] = field(default_factory=list)  # detached, being finished in order
    blocked: str | None = None  # why its last durable step failed
    releasing: bool = False  # being given up: refuses records
    released: asyncio.Event = field(default_factory=asyncio.Event)
    quiet: asyncio.TimerHandle | None = None  # `finish_when_quiet`'s check, while one is due

    def unfinished(self) -> list[OpenFile]:
        return [f for f in (*self.closing, self.file) if f is not None and not f.finished]


class SinkClosed(RuntimeError):
    """The partition is not (or no longer) owned by this worker; the record must not be written."""


class JsonLinesSink:
    """Writes each partition's records to its own files in `output.directory`, named after `worker_id`; files are
    finished by the `output` section's size, age and idle rules."""

    def __init__(
        self,
        output: OutputSettings,
        worker_id: str,
        *,
        flush_bytes: int = FLUSH_BYTES,
        on_blocked: Callable[[str | None], None] | None = None,
        on_finished: Callable[[int, int], None] | None = None,
        before_finish: Callable[[], Awaitable[None]] | None = None,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self.output = output
        self.output_dir = output.directory
        self.state_dir = output.directory / "_state"
        self.worker_id = re.sub(r"[^A-Za-z0-9_.-]", "_", worker_id)
        self.flush_bytes = flush_bytes
        self.backlog_bytes = 4 * flush_bytes
        self.close_timeout_s = close_timeout_s
        self.partitions: dict[int, PartitionState] = {}
        self.blocked: str | None = None
        self.locks = PartitionLocks(self.state_dir)
        self.dropped_files = 0  # unfinished files given up with their partition, never acknowledged
        self.dropped_records = 0
        self.log_limiter = RateLimitedLog(log)
        self._writable = asyncio.Event()
        self._writable.set()
        self._on_blocked = on_blocked or (lambda reason: None)
        self._on_finished = on_finished or (lambda partition, records: None)
        # Made durable before a file is: the state that decided its records (the tables' changelog).
        self._before_finish = before_finish
        self._locks: dict[int, asyncio.Lock] = {}
        self._opening: set[int] = set()
        self._open_cancelled: set[int] = set()
        self._quiet_finishes: set[asyncio.Task[None]] = set()

    # -- ownership -------------------------------------------------------------------------------------

    @property
    def waiting_for(self) -> dict[int, str]:
        """Partitions this worker waits for (another worker still holds the lock, or their output cannot be read
        yet), and why."""
        return self.locks.waiting_for

    def _lock(self, partition: int) -> asyncio.Lock:
        return self._locks.setdefault(partition, asyncio.Lock())

    async def open_partition(self, partition: int, generation: int = 0, wait_s: float | None = None) -> int:
        """Take ownership of a partition; return its finished offset (-1 when nothing is finished).

        Waits as long as another worker holds the partition (it lets go within `close_timeout_s` of its
        revocation, or the kernel does when it dies); `waiting_for` shows the wait. Cancelling the caller ends
        the wait, and `wait_s` bounds it (TimeoutError). When the partition is given up meanwhile
        (`close_partition` or `close`, e.g. a stop during a rebalance), the open ends without taking the
        partition and returns the finished offset as far as it can be read: a durable position, never ahead of
        the output, so committing after it is safe; writes to the partition are then refused.
        """
        lock = self._lock(partition)
        while True:
            await lock.acquire()
            state = self.partitions.get(partition)
            if state is None or not state.releasing:
                break
            lock.release()  # the release needs the lock
            await state.released.wait()
        try:
            if state is not None:
                state.generation = generation
                return state.finished_offset
            self._opening.add(partition)
            self._open_cancelled.discard(partition)
            try:
                fd = await self.locks.take(partition, wait_s, lambda: partition in self._open_cancelled)
                if fd is None:
                    log.info("airq: partition %d given up before its output was free; not taken", partition)
                    return await asyncio.to_thread(peek_finished, self.output_dir, self.state_dir, partition)
                try:
                    finished = await self._recover(partition)
                except BaseException:
                    unlock(fd)
                    raise
                if finished is None or partition in self._open_cancelled:
                    unlock(fd)
                    log.info("airq: partition %d given up while it was being opened; not taken", partition)
                    return -1 if finished is None else finished
            finally:
                self._opening.discard(partition)
                self._open_cancelled.discard(partition)
                self.waiting_for.pop(partition, None)
            self.partitions[partition] = PartitionState(partition, fd, finished, generation)
            return finished
        finally:
            lock.release()

    async def _recover(self, partition: int) -> int | None:
        """The partition's finished offset (see `recovery`); None if it is given up while storage errors last."""
        while True:
            try:
                finished, warnings = await asyncio.to_thread(
                    recover_partition, self.output_dir, self.state_dir, partition
                )
            except OSError as exc:
                self.locks.note_wait(partition, f"cannot read the output directory: {storage_reason(exc)}", "retrying")
                if partition in self._open_cancelled:
                    return None
                await asyncio.sleep(RETRY_S)
                continue
            for warning in warnings:
                self.log_limiter.log(logging.WARNING, warning, "%s", warning)
            return finished

    def finished_offset(self, partition: int) -> int:
        state = self.partitions.get(partition)
        return state.finished_offset if state is not None else -1

    def owns(self, partition: int, generation: int | None = None) -> bool:
        state = self.partitions.get(partition)
        return state is not None and not state.releasing and (generation is None or state.generation == generation)

    async def close_partition(self, partition: int) -> None:
        """Finish the partition's files and give up ownership, in about `close_timeout_s` at most.

        The finish gets one attempt. If it fails (the output is blocked) or does not end in time, the
        unfinished files are deleted and their acknowledgements never run: the partition's next owner reads
        those messages again from Kafka. The lock is released in every case.
        """
        if partition in self._opening:
            self._open_cancelled.add(partition)
        state = self.partitions.get(partition)
        if state is None:
            return
        if state.releasing:
            await state.released.wait()
            return
        state.releasing = True
        deadline = time.monotonic() + self.close_timeout_s
        lock = self._lock(partition)
        locked = False
        try:
            locked = await _acquire(lock, deadline)
            self._detach(state)
            if not (locked and await self._finish_once(state, deadline)):
                await self._drop(state, locked)
        finally:
            if locked:
                lock.release()
            self._release(state)

    async def close_partitions(self, partitions: Iterable[int]) -> None:
        """`close_partition` for several partitions at once: together they take no longer than one."""
        results = await asyncio.gather(*(self.close_partition(p) for p in partitions), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("airq: giving a partition up failed: %r", result)

    async def close(self) -> None:
        """Give every partition up (see `close_partition`) and end every wait for one."""
        self._open_cancelled.update(self._opening)
        await self.close_partitions(list(self.partitions))

    async def _finish_once(self, state: PartitionState, deadline: float) -> bool:
        try:
            return await asyncio.wait_for(
                self._guarded(state, self._finish_closing, state), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            log.warning(
                "airq: partition %d: finishing its output took over %.0f s; giving it up",
                state.partition,
                self.close_timeout_s,
            )
            return False

    async def _drop(self, state: PartitionState, locked: bool) -> None:
        """Delete the files that could not be finished; their records stay unacknowledged."""
        dropped, state.closing, state.file = state.unfinished(), [], None
        for f in dropped:
            f.abandon()
            # With the partition lock, no step runs on the file unless one is stuck in a thread (then that
            # step closes the descriptor when it comes back, and stops there).
            idle = locked and not f.io_lock.locked()
            try:
                deleted = await asyncio.wait_for(asyncio.to_thread(files.discard, f, idle), DISCARD_S)
            except (OSError, TimeoutError) as exc:
                log.warning("airq: cannot delete the unfinished %s (%r); the next owner deletes it", f.tmp_path, exc)
                deleted = True
            if not deleted:
                log.info(
                    "airq: partition %d: %s was finished but not acknowledged; the next owner skips its records",
                    f.partition,
                    f.final_path.name,
                )
                continue
            self.dropped_files += 1
            self.dropped_records += f.records
            log.warning(
                "airq: partition %d given up while its output is blocked (%s): dropped the unfinished file "
                "of offsets %d-%d (%d records) unacknowledged; its next owner reads them again from Kafka",
                f.partition,
                state.blocked or "not finished in time",
                f.first_offset,
                f.last_offset,
                f.records,
            )

    def _release(self, state: PartitionState) -> None:
        for f in state.unfinished():  # only when closing was interrupted: never finish them now
            f.abandon()
        if self.partitions.get(state.partition) is state:
            del self.partitions[state.partition]
        unlock(state.lock_fd)
        state.released.set()
        self._update_blocked()

    # -- writing -----------------------------------------------------------------------------------------

    def _owned(self, partition: int, generation: int | None) -> PartitionState:
        state = self.partitions.get(partition)
        if state is None or state.releasing or (generation is not None and state.generation != generation):
            raise SinkClosed(f"partition {partition} is not owned by this worker")
        return state

    async def _wait_writable(self, partition: int, generation: int | None) -> None:
        """Back-pressure while blocked; ends with SinkClosed if the partition is given up meanwhile."""
        while not self._writable.is_set():
            state = self._owned(partition, generation)
            waits = {asyncio.ensure_future(self._writable.wait()), asyncio.ensure_future(state.released.wait())}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def write(
        self,
        partition: int,
        offset: int,
        line: bytes,
        ack: Callable[[], object],
        generation: int | None = None,
        records: int = 1,
        accepted: Callable[[], object] | None = None,
    ) -> None:
        """Append JSON lines (`records` of them, each with its trailing newline) from source `offset`; `ack` runs
        once they are durable. `accepted` runs just before the lines are taken, with no wait in between: what
        it makes pending (the state that decided them) is delivered before their file can be finished, and never
        when the partition is no longer owned (SinkClosed)."""
        if not self._writable.is_set():
            await self._wait_writable(partition, generation)
        state = self._owned(partition, generation)
        if accepted is not None:
            accepted()
        f = state.file
        if f is None:
            f = state.file = self._new_file(partition, offset)
        f.pending.append(line)
        f.pending_bytes += len(line)
        f.last_offset = offset
        f.records += records
        f.acks.append(ack)
        lock = self._lock(partition)
        if lock.locked() and f.pending_bytes < self.backlog_bytes:
            # The partition's files are being flushed or finished (which waits for Kafka): the stream goes on, and
            # the flush or rotation happens at a later write or tick; past `backlog_bytes` it waits.
            return
        if f.size + f.pending_bytes >= self.output.rotate_max_bytes:
            async with lock:
                # Given up meanwhile: the release finished this record's file (acknowledged) or dropped it.
                if self.partitions.get(partition) is state and not state.releasing:
                    self._detach(state)
                    # One attempt: if it fails the sink is blocked, and the next write waits for the retries.
                    await self._guarded(state, self._finish_closing, state)
        elif f.pending_bytes >= self.flush_bytes:
            async with lock:
                if self.partitions.get(partition) is state and not state.releasing:
                    await self._guarded(state, self._flush, f)

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
        self.log_limiter.flush()

    async def _tick_partition(self, partition: int, state: PartitionState, now: float) -> None:
        if (state.file is None and not state.closing) or state.releasing:
            return
        async with self._lock(partition):
            if self.partitions.get(partition) is not state or state.releasing:
                return
            f = state.file
            if state.closing or (
                f is not None
                and (
                    now - f.opened_at >= self.output.rotate_max_age_s
                    or f.size + f.pending_bytes >= self.output.rotate_max_bytes
                )
            ):
                self._detach(state)
                await self._guarded(state, self._finish_closing, state)
            elif f is not None and f.pending:
                await self._guarded(state, self._flush, f)

    def finish_when_quiet(self, partition: int) -> None:
        """The stream has caught up with the partition: finish its open file once `output.finish_idle_s` passes
        without a write to it, rather than when it reaches `output.rotate_max_age_s`. A burst (one poll of every
        location) is then in finished files soon after its last message; a steady stream is not split into more
        files, as its writes keep coming within that time."""
        state = self.partitions.get(partition)
        if state is None or state.file is None or state.quiet is not None or state.releasing:
            return
        self._check_quiet_later(state, state.file)

    def _check_quiet_later(self, state: PartitionState, f: OpenFile) -> None:
        state.quiet = asyncio.get_running_loop().call_later(
            self.output.finish_idle_s, self._quiet_due, state, f, f.records
        )

    def _still_current(self, state: PartitionState, f: OpenFile) -> bool:
        return self.partitions.get(state.partition) is state and not state.releasing and state.file is f

    def _quiet_due(self, state: PartitionState, f: OpenFile, records: int) -> None:
        state.quiet = None
        if not self._still_current(state, f):
            return  # given up, or the file was finished meanwhile
        if f.records != records:  # written meanwhile: look again after another quiet period
            self._check_quiet_later(state, f)
            return
        task = asyncio.ensure_future(self._finish_quiet(state, f))
        self._quiet_finishes.add(task)
        task.add_done_callback(self._quiet_finishes.discard)

    async def _finish_quiet(self, state: PartitionState, f: OpenFile) -> None:
        async with self._lock(state.partition):
            if self._still_current(state, f):
                self._detach(state)
                await self._guarded(state, self._finish_closing, state)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval if self.blocked is None else RETRY_S)
            await self.tick()

    # -- the durable steps -------------------------------------------------------------------------------

    async def _flush(self, f: OpenFile) -> None:
        # Shielded: a cancelled caller (a timer stopped at shutdown) must not abandon a write that a worker
        # thread is already doing, or the batch would be both on disk and back in `pending`.
        await _shielded(self._flush_now(f))

    async def _flush_now(self, f: OpenFile) -> None:
        async with f.io_lock:
            await self._flush_locked(f)

    async def _flush_locked(self, f: OpenFile) -> None:
        _check(f)
        if not f.pending and f.fd is not None and not f.rewrite:
            return
        # Take the batch before awaiting: the stream keeps appending to the open file meanwhile.
        data, f.pending, f.pending_bytes = b"".join(f.pending), [], 0
        try:
            await asyncio.to_thread(files.append, f, data)
        except BaseException:
            if data:
                f.pending.insert(0, data)
                f.pending_bytes += len(data)
            raise
        _check(f)

    def _detach(self, state: PartitionState) -> None:
        """Close the current file to new records; it is finished by `_finish_closing`."""
        if state.file is not None:
            state.closing.append(state.file)
            state.file = None

    async def _finish_closing(self, state: PartitionState) -> None:
        """Finish the detached files in order, stopping at the first that fails."""
        while state.closing:
            f = state.closing[0]
            await self._finish_file(state, f)
            if state.closing and state.closing[0] is f:
                state.closing.pop(0)

    async def _finish_file(self, state: PartitionState, f: OpenFile) -> None:
        await _shielded(self._finish_file_now(state, f))  # see _flush: never half-done on cancellation

    async def _finish_file_now(self, state: PartitionState, f: OpenFile) -> None:
        async with f.io_lock:
            if not f.finished:
                await self._finish_locked(state, f)

    async def _finish_locked(self, state: PartitionState, f: OpenFile) -> None:
        if not f.synced:
            await self._flush_locked(f)
            await asyncio.to_thread(files.sync, f)
            _check(f)
        if not f.renamed:
            if self._before_finish is not None:
                # Once the file is finished its messages are never replayed, so the table updates they made
                # (which mark them as seen) must be in Kafka first; otherwise a worker that recovers the tables
                # without them would accept a later repeat as new.
                await self._before_finish()
            await asyncio.to_thread(files.commit, f)  # not if abandoned meanwhile
        if not f.dir_synced:  # a retry after a failed checkpoint must not rename twice
            await asyncio.to_thread(files.fsync_dir, f.final_path.parent)
            f.dir_synced = True
        if f.abandoned:
            return  # finished on disk, but the partition is gone: its next owner skips these records
        await asyncio.to_thread(self._write_checkpoint, f.partition, f.last_offset, f.final_path)
        if f.abandoned:
            return
        state.finished_offset = max(state.finished_offset, f.last_offset)
        f.finished = True
        acks, f.acks = f.acks, []
        for ack in acks:
            ack()
        self._on_finished(f.partition, f.records)

    def _write_checkpoint(self, partition: int, last_offset: int, final: Path) -> None:
        path = checkpoint_path(self.state_dir, partition)
        tmp = path.with_suffix(f".{self.worker_id}.tmp")
        tmp.write_text(json.dumps({"last_offset": last_offset, "file": str(final.relative_to(self.output_dir))}))
        os.replace(tmp, path)

    async def _guarded(
        self, state: PartitionState, step: Callable[..., Coroutine[Any, Any, None]], *args: object
    ) -> bool:
        """Run a durable step; on a storage error block the sink (never drop data) and report it."""
        try:
            await step(*args)
        except Abandoned:
            return False
        except Exception as exc:
            if isinstance(exc, OSError):
                kind, reason = storage_kind(exc), storage_reason(exc)
            else:
                kind, reason = "state not durable", f"state not durable: {exc!r}"[:300]
            state.blocked = reason
            if state.releasing:
                return False  # being given up: what it blocks on no longer concerns the others
            self.log_limiter.log(
                logging.ERROR,
                ("blocked", kind),
                "airq: output blocked, not consuming until it can write again: %s",
                reason,
            )
            self._update_blocked()
            return False
        if state.blocked is not None:
            state.blocked = None
            self._update_blocked(recovered=True)
        return True

    def _update_blocked(self, recovered: bool = False) -> None:
        """The sink is blocked while any partition it keeps is; report changes."""
        reason = next((s.blocked for _, s in sorted(self.partitions.items()) if s.blocked and not s.releasing), None)
        if reason == self.blocked:
            return
        self.blocked = reason
        if reason is None:
            self._writable.set()
            if recovered:
                self.log_limiter.log(logging.WARNING, "writable", "airq: output writable again; resuming")
            else:
                log.info("airq: output no longer blocked: the blocked partitions were given up")
        else:
            self._writable.clear()
        self._on_blocked(reason)


def _check(f: OpenFile) -> None:
    """Stop a step on a file given up meanwhile (closing its descriptor: no one else will)."""
    if f.abandoned:
        files.close(f)
        raise Abandoned


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` to its end even if the caller is cancelled or gives up waiting (its outcome is then dropped)."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    await asyncio.shield(task)


async def _acquire(lock: asyncio.Lock, deadline: float) -> bool:
    try:
        await asyncio.wait_for(lock.acquire(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return False
    return True
