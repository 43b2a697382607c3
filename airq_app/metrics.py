"""Prometheus metrics: this worker's counters (from `status`) and latency histograms, in text format."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from airq_app.status import WorkerStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

COUNTERS = {
    "polled": "Measurements received from OpenAQ.",
    "produced": "Measurements sent to the measurements topic.",
    "consumed": "Messages consumed from the measurements topic.",
    "written": "Records in finished output files.",
    "duplicates": "Messages dropped as repeats of an accepted measurement.",
    "revisions": "Records written as a revision: a new value for a (sensor, time) already written.",
    "replayed": "Replayed messages skipped because their output was already finished.",
    "files_finished": "Output files finished.",
    "flagged": "Records written with a quality flag.",
    "stale": "Messages of an earlier assignment, left to the partition's new owner.",
    "handed_over": "Records not written because their partition moved to another worker mid-event.",
    "poll_skipped": "Polled measurements outside the selection, or not mappable.",
    "poll_cycles": "Polling cycles run.",
    "caught_up": "Missing sensor-hours fetched from /sensors/{id}/hours and sent.",
    "gaps_given_up": "Missing sensor-hours given up: older than the look-back (make backfill fetches them).",
    "send_failed": "Polled measurements Kafka did not acknowledge (their hours stay missing and are fetched again).",
    "lost_to_retention": "Messages deleted by the topic's retention before they were processed.",
    "restarted_fetches": "Partitions fetched again after messages waited for them without being delivered.",
}


class Metrics:
    """This worker's Prometheus registry: latency histograms, and the status counters read at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.processing_seconds = Histogram(
            "airq_processing_seconds",
            "Time to process one message in the stream (parse, filter, score, tables, hand to the sink).",
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
            registry=self.registry,
        )
        self.end_to_end_seconds = Histogram(
            "airq_end_to_end_seconds",
            "From a message's Kafka timestamp to its record in a finished file.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
            registry=self.registry,
        )
        self.poll_duration_seconds = Histogram(
            "airq_poll_duration_seconds",
            "Duration of one full OpenAQ polling cycle.",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=self.registry,
        )

    def install(self, status: WorkerStatus, extra: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(StatusCollector(status, extra))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StatusCollector(Collector):
    def __init__(self, status: WorkerStatus, extra: Callable[[], dict[str, Any]]) -> None:
        self.status = status
        self.extra = extra

    def describe(self) -> list[Any]:
        return []  # names are dynamic; never collect at registration (the worker is not started yet)

    def collect(self) -> Iterator[Any]:
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"airq_{name}", doc, value=self.status.counters[name])
        filtered = CounterMetricFamily("airq_filtered", "Messages dropped by a filter rule.", labels=["reason"])
        for reason, n in sorted(self.status.filtered.items()):
            filtered.add_metric([reason], n)
        yield filtered
        dead = CounterMetricFamily("airq_dead_lettered", "Messages sent to the dead-letter topic.", labels=["reason"])
        for reason, n in sorted(self.status.dead_lettered.items()):
            dead.add_metric([reason], n)
        yield dead
        responses = CounterMetricFamily(
            "airq_openaq_responses", "OpenAQ API responses by HTTP status.", labels=["status"]
        )
        for code, n in sorted(self.status.openaq_responses.items()):
            responses.add_metric([str(code)], n)
        yield responses
        extra = self.extra()
        lag = GaugeMetricFamily("airq_consumer_lag", "Messages not yet consumed, per partition.", labels=["partition"])
        for partition, value in sorted(extra.get("lag", {}).items()):
            lag.add_metric([str(partition)], value)
        yield lag
        yield GaugeMetricFamily("airq_ready", "1 when the worker is ready.", value=1 if extra.get("ready") else 0)
        yield GaugeMetricFamily(
            "airq_output_blocked", "1 while the output cannot be written.", value=1 if self.status.sink_blocked else 0
        )
        yield GaugeMetricFamily(
            "airq_active_partitions", "Partitions this worker processes.", value=len(extra.get("active", []))
        )
        if "admin_lookups" in extra:
            yield CounterMetricFamily(
                "airq_poller_admin_lookups",
                "Kafka admin lookups of the polling worker (for /airq/status; at most one per 2 s).",
                value=extra["admin_lookups"],
            )
        ingest = extra.get("ingest")
        if ingest is not None:
            yield GaugeMetricFamily(
                "airq_open_sensor_hours",
                "Sensor-hours the poller knows are missing.",
                value=ingest["open_sensor_hours"],
            )
            yield GaugeMetricFamily(
                "airq_oldest_open_hour_age_seconds",
                "Age of the oldest missing sensor-hour (0 when none is missing).",
                value=ingest["oldest_open_hour_age_s"],
            )
            yield GaugeMetricFamily(
                "airq_given_up_sensor_hours",
                "Sensor-hours given up since the progress topic began (older than the look-back).",
                value=ingest["given_up_hours"],
            )
