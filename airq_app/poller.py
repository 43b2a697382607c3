"""The poller: a timer agent on the leader that sends every OpenAQ measurement to `air_quality_telematics`.

Each cycle (never two at once): refresh the location metadata when it is older than
`openaq.locations_refresh_hours` (kept on disk across restarts), then page through
`/v3/parameters/{id}/latest` for every configured parameter and send one message per (sensor, time), keyed by
location id. The blocking HTTP client runs in a worker thread. A failed page is logged and counted; the cycle
goes on with the next parameter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from airq_app import metrics, openaq
from airq_app.application import app, settings
from airq_app.status import status
from airq_app.topics import measurements

log = logging.getLogger("airq.poller")

client = openaq.OpenAQClient(
    settings.base_url,
    settings.api_key,
    per_minute=settings.requests_per_minute,
    per_hour=settings.requests_per_hour,
    timeout=(5.0, settings.timeout_s),
    max_retries=settings.max_retries,
)
_cycle = asyncio.Lock()
_locations_file = settings.data_dir / "locations.json"
_sensor_index: dict[int, dict[str, Any]] = {}
_state_file = settings.data_dir / "poller_state.json"
_last_sent: dict[int, str] = {}  # sensor id -> newest datetime_utc sent, kept across restarts for catch-up
CATCH_UP_GAP_S = 2 * 3600  # a longer silence between two /latest values means missed hours
_locations_fetched_at = 0.0


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def selection_filters() -> dict[str, Any]:
    """Query filters for /v3/locations from the `selection` section."""
    filters: dict[str, Any] = {}
    if settings.countries:
        filters["iso"] = list(settings.countries)
    if settings.bbox:
        filters["bbox"] = settings.bbox
    return filters


def selected(m: dict[str, Any]) -> bool:
    if settings.location_ids and m["location_id"] not in settings.location_ids:
        return False
    if settings.countries and m.get("country") not in settings.countries:
        return False
    if settings.bbox and m.get("latitude") is not None and m.get("longitude") is not None:
        min_lon, min_lat, max_lon, max_lat = settings.bbox
        if not (min_lon <= m["longitude"] <= max_lon and min_lat <= m["latitude"] <= max_lat):
            return False
    return True


def _load_cached_locations(path: Path) -> tuple[dict[int, dict[str, Any]], float]:
    try:
        data = json.loads(path.read_text())
        return {int(k): v for k, v in data["sensors"].items()}, float(data["fetched_at"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}, 0.0


def _save_cached_locations(path: Path, index: dict[int, dict[str, Any]], fetched_at: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"fetched_at": fetched_at, "sensors": {str(k): v for k, v in index.items()}}))
    tmp.replace(path)


async def refresh_locations(force: bool = False) -> None:
    global _sensor_index, _locations_fetched_at
    if not _sensor_index:
        _sensor_index, _locations_fetched_at = await asyncio.to_thread(_load_cached_locations, _locations_file)
    age_h = (time.time() - _locations_fetched_at) / 3600
    if not force and _sensor_index and age_h < settings.locations_refresh_hours:
        return
    locations = await asyncio.to_thread(client.list_locations, selection_filters())
    index = openaq.index_locations(locations)
    if settings.location_ids:
        index = {k: v for k, v in index.items() if v["location_id"] in settings.location_ids}
    _sensor_index, _locations_fetched_at = index, time.time()
    await asyncio.to_thread(_save_cached_locations, _locations_file, index, _locations_fetched_at)
    log.info("airq: %d locations, %d sensors indexed", len(locations), len(index))


async def poll_cycle() -> dict[str, Any]:
    """One full cycle; returns its summary (also kept as status.last_poll)."""
    started = time.monotonic()
    requests_before = client.request_count
    last = status.last_poll
    last.started_at = _now_iso()
    errors: list[str] = []
    sent = 0
    try:
        await refresh_locations()
    except openaq.OpenAQError as exc:
        errors.append(f"locations: {exc}")
        log.error("airq: refreshing locations failed: %s", exc)
    fetched_at = _now_iso()
    if not _last_sent:
        _last_sent.update(await asyncio.to_thread(_load_last_sent, _state_file))
    gaps: list[tuple[int, str, str]] = []
    # One OpenAQ parameter id per unit (e.g. no2 in ppm, ppb and µg/m³): each is a separate /latest listing.
    for name, parameter_id in openaq.parameter_variants(settings.parameters):
        try:
            items = await asyncio.to_thread(lambda pid=parameter_id: list(client.latest_for_parameter(pid)))
        except openaq.OpenAQError as exc:
            errors.append(f"{name}: {exc}")
            log.error("airq: polling %s failed: %s", name, exc)
            continue
        for item in items:
            status.inc("polled")
            m = openaq.measurement_from_latest(item, _sensor_index, fetched_at)
            if m is None or m["parameter"] != name or not selected(m):
                status.inc("poll_skipped")
                continue
            previous = _last_sent.get(m["sensor_id"])
            gap = catch_up_gap(previous, m["datetime_utc"])
            if gap is not None and previous is not None:
                gaps.append((m["sensor_id"], previous, *gap))
            await send(m)
            sent += 1
    sent += await catch_up(gaps, fetched_at, errors)
    await asyncio.to_thread(_save_last_sent, _state_file, dict(_last_sent))
    status.inc("produced", sent)
    last.finished_at = _now_iso()
    last.duration_s = round(time.monotonic() - started, 3)
    last.requests = client.request_count - requests_before
    last.measurements = sent
    last.errors = errors[-10:]
    last.outcome = "ok" if not errors else ("partial" if sent else "failed")
    last.rate_limit_remaining = client.last_rate_limit_remaining
    status.openaq_responses.clear()
    status.openaq_responses.update(client.status_counts)
    metrics.poll_duration_seconds.observe(last.duration_s)
    log.info(
        "airq: poll cycle %s: %d measurements sent, %d requests, %.1f s",
        last.outcome,
        sent,
        last.requests,
        last.duration_s,
    )
    return {"outcome": last.outcome, "sent": sent, "requests": last.requests, "duration_s": last.duration_s}


_last_start = 0.0


async def send(m: dict[str, Any]) -> None:
    await measurements.send(key=str(m["location_id"]).encode(), value=orjson.dumps(m))
    sensor = m["sensor_id"]
    if m["datetime_utc"] > _last_sent.get(sensor, ""):
        _last_sent[sensor] = m["datetime_utc"]


def catch_up_gap(previous: str | None, current: str) -> tuple[str, str] | None:
    """(from, to) of the hours a sensor missed between two polls, limited to the look-back window; or None."""
    if previous is None or current <= previous:
        return None
    prev, cur = openaq.parse_utc(previous), openaq.parse_utc(current)
    if (cur - prev).total_seconds() <= CATCH_UP_GAP_S:
        return None
    start = max(prev, cur - timedelta(hours=settings.lookback_hours))
    return openaq.format_utc(start), openaq.format_utc(cur)


async def catch_up(gaps: list[tuple[int, str, str, str]], fetched_at: str, errors: list[str]) -> int:
    """Fetch the missed hours of sensors that were silent (e.g. while airq was down) from /sensors/{id}/hours.

    At most half a minute's request budget per cycle; the other sensors keep their gap for the next cycles.
    """
    sent = 0
    budget = max(1, settings.requests_per_minute // 2)
    for sensor_id, previous, _since, _until in gaps[budget:]:
        _last_sent[sensor_id] = previous  # the gap is seen again, and caught up, next cycle
    for sensor_id, previous, since, until in gaps[:budget]:
        try:
            rows = await asyncio.to_thread(client.sensor_hours, sensor_id, since, until)
        except openaq.OpenAQError as exc:
            errors.append(f"catch-up {sensor_id}: {exc}")
            _last_sent[sensor_id] = previous
            continue
        for row in rows:
            m = openaq.measurement_from_hour(row, sensor_id, _sensor_index, fetched_at)
            if m is not None and selected(m) and m["datetime_utc"] < until:
                await send(m)
                sent += 1
                status.inc("caught_up")
    return sent


def _load_last_sent(path: Path) -> dict[int, str]:
    try:
        return {int(k): v for k, v in json.loads(path.read_text()).items()}
    except (FileNotFoundError, ValueError, AttributeError):
        return {}


def _save_last_sent(path: Path, last: dict[int, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({str(k): v for k, v in last.items()}))
    tmp.replace(path)


@app.timer(1.0, on_leader=True)
async def poll() -> None:
    """Ticks every second on the leader; starts a cycle when the interval has passed (the first one at once)."""
    global _last_start
    if _cycle.locked() or time.monotonic() - _last_start < settings.poll_interval_s and _last_start:
        return
    async with _cycle:
        _last_start = time.monotonic()
        try:
            await poll_cycle()
        except Exception as exc:  # a cycle must never take the worker down
            status.last_poll.outcome = "failed"
            status.last_poll.errors = [str(exc)[:300]]
            log.exception("airq: poll cycle failed")
        finally:
            status.inc("poll_cycles")
