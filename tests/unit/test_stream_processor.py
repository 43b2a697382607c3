"""The stream agent in Faust's test context: real pure logic and a real sink, in-memory tables, no broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from airq_app.settings import load_settings
from airq_app.worker import build
from airq_dev.harness import ROOT, encode, measurement, recent_hour

pytestmark = pytest.mark.unit


def lines(output: Path) -> list[dict]:
    return [json.loads(x) for f in sorted(output.rglob("*.jsonl")) for x in f.read_text().splitlines()]


def test_agent_writes_once_dead_letters_garbage_and_counts(tmp_path: Path) -> None:
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
    rt.app.conf.store = "memory://"
    rt.app.finalize()
    rt.app.flow_control.resume()
    stream = rt.stream
    assert stream is not None and rt.poller is None and rt.election is None
    sent_dead_letters: list[bytes] = []

    class DeadLetters:
        async def send(self, key: bytes | None, value: bytes) -> asyncio.Future[None]:
            sent_dead_letters.append(value)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    async def no_changelog() -> None:
        return None  # in-memory tables: there is no changelog to flush

    stream.topics = stream.topics.__class__(stream.topics.names, stream.topics.measurements, DeadLetters())
    stream.sink._before_finish = no_changelog

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
    records = lines(settings.output_dir)
    assert [(r["sensor_id"], r["value"]) for r in records] == [(901, 20.0), (903, 33.0), (904, 1.0), (905, 2.0)]
    status = rt.status
    assert status.counters["duplicates"] == 5 and status.counters["written"] == 4
    assert status.filtered["sentinel"] == 1
    reasons = [json.loads(x)["reason"] for x in sent_dead_letters]
    assert reasons[0].startswith("not_json") and len(reasons) == 3
    assert reasons[1].startswith("wrong_schema") and "(element 3)" in reasons[1]
    assert reasons[2].startswith("key_mismatch")
    assert stream.summaries.get("90")["parameters"]["pm25"]["value"] == 33.0


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
