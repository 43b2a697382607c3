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
  consumer never commits an offset whose output is not durable. Files of a partition are finished in order.
- The finished offset of a partition (checkpoint, or the newest finished file if the checkpoint lags) tells the
  stream which replayed messages are already in finished files; those are skipped.
- A worker holds an exclusive `flock` on a partition's lock file while it owns the partition, so two workers
  sharing the output directory never write the same partition at once; the kernel frees the lock when a
  worker dies, even by SIGKILL. A worker taking a partition over waits for that lock as long as it takes
  (`waiting_for` says which partitions and why, so the worker can report itself not ready).
- Disk full or a read-only directory: the data stays in memory, the sink reports itself blocked (and the worker
  not ready), stops accepting records (back-pressure on the stream) and retries until the write succeeds.
  A failed write or fsync never leaves a partial line in a file that gets finished (see `files`).
- Giving a partition up (rebalance or stop) never waits for a blocked output: the finish gets one attempt of
  at most `close_timeout_s`; if it fails, the unfinished files are deleted and their messages are not
  acknowledged, so the partition's next owner reads them again from Kafka. The lock is released either way.
- No partial line survives a SIGKILL: nothing is renamed to `*.jsonl` before its fsync, and a new owner deletes
  every `*.inprogress` file of its partition before writing.
"""

from airq_app.sink.core import JsonLinesSink, SinkClosed

__all__ = ["JsonLinesSink", "SinkClosed"]
