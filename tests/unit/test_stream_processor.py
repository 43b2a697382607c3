"""The stream agent in Faust's test context: real pure logic and a real sink, in-memory tables, no broker."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from aiokafka.errors import IllegalStateError
from faust.types import TP, TopicT
from yarl import URL

from airq_app.runtime import Runtime
from airq_app.settings import Settings, load_settings
from airq_app.stream import processor
from airq_app.stream.processor import StreamProcessor
from airq_app.worker import build
from airq_dev.harness import ROOT, encode, measurement, recent_hour

pytestmark = pytest.mark.unit


def lines(output: Path) -> list[dict]:
    return [json.loads(x) for f in sorted(output.rglob("*.jsonl")) for x in f.read_text().splitlines()]


class DeadLetters:
    """The dead-letter topic: keeps what is sent; a send waits while `hold` is set and not released."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.hold: asyncio.Event | None = None
        self.waiting = asyncio.Event()

    async def send(self, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        self.sent.append(value)
        if self.hold is not None:
            self.waiting.set()
            await self.hold.wait()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def runtime(tmp_path: Path) -> tuple[Runtime, StreamProcessor, Settings]:
    """A processing worker with in-memory tables, a real sink and no changelog."""
    settings = load_settings(
        {
            "AIRQ_PIPELINE": str(ROOT / "pipeline.json"),
            "AIRQ_DATA_DIR": str(tmp_path / "data"),
            "AIRQ_OUTPUT_DIR": str(tmp_path / "output"),
            "AIRQ_ROLE": "process",
        },
        dotenv=False,
    )
    rt = build(settings)
    rt.app.conf.store = URL("memory://")
    rt.app.finalize()
    rt.app.flow_control.resume()
    stream = rt.stream
    assert stream is not None

    async def no_changelog() -> None:
        return None  # in-memory tables: there is no changelog to flush

    stream.sink._before_finish = no_changelog
    return rt, stream, settings


def with_dead_letters(stream: StreamProcessor) -> DeadLetters:
    dead = DeadLetters()
    # A fake of the dead-letter topic, with just the `send` the processor uses.
    stream.topics = stream.topics.__class__(stream.topics.names, stream.topics.measurements, cast(TopicT, dead))
    return dead


def test_agent_writes_once_dead_letters_garbage_and_counts(tmp_path: Path) -> None:
    rt, stream, settings = runtime(tmp_path)
    assert rt.poller is None and rt.election is None
    dead = with_dead_letters(stream)
    sent_dead_letters = dead.sent

    async def go() -> None:
        await stream.sink.open_partition(0)
        stream.cursor.open(0, 0)
        hour = recent_hour()
        agent = rt.app.agents["airq.stream.process"]
        async with agent.test_context() as test_agent:
            key, value = encode(measurement(901, hour, value=20.0))
            for _ in range(3):
                await test_agent.put(value, key=key, partition=0)
            await test_agent.put(b"not json at all", key=b"1", partition=0)
            await test_agent.put(encode(measurement(902, hour, value=-999.0))[1], key=b"90", partition=0)
            await test_agent.put(encode(measurement(903, hour, value=33.0))[1], key=b"90", partition=0)
            # One location's measurements in one message: each decided on its own, written together.
            batch = [
                measurement(904, hour, value=1.0, location_id=91),
                measurement(905, hour, value=2.0, location_id=91),
                measurement(904, hour, value=1.0, location_id=91),  # a second copy in the same message
                {"sensor_id": "x"},  # a bad element: dead-lettered alone
                measurement(901, hour, value=20.0, location_id=90),  # under location 91's key: key_mismatch
            ]
            await test_agent.put(json.dumps(batch).encode(), key=b"91", partition=0)
            await test_agent.put(json.dumps(batch[:2]).encode(), key=b"91", partition=0)  # the whole repeat
            await stream.sink.close()

    asyncio.run(go())
    records = lines(settings.output.directory)
    assert [(r["sensor_id"], r["value"]) for r in records] == [(901, 20.0), (903, 33.0), (904, 1.0), (905, 2.0)]
    status = rt.status
    assert status.counters["duplicates"] == 5 and status.counters["written"] == 4
    assert status.filtered["sentinel"] == 1
    reasons = [json.loads(x)["reason"] for x in sent_dead_letters]
    assert reasons[0].startswith("not_json") and len(reasons) == 3
    assert reasons[1].startswith("wrong_schema") and "(element 3)" in reasons[1]
    assert reasons[2].startswith("key_mismatch")
    summary = stream.summaries.get("90")
    assert summary is not None and summary["parameters"]["pm25"]["value"] == 33.0


def test_roles_wire_only_their_parts(tmp_path: Path) -> None:
    def runtime(role: str):
        env = {"AIRQ_PIPELINE": str(ROOT / "pipeline.json"), "AIRQ_DATA_DIR": str(tmp_path), "AIRQ_ROLE": role}
        return build(load_settings(env, dotenv=False))

    ingest = runtime("ingest")
    assert ingest.stream is None and ingest.poller is not None and not ingest.app.tables
    # An ingest-only worker stays out of the processing group: it has no tables to agree on.
    assert ingest.app.conf.id == "airq-ingest" and not ingest.app.agents
    process = runtime("process")
    assert (
        process.poller is None
        and process.election is None
        and set(process.app.tables)
        == {
            "sensor_history",
            "latest_by_location",
        }
    )
    both = runtime("all")
    assert both.stream is not None and both.election is not None and both.app.conf.id == process.app.conf.id


def test_a_message_that_fails_part_way_keeps_no_state_and_its_replay_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rt, stream, settings = runtime(tmp_path)
    dead = with_dead_letters(stream)
    hour = recent_hour()
    batch = [measurement(911, hour, value=1.0, location_id=95), measurement(912, hour, value=2.0, location_id=95)]
    real_merge = processor.merge_location

    def failing_merge(*args: object) -> object:
        raise RuntimeError("location summary failed")

    async def go() -> None:
        await stream.sink.open_partition(0)
        stream.cursor.open(0, 0)
        async with stream.app.agents["airq.stream.process"].test_context() as agent:
            # Both measurements are decided (their state staged), then the location summary raises.
            monkeypatch.setattr(processor, "merge_location", failing_merge)
            await agent.put(json.dumps(batch).encode(), key=b"95", partition=0)
            monkeypatch.setattr(processor, "merge_location", real_merge)
            assert stream.history.size() == 0  # nothing of the failed message is pending
            await agent.put(json.dumps(batch).encode(), key=b"95", partition=0)  # the dead letter, replayed
            await stream.sink.close()

    asyncio.run(go())
    assert [json.loads(x)["reason"].split(":")[0] for x in dead.sent] == ["processing_error"]
    assert [r["sensor_id"] for r in lines(settings.output.directory)] == [911, 912]


def test_state_decided_after_a_revocation_is_not_kept_for_the_partition(tmp_path: Path) -> None:
    _rt, stream, settings = runtime(tmp_path)
    dead = with_dead_letters(stream)
    hour = recent_hour()
    message = [
        measurement(921, hour, value=1.0, location_id=96),
        {"sensor_id": "x"},  # dead-lettered: the agent waits for Kafka here
        measurement(922, hour, value=2.0, location_id=96),
    ]

    async def go() -> None:
        dead.hold = asyncio.Event()
        await stream.sink.open_partition(0)
        stream.cursor.open(0, 0)
        async with stream.app.agents["airq.stream.process"].test_context() as agent:
            put = asyncio.ensure_future(agent.put(json.dumps(message).encode(), key=b"96", partition=0))
            await asyncio.wait_for(dead.waiting.wait(), 10)
            # The partition is revoked while the agent waits on the dead-letter send.
            await stream.on_revoked(None, {TP(stream.topics.names.measurements, 0)})
            dead.hold.set()
            await asyncio.wait_for(put, 10)
            assert stream.history.pending.get(0, {}) == {} and stream.history.staged is None
            assert stream.status.counters["handed_over"] == 1
            await stream.sink.close()

    asyncio.run(go())
    assert lines(settings.output.directory) == []


def test_a_changelog_flush_that_never_returns_blocks_the_output_with_a_reason_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, stream, settings = runtime(tmp_path)
    monkeypatch.setattr(processor, "FLUSH_TIMEOUT_S", 0.2, raising=False)
    kafka_answers = asyncio.Event()
    flushes = 0

    async def flush_waiting_for_kafka() -> None:
        # A changelog partition without a leader: the producer's batches never expire, its flush never returns.
        nonlocal flushes
        flushes += 1
        await kafka_answers.wait()

    async def nothing_to_deliver() -> int:
        return 0  # in-memory tables: the sensor state has no changelog here

    stream._flush_producer = flush_waiting_for_kafka  # type: ignore[method-assign]
    stream.history.deliver = nothing_to_deliver  # type: ignore[method-assign]
    stream.sink._before_finish = stream.flush_changelog
    hour = recent_hour()

    async def go() -> None:
        await stream.sink.open_partition(0)
        stream.cursor.open(0, 0)
        async with stream.app.agents["airq.stream.process"].test_context() as agent:
            key, value = encode(measurement(931, hour, value=5.0))
            await agent.put(value, key=key, partition=0)
            stream.sink.output = replace(stream.sink.output, rotate_max_age_s=0)  # the file is due to be finished
            await asyncio.wait_for(stream.sink.tick(), 5)  # gives up after the deadline: no hang
            assert stream.sink.blocked is not None and "did not acknowledge" in stream.sink.blocked
            assert rt.status.sink_blocked == stream.sink.blocked  # what /airq/ready reports (503, with the reason)
            assert lines(settings.output.directory) == []
            await asyncio.wait_for(stream.sink.tick(), 5)  # tried again: the same flush, still waiting
            assert flushes == 1
            kafka_answers.set()
            await asyncio.wait_for(stream.sink.tick(), 5)
            assert stream.sink.blocked is None
            await stream.sink.close()

    asyncio.run(go())
    assert [r["sensor_id"] for r in lines(settings.output.directory)] == [931]


def test_a_seek_back_on_a_partition_revoked_meanwhile_neither_raises_nor_dead_letters(tmp_path: Path) -> None:
    _rt, stream, _settings = runtime(tmp_path)
    tp = TP(stream.topics.names.measurements, 2)

    class RevokedConsumer:
        async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
            return dict.fromkeys(tps, 0)

        async def seek(self, partition: TP, offset: int) -> None:
            raise IllegalStateError(f"No current assignment for partition {partition}")

    stream.app = SimpleNamespace(consumer=RevokedConsumer())  # type: ignore[assignment]
    stream.cursor.open(2, 609)
    assert asyncio.run(stream.realign(tp, 609, force=True)) is None


def test_a_failing_stall_check_waits_for_its_next_run(tmp_path: Path) -> None:
    _rt, stream, _settings = runtime(tmp_path)

    async def revoked_meanwhile() -> None:
        raise IllegalStateError("No current assignment for partition")

    stream._watch_stalls = revoked_meanwhile  # type: ignore[method-assign]
    asyncio.run(stream.watch_stalls())  # the timer goes on: nothing raised
