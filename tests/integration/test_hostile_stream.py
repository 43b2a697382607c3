"""Hostile input and slow faults on the stream, with a real worker and the real broker.

- the same measurement under another message key (or none) must not be written twice;
- a table update that never reached its changelog must hold its file back until it does;
- retention deleting messages before they were processed must not stall the partition;
- Faust's own pages that serve table contents and cluster URLs are off.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from airq_dev.harness import Pipeline, consume_all, encode, finished_records, measurement, produce, wait_for

pytestmark = pytest.mark.integration


def recent_hour(hours_ago: int = 1) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:00:00Z")


async def _admin(bootstrap: str, work) -> object:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await work(admin)
    finally:
        await admin.close()


def admin(bootstrap: str, work) -> object:
    return asyncio.run(_admin(bootstrap, work))


def test_a_measurement_under_another_key_is_dead_lettered_not_written_twice(kafka: str, tmp_path: Path) -> None:
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1)
    worker = p.worker().start()
    m = measurement(4321, recent_hour(), value=21.0, location_id=7)
    key, value = encode(m)
    assert key == b"7"
    produce(p.bootstrap, p.topic, [(key, value), (b"9", value), (None, value), (b"7\n", value)])
    wait_for(lambda: worker.status()["counters"]["dead_lettered"] >= 3, 60, what="dead letters")
    wait_for(lambda: finished_records(p.output_dir), 60, what="a finished file")
    records = finished_records(p.output_dir)
    assert [(r["sensor_id"], r["datetime_utc"]) for r in records] == [(4321, m["datetime_utc"])]
    reasons = [json.loads(r.value)["reason"] for r in consume_all(kafka, p.dlq_topic)]
    assert len(reasons) == 3 and all(r.startswith("key_mismatch") for r in reasons), reasons


def test_an_undelivered_table_update_holds_its_file_back_until_delivered(kafka: str, tmp_path: Path) -> None:
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1, output__flush_interval_s=0.5)
    changelog = f"{p.app_id}-sensor_history-changelog"

    async def small_changelog(a: AIOKafkaAdminClient) -> None:
        # The broker refuses every sensor_history update: bigger than this topic's message size limit.
        configs = {"cleanup.policy": "compact", "max.message.bytes": "64"}
        await a.create_topics([NewTopic(changelog, 8, 1, topic_configs=configs)])

    admin(kafka, small_changelog)
    worker = p.worker().start()
    hour = recent_hour()
    produce(p.bootstrap, p.topic, [encode(measurement(5000 + i, hour, value=10.0 + i)) for i in range(40)])
    wait_for(
        lambda: any("not durable" in x for x in worker.get("/airq/ready")[1].get("problems", [])),
        60,
        what="the worker to report its output as not durable",
    )
    time.sleep(3)  # several flush intervals: still nothing finished
    assert finished_records(p.output_dir) == []
    assert "not delivered" in worker.log_text()

    async def fix(a: AIOKafkaAdminClient) -> None:
        resource = ConfigResource(ConfigResourceType.TOPIC, changelog, configs={"max.message.bytes": "1048588"})
        await a.alter_configs([resource])

    admin(kafka, fix)
    wait_for(lambda: len(finished_records(p.output_dir)) >= 40, 90, what="every record once delivered")
    records = finished_records(p.output_dir)
    assert sorted(r["sensor_id"] for r in records) == [5000 + i for i in range(40)]
    wait_for(lambda: worker.get("/airq/ready")[0] == 200, 30, what="ready again")
    # The updates are in the changelog now: a new worker recovering from it treats the same messages as repeats.
    assert worker.stop() == 0
    produce(p.bootstrap, p.topic, [encode(measurement(5000 + i, hour, value=10.0 + i)) for i in range(40)])
    other = p.worker("w2").start()
    try:
        wait_for(lambda: other.status()["counters"]["duplicates"] >= 40, 90, what="repeats recognised")
    except AssertionError:
        other.dump_stacks("stalled")  # into its log, to see where a stalled stream waits
        raise
    assert len(finished_records(p.output_dir)) == 40


def test_retention_passing_the_next_offset_does_not_stall_the_partition(kafka: str, tmp_path: Path) -> None:
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1, app__partitions=1)
    worker = p.worker().start()
    hour = recent_hour()
    produce(p.bootstrap, p.topic, [encode(measurement(7000, hour, value=1.0, location_id=70))])
    wait_for(lambda: len(finished_records(p.output_dir)) == 1, 60, what="the first record")
    assert worker.proc is not None
    # The worker stops consuming (frozen, not dead: no rebalance) while 100 messages arrive and retention deletes
    # the first 60 of them.
    os.kill(worker.proc.pid, signal.SIGSTOP)
    time.sleep(1.7)  # a fetch already at the broker comes back empty first (Faust: fetch_max_wait_ms 1500)
    try:
        later = [encode(measurement(7100 + i, hour, value=2.0, location_id=70)) for i in range(100)]
        produce(p.bootstrap, p.topic, later)

        async def delete(a: AIOKafkaAdminClient) -> object:
            return await a.delete_records({TopicPartition(p.topic, 0): RecordsToDelete(61)})

        admin(kafka, delete)
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    wait_for(lambda: len(finished_records(p.output_dir)) == 41, 60, what="the 40 messages retention kept")
    status = worker.status()
    assert status["counters"]["lost_to_retention"] == 60
    assert status["counters"]["lost_ranges"] == [{"partition": 0, "from": 1, "to": 60}]
    assert sorted(r["sensor_id"] for r in finished_records(p.output_dir)) == [7000] + [7160 + i for i in range(40)]
    realigned = status["counters"]["realigned"]
    time.sleep(5)
    assert worker.status()["counters"]["realigned"] == realigned  # not seeking again and again
    assert worker.get("/airq/ready")[0] == 200


def test_faust_table_and_router_pages_are_off(kafka: str, tmp_path: Path) -> None:
    p = Pipeline(tmp_path, kafka)
    worker = p.worker().start()
    for path in ("/table/", "/table/sensor_history/", "/router/", "/graph/", "/stats/"):
        assert worker.get(path)[0] == 404, path


def test_overview_asks_only_allowed_peers_and_forwards_no_headers(kafka: str, tmp_path: Path) -> None:
    """A group member can advertise any URL in its join data; the overview must not fetch it."""
    p = Pipeline(tmp_path, kafka, app__standby_replicas=0)
    honest = p.worker("honest").start()
    rogue = p.worker("rogue", AIRQ_WEB_HOST="192.0.2.1").start()
    hour = recent_hour()
    produce(p.bootstrap, p.topic, [encode(measurement(9000 + i, hour, location_id=900 + i)) for i in range(40)])
    wait_for(lambda: honest.status()["counters"]["written"] and rogue.status()["counters"]["written"], 60, what="both")
    started = time.monotonic()
    code, overview = honest.get("/airq/api/overview")
    assert code == 200 and time.monotonic() - started < 2.5  # no 3-second wait on an unroutable peer
    assert [w["url"] for w in overview["workers"]] == [honest.url]
    # A location the rogue worker owns is not forwarded there either: answered 404 here, quickly.
    owned_by_rogue = [loc for loc in range(900, 940) if honest.get(f"/airq/locations/{loc}")[0] != 200]
    assert owned_by_rogue  # with no standbys, some locations live only on the other worker
