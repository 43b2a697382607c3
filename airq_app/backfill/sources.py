"""Where history comes from: OpenAQ's public archive, or the API's hourly series. Blocking; run in threads.

Archive (`backfill.archive_url`): one gzip CSV per location and UTC day (columns `location_id, sensors_id, location,
datetime, lat, lon, parameter, units, value`, `datetime` the local end of the hour), no key ever sent, 404 = no
data, transient failures retried, bodies capped at `MAX_BODY_BYTES`. API: `/v3/sensors/{id}/hours` per sensor and
day on a client of its own with `API_SHARE` of the budget. Both give `Measurement` dicts as the poller sends them,
with the sensor index's metadata. Paths and shares: docs/output.md, "Backfill".
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import random
import time
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests

from airq_app import openaq
from airq_app.domain import timeutil

log = logging.getLogger("airq.backfill")

MAX_BODY_BYTES = 64 * 1024 * 1024
API_SHARE = 0.25  # of the configured per-minute and per-hour budget

SensorIndex = Mapping[int, Mapping[str, Any]]


class SourceError(Exception):
    """A unit could not be fetched (after retries); the backfill goes on and reports it."""


def archive_path(location_id: int, day: date) -> str:
    return (
        f"/records/csv.gz/locationid={location_id}/year={day.year:04d}/month={day.month:02d}/"
        f"location-{location_id}-{day:%Y%m%d}.csv.gz"
    )


def _location_name(label: str, location_id: int) -> str | None:
    """The archive's `location` is `{name}-{id}`: the name alone (None when empty)."""
    suffix = f"-{location_id}"
    name = label[: -len(suffix)] if label.endswith(suffix) else label
    return name or None


def _float(text: str) -> float | None:
    try:
        return float(text) if text not in ("", None) else None
    except ValueError:
        return None


def measurement_from_archive_row(row: Mapping[str, str], index: SensorIndex, fetched_at: str) -> dict[str, Any] | None:
    """One archive CSV row as a measurement; None when it is unusable (no ids, value or time)."""
    try:
        location_id, sensor_id = int(row["location_id"]), int(row["sensors_id"])
        value = float(row["value"])
        utc = timeutil.normalise_utc(row["datetime"])
    except (KeyError, TypeError, ValueError):
        return None
    meta = index.get(sensor_id, {})
    lat, lon = _float(row.get("lat", "")), _float(row.get("lon", ""))
    return {
        "location_id": location_id,
        "sensor_id": sensor_id,
        "parameter": row.get("parameter") or meta.get("parameter"),
        "value": value,
        "unit": row.get("units") or meta.get("unit"),
        "datetime_utc": utc,
        "parameter_id": meta.get("parameter_id"),
        "datetime_local": row["datetime"],
        "location_name": meta.get("location_name") or _location_name(row.get("location", ""), location_id),
        "country": meta.get("country"),
        "latitude": lat if lat is not None else meta.get("latitude"),
        "longitude": lon if lon is not None else meta.get("longitude"),
        "timezone": meta.get("timezone"),
        "provider": meta.get("provider"),
        "fetched_at": fetched_at,
    }


class ArchiveSource:
    name = "archive"

    def __init__(
        self,
        base_url: str,
        index: SensorIndex | None = None,
        *,
        timeout: tuple[float, float] = (5.0, 60.0),
        max_retries: int = 5,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.index: SensorIndex = index or {}
        self.timeout = timeout
        self.max_retries = max_retries
        self.session = session or requests.Session()
        self.sleep = sleep
        self.malformed_rows = 0

    def _get(self, path: str) -> bytes | None:
        """The body of `path`; None on 404. Transient failures are retried, then raise SourceError."""
        failure = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))
            try:
                with self.session.get(self.base_url + path, timeout=self.timeout, stream=True) as resp:
                    if resp.status_code == 404:
                        return None
                    if resp.status_code == 200:
                        body = resp.raw.read(MAX_BODY_BYTES + 1, decode_content=True)
                        if len(body) > MAX_BODY_BYTES:
                            raise SourceError(f"{path}: larger than {MAX_BODY_BYTES // 2**20} MB")
                        return body
                    failure = f"HTTP {resp.status_code}"
                    if resp.status_code < 500 and resp.status_code not in (408, 429):
                        raise SourceError(f"{path}: {failure}")
            except requests.RequestException as exc:
                failure = type(exc).__name__
            log.warning("airq: backfill: %s: %s (attempt %d)", path, failure, attempt + 1)
        raise SourceError(f"{path}: {failure} after {self.max_retries + 1} attempts")

    def fetch(self, location_id: int, day: date) -> list[dict[str, Any]]:
        """Every measurement of the location's archive file for `day` ([] when there is none)."""
        path = archive_path(location_id, day)
        fetched_at = timeutil.now_utc()
        for attempt in range(self.max_retries + 1):
            body = self._get(path)
            if body is None:
                return []
            try:
                text = gzip.decompress(body).decode("utf-8")
                break
            except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
                # A cut transfer: fetch the file again.
                log.warning("airq: backfill: %s: unreadable gzip (%s), attempt %d", path, exc, attempt + 1)
        else:
            raise SourceError(f"{path}: unreadable gzip after {self.max_retries + 1} attempts")
        out = []
        for row in csv.DictReader(io.StringIO(text)):
            m = measurement_from_archive_row(row, self.index, fetched_at)
            if m is None or m["location_id"] != location_id:
                self.malformed_rows += 1
                continue
            out.append(m)
        return out


class ApiSource:
    name = "api"

    def __init__(self, client: openaq.OpenAQClient, index: SensorIndex) -> None:
        self.client = client
        self.index = index
        self.by_location: dict[int, list[int]] = {}
        for sensor_id, meta in index.items():
            self.by_location.setdefault(int(meta["location_id"]), []).append(sensor_id)

    def fetch(self, location_id: int, day: date) -> list[dict[str, Any]]:
        """Every hourly value of the location's sensors whose period ends on `day` (00:00Z to 23:00Z)."""
        sensors = self.by_location.get(location_id)
        if sensors is None:
            raise SourceError(f"location {location_id}: no sensors known (its metadata could not be fetched)")
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        since, until = start - timedelta(hours=1), start + timedelta(hours=23)
        fetched_at = timeutil.now_utc()
        out = []
        for sensor_id in sorted(sensors):
            try:
                rows = self.client.sensor_hours(sensor_id, since, until)
            except openaq.OpenAQError as exc:
                raise SourceError(f"sensor {sensor_id} on {day}: {exc}") from None
            for row in rows:
                m = openaq.measurement_from_hour(row, sensor_id, self.index, fetched_at)
                if m is not None and timeutil.format_utc(since) < m["datetime_utc"] <= timeutil.format_utc(until):
                    out.append(m)
        out.sort(key=lambda m: (m["datetime_utc"], m["sensor_id"]))
        return out
