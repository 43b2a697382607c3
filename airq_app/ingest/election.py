"""Which worker polls: exactly one among the ingest-capable workers (`AIRQ_ROLE` `all` or `ingest`).

Every such worker joins the consumer group `<app id>-poller` on the one-partition topic `airq_poller_election`; the
member holding its partition polls, and Kafka's group protocol moves it on a clean stop or an expired session. It is
independent of the processing group (docs/workers.md, "Roles"). Each member's client id carries its web URL, so any
worker can tell which one polls now (`current_poller`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

log = logging.getLogger("airq.election")

CLIENT_PREFIX = "airq-poller|"


class _Listener(ConsumerRebalanceListener):
    def __init__(self, election: PollerElection) -> None:
        self.election = election

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.election._set_leading(False)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.election.joined = True
        self.election._set_leading(any(tp.topic == self.election.topic for tp in assigned))


class PollerElection:
    def __init__(
        self,
        bootstrap: list[str],
        topic: str,
        group_id: str,
        url: str,
        session_timeout_s: float = 6.0,
        client_kwargs: dict[str, Any] | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.url = url
        self.session_timeout_s = session_timeout_s
        self.client_kwargs = dict(client_kwargs or {})
        self.redact = redact  # removes the Kafka password from error texts before they are logged or shown
        self.leading = False
        self.joined = False
        self.leading_since: float | None = None
        self.error: str | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._cache: tuple[float, str | None] = (0.0, None)
        self._lookup = asyncio.Lock()  # one admin lookup at a time: concurrent status requests share its answer
        self.admin_lookups = 0  # Kafka admin lookups of the polling worker so far (status shows it)

    def _set_leading(self, leading: bool) -> None:
        if leading and not self.leading:
            self.leading_since = time.time()
            log.info("airq: this worker is the poller now")
        elif not leading and self.leading:
            log.info("airq: this worker is no longer the poller")
            self.leading_since = None
        self.leading = leading

    def record_error(self, exc: BaseException) -> None:
        """Why the election cannot run, as status and readiness show it: never with the Kafka password."""
        self.error = self.redact(str(exc) or type(exc).__name__)[:300]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="airq-poller-election")

    async def _run(self) -> None:
        delay = 1.0
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group_id,
                client_id=CLIENT_PREFIX + self.url,
                enable_auto_commit=False,
                auto_offset_reset="latest",
                session_timeout_ms=int(self.session_timeout_s * 1000),
                heartbeat_interval_ms=max(100, int(self.session_timeout_s * 1000 / 6)),
                max_poll_interval_ms=60_000,
                # Sticky: a worker joining or leaving does not move polling away from the worker doing it.
                partition_assignment_strategy=(StickyPartitionAssignor,),
                **self.client_kwargs,
            )
            self._consumer = consumer
            try:
                await consumer.start()
                consumer.subscribe([self.topic], listener=_Listener(self))
                self.error = None
                delay = 1.0
                while True:
                    await consumer.getmany(timeout_ms=1000)  # keeps the membership alive; the messages are unused
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.record_error(exc)
                log.warning("airq: poller election: %s; retrying in %.0f s", self.error, delay)
            finally:
                self._set_leading(False)
                self.joined = False
                await consumer.stop()  # leaves the group: another member takes over at once
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def current_poller(self, max_age_s: float = 2.0) -> str | None:
        """The URL of the worker that polls now (from the group's member assignment), cached for `max_age_s`."""
        if self.leading:
            return self.url
        at, cached = self._cache
        if time.monotonic() - at < max_age_s:
            return cached
        async with self._lookup:
            at, cached = self._cache
            if time.monotonic() - at < max_age_s:  # another request looked it up while this one waited
                return cached
            self.admin_lookups += 1
            found = await describe_poller(self.bootstrap, self.group_id, self.topic, self.client_kwargs, self.redact)
            self._cache = (time.monotonic(), found)
            return found


async def describe_poller(
    bootstrap: list[str],
    group_id: str,
    topic: str,
    client_kwargs: dict[str, Any] | None = None,
    redact: Callable[[str], str] = str,
) -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **(client_kwargs or {}))
    try:
        await admin.start()
        responses = await admin.describe_consumer_groups([group_id])
        for response in responses:
            for group in response.to_object()["groups"]:
                for member in group["members"]:
                    raw = member["member_assignment"]
                    if not raw:
                        continue
                    assignment = ConsumerProtocolMemberAssignment.decode(raw)
                    if any(t == topic and parts for t, parts in assignment.assignment):
                        client_id = member["client_id"]
                        return client_id[len(CLIENT_PREFIX) :] if client_id.startswith(CLIENT_PREFIX) else client_id
    except Exception as exc:
        log.debug("airq: cannot describe the poller group: %s", redact(str(exc)))
    finally:
        await admin.close()
    return None
