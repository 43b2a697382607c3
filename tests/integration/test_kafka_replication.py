"""airq on a real 3-node KRaft cluster whose broker defaults are one copy and one in-sync replica.

- Every topic a worker creates, or makes Faust create, gets 3 copies and `min.insync.replicas=2`; a topic that exists
  with fewer copies is reported in one ERROR line and keeps the worker not ready (503 naming it);
  AIRQ_KAFKA_REPLICATION_FACTOR overrides the automatic choice.
- A worker started with AIRQ_KAFKA_REPLICATION_FACTOR=3 while two of the three nodes are down creates nothing: it
  waits, not ready, saying which brokers do not answer, stops promptly on SIGTERM, and creates its topics with 3
  copies once the nodes are back.
- Two processing workers keep writing every measurement exactly once while one broker is SIGKILLed, restarted after
  30 s, and another is SIGKILLed for good (a third worker joins meanwhile); SIGTERM still stops each promptly. The
  failover time (SIGKILL to the next record written, and to every partition writing again) is printed.

The cluster starts once for the module (about 10 s on 2 cores); the last test leaves one node dead, so it runs last.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from airq_app.kafka.replication import cluster_view
from airq_app.kafka.security import KafkaSecurity
from airq_dev.harness import Pipeline, Worker, create_topic, encode, measurement, produce, wait_for
from airq_dev.harness import output_counts as read_output
from airq_dev.kafka_cluster import Cluster
from tests.integration import test_kafka_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]
cluster = test_kafka_cluster.cluster  # the module-scoped 3-node cluster, started once for this module

SENSORS = 1500
HOURS = 8  # 12,000 distinct measurements, and repeats
REPEAT_SHARE = 0.25
MARKERS = 40  # fresh measurements sent right after each SIGKILL to time the failover
OUTAGE_S = 30.0
STOP_LIMIT_S = 30.0


# -- cluster inspection ------------------------------------------------------------------------------------------


def _admin_call(bootstrap: str, call: Any) -> Any:
    async def go() -> Any:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
        await admin.start()
        try:
            return await call(admin)
        finally:
            await admin.close()

    return asyncio.run(go())


def _topics(bootstrap: str, *prefixes: str) -> dict[str, list[dict[str, Any]]]:
    """Partitions (leader, replicas, isr) of every topic whose name starts with one of `prefixes`."""

    async def call(admin: AIOKafkaAdminClient) -> dict[str, list[dict[str, Any]]]:
        names = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        described = await admin.describe_topics(names) if names else []
        return {d["topic"]: sorted(d["partitions"], key=lambda p: p["partition"]) for d in described}

    return _admin_call(bootstrap, call)


def _configs(bootstrap: str, kind: ConfigResourceType, names: list[str], key: str) -> dict[str, str]:
    async def call(admin: AIOKafkaAdminClient) -> dict[str, str]:
        responses = await admin.describe_configs([ConfigResource(kind, name, {key: None}) for name in names])
        found = {}
        for response in responses:
            for resource in response.to_object()["resources"]:
                for entry in resource["config_entries"]:
                    if entry["config_names"] == key:
                        found[resource["resource_name"]] = entry["config_value"]
        return found

    return _admin_call(bootstrap, call)


def _wait_all_in_sync(cluster: Cluster, prefixes: tuple[str, ...], timeout: float) -> None:
    """Wait until every partition of the pipeline's topics has all 3 nodes in its ISR."""

    def in_sync() -> bool:
        try:
            topics = _topics(cluster.bootstrap, *prefixes)
        except KafkaError:
            return False
        return bool(topics) and all(set(p["isr"]) == {1, 2, 3} for parts in topics.values() for p in parts)

    wait_for(in_sync, timeout, interval=1.0, what="every partition back in sync on 3 nodes")


# -- workload and output -----------------------------------------------------------------------------------------


def _hour(hours_ago: int) -> str:
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return (top - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def workload(seed: int = 13) -> tuple[list[tuple[bytes, bytes]], set[tuple[int, str]]]:
    rng = random.Random(seed)
    distinct = [
        measurement(200_000 + s, _hour(h), value=round(rng.uniform(1, 80), 1), location_id=(200_000 + s) // 5)
        for h in range(HOURS, 0, -1)
        for s in range(SENSORS)
    ]
    repeats = rng.choices(distinct, k=int(len(distinct) * REPEAT_SHARE / (1 - REPEAT_SHARE)))
    messages = [encode(m) for m in distinct] + [encode(m) for m in repeats]
    messages = messages[: len(distinct) // 2] + sorted(messages[len(distinct) // 2 :], key=lambda _: rng.random())
    return messages, {(m["sensor_id"], m["datetime_utc"]) for m in distinct}


def _timed_failover(p: Pipeline, cluster: Cluster, node_id: int, round_: int) -> tuple[float, float, set]:
    """SIGKILL `node_id`, send fresh markers, and time (from the SIGKILL) the first and the last marker written."""
    hour = _hour(1)
    markers = [
        measurement(900_000 + round_ * 1000 + i, hour, location_id=900_000 + round_ * 1000 + i) for i in range(MARKERS)
    ]
    wanted = {(m["sensor_id"], m["datetime_utc"]) for m in markers}
    killed_at = time.monotonic()
    cluster.kill(node_id)
    produce(p.bootstrap, p.topic, [encode(m) for m in markers], acks="all")
    first: float | None = None
    deadline = killed_at + 120
    while time.monotonic() < deadline:
        counts, _ = read_output(p.output_dir)
        written = wanted & set(counts)
        if written and first is None:
            first = time.monotonic() - killed_at
        if written == wanted:
            return first or 0.0, time.monotonic() - killed_at, wanted
        time.sleep(0.25)
    raise AssertionError(f"markers not all written within 120 s of killing node {node_id}")


def _leader_of(cluster: Cluster, topic: str, partition: int, alive: set[int]) -> int:
    parts = _topics(cluster.bootstrap, topic)[topic]
    leader = next(p["leader"] for p in parts if p["partition"] == partition)
    return leader if leader in alive else min(alive)


# -- tests -------------------------------------------------------------------------------------------------------


def _pipeline_topics(p: Pipeline) -> set[str]:
    """Every topic a processing worker of `p` uses."""
    return {
        p.topic,
        p.dlq_topic,
        p.prefix + "airq_poller_election",
        p.prefix + "airq_poller_progress",
        f"{p.app_id}-sensor_history-changelog",
        f"{p.app_id}-latest_by_location-changelog",
        f"{p.app_id}-__assignor-__leader",
    }


def _problems(w: Worker) -> list[str] | None:
    """The worker's readiness problems ([] when ready); None while its port does not answer yet."""
    try:
        code, body = w.get("/airq/ready")
    except OSError:
        return None
    return list(body.get("problems") or []) if code == 503 and isinstance(body, dict) else []


def test_every_topic_gets_three_copies_and_min_isr_two(cluster: Cluster, tmp_path: Path) -> None:
    began = time.monotonic()
    p = Pipeline(tmp_path / "auto", cluster.bootstrap)
    # One topic made beforehand with the broker's one copy: reported, not silently used.
    create_topic(cluster.bootstrap, p.dlq_topic, partitions=8, replication_factor=1)
    w = p.worker("a", role="process").start(wait_ready=False)
    short = (
        f"topic {p.dlq_topic} has 1 replica(s), target 3 (min(3, 3 brokers)): created with fewer (while brokers were"
        " down, or outside airq); raise it with kafka-reassign-partitions"
    )
    # Started in every other respect (partitions assigned, tables recovered): the one copy alone keeps it at 503.
    wait_for(lambda: _problems(w) == [short], 90, what="the one-copy topic as the only readiness problem")
    assert w.status()["worker"]["problems"] == [short]
    prefixes = (p.prefix, p.app_id + "-")
    topics = _topics(cluster.bootstrap, *prefixes)
    expected = _pipeline_topics(p)
    assert set(topics) == expected, f"unexpected topics: {set(topics) ^ expected}"
    fresh = sorted(expected - {p.dlq_topic})
    for name in fresh:
        assert {len(part["replicas"]) for part in topics[name]} == {3}, (name, topics[name])
    assert _configs(cluster.bootstrap, ConfigResourceType.TOPIC, fresh, "min.insync.replicas") == dict.fromkeys(
        fresh, "2"
    )
    assert len(topics[f"{p.app_id}-__assignor-__leader"]) == 1
    # The brokers' own defaults stay at one copy: the three came from airq.
    broker_defaults = _configs(cluster.bootstrap, ConfigResourceType.BROKER, ["1"], "default.replication.factor")
    assert broker_defaults == {"1": "1"}
    log = w.log_text()
    assert log.count(f"airq: {short}") == 1, w.log_tail()
    assert "replication factor 3, min.insync.replicas 2, 3 brokers" in log
    w.stop()

    # An explicit replication factor wins over the automatic one; min.insync.replicas follows it.
    p2 = Pipeline(tmp_path / "two", cluster.bootstrap, kafka_env={"AIRQ_KAFKA_REPLICATION_FACTOR": "2"})
    p2.worker("b", role="process").start().stop()
    topics2 = _topics(cluster.bootstrap, p2.prefix, p2.app_id + "-")
    assert len(topics2) == 7
    assert {len(part["replicas"]) for parts in topics2.values() for part in parts} == {2}
    assert set(
        _configs(cluster.bootstrap, ConfigResourceType.TOPIC, list(topics2), "min.insync.replicas").values()
    ) == {"2"}
    print(f"\nreplication test: {time.monotonic() - began:.1f} s")


def test_a_worker_waits_for_the_brokers_its_replication_factor_needs_then_creates_three_copies(
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    p = Pipeline(tmp_path, cluster.bootstrap, kafka_env={"AIRQ_KAFKA_REPLICATION_FACTOR": "3"})
    expected = _pipeline_topics(p)
    # Two of three combined nodes down: the controller quorum is lost, and node 1 still lists all three brokers.
    cluster.kill(2)
    cluster.kill(3)
    reason = (
        "too few Kafka brokers answer for 3 replicas (AIRQ_KAFKA_REPLICATION_FACTOR=3): 1 of the 3 in the metadata;"
        f" no answer from 2 ({cluster.node(2).bootstrap}), 3 ({cluster.node(3).bootstrap}); topics are created once"
        " enough are back"
    )
    try:
        w = p.worker("a", role="process").start(wait_ready=False)
        wait_for(lambda: _problems(w) == [reason], 60, what="the worker waiting for brokers")
        time.sleep(8)  # tried again every few seconds, logged once: still waiting, not crashed
        assert w.alive() and _problems(w) == [reason], w.log_tail()
        assert w.log_text().count(f"airq: {reason}; retrying in") == 1, w.log_tail()
        view = asyncio.run(cluster_view([cluster.node(1).bootstrap], KafkaSecurity(), expected, probe=False))
        assert not view.existing, f"created while brokers were down: {sorted(view.existing)}"

        stopping = time.monotonic()
        assert w.stop() == 0
        stop_s = time.monotonic() - stopping
        assert stop_s < 10, f"SIGTERM while waiting took {stop_s:.1f} s"
        w.start(wait_ready=False)  # a restart waits the same way
        wait_for(lambda: _problems(w) == [reason], 60, what="the restarted worker waiting for brokers")
    finally:
        cluster.node(2).launch()
        cluster.node(3).launch()
        cluster.wait_ready(90, [2, 3])
    back = time.monotonic()
    w.wait_ready(90)
    ready_s = time.monotonic() - back

    topics = _topics(cluster.bootstrap, p.prefix, p.app_id + "-")
    assert set(topics) == expected, f"unexpected topics: {set(topics) ^ expected}"
    assert {len(part["replicas"]) for parts in topics.values() for part in parts} == {3}
    assert "replication factor 3, min.insync.replicas 2, 3 brokers" in w.log_text()
    w.stop()
    print(
        f"\nwaiting for brokers: SIGTERM stop {stop_s:.1f} s, ready {ready_s:.1f} s after both nodes answered;"
        f" test {time.monotonic() - began:.1f} s"
    )


def test_broker_sigkills_with_two_workers_lose_and_duplicate_nothing(
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    p = Pipeline(
        tmp_path, cluster.bootstrap, output__rotate_max_age_s=1, output__flush_interval_s=0.5, app__session_timeout_s=6
    )
    messages, expected = workload()
    workers = [p.worker("a", role="process"), p.worker("b", role="process")]
    for w in workers:
        w.start()
    prefixes = (p.prefix, p.app_id + "-")
    _wait_all_in_sync(cluster, prefixes, 60)

    chunks = [messages[i : i + 1000] for i in range(0, len(messages), 1000)]
    done = threading.Event()
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            for chunk in chunks:
                produce(p.bootstrap, p.topic, chunk, acks="all")
                time.sleep(3.0)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    wait_for(lambda: read_output(p.output_dir)[0], 60, what="first records written")

    alive = {1, 2, 3}
    first_victim = _leader_of(cluster, p.topic, 0, alive)
    first, full, markers = _timed_failover(p, cluster, first_victim, 1)
    expected |= markers
    alive.discard(first_victim)
    print(
        f"\nSIGKILL node {first_victim}: first record written after {first:.1f} s, every partition after {full:.1f} s"
    )
    assert all(w.alive() for w in workers), "a worker died when a broker was killed"

    time.sleep(max(0.0, OUTAGE_S - full))
    restarted = time.monotonic()
    cluster.restart(first_victim)
    _wait_all_in_sync(cluster, prefixes, 90)
    alive.add(first_victim)
    print(f"node {first_victim} restarted and back in every ISR in {time.monotonic() - restarted:.1f} s")

    second_victim = _leader_of(cluster, p.topic, 1, alive - {first_victim})
    first2, full2, markers2 = _timed_failover(p, cluster, second_victim, 2)
    expected |= markers2
    print(f"SIGKILL node {second_victim} (left dead): first record after {first2:.1f} s, all after {full2:.1f} s")

    # A worker that starts while a broker is down for good, with the replication factor set explicitly to 3:
    # its topics exist, so the missing broker does not keep it from joining.
    late = p.worker("c", role="process", AIRQ_KAFKA_REPLICATION_FACTOR="3").start()
    workers.append(late)

    feeder.join(timeout=300)
    assert not errors, f"feeding failed: {errors[0]!r}"
    wait_for(lambda: set(read_output(p.output_dir)[0]) >= expected, 240, interval=2, what="every measurement written")
    assert all(w.alive() for w in workers), "a worker died during the broker failures"
    stop_times = []
    for w in workers:
        t = time.monotonic()
        w.stop(timeout=90)
        stop_times.append(time.monotonic() - t)
    counts, bad = read_output(p.output_dir)
    missing = expected - set(counts)
    duplicates = {k: n for k, n in counts.items() if n > 1}
    extra = set(counts) - expected
    print(
        f"broker failover: {len(messages) + 2 * MARKERS} messages, {len(expected)} distinct, {len(missing)} missing,"
        f" {len(duplicates)} duplicated, {bad} bad lines; SIGTERM stop took"
        f" {', '.join(f'{s:.1f} s' for s in stop_times)}; test {time.monotonic() - began:.0f} s"
    )
    assert not missing and not duplicates and not extra and bad == 0
    assert not list(p.output_dir.rglob("*.inprogress"))
    assert max(stop_times) < STOP_LIMIT_S, f"a worker took {max(stop_times):.1f} s to stop after SIGTERM"
