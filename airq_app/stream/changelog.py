"""Changelog delivery of tables written through Faust: an update that never reached Kafka must hold its file back.

For the location summaries (the sensor state has `airq_app.stream.table_buffer`). Faust only logs a failed changelog
send, and a file finished while the update marking its messages as seen was lost would let a later repeat through
after a failover. `ChangelogDelivery`, a Faust sensor, records failed sends; `resolve()`, run before a file is
finished, sends each such key's current value again, and until then the sink keeps the file open (not durable).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import faust

log = logging.getLogger("airq.changelog")


class ChangelogNotDelivered(RuntimeError):
    """Some table updates could not be sent to their changelog (yet)."""


class ChangelogDelivery(faust.Sensor):
    def __init__(self, tables: list[faust.Table]) -> None:
        super().__init__()
        self.tables = {t.changelog_topic_name: t for t in tables}
        # (changelog topic, partition, serialized key) -> the last error
        self.failed: dict[tuple[str, int, bytes], str] = {}
        self.errors = 0

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:
        if topic in self.tables:
            return (topic, message.partition, message.key)
        return None

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        if state is None:
            return
        topic, partition, key = state
        self.errors += 1
        if (topic, partition, key) not in self.failed:
            log.error("airq: a table update for %s[%s] was not delivered: %s", topic, partition, exc)
        self.failed[(topic, partition, key)] = f"{type(exc).__name__}: {exc}"[:200]

    async def resolve(self, producer: Any) -> None:
        """Send the current value of every key whose update failed; raise while any still fails."""
        for (topic, partition, key), _error in list(self.failed.items()):
            table = self.tables[topic]
            value = table.data.get(json.loads(key)) if key is not None else None
            try:
                await producer.send_and_wait(topic, key, value, partition, None, None)
            except Exception as exc:
                self.failed[(topic, partition, key)] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            del self.failed[(topic, partition, key)]
        if self.failed:
            (topic, partition, _key), error = next(iter(self.failed.items()))
            raise ChangelogNotDelivered(
                f"{len(self.failed)} table update(s) not delivered to the changelog, e.g. {topic}[{partition}]: {error}"
            )
