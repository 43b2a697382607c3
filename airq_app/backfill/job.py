"""One backfill: which locations and days, fetched from a source and sent to `air_quality_telematics`.

The unit of work is a (location, UTC day); `LANES` locations at a time, each location's days in order (so a value's
NowCast comes from the hours sent before it), each measurement sent as the poller sends it plus `"backfill": true`.
A unit is written to the progress file only once the broker acknowledged all its messages, so a stopped run resumes
with the units it had not finished; repeats are de-duplicated by the stream (docs/output.md, "Backfill").
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO

import orjson
from aiokafka import AIOKafkaProducer

from airq_app import openaq
from airq_app.backfill.progress import ProgressBar, ProgressFile
from airq_app.backfill.sources import API_SHARE, ApiSource, ArchiveSource, SourceError
from airq_app.domain import measurement
from airq_app.domain.selection import Selection
from airq_app.kafka import admin
from airq_app.kafka.topics import TopicNames
from airq_app.settings import Settings

log = logging.getLogger("airq.backfill")

LANES = 4  # locations fetched and sent at once
SOURCES = ("archive", "api")


class Source(Protocol):
    name: str

    def fetch(self, location_id: int, day: date) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class BackfillRequest:
    first: date
    last: date
    archive_url: str  # the settings' `backfill.archive_url`
    source: str = "archive"
    locations: tuple[int, ...] = ()
    countries: tuple[str, ...] = ()

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


@dataclass
class Outcome:
    units: int = 0  # units this run had to do (not done before)
    sent_units: int = 0
    skipped_units: int = 0  # done by an earlier run
    measurements: int = 0
    failed: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def message(m: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of a backfilled measurement: the poller's message plus `"backfill": true`."""
    return str(m["location_id"]).encode(), orjson.dumps({**measurement.message(m), "backfill": True})


def api_client(settings: Settings) -> openaq.OpenAQClient:
    """A client with `API_SHARE` of the configured request budget: the live poller keeps the rest."""
    return openaq.OpenAQClient(
        settings.openaq.base_url,
        settings.openaq.api_key,
        per_minute=max(1, int(settings.openaq.requests_per_minute * API_SHARE)),
        per_hour=max(1, int(settings.openaq.requests_per_hour * API_SHARE)),
        timeout=(5.0, settings.openaq.timeout_s),
        max_retries=settings.openaq.max_retries,
        user_agent="airq-backfill/0.1",
    )


def cached_index(data_dir: Path) -> dict[int, dict[str, Any]]:
    """The poller's cached sensor index (`<data dir>/locations.json`), when this machine has one."""
    try:
        data = json.loads((data_dir / "locations.json").read_text())
        return {int(k): v for k, v in data["sensors"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def resolve_locations(
    settings: Settings, request: BackfillRequest, client: openaq.OpenAQClient | None
) -> tuple[list[int], dict[int, dict[str, Any]]]:
    """(location ids, sensor index): `--location` ids, the locations of `--country` codes, or the configured
    selection; with each location's sensors and metadata where the API or the poller's cache has them."""
    selection = Selection.from_settings(settings.selection)
    index = cached_index(settings.app.data_dir)
    ids: set[int] = set(request.locations)
    if request.countries:
        if client is None:
            raise SourceError("--country needs the OpenAQ API to list locations")
        found = client.list_locations({**selection.query_filters(), "iso": sorted(set(request.countries))})
        index.update(openaq.index_locations(found))
        ids.update(int(loc["id"]) for loc in found)
    elif not ids:
        if selection.location_ids:
            ids.update(selection.location_ids)
        elif client is not None:
            found = client.list_locations(selection.query_filters())
            index.update(openaq.index_locations(found))
            ids.update(int(loc["id"]) for loc in found if selection.has_location(int(loc["id"])))
    known = {int(meta["location_id"]) for meta in index.values()}
    missing = sorted(ids - known)
    if missing and client is not None:
        for location_id in missing:
            try:
                index.update(openaq.index_locations([client.get_location(location_id)]))
            except openaq.OpenAQError as exc:
                log.warning("airq: backfill: no metadata for location %d: %s", location_id, exc)
    return sorted(ids), index


async def _send_unit(
    producer: AIOKafkaProducer, topic: str, measurements: Iterable[dict[str, Any]], parameters: frozenset[str]
) -> int:
    futures = []
    for m in measurements:
        if parameters and m.get("parameter") not in parameters:
            continue  # as the poller: only the selected parameters are sent
        key, value = message(m)
        futures.append(await producer.send(topic, value=value, key=key))
    if futures:
        await asyncio.gather(*futures)
    return len(futures)


async def run(
    settings: Settings,
    request: BackfillRequest,
    *,
    source: Source | None = None,
    locations: Sequence[int] | None = None,
    stream: TextIO | None = None,
) -> Outcome:
    """Send every unit of `request` not finished by an earlier run; the outcome says which failed."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    client = None
    if source is None or locations is None:
        client = api_client(settings)
        ids, index = await asyncio.to_thread(resolve_locations, settings, request, client)
        locations = ids
        if source is None:
            source = ApiSource(client, index) if request.source == "api" else ArchiveSource(request.archive_url, index)
    progress = ProgressFile(settings.app.data_dir / "backfill" / f"{source.name}.done")
    outcome = Outcome()
    lanes: list[list[tuple[int, date]]] = [[] for _ in range(LANES)]
    for n, location_id in enumerate(locations):
        for day in request.days():
            if progress.is_done(location_id, day):
                outcome.skipped_units += 1
            else:
                lanes[n % LANES].append((location_id, day))
    outcome.units = sum(len(lane) for lane in lanes)
    log.info(
        "airq: backfill of %d locations, %s to %s from the %s: %d days to send, %d done before",
        len(locations),
        request.first,
        request.last,
        source.name,
        outcome.units,
        outcome.skipped_units,
    )
    bar = ProgressBar(outcome.units, stream=stream)
    topic = TopicNames.with_prefix(settings.app.topic_prefix).measurements
    security = settings.kafka.security
    bootstrap = [url.split("://", 1)[-1] for url in settings.kafka.broker_urls]
    await admin.ensure_topics(
        bootstrap,
        {topic: admin.TopicSpec(settings.app.partitions)},
        settings.kafka.replication_factor,
        security,
        settings.kafka.min_insync_replicas,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024, **security.aiokafka_kwargs()
    )
    await producer.start()
    parameters = frozenset(settings.selection.parameters)
    fetch = source.fetch
    assert source is not None

    async def lane(units: list[tuple[int, date]]) -> None:
        for location_id, day in units:
            try:
                measurements = await asyncio.to_thread(fetch, location_id, day)
            except SourceError as exc:
                outcome.failed.append(f"{location_id} {day}: {exc}")
                log.error("airq: backfill: location %d, %s: %s", location_id, day, exc)
                bar.advance(0, failed=True)
                continue
            sent = await _send_unit(producer, topic, measurements, parameters)
            progress.mark(location_id, day)
            outcome.sent_units += 1
            outcome.measurements += sent
            bar.advance(sent)

    try:
        await asyncio.gather(*(lane(units) for units in lanes if units))
    finally:
        await producer.stop()
        if client is not None:
            client.close()
        bar.draw(final=True)
    outcome.elapsed_s = loop.time() - started
    return outcome
