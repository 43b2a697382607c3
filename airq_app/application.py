"""The one Faust app. Settings come from `pipeline.json` and the environment (see `airq_app.settings`)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.producer import ProducerBuffer
from faust.types import TransportT

from airq_app import memory
from airq_app.settings import ConfigError, Settings, load_settings
from airq_app.startup import ensure_topics, wait_for_broker

try:
    settings: Settings = load_settings()
except ConfigError as exc:
    # One clear line and a non-zero exit, not a traceback: the user has a file to fix.
    print(f"airq: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

log = logging.getLogger("airq")

# The canonical URL is what other workers use to forward table lookups here (@app.table_route).
web_host = os.environ.get("AIRQ_WEB_HOST") or (
    "127.0.0.1" if settings.web_bind in ("127.0.0.1", "localhost") else os.uname().nodename
)


# Table writes queue changelog messages in this buffer; past `max_messages` the stream waits while it drains one
# message at a time. Faust's 100 makes that wait happen every few events.
ProducerBuffer.max_messages = 10_000


class AirqApp(faust.App):
    """Faust's App plus two start/stop duties: wait for the broker, and finish output before stopping."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_stop: list[Callable[[], Awaitable[None]]] = []

    async def on_stop(self) -> None:
        # Stop feeding the agents, then finish every open file (which acknowledges its messages) while the
        # consumer can still commit them.
        self.flow_control.suspend()
        for hook in self.before_stop:
            try:
                await hook()
            except Exception:
                log.exception("airq: error while stopping")
        await super().on_stop()

    def _new_transport(self) -> TransportT:
        from airq_app.transport import Transport  # Faust's aiokafka transport, cheaper per message

        return Transport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        self.conf.datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
        await super().on_first_start()
        bootstrap = [f"{u.host}:{u.port or 9092}" for u in self.conf.broker]
        await wait_for_broker(bootstrap, settings.web_bind, settings.web_port)
        from airq_app.topics import DEAD_LETTER_TOPIC, MEASUREMENTS_TOPIC

        wanted: dict[str, dict[str, str]] = {MEASUREMENTS_TOPIC: {}, DEAD_LETTER_TOPIC: {}}
        # The tables' changelogs too: made by Faust during start-up, their partitions can be missing from the
        # consumer's metadata for minutes, and a table write fails (PartitionsMismatch) until they show.
        for table in self.tables.values():
            wanted[table.changelog_topic_name] = {"cleanup.policy": "compact"}
        await ensure_topics(bootstrap, wanted, settings.partitions)


app = AirqApp(
    settings.app_id,
    version=1,
    origin="airq_app",
    autodiscover=False,
    broker=settings.broker,
    store="rocksdb://",
    datadir=str(settings.data_dir),
    topic_partitions=settings.partitions,
    topic_allow_declare=True,
    table_standby_replicas=settings.standby_replicas,
    consumer_auto_offset_reset="earliest",
    # Offsets are committed only for events whose output is durable (see airq_app.agents), so a
    # rebalance must not wait for every in-flight event: the revoke handler finishes the files instead.
    stream_wait_empty=False,
    broker_commit_interval=1.0,
    # How long a crashed worker keeps its partitions before the group moves them.
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 6),
    broker_max_poll_records=2000,
    # Table writes produce one changelog message each: without a linger every message is its own produce
    # request, and sending them cost more than the processing (py-spy). 10 ms batches them.
    producer_linger=0.01,
    producer_max_batch_size=256 * 1024,
    stream_buffer_maxsize=16384,
    web_port=settings.web_port,
    web_bind=settings.web_bind,
    web_host=web_host,
    web_transport="tcp://",
    web_in_thread=False,
    logging_config=None,
)


@app.timer(memory.INTERVAL_S)
async def release_memory() -> None:
    took = memory.release()
    if took > 0.05:
        log.warning("airq: returning freed memory to the system took %.0f ms", took * 1000)


# Modules that declare topics, tables, agents and views on `app` (imported for their side effects).
from airq_app import topics, views  # noqa: E402,F401

if settings.processes:
    from airq_app import agents  # noqa: E402,F401
if settings.polls:
    from airq_app import poller  # noqa: E402,F401
