"""A real 3-node KRaft cluster: replicated topics keep taking writes while a node is down, and the node rejoins.

The cluster starts once for the module (about 10 s on 2 cores; the module takes about 40 s in all).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from airq_app.kafka.security import replication_plan
from airq_dev.harness import free_port
from airq_dev.kafka_cluster import Cluster
from airq_dev.kafka_node import BrokerError, is_our_kafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"), [free_port() for _ in range(3)], [free_port() for _ in range(3)])
    try:
        c.start()
    except BrokerError as exc:
        c.stop()
        pytest.fail(f"cannot start the 3-node Kafka cluster: {exc}")
    yield c
    c.stop()
    assert all(pid is None for pid in c.pids.values())


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    return admin


async def _create_topic(bootstrap: str, name: str, partitions: int, rf: int, configs: dict[str, str]) -> None:
    admin = await _admin(bootstrap)
    try:
        response = await admin.create_topics([NewTopic(name, partitions, rf, topic_configs=configs)])
        errors = [(topic, code) for topic, code, *_ in response.topic_errors if code != 0]
        assert not errors, f"create_topics failed: {errors}"
    finally:
        await admin.close()


async def _partitions(bootstrap: str, name: str) -> list[dict[str, Any]]:
    admin = await _admin(bootstrap)
    try:
        (topic,) = await admin.describe_topics([name])
        # A new topic can take a moment to reach every broker's metadata (UNKNOWN_TOPIC_OR_PARTITION until then).
        return sorted(topic["partitions"], key=lambda p: p["partition"]) if topic["error_code"] == 0 else []
    finally:
        await admin.close()


async def _config_once(bootstrap: str, kind: ConfigResourceType, name: str, key: str) -> str | None:
    admin = await _admin(bootstrap)
    try:
        (response,) = await admin.describe_configs([ConfigResource(kind, name, {key: None})])
        resource = response.to_object()["resources"][0]
        entries = [e["config_value"] for e in resource["config_entries"] if e["config_names"] == key]
        # A broker that does not yet know a new topic answers with no entry: None, asked again by _config.
        return entries[0] if resource["error_code"] == 0 and entries else None
    finally:
        await admin.close()


def _config(bootstrap: str, kind: ConfigResourceType, name: str, key: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while (value := asyncio.run(_config_once(bootstrap, kind, name, key))) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {key} for {kind.name} {name} after {timeout:.0f} s")
        time.sleep(0.5)
    return value


def _wait_isr(bootstrap: str, name: str, wanted: set[int], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            partitions = asyncio.run(_partitions(bootstrap, name))
        except KafkaError:  # the admin client may pick the killed node until the metadata says it is gone
            partitions = []
        if partitions and all(set(p["isr"]) == wanted for p in partitions):
            return partitions
        if time.monotonic() > deadline:
            raise AssertionError(f"ISR of {name} not {sorted(wanted)} after {timeout:.0f} s: {partitions}")
        time.sleep(0.5)


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=30000)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(topic, value, key=str(i).encode())
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            got += [msg.value for msgs in batches.values() for msg in msgs if msg.value is not None]
    finally:
        await consumer.stop()
    return got


def test_three_brokers_each_its_own_java_process(cluster: Cluster) -> None:
    async def brokers() -> dict[str, Any]:
        admin = await _admin(cluster.bootstrap)
        try:
            return await admin.describe_cluster()
        finally:
            await admin.close()

    described = asyncio.run(brokers())
    assert {b["node_id"] for b in described["brokers"]} == {1, 2, 3}
    assert {b["port"] for b in described["brokers"]} == {n.port for n in cluster.nodes}
    assert len(cluster.bootstrap.split(",")) == 3
    pids = cluster.pids
    assert len(set(pids.values())) == 3 and None not in pids.values()
    for node in cluster.nodes:
        pid = pids[node.node_id]
        assert pid is not None and is_our_kafka(pid, node.config_path)
        assert (node.directory / "data" / "meta.properties").exists()


def test_replicated_topic_has_three_copies_and_min_isr_two(cluster: Cluster) -> None:
    rf, min_isr = replication_plan(len(cluster.nodes), None, None)
    assert (rf, min_isr) == (3, 2)
    name = f"rf-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_topic(cluster.bootstrap, name, 3, rf, {"min.insync.replicas": str(min_isr)}))
    partitions = _wait_isr(cluster.bootstrap, name, {1, 2, 3}, 30)
    assert [sorted(p["replicas"]) for p in partitions] == [[1, 2, 3]] * 3
    assert _config(cluster.bootstrap, ConfigResourceType.TOPIC, name, "min.insync.replicas") == "2"

    # The brokers' own defaults stay at one copy and one in-sync replica: only what airq asks for protects it.
    for key in ("default.replication.factor", "min.insync.replicas"):
        assert _config(cluster.bootstrap, ConfigResourceType.BROKER, "1", key) == "1"


def test_killed_node_loses_no_acknowledged_write_and_rejoins(cluster: Cluster) -> None:
    name = f"failover-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_topic(cluster.bootstrap, name, 3, 3, {"min.insync.replicas": "2"}))
    _wait_isr(cluster.bootstrap, name, {1, 2, 3}, 30)
    before = [f"before-{i}".encode() for i in range(30)]
    asyncio.run(_produce(cluster.bootstrap, name, before))

    victim = cluster.node(3)
    pid = cluster.kill(3)
    assert cluster.pids[3] is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # Fenced after the broker session timeout; every partition goes on with two in-sync copies.
    _wait_isr(cluster.nodes[0].bootstrap, name, {1, 2}, 30)
    during = [f"during-{i}".encode() for i in range(30)]
    asyncio.run(_produce(cluster.nodes[0].bootstrap, name, during))

    began = time.monotonic()
    cluster.restart(3)
    new_pid = cluster.pids[3]
    assert new_pid is not None and new_pid != pid and is_our_kafka(new_pid, victim.config_path)
    _wait_isr(cluster.bootstrap, name, {1, 2, 3}, 60)
    print(f"node 3 back in every ISR {time.monotonic() - began:.1f} s after the restart began")

    got = asyncio.run(_consume(victim.bootstrap, name, len(before) + len(during)))
    assert sorted(got) == sorted(before + during)


def test_stop_leaves_a_foreign_pid_alone(cluster: Cluster, tmp_path: Path) -> None:
    """A pid file that names another process (here this test's own) is never signalled."""
    stale = Cluster(tmp_path / "stale", [free_port()], [free_port()])
    node = stale.nodes[0]
    node.directory.mkdir(parents=True)
    node.pid_file.write_text(str(os.getpid()))
    # Also a real broker's pid, but with another node's configuration file.
    other = tmp_path / "other"
    (other / "node-1").mkdir(parents=True)
    (other / "node-1" / "kafka.pid").write_text(str(cluster.pids[1]))
    assert stale.pids == {1: None}
    assert stale.stop() == []
    assert Cluster(other, [free_port()], [free_port()]).stop() == []
    assert cluster.pids[1] is not None and is_our_kafka(cluster.pids[1], cluster.node(1).config_path)
