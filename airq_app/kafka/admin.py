"""Kafka administration: wait for the cluster instead of crashing, create every topic airq uses, and keep checking.

Faust stops the worker when the first bootstrap fails; a worker started before its broker, during a broker restart,
or with credentials the cluster refuses should instead say in one line what it waits for and keep retrying with
backoff, answering health and readiness (503 with that line) meanwhile. Topics are created here, not by the broker's
defaults: `min(3, brokers)` copies and `min.insync.replicas = min(2, copies)` unless configured, so that one lost
broker loses no acknowledged write and stops no writer. Every client opened here uses the worker's `KafkaSecurity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from airq_app.kafka.security import (
    KafkaConfigError,
    KafkaSecurity,
    connection_error,
    describe_kafka_error,
    replication_plan,
)

log = logging.getLogger("airq.startup")

ADMIN_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Replication:
    """What airq asked for (`factor`, `min_insync`) on a cluster of `brokers` live brokers."""

    factor: int
    min_insync: int
    brokers: int


@contextlib.contextmanager
def quiet_aiokafka() -> Iterator[None]:
    """aiokafka logs every failed connection attempt on its own; while waiting, airq's one line per retry says it."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def broker_problem(bootstrap: list[str], security: KafkaSecurity, timeout: float = 5.0) -> str | None:
    """None when a bootstrap server accepts a connection (TLS, SASL) and answers a request, else one line why not.

    The line never holds the password: `describe_kafka_error` names the user, the mechanism or the TLS problem.
    """
    try:
        cause = await connection_error(",".join(bootstrap), security, timeout)
    except Exception as exc:  # any failure is a reason to wait, not to crash
        cause = exc
    return None if cause is None else describe_kafka_error(cause, security)


async def _waiting_server(bind: str, port: int, reason: list[str]) -> web.AppRunner | None:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "waiting_for": "kafka"})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": False, "problems": [reason[0]]}, status=503)

    app = web.Application()
    app.router.add_get("/airq/health", health)
    app.router.add_get("/airq/ready", ready)
    app.router.add_get("/airq/status", ready)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, bind, port).start()
    except OSError as exc:
        log.error("airq: cannot listen on %s:%s: %s", bind, port, exc)
        await runner.cleanup()
        return None
    return runner


async def wait_until(
    attempt: Callable[[], Awaitable[str | None]],
    bind: str,
    port: int,
    max_delay: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run `attempt` until it returns None; after each failure log its one-line reason, serve it as the 503 reason
    of /airq/ready, and retry with exponential backoff (1 s doubling up to `max_delay`)."""
    reason = await attempt()
    if reason is None:
        return
    holder = [reason]
    runner = await _waiting_server(bind, port, holder)
    delay = 1.0
    try:
        while reason is not None:
            holder[0] = reason
            log.error("airq: %s; retrying in %.0f s", reason, delay)
            await sleep(delay)
            delay = min(delay * 2, max_delay)
            reason = await attempt()
    finally:
        if runner is not None:
            await runner.cleanup()


async def wait_for_broker(
    bootstrap: list[str], bind: str, port: int, max_delay: float = 30.0, security: KafkaSecurity | None = None
) -> None:
    """Return once a broker answers; until then log why (one line per retry), back off and serve 503."""
    security = security or KafkaSecurity()

    async def attempt() -> str | None:
        problem = await broker_problem(bootstrap, security)
        return None if problem is None else f"{problem} (bootstrap {','.join(bootstrap)})"

    with quiet_aiokafka():
        await wait_until(attempt, bind, port, max_delay)
    log.info("airq: Kafka broker %s reached", ",".join(bootstrap))


def _replication_factor(described: dict[str, Any]) -> int:
    return min((len(p.get("replicas") or []) for p in described.get("partitions") or []), default=0)


async def ensure_topics(
    bootstrap: list[str],
    topics: dict[str, TopicSpec],
    replication_factor: int | None = None,
    security: KafkaSecurity | None = None,
    min_insync_replicas: int | None = None,
) -> Replication:
    """Create the app's topics with their pinned partition counts and airq's replication before anything uses them.

    The replication factor is `replication_factor`, or `min(3, brokers)` counted from the cluster metadata;
    `min.insync.replicas` is set on each topic (`min(2, factor)` unless configured), whatever the broker defaults.
    Each topic is created on its own (one that exists must not stop the others) and awaited until the metadata lists
    every partition: a table refuses writes while its changelog shows fewer partitions than its source topic. A topic
    that already exists with another partition count, or with fewer copies than configured, is reported with one
    ERROR line: keys would land on other partitions than the tables expect, or one lost broker could lose writes.
    Raises `KafkaConfigError` when a topic has to be created and the cluster cannot meet the configured factor.
    """
    security = security or KafkaSecurity()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS, **security.aiokafka_kwargs()
    )
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        brokers = len(cluster.get("brokers") or [])
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            factor, min_insync = replication_plan(brokers, replication_factor, min_insync_replicas)
        else:
            # Nothing to create: a broker that is down right now must not keep a restarting worker from starting.
            factor = replication_factor or min(3, max(brokers, 1))
            min_insync = min_insync_replicas or min(2, factor)
        created = []
        for name in missing:
            spec = topics[name]
            configs = {"min.insync.replicas": str(min_insync), **spec.configs}
            try:
                response = await admin.create_topics([NewTopic(name, spec.partitions, factor, topic_configs=configs)])
            except TopicAlreadyExistsError:
                continue  # another worker created it first
            for entry in response.topic_errors:  # (topic, error code[, message, ...])
                if entry[1] == 0:
                    created.append(name)
                elif entry[1] != TopicAlreadyExistsError.errno:
                    message = entry[2] if len(entry) > 2 else ""
                    raise KafkaConfigError(f"cannot create topic {name} (error {entry[1]}): {message}")
        if created:
            log.info(
                "airq: created topics %s (replication factor %d, min.insync.replicas %d, %d brokers)",
                ", ".join(created),
                factor,
                min_insync,
                brokers,
            )
        described = await _wait_visible(admin, list(topics))
        for d in described:
            name = d["topic"]
            if d.get("error_code") != 0:
                continue
            count = len(d.get("partitions", []))
            expected = topics[name].partitions
            if count != expected:
                log.error("airq: topic %s has %d partitions, the pipeline expects %d", name, count, expected)
            copies = _replication_factor(d)
            if copies < factor:
                log.error(
                    "airq: topic %s has replication factor %d, the configured replication factor is %d: it existed"
                    " before; add replicas with kafka-reassign-partitions or recreate it",
                    name,
                    copies,
                    factor,
                )
        return Replication(factor, min_insync, brokers)
    finally:
        await admin.close()


async def _wait_visible(admin: AIOKafkaAdminClient, names: list[str], timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        described = await admin.describe_topics(names)
        pending = [d["topic"] for d in described if d.get("error_code") != 0 or not d.get("partitions")]
        if not pending:
            return described
        if time.monotonic() > deadline:
            log.warning("airq: topics %s are not fully visible in the metadata yet", pending)
            return described
        await asyncio.sleep(0.5)


async def prepare_kafka(
    bootstrap: list[str],
    topics: Callable[[], dict[str, TopicSpec]],
    bind: str,
    port: int,
    security: KafkaSecurity,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
    max_delay: float = 30.0,
) -> Replication:
    """Wait for the cluster, then create the topics; any failure (broker gone again, too few brokers for the
    configured replication factor) is logged in one line and retried, with /airq/ready answering 503 meanwhile."""
    await wait_for_broker(bootstrap, bind, port, max_delay, security)
    result: list[Replication] = []

    async def attempt() -> str | None:
        try:
            result.append(await ensure_topics(bootstrap, topics(), replication_factor, security, min_insync_replicas))
        except KafkaConfigError as exc:
            return security.redact(str(exc))
        except Exception as exc:
            return f"cannot create the topics: {describe_kafka_error(exc, security)}"
        return None

    with quiet_aiokafka():
        await wait_until(attempt, bind, port, max_delay)
    return result[-1]


class BrokerProbe:
    """Checks every `interval` seconds that a bootstrap server still answers; `problem` says why not (for readiness).

    Faust's own clients retry quietly through an outage, so without this a worker whose cluster is gone would still
    call itself ready. A problem counts once two checks in a row failed (one slow answer on a busy machine is not
    an outage); a change of state is logged once (WARNING when lost, INFO when back).
    """

    def __init__(
        self, bootstrap: list[str], security: KafkaSecurity, interval: float = 5.0, timeout: float = 10.0
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.interval = interval
        self.timeout = timeout
        self.problem: str | None = None
        self.since: float | None = None
        self._failed = 0
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> str | None:
        found = await broker_problem(self.bootstrap, self.security, self.timeout)
        self._failed = self._failed + 1 if found else 0
        problem = found if self._failed >= 2 else None
        if problem and not self.problem:
            self.since = time.time()
            log.warning("airq: Kafka unreachable: %s", problem)
        elif self.problem and not problem:
            log.info("airq: Kafka reachable again after %.0f s", time.time() - (self.since or time.time()))
            self.since = None
        self.problem = problem
        return problem

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:  # the probe must never take the worker down
                log.debug("airq: Kafka probe failed: %s", exc)
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="airq-kafka-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
