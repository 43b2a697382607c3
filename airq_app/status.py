"""This worker's counters and health facts, shared by the stream, the poller, the sink and the web views.

One `WorkerStatus` is built per worker by `airq_app.worker` and handed to each part; nothing here is global.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LastPoll:
    started_at: str | None = None
    finished_at: str | None = None
    outcome: str | None = None  # "ok", "partial", "failed"
    duration_s: float | None = None
    requests: int = 0
    measurements: int = 0
    errors: list[str] = field(default_factory=list)
    rate_limit_remaining: int | None = None


class WorkerStatus:
    """Process-local counters; each worker reports its own."""

    def __init__(self) -> None:
        self.started = time.time()
        self.counters: Counter[str] = Counter()
        self.filtered: Counter[str] = Counter()
        self.dead_lettered: Counter[str] = Counter()
        self.last_poll = LastPoll()
        self.openaq_responses: Counter[int] = Counter()
        self.positions: dict[int, int] = {}  # partition -> next offset to consume
        self.sink_blocked: str | None = None
        self.lost: list[dict[str, int]] = []  # offset ranges retention deleted before they were processed

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def filter(self, reason: str) -> None:
        self.filtered[reason] += 1

    def dead_letter(self, reason: str) -> None:
        self.dead_lettered[reason.split(":", 1)[0]] += 1

    def lost_to_retention(self, partition: int, first: int, last: int) -> None:
        self.counters["lost_to_retention"] += last - first + 1
        self.lost = (self.lost + [{"partition": partition, "from": first, "to": last}])[-20:]

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        return {
            "polled": c["polled"],
            "poll_cycles": c["poll_cycles"],
            "produced": c["produced"],
            "consumed": c["consumed"],
            "written": c["written"],
            "duplicates": c["duplicates"],
            "revisions": c["revisions"],
            "replayed": c["replayed"],
            "filtered": dict(self.filtered),
            "filtered_total": sum(self.filtered.values()),
            "dead_lettered": sum(self.dead_lettered.values()),
            "dead_lettered_by_reason": dict(self.dead_lettered),
            "flagged": c["flagged"],
            "files_finished": c["files_finished"],
            "caught_up": c["caught_up"],
            "gaps_given_up": c["gaps_given_up"],
            "send_failed": c["send_failed"],
            "realigned": c["realigned"],
            "restarted_fetches": c["restarted_fetches"],
            "stale": c["stale"],
            "handed_over": c["handed_over"],
            "before_open": c["before_open"],
            "tables_caught_up": c["tables_caught_up"],
            "poll_skipped": c["poll_skipped"],
            "lost_to_retention": c["lost_to_retention"],
            "lost_ranges": list(self.lost),
        }
