"""The stream agent (placeholder until the processing pipeline lands)."""

from __future__ import annotations

from airq_app.application import app, log
from airq_app.status import status
from airq_app.topics import measurements


@app.agent(measurements)
async def process(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        status.inc("consumed")
        log.info("consumed %s", event.message.offset)
