"""The table manager: no sleep at start, and a changelog queue that only a revocation empties.

Faust internals relied on (faust-streaming and mode-streaming at `PINNED_VERSIONS`; the fingerprints in
`tests/unit/test_faust_internals.py` name each upstream object):

- `TableManager.on_start` (replaced: Faust's sleeps 1 s before `_update_channels` and `recovery.start`) and
  `TableManager.changelog_queue` (replaced: the queue is a `ChangelogQueue`), with its `_changelog_queue`.
- The changelog queue's emptying: mode's `ThrowableQueue.clear`, called by `FlowControlEvent.clear` for every
  queue made with `clear_on_resume`, on each `FlowControlEvent.resume`; `FlowControlQueue._flow_control` tells
  whether the flow is suspended. Faust resumes the flow several times in one recovery (`Recovery._restart_recovery`)
  and suspends it, then clears every queue, when partitions are revoked (`App._on_partitions_revoked`).
"""

from __future__ import annotations

from faust import tables as faust_tables
from mode.utils.queues import ThrowableQueue


class ChangelogQueue(ThrowableQueue):
    """The queue of changelog records on their way to the tables (recovery and standbys), emptied only while the
    flow is suspended.

    Faust's empties whenever the app's flow control resumes, and one recovery resumes it several times: after the
    active partitions are read, after the standby partitions are sought and resumed, and again once the streams are
    sought. Records a standby fetched in between would be dropped while the fetch position moves on, and its later
    records would advance its persisted offset past the hole: a replica missing part of its changelog, which,
    promoted to active, accepts a repeat as new and writes a measurement twice. A rebalance still empties it: the
    revocation suspends the flow, then clears every queue.
    """

    def clear(self) -> None:
        if not self._flow_control.is_active():
            super().clear()


class TableManager(faust_tables.TableManager):
    """Faust's table manager without the 1 s it sleeps at start (time for tables declared late to register):
    airq declares every table before the app starts (`airq_app.worker.build`), and the stream waits on it. Its
    changelog queue is a `ChangelogQueue`."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()

    @property
    def changelog_queue(self) -> ThrowableQueue:
        if self._changelog_queue is None:
            self._changelog_queue = ChangelogQueue(
                maxsize=self.app.conf.stream_buffer_maxsize,
                flow_control=self.app.flow_control,
                clear_on_resume=True,  # managed by the flow control: cleared at a revocation (`clear` above)
            )
        return self._changelog_queue
