"""The objects one worker is made of, built once at start by `airq_app.worker`, and what they say about its health.

Which parts exist depends on the role: `stream` for `all` and `process`, `poller` and `election` for `all` and
`ingest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airq_app.application import AirqApp
from airq_app.ingest.election import PollerElection
from airq_app.ingest.poller import Poller
from airq_app.kafka.topics import Topics
from airq_app.metrics import Metrics
from airq_app.settings import Settings
from airq_app.status import WorkerStatus
from airq_app.stream.processor import StreamProcessor


@dataclass
class Runtime:
    settings: Settings
    app: AirqApp
    status: WorkerStatus
    metrics: Metrics
    topics: Topics
    url: str
    stream: StreamProcessor | None = None
    poller: Poller | None = None
    election: PollerElection | None = None

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready = broker reached (and still answering, producer delivering) and, per role: partitions assigned,
        tables recovered, output writable (stream); joined the poller group, as the poller or as its standby
        (ingest)."""
        app, status = self.app, self.status
        problems: list[str] = app.kafka_problems()
        if self.stream is not None:
            if not app.consumer.assignment():
                problems.append("no partitions assigned yet (waiting for the broker and the group)")
            elif app.rebalancing:
                problems.append("rebalancing")
            # TableManagerT, Faust's abstract type of app.tables, lacks the `recovery` of faust's TableManager.
            elif app.in_recovery or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
                problems.append("tables recovering")
            if status.sink_blocked:
                problems.append(f"output blocked: {status.sink_blocked}")
            waiting = getattr(self.stream.sink, "waiting_for", None)
            if waiting:
                problems.append(f"waiting for the output of partitions {sorted(waiting)} to be released")
        if self.election is not None:
            if self.election.error:
                problems.append(f"poller election: {self.election.error}")
            elif not self.election.joined:
                problems.append("joining the poller group")
        return (not problems, problems)

    def assignment(self) -> dict[str, Any]:
        if self.stream is None:
            return {"active": [], "standby": []}
        try:
            assigned = self.app.assignor.assigned_actives()
            standbys = self.app.assignor.assigned_standbys()
        except Exception:
            assigned, standbys = set(), set()
        topic = self.topics.names.measurements
        active = sorted(tp.partition for tp in assigned if tp.topic == topic)
        # Standby replicas are table changelog partitions kept warm for a partition another worker owns.
        standby = sorted({tp.partition for tp in standbys} - set(active))
        return {"active": active, "standby": standby}

    def consumer_lag(self) -> dict[int, int]:
        """Per active partition: high-water mark minus the next offset this worker will process."""
        if self.stream is None:
            return {}
        lag: dict[int, int] = {}
        for tp in self.app.consumer.assignment():
            if tp.topic != self.topics.names.measurements:
                continue
            try:
                highwater = self.app.consumer.highwater(tp)
            except Exception:
                continue
            if highwater is None or highwater < 0:
                continue
            lag[tp.partition] = max(0, highwater - self.status.positions.get(tp.partition, 0))
        return lag

    def metrics_extra(self) -> dict[str, Any]:
        ok, _ = self.readiness()
        extra = {"lag": self.consumer_lag(), "ready": ok, "active": self.assignment()["active"]}
        if self.poller is not None:
            extra["ingest"] = self.poller.summary()
        if self.election is not None:
            extra["admin_lookups"] = self.election.admin_lookups
        return extra
