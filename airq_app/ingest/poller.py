"""The poller: sends every OpenAQ measurement to `air_quality_telematics`, on the one worker elected to poll.

Each cycle refreshes the cached location metadata when due, sends the `/latest` listings (one message per location,
keyed by location id), then catches up the hours `airq_app.ingest.gaps` says are missing, on what the listings leave
of the request budget; progress moves only on Kafka's acknowledgement (`airq_app.ingest.progress`). How and why:
docs/workers.md, "How the poller finds every hour". `tick()` runs every second and polls only while this worker
holds the election (`airq_app.ingest.election`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from airq_app import openaq
from airq_app.atomic_file import write_atomic
from airq_app.domain import measurement, timeutil
from airq_app.domain.selection import Selection
from airq_app.ingest.gaps import Backlog, GivenUp, SensorProgress, hour_of, hour_text
from airq_app.ingest.progress import GIVEN_UP_KEY
from airq_app.metrics import Metrics
from airq_app.settings import Settings
from airq_app.status import WorkerStatus

log = logging.getLogger("airq.poller")

MAX_PER_MESSAGE = 500  # measurements in one location's message (a message stays far below Kafka's 1 MB)
SETTLE_S = 10.0  # at the end of a cycle and at stop: how long to wait for Kafka's acknowledgements
STOP_WAIT_S = 5.0  # at stop: how long to wait for a cycle's request in flight

# Sends a message and returns the future of its delivery (Kafka's acknowledgement, acks=all).
Send = Callable[[bytes, bytes], Awaitable["asyncio.Future[Any]"]]
LoadProgress = Callable[[], Awaitable[tuple[dict[int, SensorProgress], GivenUp]]]


class Poller:
    def __init__(
        self,
        settings: Settings,
        status: WorkerStatus,
        metrics: Metrics,
        send: Send,
        save_progress: Send,
        load_progress: LoadProgress,
        client: openaq.OpenAQClient | None = None,
    ) -> None:
        self.settings = settings
        self.status = status
        self.metrics = metrics
        self._send = send
        self._save = save_progress
        self._load = load_progress
        self.selection = Selection.from_settings(settings.selection)
        self.client = client or openaq.OpenAQClient(
            settings.openaq.base_url,
            settings.openaq.api_key,
            per_minute=settings.openaq.requests_per_minute,
            per_hour=settings.openaq.requests_per_hour,
            timeout=(5.0, settings.openaq.timeout_s),
            max_retries=settings.openaq.max_retries,
        )
        self.backlog = Backlog(
            settings.openaq.lookback_hours,
            settings.openaq.first_sight_lookback_hours,
            settings.openaq.gap_retry_minutes * 60,
        )
        self._cycle = asyncio.Lock()
        self._locations_file = settings.app.data_dir / "locations.json"
        self.sensor_index: dict[int, dict[str, Any]] = {}
        self._locations_fetched_at = 0.0
        self._loaded = False  # the backlog holds the progress topic's contents (read when this worker leads)
        self._leading = False
        self._stopping = False
        self._last_start = 0.0
        self._pending: dict[int, list[dict[str, Any]]] = {}  # location id -> measurements queued for its message
        self._in_flight: set[asyncio.Future[Any]] = set()  # sends Kafka has not acknowledged yet
        self._saves: set[asyncio.Future[Any]] = set()  # progress records in flight
        self._dirty: set[int] = set()  # sensors whose progress changed since it was last written
        self._given_up_dirty = False
        self._warned_at = 0.0
        self._latest_requests = 0  # requests the /latest listings took last cycle
        self._catch_up_times: deque[float] = deque()  # when each catch-up request was sent (the last hour's)

    async def tick(self, leading: bool) -> None:
        """Every second: start a cycle when this worker polls and the interval has passed (the first at once)."""
        self._leading = leading
        if self._stopping or self._cycle.locked():
            return
        if not leading:
            if self._loaded:  # polled before (maybe during the cycle that just ended): another worker polls now
                await self._handed_over()
            return
        if self._last_start and time.monotonic() - self._last_start < self.settings.openaq.poll_interval_s:
            return
        async with self._cycle:
            self._last_start = time.monotonic()
            try:
                await self.poll_cycle()
            except Exception as exc:  # a cycle must never take the worker down
                self.status.last_poll.outcome = "failed"
                self.status.last_poll.errors = [openaq.scrub(str(exc), self.settings.openaq.api_key)[:300]]
                log.exception("airq: poll cycle failed")
            finally:
                self.status.inc("poll_cycles")

    async def _handed_over(self) -> None:
        """Another worker polls now: write what is acknowledged, and read the topic again when polling resumes."""
        await self.settle(SETTLE_S)
        self._loaded = False

    async def stop(self) -> None:
        """Stop polling: let a cycle's request in flight end (a few seconds at most), send what is held, wait for
        Kafka's acknowledgements and write the progress they make."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._cycle.acquire(), STOP_WAIT_S)
        except TimeoutError:
            log.warning("airq: stopping while a poll request is still running")
        else:
            self._cycle.release()
        if self._loaded:
            await self.flush()
            await self.settle(SETTLE_S)

    async def refresh_locations(self, force: bool = False) -> None:
        if not self.sensor_index:
            self.sensor_index, self._locations_fetched_at = await asyncio.to_thread(
                _load_cached_locations, self._locations_file
            )
        age_h = (time.time() - self._locations_fetched_at) / 3600
        if not force and self.sensor_index and age_h < self.settings.openaq.locations_refresh_hours:
            return
        locations = await asyncio.to_thread(
            lambda: self.client.list_locations(self.selection.query_filters(), limit=self.settings.openaq.page_limit)
        )
        index = openaq.index_locations(locations)
        index = {k: v for k, v in index.items() if self.selection.has_location(v["location_id"])}
        self.sensor_index, self._locations_fetched_at = index, time.time()
        await asyncio.to_thread(_save_cached_locations, self._locations_file, index, self._locations_fetched_at)
        log.info("airq: %d locations, %d sensors indexed", len(locations), len(index))

    async def load_progress(self) -> None:
        sensors, given_up = await self._load()
        self.backlog.load(sensors, given_up)
        self._dirty.clear()
        self._loaded = True
        summary = self.backlog.summary(time.time())
        log.info(
            "airq: ingest progress of %d sensors read from Kafka: %d missing sensor-hours",
            summary["sensors"],
            summary["open_sensor_hours"],
        )

    async def poll_cycle(self) -> dict[str, Any]:
        """One full cycle; returns its summary (also kept as status.last_poll)."""
        status, client = self.status, self.client
        started = time.monotonic()
        requests_before = client.request_count
        last = status.last_poll
        last.started_at = timeutil.now_utc()
        errors: list[str] = []
        sent = 0
        if not self._loaded:
            await self.load_progress()
        try:
            await self.refresh_locations()
        except openaq.OpenAQError as exc:
            errors.append(f"locations: {exc}")
            log.error("airq: refreshing locations failed (keeping %d known sensors): %s", len(self.sensor_index), exc)
        fetched_at = timeutil.now_utc()
        latest_before = client.request_count
        # One OpenAQ parameter id per unit (e.g. no2 in ppm, ppb and µg/m³): each is a separate /latest listing.
        for name, parameter_id in openaq.parameter_variants(self.settings.selection.parameters):
            if not self._polling():
                break

            def fetch(pid: int = parameter_id) -> list[dict[str, Any]]:  # every page, in a thread
                return list(client.latest_for_parameter(pid, limit=self.settings.openaq.page_limit))

            try:
                items = await asyncio.to_thread(fetch)
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
                self.backlog.seen(m["sensor_id"], hour_of(m["datetime_utc"]))
                await self.queue(m)
                sent += 1
            await self.flush()
        self._latest_requests = client.request_count - latest_before
        await self.save_progress()
        sent += await self.catch_up(fetched_at, errors)
        await self.settle(SETTLE_S)
        status.inc("produced", sent)
        last.finished_at = timeutil.now_utc()
        last.duration_s = round(time.monotonic() - started, 3)
        last.requests = client.request_count - requests_before
        last.measurements = sent
        last.errors = [openaq.scrub(e, self.settings.openaq.api_key) for e in errors[-10:]]
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

    def _polling(self) -> bool:
        return self._leading and not self._stopping

    async def queue(self, m: dict[str, Any]) -> None:
        """Queue one measurement in its location's message; `flush()` sends the messages."""
        pending = self._pending.setdefault(m["location_id"], [])
        pending.append(measurement.message(m))
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
        hours: dict[int, list[int]] = {}
        for m in measurements:
            hours.setdefault(m["sensor_id"], []).append(hour_of(m["datetime_utc"]))
        try:
            delivery = await self._send(str(location_id).encode(), orjson.dumps(measurements))
        except Exception as exc:  # the producer did not take it: its hours stay missing, fetched again
            log.warning("airq: sending location %s's measurements failed: %s", location_id, exc)
            self._delivered(hours, None)
            return
        self._in_flight.add(delivery)
        delivery.add_done_callback(partial(self._delivered, hours))

    def _delivered(self, hours: dict[int, list[int]], delivery: asyncio.Future[Any] | None) -> None:
        """Kafka acknowledged (or refused) a message: its sensors' progress moves (or its hours stay missing)."""
        ok = delivery is not None and not delivery.cancelled() and delivery.exception() is None
        if delivery is not None:
            self._in_flight.discard(delivery)
        for sensor_id, sensor_hours in hours.items():
            if ok:
                self.backlog.acknowledged(sensor_id, sensor_hours)
            else:
                self.backlog.failed(sensor_id, sensor_hours)
                self.status.inc("send_failed", len(sensor_hours))
        if not ok:
            reason = "not taken" if delivery is None else (delivery.cancelled() and "cancelled") or delivery.exception()
            log.warning(
                "airq: Kafka did not acknowledge %d sensors' measurements (%s): fetched again", len(hours), reason
            )
        self._dirty.update(hours)

    async def save_progress(self) -> None:
        """Write the progress records of the sensors whose acknowledged progress changed."""
        dirty, self._dirty = self._dirty, set()
        sensors = self.backlog.sensors
        records = [(str(s).encode(), sensors[s].encode()) for s in sorted(dirty) if s in sensors]
        if self._given_up_dirty:
            records.append((GIVEN_UP_KEY, self.backlog.given_up.encode()))
            self._given_up_dirty = False
        for key, value in records:
            try:
                delivery = await self._save(key, value)
            except Exception as exc:  # written again with the sensor's next change, or by the next poller's reads
                log.warning("airq: writing ingest progress failed: %s", exc)
                continue
            self._saves.add(delivery)
            delivery.add_done_callback(self._saved)

    def _saved(self, delivery: asyncio.Future[Any]) -> None:
        self._saves.discard(delivery)
        if not delivery.cancelled() and delivery.exception() is not None:
            log.warning("airq: Kafka did not take an ingest progress record: %s", delivery.exception())

    async def settle(self, timeout: float) -> None:
        """Wait (at most `timeout`) for Kafka to acknowledge what was sent, then write the progress it made."""
        deadline = time.monotonic() + timeout
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout)
        await self.save_progress()
        if self._saves:
            await asyncio.wait(set(self._saves), timeout=max(0.1, deadline - time.monotonic()))

    def _catch_up_allowed(self, began: float) -> bool:
        """Another catch-up request fits: within this cycle's share of time and the budget the listings leave."""
        if not self._polling() or time.monotonic() - began > self.settings.openaq.poll_interval_s:
            return False
        budget = self.client.budget
        if budget.wait_time() > 0:
            return False  # this minute's requests (or the server's) are spent: the next cycle goes on
        used = budget.used()
        if used["minute"] + self._latest_requests >= budget.per_minute:
            return False  # the next cycle's listings must not wait
        now = time.monotonic()
        while self._catch_up_times and self._catch_up_times[0] <= now - budget.hour_seconds:
            self._catch_up_times.popleft()
        cycles_per_hour = budget.hour_seconds / max(self.settings.openaq.poll_interval_s, 1.0)
        share = max(budget.per_hour // 10, int(budget.per_hour - self._latest_requests * cycles_per_hour))
        return len(self._catch_up_times) < share

    async def catch_up(self, fetched_at: str, errors: list[str]) -> int:
        """Fetch the hours sensors are missing from /sensors/{id}/hours, oldest first, as the budget allows.

        Each sensor's hours are sent as soon as they arrive; an hour not served is asked again after a back-off,
        one older than the look-back is given up (counted, and named in the status as days to backfill).
        """
        expired = self.backlog.expire(time.time())
        if expired:
            n = sum(len(h) for h in expired.values())
            self.status.inc("gaps_given_up", n)
            self._given_up_dirty = True
            self._dirty.update(expired)
            log.warning(
                "airq: %d missing sensor-hours of %d sensors are older than the %d h look-back and given up "
                "(make backfill fetches them from the archive)",
                n,
                len(expired),
                self.settings.openaq.lookback_hours,
            )
        sent = asked = unanswered = 0
        began = time.monotonic()
        due = self.backlog.due(time.time())
        for sensor_id, hours in due:
            if not self._catch_up_allowed(began):
                break
            asked += 1
            progress = self.backlog.sensors[sensor_id]
            before = self.client.request_count
            try:
                # Period ends in (from, to]: from the hour before the oldest missing one to the newest.
                since, until = hour_text(hours[0] - 1), hour_text(hours[-1])
                rows = await asyncio.to_thread(
                    self.client.sensor_hours, sensor_id, since, until, limit=self.settings.openaq.page_limit
                )
            except openaq.OpenAQError as exc:
                errors.append(f"catch-up {sensor_id}: {exc}")  # its hours stay missing: asked again next cycle
                continue
            finally:
                self._catch_up_times.extend([time.monotonic()] * (self.client.request_count - before))
            got: set[int] = set()
            for row in rows:
                m = openaq.measurement_from_hour(row, sensor_id, self.sensor_index, fetched_at)
                if m is None or not self.selection.matches(m):
                    continue
                hour = hour_of(m["datetime_utc"])
                if hour in progress.open and hour not in got:
                    got.add(hour)
                    await self.queue(m)
            await self.flush()
            missing = [h for h in hours if h not in got]
            self.backlog.unanswered(sensor_id, missing, time.time())
            unanswered += len(missing)
            self._dirty.add(sensor_id)
            sent += len(got)
            self.status.inc("caught_up", len(got))
            await self.save_progress()
        if due:
            log.info(
                "airq: catch-up: %d of %d sensors with missing hours asked, %d hours sent, %d not served yet",
                asked,
                len(due),
                sent,
                unanswered,
            )
        return sent

    def summary(self) -> dict[str, Any]:
        """What the poller is still missing (as of this worker's last poll), for status and metrics."""
        found = self.backlog.summary(time.time())
        found["progress_loaded"] = self._loaded
        found["unacknowledged_messages"] = len(self._in_flight)
        days = found["given_up_days"]
        lookback = self.settings.openaq.lookback_hours
        found["backfill"] = (
            f"hours older than the {lookback} h look-back were given up on {len(days)} day(s): "
            f"run `make backfill FROM={days[0]} TO={days[-1]}` (days: {', '.join(days)})"
            if days
            else None
        )
        return found


def _load_cached_locations(path: Path) -> tuple[dict[int, dict[str, Any]], float]:
    try:
        data = json.loads(path.read_text())
        return {int(k): v for k, v in data["sensors"].items()}, float(data["fetched_at"])
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return {}, 0.0


def _save_cached_locations(path: Path, index: dict[int, dict[str, Any]], fetched_at: float) -> None:
    write_atomic(path, orjson.dumps({"fetched_at": fetched_at, "sensors": {str(k): v for k, v in index.items()}}))
