"""Kafka administration: wait for the cluster instead of crashing, create every topic airq uses, and keep checking.

Faust stops the worker when the first bootstrap fails; here a worker waits, retrying with backoff, says in one line
what it waits for and answers health and readiness meanwhile. Topics get `min(3, brokers)` copies (see
`airq_app.kafka.replication`) and `min.insync.replicas = min(2, copies)` unless configured, so one lost broker loses
no acknowledged write and stops no writer; too few copies is a readiness problem (`ReplicationCheck`). Every client
uses the worker's `KafkaSecurity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from airq_app.kafka.replication import (
    TooFewBrokers,
    cluster_view,
    creation_plan,
    replication_target,
    shortfalls,
)
from airq_app.kafka.security import (
    KafkaConfigError,
    KafkaSecurity,
    connection_error,
    describe_kafka_error,
    replication_plan,
)

log = logging.getLogger("airq.startup")

ADMIN_TIMEOUT_MS = 15_000
TOPIC_RETRY_S = 5.0  # how often a worker waiting for brokers looks again: it goes on soon after they are back
REPEAT_LOG_S = 30.0  # an unchanged reason to wait is logged again after this long


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Replication:
    """What airq asked for (`factor`, `min_insync`) on a cluster of `brokers` live brokers, and the topics found
    with fewer copies than the target (`problems`, one line per replica count)."""

    factor: int
    min_insync: int
    brokers: int
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wait:
    """A reason to wait, logged at `level`: WARNING for what clears by itself (brokers still down), else ERROR."""

    reason: str
    level: int = logging.ERROR


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


async def _waiting_server(
    bind: str, port: int, reason: list[str], web_options: Mapping[str, Any] | None = None
) -> web.AppRunner | None:
    """/airq/health, /airq/ready and /airq/status while Kafka is awaited; `web_options` are the worker's own
    aiohttp application options (the web token's check)."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "waiting_for": "kafka"})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": False, "problems": [reason[0]]}, status=503)

    app = web.Application(**(web_options or {}))
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
    attempt: Callable[[], Awaitable[str | Wait | None]],
    bind: str,
    port: int,
    max_delay: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    repeat_s: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    web_options: Mapping[str, Any] | None = None,
) -> None:
    """Run `attempt` until it returns None; after each failure log its one-line reason, serve it as the 503 reason
    of /airq/ready, and retry with exponential backoff (1 s doubling up to `max_delay`). An unchanged reason is
    logged again only once `repeat_s` seconds have passed since it was last logged."""
    found = await attempt()
    if found is None:
        return
    holder = [""]
    runner = await _waiting_server(bind, port, holder, web_options)
    delay = 1.0
    logged: tuple[str, float] | None = None
    try:
        while found is not None:
            wait = found if isinstance(found, Wait) else Wait(found)
            holder[0] = wait.reason
            if logged is None or logged[0] != wait.reason or clock() - logged[1] >= repeat_s:
                log.log(wait.level, "airq: %s; retrying in %.0f s", wait.reason, delay)
                logged = (wait.reason, clock())
            await sleep(delay)
            delay = min(delay * 2, max_delay)
            found = await attempt()
    finally:
        if runner is not None:
            await runner.cleanup()


async def wait_for_broker(
    bootstrap: list[str],
    bind: str,
    port: int,
    max_delay: float = 30.0,
    security: KafkaSecurity | None = None,
    web_options: Mapping[str, Any] | None = None,
) -> None:
    """Return once a broker answers; until then log why (one line per retry), back off and serve 503."""
    security = security or KafkaSecurity()

    async def attempt() -> str | None:
        problem = await broker_problem(bootstrap, security)
        return None if problem is None else f"{problem} (bootstrap {','.join(bootstrap)})"

    with quiet_aiokafka():
        await wait_until(attempt, bind, port, max_delay, web_options=web_options)
    log.info("airq: Kafka broker %s reached", ",".join(bootstrap))


async def ensure_topics(
    bootstrap: list[str],
    topics: dict[str, TopicSpec],
    replication_factor: int | None = None,
    security: KafkaSecurity | None = None,
    min_insync_replicas: int | None = None,
    waited_s: float = math.inf,
) -> Replication:
    """Create the app's topics with their pinned partition counts and airq's replication before anything uses them.

    The replication factor is `replication_factor`, or `min(3, cluster size)` (`airq_app.kafka.replication`);
    `min.insync.replicas` is set on each topic (`min(2, factor)` unless configured), whatever the broker defaults.
    Each topic is created on its own (one that exists must not stop the others) and awaited until the metadata lists
    every partition: a table refuses writes while its changelog shows fewer partitions than its source topic. A topic
    that exists with another partition count, or with fewer copies than the target, is reported with one ERROR line:
    keys would land on other partitions than the tables expect, or one lost broker could lose writes.
    Raises `TooFewBrokers` when a topic has to be created and too few brokers answer for the target (`waited_s`
    since the first try: see `creation_plan`), `KafkaConfigError` when the cluster refuses the settings.
    """
    security = security or KafkaSecurity()
    view = await cluster_view(bootstrap, security, topics)
    missing = [name for name in topics if name not in view.existing]
    if missing:
        plan = creation_plan(view, replication_factor, len(set(bootstrap)), waited_s)
        if plan.wait:
            raise TooFewBrokers(plan.wait)
        if plan.warning:
            log.warning("airq: %s", plan.warning)
        factor, min_insync = replication_plan(len(view.answering), plan.factor, min_insync_replicas)
    else:
        # Nothing to create: a broker that is down right now must not keep a restarting worker from starting.
        factor = replication_target(replication_factor, len(view.brokers), view.replicas.values()).factor
        min_insync = min_insync_replicas or min(2, factor)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS, **security.aiokafka_kwargs()
    )
    await admin.start()
    try:
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
                len(view.answering),
            )
        described = await _wait_visible(admin, list(topics))
    finally:
        await admin.close()
    replicas = {}
    for d in described:
        name = d["topic"]
        if d.get("error_code") != 0 or not d.get("partitions"):
            continue
        count = len(d["partitions"])
        expected = topics[name].partitions
        if count != expected:
            log.error("airq: topic %s has %d partitions, the pipeline expects %d", name, count, expected)
        replicas[name] = min(len(p.get("replicas") or []) for p in d["partitions"])
    problems = shortfalls(replicas, replication_target(replication_factor, len(view.brokers), replicas.values()))
    for line in problems:
        log.error("airq: %s", line)
    return Replication(factor, min_insync, len(view.answering), tuple(problems))


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
    web_options: Mapping[str, Any] | None = None,
) -> Replication:
    """Wait for the cluster, then create the topics; any failure (broker gone again, too few brokers for the
    replication factor) is logged in one line and retried, with /airq/ready answering 503 meanwhile. Too few
    brokers is a WARNING, looked at again every `TOPIC_RETRY_S` and logged again every `REPEAT_LOG_S`."""
    await wait_for_broker(bootstrap, bind, port, max_delay, security, web_options)
    result: list[Replication] = []
    began = time.monotonic()

    async def attempt() -> str | Wait | None:
        try:
            waited = time.monotonic() - began
            result.append(
                await ensure_topics(bootstrap, topics(), replication_factor, security, min_insync_replicas, waited)
            )
        except TooFewBrokers as exc:
            return Wait(security.redact(str(exc)), logging.WARNING)
        except KafkaConfigError as exc:
            return security.redact(str(exc))
        except Exception as exc:
            return f"cannot create the topics: {describe_kafka_error(exc, security)}"
        return None

    with quiet_aiokafka():
        await wait_until(
            attempt, bind, port, min(max_delay, TOPIC_RETRY_S), repeat_s=REPEAT_LOG_S, web_options=web_options
        )
    return result[-1]


class Periodic:
    """A check run every `interval` seconds in a task of its own, from `start` until `stop`; a failing check is
    logged at DEBUG and never takes the worker down."""

    name = "airq-check"
    interval = 5.0
    _task: asyncio.Task[None] | None = None

    async def check(self) -> Any:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:
                log.debug("airq: %s failed: %s", self.name, exc)
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class BrokerProbe(Periodic):
    """Checks every `interval` seconds that a bootstrap server still answers; `problem` says why not (for readiness).

    Faust's own clients retry quietly through an outage, so without this a worker whose cluster is gone would still
    call itself ready. A problem counts once two checks in a row failed (one slow answer on a busy machine is not
    an outage); a change of state is logged once (WARNING when lost, INFO when back).
    """

    name = "airq-kafka-probe"

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


class ReplicationCheck(Periodic):
    """Checks every `interval` seconds that each of airq's topics has as many copies as the target
    (`airq_app.kafka.replication.replication_target`); `problems` names those with fewer, for readiness.

    Run after start as well: a topic created with fewer copies while brokers were down becomes a problem once they
    are back (the target grows with the brokers listed), and one fixed with kafka-reassign-partitions stops being
    one. New problems are logged once at ERROR, their end at INFO.
    """

    name = "airq-replication-check"

    def __init__(
        self,
        bootstrap: list[str],
        security: KafkaSecurity,
        topics: Callable[[], Iterable[str]],
        configured: int | None,
        interval: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.topics = topics
        self.configured = configured
        self.interval = interval
        self.timeout = timeout
        self.problems: list[str] = []

    async def check(self) -> list[str]:
        view = await cluster_view(self.bootstrap, self.security, self.topics(), self.timeout, probe=False)
        target = replication_target(self.configured, len(view.brokers), view.replicas.values())
        self.update(shortfalls(view.replicas, target))
        return self.problems

    def update(self, problems: list[str]) -> None:
        """Take a new list of problems, logging the new ones and the end of all."""
        for line in problems:
            if line not in self.problems:
                log.error("airq: %s", line)
        if self.problems and not problems:
            log.info("airq: every topic has its target number of replicas now")
        self.problems = problems
