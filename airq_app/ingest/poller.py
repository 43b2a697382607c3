"""The poller: sends every OpenAQ measurement to `air_quality_telematics`, on the one worker elected to poll.

Each cycle (never two at once): refresh the location metadata when it is older than
`openaq.locations_refresh_hours` (kept on disk across restarts; a failed refresh keeps the cached index), then
page through `/v3/parameters/{id}/latest` for every configured parameter and send every measurement once per
cycle: one message per location (a JSON list of its measurements), keyed by location id. The blocking HTTP client
runs in a worker thread. A failed page is logged and counted; the cycle goes on with the next parameter. Sensors
silent for more than two hours are caught up from `/v3/sensors/{id}/hours` within half a minute's request budget
per cycle.

One `Poller` per ingest-capable worker, built at start; `tick()` runs every second and polls only while this
worker holds the poller election (`airq_app.ingest.election`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from airq_app import openaq, timeutil
from airq_app.files import write_atomic
from airq_app.metrics import Metrics
from airq_app.models import MEASUREMENT_FIELDS, Measurement
from airq_app.selection import Selection
from airq_app.settings import Settings
from airq_app.status import WorkerStatus

log = logging.getLogger("airq.poller")

CATCH_UP_GAP_S = 2 * 3600  # a longer silence between two /latest values means missed hours
MAX_PER_MESSAGE = 500  # measurements in one location's message (a message stays far below Kafka's 1 MB)

Send = Callable[[bytes, bytes], Awaitable[Any]]


class Poller:
    def __init__(
        self,
        settings: Settings,
        status: WorkerStatus,
        metrics: Metrics,
        send: Send,
        client: openaq.OpenAQClient | None = None,
    ) -> None:
        self.settings = settings
        self.status = status
        self.metrics = metrics
        self._send = send
        self.selection = Selection.from_settings(settings)
        self.client = client or openaq.OpenAQClient(
            settings.base_url,
            settings.api_key,
            per_minute=settings.requests_per_minute,
            per_hour=settings.requests_per_hour,
            timeout=(5.0, settings.timeout_s),
            max_retries=settings.max_retries,
        )
        self._cycle = asyncio.Lock()
        self._locations_file = settings.data_dir / "locations.json"
        self._state_file = settings.data_dir / "poller_state.json"
        self.sensor_index: dict[int, dict[str, Any]] = {}
        self._locations_fetched_at = 0.0
        self.last_sent: dict[int, str] = {}  # sensor id -> newest datetime_utc sent, kept across restarts
        self._last_sent_loaded = False
        self._last_start = 0.0
        self._pending: dict[int, list[dict[str, Any]]] = {}  # location id -> measurements queued for its message

    async def tick(self, leading: bool) -> None:
        """Every second: start a cycle when this worker polls and the interval has passed (the first at once)."""
        if not leading or self._cycle.locked():
            return
        if self._last_start and time.monotonic() - self._last_start < self.settings.poll_interval_s:
            return
        async with self._cycle:
            self._last_start = time.monotonic()
            try:
                await self.poll_cycle()
            except Exception as exc:  # a cycle must never take the worker down
                self.status.last_poll.outcome = "failed"
                self.status.last_poll.errors = [openaq.scrub(str(exc), self.settings.api_key)[:300]]
                log.exception("airq: poll cycle failed")
            finally:
                self.status.inc("poll_cycles")

    async def refresh_locations(self, force: bool = False) -> None:
        if not self.sensor_index:
            self.sensor_index, self._locations_fetched_at = await asyncio.to_thread(
                _load_cached_locations, self._locations_file
            )
        age_h = (time.time() - self._locations_fetched_at) / 3600
        if not force and self.sensor_index and age_h < self.settings.locations_refresh_hours:
            return
        locations = await asyncio.to_thread(
            lambda: self.client.list_locations(self.selection.query_filters(), limit=self.settings.page_limit)
        )
        index = openaq.index_locations(locations)
        index = {k: v for k, v in index.items() if self.selection.has_location(v["location_id"])}
        self.sensor_index, self._locations_fetched_at = index, time.time()
        await asyncio.to_thread(_save_cached_locations, self._locations_file, index, self._locations_fetched_at)
        log.info("airq: %d locations, %d sensors indexed", len(locations), len(index))

    async def poll_cycle(self) -> dict[str, Any]:
        """One full cycle; returns its summary (also kept as status.last_poll)."""
        status, client = self.status, self.client
        started = time.monotonic()
        requests_before = client.request_count
        last = status.last_poll
        last.started_at = timeutil.now_utc()
        errors: list[str] = []
        sent = 0
        try:
            await self.refresh_locations()
        except openaq.OpenAQError as exc:
            errors.append(f"locations: {exc}")
            log.error("airq: refreshing locations failed (keeping %d known sensors): %s", len(self.sensor_index), exc)
        fetched_at = timeutil.now_utc()
        if not self._last_sent_loaded:
            self.last_sent.update(await asyncio.to_thread(_load_last_sent, self._state_file))
            self._last_sent_loaded = True
        gaps: list[tuple[int, str, str, str]] = []
        # One OpenAQ parameter id per unit (e.g. no2 in ppm, ppb and µg/m³): each is a separate /latest listing.
        for name, parameter_id in openaq.parameter_variants(self.settings.parameters):
            try:
                items = await asyncio.to_thread(
                    lambda pid=parameter_id: list(client.latest_for_parameter(pid, limit=self.settings.page_limit))
                )
            except openaq.OpenAQError as exc:
                errors.append(f"{name}: {exc}")
                log.error("airq: polling %s failed: %s", name, exc)
                continue
            for item in items:
                status.inc("polled")
                m = openaq.measurement_from_latest(item, self.sensor_index, fetched_at)
                if m is None or m["parameter"] != name or not self.selection.matches(m):
                    status.inc("poll_skipped")
                    continue
                previous = self.last_sent.get(m["sensor_id"])
                gap = self.catch_up_gap(previous, m["datetime_utc"])
                if gap is not None and previous is not None:
                    gaps.append((m["sensor_id"], previous, *gap))
                await self.send(m)
                sent += 1
        await self.flush()
        sent += await self.catch_up(gaps, fetched_at, errors)
        await self.flush()
        await asyncio.to_thread(_save_last_sent, self._state_file, dict(self.last_sent))
        status.inc("produced", sent)
        last.finished_at = timeutil.now_utc()
        last.duration_s = round(time.monotonic() - started, 3)
        last.requests = client.request_count - requests_before
        last.measurements = sent
        last.errors = [openaq.scrub(e, self.settings.api_key) for e in errors[-10:]]
        last.outcome = "ok" if not errors else ("partial" if sent else "failed")
        last.rate_limit_remaining = client.last_rate_limit_remaining
        status.openaq_responses.clear()
        status.openaq_responses.update(client.status_counts)
        self.metrics.poll_duration_seconds.observe(last.duration_s)
        log.info(
            "airq: poll cycle %s: %d measurements sent, %d requests, %.1f s",
            last.outcome,
            sent,
            last.requests,
            last.duration_s,
        )
        return {"outcome": last.outcome, "sent": sent, "requests": last.requests, "duration_s": last.duration_s}

    async def send(self, m: dict[str, Any]) -> None:
        """Queue one measurement in its location's message; `flush()` sends the messages."""
        # The message holds the `Measurement` record's fields (its schema), as plain JSON without Faust's metadata.
        record = Measurement(**{k: m[k] for k in MEASUREMENT_FIELDS if k in m})
        pending = self._pending.setdefault(m["location_id"], [])
        pending.append(record.asdict())
        if len(pending) >= MAX_PER_MESSAGE:
            await self._send_location(m["location_id"])

    async def flush(self) -> None:
        """One message per location holding its queued measurements (a location's sensors report together, so
        every per-message cost of the stream is shared by all of them)."""
        for location_id in list(self._pending):
            await self._send_location(location_id)

    async def _send_location(self, location_id: int) -> None:
        measurements = self._pending.pop(location_id, [])
        if not measurements:
            return
        await self._send(str(location_id).encode(), orjson.dumps(measurements))
        for m in measurements:  # sent: the catch-up starts after these
            if m["datetime_utc"] > self.last_sent.get(m["sensor_id"], ""):
                self.last_sent[m["sensor_id"]] = m["datetime_utc"]

    def catch_up_gap(self, previous: str | None, current: str) -> tuple[str, str] | None:
        """(from, to) of the hours a sensor missed between two polls, limited to the look-back window; or None."""
        if previous is None or current <= previous:
            return None
        prev, cur = timeutil.parse_utc(previous), timeutil.parse_utc(current)
        if (cur - prev).total_seconds() <= CATCH_UP_GAP_S:
            return None
        start = max(prev, cur - timedelta(hours=self.settings.lookback_hours))
        return timeutil.format_utc(start), timeutil.format_utc(cur)

    async def catch_up(self, gaps: list[tuple[int, str, str, str]], fetched_at: str, errors: list[str]) -> int:
        """Fetch the missed hours of sensors that were silent (e.g. while airq was down) from /sensors/{id}/hours.

        At most half a minute's request budget per cycle; the other sensors keep their gap for the next cycles.
        """
        sent = 0
        budget = max(1, self.settings.requests_per_minute // 2)
        for sensor_id, previous, _since, _until in gaps[budget:]:
            self.last_sent[sensor_id] = previous  # the gap is seen again, and caught up, next cycle
        for sensor_id, previous, since, until in gaps[:budget]:
            try:
                rows = await asyncio.to_thread(
                    lambda s=sensor_id, f=since, t=until: self.client.sensor_hours(
                        s, f, t, limit=self.settings.page_limit
                    )
                )
            except openaq.OpenAQError as exc:
                errors.append(f"catch-up {sensor_id}: {exc}")
                self.last_sent[sensor_id] = previous
                continue
            for row in rows:
                m = openaq.measurement_from_hour(row, sensor_id, self.sensor_index, fetched_at)
                if m is not None and self.selection.matches(m) and m["datetime_utc"] < until:
                    await self.send(m)
                    sent += 1
                    self.status.inc("caught_up")
        return sent


def _load_cached_locations(path: Path) -> tuple[dict[int, dict[str, Any]], float]:
    try:
        data = json.loads(path.read_text())
        return {int(k): v for k, v in data["sensors"].items()}, float(data["fetched_at"])
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return {}, 0.0


def _save_cached_locations(path: Path, index: dict[int, dict[str, Any]], fetched_at: float) -> None:
    write_atomic(path, orjson.dumps({"fetched_at": fetched_at, "sensors": {str(k): v for k, v in index.items()}}))


def _load_last_sent(path: Path) -> dict[int, str]:
    try:
        return {int(k): v for k, v in json.loads(path.read_text()).items()}
    except (FileNotFoundError, ValueError, AttributeError):
        return {}


def _save_last_sent(path: Path, last: dict[int, str]) -> None:
    write_atomic(path, orjson.dumps({str(k): v for k, v in last.items()}))
