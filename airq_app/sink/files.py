"""One output file of the sink, and the blocking system calls on it (run in worker threads).

An unfinished file's bytes stay in memory (`OpenFile.written`) until its fsync succeeds: after a failed write or
fsync the file on disk cannot be trusted, so it is written again from memory, never fsynced again on the same
descriptor (docs/output.md, "The output directory", has the rules and their cost). The calls go through `os` at
call time so tests can inject storage faults; `storage_kind` and `storage_reason` name failures for logs and
readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class Abandoned(Exception):
    """The file was given up (its partition released) while a step on it was under way."""


@dataclass(eq=False)
class OpenFile:
    partition: int
    first_offset: int
    tmp_path: Path
    opened_at: float
    last_offset: int = -1
    records: int = 0
    pending: list[bytes] = field(default_factory=list)  # lines not written yet
    pending_bytes: int = 0
    written: list[bytes] = field(default_factory=list)  # batches written, kept until the fsync succeeds
    size: int = 0  # bytes in `written`: what the file holds while it can be trusted
    acks: list[Callable[[], object]] = field(default_factory=list)
    fd: int | None = None
    rewrite: bool = False  # the file on disk cannot be trusted: discard it and write `written` again
    synced: bool = False  # fsync succeeded: the content is durable and `written` is freed
    renamed: bool = False
    dir_synced: bool = False
    finished: bool = False
    abandoned: bool = False  # never opened, renamed, checkpointed or acknowledged again
    io_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one step on the file at a time
    # Held around creating, renaming and deleting the file, and around setting `abandoned`: once a file is
    # abandoned (in the event loop), no step still running in a thread can create or finish it.
    name_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def final_path(self) -> Path:
        return self.tmp_path.with_name(
            f"part-{self.partition:05d}-{self.first_offset:012d}-{self.last_offset:012d}.jsonl"
        )

    def abandon(self) -> None:
        with self.name_lock:
            self.abandoned = True


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def close(f: OpenFile) -> None:
    fd, f.fd = f.fd, None
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _open(f: OpenFile) -> None:
    """Open the file for appending; a new file, or one to rewrite, starts as a new inode."""
    with f.name_lock:
        if f.abandoned:
            raise Abandoned
        f.tmp_path.parent.mkdir(parents=True, exist_ok=True)
        if f.rewrite or f.size == 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f.tmp_path)
        f.fd = os.open(f.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    if f.rewrite:
        try:
            for chunk in f.written:
                write_all(f.fd, chunk)
        except OSError:
            close(f)
            raise
        f.rewrite = False


def append(f: OpenFile, data: bytes) -> None:
    """Write one batch after what the file holds (opening or rewriting it first)."""
    if f.fd is None or f.rewrite:
        _open(f)
    assert f.fd is not None
    try:
        if data:
            write_all(f.fd, data)
    except OSError:
        # Part of the batch may be in the file: cut it back to the last whole batch, or failing that, have it
        # written again from scratch. The descriptor is not reused either way.
        close(f)
        try:
            os.truncate(f.tmp_path, f.size)
        except OSError:
            f.rewrite = True
        raise
    if data:
        f.written.append(data)
        f.size += len(data)


def sync(f: OpenFile) -> None:
    """fsync and close the file; on failure the descriptor is dropped and the file rewritten next time."""
    if f.fd is None or f.rewrite:
        _open(f)
    assert f.fd is not None
    try:
        os.fsync(f.fd)
    except OSError:
        close(f)
        f.rewrite = True
        raise
    close(f)
    f.synced = True
    f.written = []


def commit(f: OpenFile) -> None:
    """The atomic rename that finishes the file, unless it was abandoned first."""
    with f.name_lock:
        if f.abandoned:
            raise Abandoned
        os.rename(f.tmp_path, f.final_path)
        f.renamed = True


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(f: OpenFile, close_fd: bool) -> bool:
    """Delete an abandoned file unless it was already renamed (finished, not acknowledged); True if deleted.

    `close_fd`: no step is under way, so the descriptor is closed here (otherwise that step closes it).
    """
    with f.name_lock:
        f.abandoned = True
        if close_fd:
            close(f)
        if f.renamed:
            if not f.dir_synced:
                with contextlib.suppress(OSError):
                    fsync_dir(f.final_path.parent)
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f.tmp_path)
        return True


_STORAGE_ERRORS = {
    errno.ENOSPC: "disk full",
    errno.EACCES: "permission denied",
    errno.EROFS: "read-only file system",
    errno.EDQUOT: "disk quota exceeded",
}


def storage_kind(exc: OSError) -> str:
    """What kind of storage failure `exc` is: disk full, permission denied, ..."""
    return _STORAGE_ERRORS.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def storage_reason(exc: OSError) -> str:
    """The failure and the file it concerns, for logs and readiness."""
    return f"{storage_kind(exc)} ({exc.filename or 'output directory'})"
