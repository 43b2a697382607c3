"""Kafka administration at start-up: wait for the broker instead of crashing, and create every topic airq uses.

Faust stops the worker when the first bootstrap fails; a worker started before its broker (or during a
broker restart) should instead say what it waits for and keep retrying, answering health/readiness meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger("airq.startup")


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


async def broker_reachable(
    bootstrap: list[str], timeout: float = 5.0, client_kwargs: dict[str, Any] | None = None
) -> str | None:
    """None when a broker answers a metadata request, else the reason it does not."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **(client_kwargs or {})
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return None
    except Exception as exc:  # any failure is a reason to wait, not to crash
        return str(exc) or type(exc).__name__
    finally:
        await client.close()


async def _waiting_server(bind: str, port: int, reason: list[str]) -> web.AppRunner | None:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "waiting_for": "kafka broker"})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": False, "problems": [f"broker unreachable: {reason[0]}"]}, status=503)

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


async def wait_for_broker(
    bootstrap: list[str], bind: str, port: int, max_delay: float = 30.0, client_kwargs: dict[str, Any] | None = None
) -> None:
    """Return once the broker answers; until then log why, retry with backoff and serve 503 on /airq/ready."""
    reason = await broker_reachable(bootstrap, client_kwargs=client_kwargs)
    if reason is None:
        return
    holder = [reason]
    runner = await _waiting_server(bind, port, holder)
    delay = 1.0
    try:
        while reason is not None:
            log.error(
                "airq: Kafka broker %s unreachable (%s); retrying in %.0f s",
                ",".join(bootstrap),
                reason,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
            reason = await broker_reachable(bootstrap, client_kwargs=client_kwargs)
            holder[0] = reason or ""
        log.info("airq: Kafka broker %s reached", ",".join(bootstrap))
    finally:
        if runner is not None:
            await runner.cleanup()


async def ensure_topics(
    bootstrap: list[str],
    topics: dict[str, TopicSpec],
    replication_factor: int = 1,
    client_kwargs: dict[str, Any] | None = None,
) -> None:
    """Create the app's topics with their pinned partition counts before anything uses them.

    Each is created on its own (one that exists must not stop the others) and awaited until the broker's
    metadata lists every partition: a table refuses writes while its changelog shows fewer partitions than
    its source topic. A topic that already exists with another partition count is reported: keys would land
    on other partitions than the tables expect.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_kwargs or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        created = []
        for name, spec in topics.items():
            if name in existing:
                continue
            try:
                new = NewTopic(name, spec.partitions, replication_factor, topic_configs=dict(spec.configs))
                await admin.create_topics([new])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another worker created it first
        if created:
            log.info("airq: created topics %s (replication factor %d)", ", ".join(created), replication_factor)
        names = list(topics)
        for _ in range(60):
            described = await admin.describe_topics(names)
            pending = [d["topic"] for d in described if d.get("error_code") != 0 or not d.get("partitions")]
            if not pending:
                break
            await asyncio.sleep(0.5)
        else:
            log.warning("airq: topics %s are not fully visible in the metadata yet", pending)
        for d in described:
            count = len(d.get("partitions", []))
            expected = topics[d["topic"]].partitions
            if d.get("error_code") == 0 and count != expected:
                log.error("airq: topic %s has %d partitions, the pipeline expects %d", d["topic"], count, expected)
    finally:
        await admin.close()
