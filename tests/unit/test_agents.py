"""The stream agent in Faust's test context: real pure logic and a real sink, in-memory tables, no broker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from airq_dev.harness import ROOT, encode, measurement

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("agent")
    os.environ.update(
        AIRQ_PIPELINE=str(ROOT / "pipeline.json"),
        AIRQ_DATA_DIR=str(base / "data"),
        AIRQ_OUTPUT_DIR=str(base / "output"),
        AIRQ_ROLE="process",
    )
    if "airq_app.application" in sys.modules:
        pytest.skip("the app was already imported with other settings")
    from airq_app import agents as module
    from airq_app.application import app

    app.conf.store = "memory://"
    app.finalize()
    app.flow_control.resume()
    yield module
    for name in ("AIRQ_PIPELINE", "AIRQ_DATA_DIR", "AIRQ_OUTPUT_DIR", "AIRQ_ROLE"):
        os.environ.pop(name, None)


def lines(output: Path) -> list[dict]:
    return [json.loads(x) for f in sorted(output.rglob("*.jsonl")) for x in f.read_text().splitlines()]


def test_agent_writes_once_dead_letters_garbage_and_counts(agents) -> None:
    from airq_app.status import status

    sent_dead_letters: list[bytes] = []

    async def fake_dead_letter(event, reason: str) -> None:
        sent_dead_letters.append(reason.encode())

    async def go() -> None:
        agents.send_dead_letter = fake_dead_letter  # the dead-letter topic needs a broker
        agents.sink._before_finish = None  # so does flushing the tables' changelog
        await agents.sink.open_partition(0)
        agents.next_offset[0] = 0
        hour = "2026-11-24T10:00:00Z"
        async with agents.process.test_context() as agent:
            key, value = encode(measurement(901, hour, value=20.0))
            for _ in range(3):
                await agent.put(value, key=key, partition=0)
            await agent.put(b"not json at all", key=b"1", partition=0)
            await agent.put(encode(measurement(902, hour, value=-999.0))[1], key=b"90", partition=0)
            await agent.put(encode(measurement(903, hour, value=33.0))[1], key=b"90", partition=0)
            await agents.sink.close()

    asyncio.run(go())
    records = lines(agents.sink.output_dir)
    assert [(r["sensor_id"], r["value"]) for r in records] == [(901, 20.0), (903, 33.0)]
    assert status.counters["duplicates"] == 2 and status.counters["written"] == 2
    assert status.filtered["sentinel"] == 1
    assert sent_dead_letters and sent_dead_letters[0].startswith(b"not_json")
    assert agents.location_summaries.get("90")["parameters"]["pm25"]["value"] == 33.0
