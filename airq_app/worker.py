"""One worker, wired: the app, and what runs on it for this worker's role. `faust -A airq_app worker` starts here.

`build(settings)` makes every object the worker is made of (the status, the stream with its sink, cursor and
summaries, the poller and its election) and registers agents, timers, views and start/stop hooks on the app for
the role `all`, `process` or `ingest` (docs/workers.md, "Roles").
"""

from __future__ import annotations

import asyncio
import logging
import sys
from functools import cache
from typing import Any

from airq_app import backfill, memory
from airq_app.application import AirqApp, create_app
from airq_app.ingest import progress as progress_log
from airq_app.ingest.election import PollerElection
from airq_app.ingest.gaps import GivenUp, SensorProgress
from airq_app.ingest.poller import Poller
from airq_app.kafka import topics as topics_mod
from airq_app.kafka.admin import TopicSpec
from airq_app.metrics import Metrics
from airq_app.runtime import Runtime
from airq_app.settings import ConfigError, Settings, load_settings
from airq_app.status import WorkerStatus
from airq_app.stream import tables as tables_mod
from airq_app.stream.catch_up import ChangelogCatchUp
from airq_app.stream.processor import StreamProcessor
from airq_app.web import auth, locations, views

log = logging.getLogger("airq")

ELECTION_SESSION_TIMEOUT_S = 6.0  # the broker's smallest allowed session: a dead poller is replaced in ~6 s


def build(settings: Settings) -> Runtime:
    # AIRQ_WEB_TOKEN, when set: one middleware in front of every route, /airq/health excepted.
    app = create_app(settings, auth.application_options(settings.web.token))
    names = topics_mod.TopicNames.with_prefix(settings.app.topic_prefix)
    topics = topics_mod.declare(app, names, settings.app.partitions)
    app.topic_specs.update(
        {
            names.measurements: TopicSpec(settings.app.partitions),
            names.dead_letter: TopicSpec(settings.app.partitions),
            names.poller_election: TopicSpec(1),
            names.poller_progress: TopicSpec(progress_log.PARTITIONS, {"cleanup.policy": "compact"}),
        }
    )
    url = f"http://{settings.web.host}:{settings.web.port}"
    rt = Runtime(settings, app, WorkerStatus(), Metrics(), topics, url)

    if settings.app.processes:
        rt.stream = StreamProcessor(
            app,
            topics,
            tables_mod.declare(app, settings.app.partitions),
            rt.status,
            rt.metrics,
            settings.filter_rules(),
            settings.dedup.window_hours,
            settings.output,
            worker_id=f"w{settings.web.port}",
        )
        rt.stream.catch_up = ChangelogCatchUp(
            [rt.stream.tables.sensor_history, rt.stream.tables.latest_by_location],
            app.bootstrap_servers(),
            settings.kafka.security.aiokafka_kwargs(),
        )
        rt.stream.install()
        locations.install(rt)

    if settings.app.polls:
        _install_poller(rt, app, topics)

    views.install(rt)
    backfill.install(app, settings)  # the `faust -A airq_app backfill` command

    memory.tune_gc()

    @app.task
    async def freeze_start_up() -> None:
        # Once the worker has started: the objects start-up built, before the stream's state fills memory.
        memory.freeze()

    @app.timer(memory.INTERVAL_S, name="airq.release_memory")
    async def release_memory() -> None:
        # In a thread: malloc_trim runs without the GIL (ctypes releases it), beside the stream, not in its way.
        took = await asyncio.to_thread(memory.release)
        if took > 0.05:
            log.warning("airq: returning freed memory to the system took %.0f ms", took * 1000)

    return rt


def _install_poller(rt: Runtime, app: AirqApp, topics: topics_mod.Topics) -> None:
    settings = rt.settings

    progress = topics_mod.raw_topic(app, topics.names.poller_progress, progress_log.PARTITIONS)

    async def send(key: bytes, value: bytes) -> asyncio.Future[Any]:
        return await topics.measurements.send(key=key, value=value)  # type: ignore[return-value]

    async def save(key: bytes, value: bytes) -> asyncio.Future[Any]:
        return await progress.send(key=key, value=value)  # type: ignore[return-value]

    async def load() -> tuple[dict[int, SensorProgress], GivenUp]:
        client_kwargs = settings.kafka.security.aiokafka_kwargs()
        return await progress_log.read_progress(app.bootstrap_servers(), topics.names.poller_progress, client_kwargs)

    poller = rt.poller = Poller(settings, rt.status, rt.metrics, send, save, load)
    election = rt.election = PollerElection(
        app.bootstrap_servers(),
        topics.names.poller_election,
        f"{settings.app.id}{'-' + settings.app.topic_prefix.rstrip('-') if settings.app.topic_prefix else ''}-poller",
        rt.url,
        session_timeout_s=ELECTION_SESSION_TIMEOUT_S,
        client_kwargs=settings.kafka.security.aiokafka_kwargs(),
        redact=settings.kafka.security.redact,
    )
    app.after_start.append(election.start)
    # At stop: the poller sends what it holds and writes its progress before another worker may take over.
    app.before_stop.insert(0, election.stop)
    app.before_stop.insert(0, poller.stop)

    @app.timer(1.0, name="airq.ingest.poll")
    async def poll() -> None:
        await poller.tick(election.leading)


@cache
def default_runtime() -> Runtime:
    """The worker for this process's settings (`pipeline.json` and the environment)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        # One clear line and a non-zero exit, not a traceback: the user has a file to fix.
        print(f"airq: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return build(settings)
