"""The Faust app: its configuration from the settings, and its own start and stop duties. Nothing else.

What runs on it (agents, timers, views) is wired by `airq_app.worker` according to the worker's role; this module
imports none of its users.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust
from faust.types import TransportT

from airq_app.kafka import faust_internals
from airq_app.kafka.admin import BrokerProbe, Replication, ReplicationCheck, TopicSpec, prepare_kafka
from airq_app.settings import Settings

log = logging.getLogger("airq")


class AirqApp(faust.App):
    """Faust's App plus airq's start and stop duties.

    At first start: wait for the broker (answering /airq/health and /airq/ready meanwhile), then create every
    topic airq uses, the tables' changelogs and Faust's leader topic included, replicated as configured (see
    `airq_app.kafka.admin`). While running, a probe checks that the cluster still answers, and another that every
    topic has its target number of copies, for readiness. At stop:
    stop feeding the agents, then run `before_stop` hooks (finish every open file, which acknowledges its messages)
    while the consumer can still commit.
    """

    def __init__(
        self, *args: Any, airq_settings: Settings, web_options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, web_application_options=dict(web_options or {}), **kwargs)
        self.airq_settings = airq_settings
        self.web_options = dict(web_options or {})  # the aiohttp application's options (the web token's check)
        self.before_stop: list[Callable[[], Awaitable[None]]] = []
        self.after_start: list[Callable[[], Awaitable[None]]] = []
        self.topic_specs: dict[str, TopicSpec] = {}
        self.replication: Replication | None = None
        self.kafka_probe = BrokerProbe(self.bootstrap_servers(), airq_settings.kafka.security)
        self.replication_check = ReplicationCheck(
            self.bootstrap_servers(),
            airq_settings.kafka.security,
            self.wanted_topics,
            airq_settings.kafka.replication_factor,
        )

    async def on_stop(self) -> None:
        self.flow_control.suspend()
        await self.kafka_probe.stop()
        await self.replication_check.stop()
        for hook in self.before_stop:
            try:
                await hook()
            except Exception:
                log.exception("airq: error while stopping")
        await super().on_stop()

    def _new_transport(self) -> TransportT:
        return faust_internals.Transport(self.conf.broker_consumer, self)

    def bootstrap_servers(self) -> list[str]:
        return [f"{u.host}:{u.port or 9092}" for u in self.conf.broker]

    def wanted_topics(self) -> dict[str, TopicSpec]:
        """Every topic this worker uses: airq's own, the tables' changelogs and Faust's leader topic.

        The changelogs are created here rather than by Faust during start-up: their partitions could be missing
        from the consumer's metadata for minutes, and a table write fails (PartitionsMismatch) until they show.
        """
        wanted = dict(self.topic_specs)
        for table in self.tables.values():
            wanted[table.changelog_topic_name] = TopicSpec(
                self.airq_settings.app.partitions, {"cleanup.policy": "compact"}
            )
        wanted[faust_internals.leader_topic_name(self)] = TopicSpec(1)
        return wanted

    async def on_first_start(self) -> None:
        settings = self.airq_settings
        self.conf.datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
        await super().on_first_start()
        self.replication = replication = await prepare_kafka(
            self.bootstrap_servers(),
            self.wanted_topics,
            settings.web.bind,
            settings.web.port,
            settings.kafka.security,
            settings.kafka.replication_factor,
            settings.kafka.min_insync_replicas,
            web_options=self.web_options,
        )
        # Readiness knows of too few copies from the start (ensure_topics logged them), not after the first check.
        self.replication_check.problems = list(replication.problems)
        # Whatever Faust still declares itself gets the same replication and min.insync.replicas.
        faust_internals.set_replication(self, replication.factor, replication.min_insync)

    def kafka_problems(self) -> list[str]:
        """Why Kafka is not usable right now (for readiness): the cluster does not answer, nothing is delivered, or
        a topic has fewer copies than the target."""
        problems = [self.kafka_probe.problem] if self.kafka_probe.problem else []
        stalled = faust_internals.producer_problem(self)
        return [*problems, *([stalled] if stalled else []), *self.replication_check.problems]

    async def on_started(self) -> None:
        await super().on_started()
        await self.kafka_probe.start()
        await self.replication_check.start()
        for hook in self.after_start:
            await hook()


def create_app(settings: Settings, web_options: Mapping[str, Any] | None = None) -> AirqApp:
    """The app for these settings; `web_options` are its aiohttp application's (the web token's middleware).

    A worker that only polls joins a group of its own (`<id>-ingest`): it has no tables, and a member without them
    would make the processing group's leader compute a wrong assignment.
    """
    faust_internals.set_producer_buffer_limit()
    app_id = settings.app.id if settings.app.processes else f"{settings.app.id}-ingest"
    return AirqApp(
        app_id,
        airq_settings=settings,
        web_options=web_options,
        version=1,
        origin="airq_app",
        autodiscover=False,
        monitor=faust_internals.QuietMonitor(),
        TableManager=faust_internals.TableManager,
        broker=settings.kafka.broker_urls,
        # One set of TLS/SASL settings for Faust's consumer, producers and topic creation (airq_app.kafka.security).
        broker_credentials=settings.kafka.security.faust_credentials(),
        store=faust_internals.register_bounded_rocksdb(),
        datadir=str(settings.app.data_dir),
        topic_partitions=settings.app.partitions,
        topic_allow_declare=True,
        table_standby_replicas=settings.app.standby_replicas,
        consumer_auto_offset_reset="earliest",
        # Offsets are committed only for events whose output is durable (see airq_app.stream.processor), so a
        # rebalance must not wait for every in-flight event: the revoke handler finishes the files instead.
        stream_wait_empty=False,
        broker_commit_interval=1.0,
        # How long a crashed worker keeps its partitions before the group moves them.
        broker_session_timeout=settings.app.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.app.session_timeout_s / 6),
        broker_max_poll_records=2000,
        # Location summaries go to their changelog one message per write through Faust's producer: a 10 ms linger
        # batches them. (The sensor state goes in record batches of this size: airq_app.stream.table_buffer.)
        producer_linger=0.01,
        producer_max_batch_size=256 * 1024,
        # A write counts once every in-sync replica has it (and min.insync.replicas of them exist): a broker lost
        # right after the acknowledgement loses nothing. The producer is idempotent (faust_internals.Producer).
        producer_acks=-1,
        producer_request_timeout=settings.kafka.producer_request_timeout_s,
        stream_buffer_maxsize=16384,
        web_port=settings.web.port,
        web_bind=settings.web.bind,
        web_host=settings.web.host,
        web_transport="tcp://",
        web_in_thread=False,
        # Faust's own pages serve table contents, cluster URLs and internals to anyone who reaches the port.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        logging_config=None,
    )
