"""OpenAQ v3 client (blocking; run it in a worker thread) and the pure helpers that turn its payloads into
`Measurement` dicts.

Facts this module relies on (see the API fact sheet):
* every response is `{"meta": {...}, "results": [...]}`; `meta.found` may be an int, a string like ">1000" or
  null, so paging stops at the first short page instead;
* the server limits each key per calendar minute (default 60) and reports `x-ratelimit-limit/used/remaining/reset`
  (reset in seconds, possibly -1/-2); the documented 2,000/hour cap is not reported, so it is tracked here;
* 408 and 5xx are transient; 401/403/404/422 are not worth retrying;
* `/latest` rows carry no parameter or unit: they are mapped through the sensors of `/v3/locations`.

The API key is sent only as the `X-API-Key` header and never appears in logs, exceptions, reprs or stats.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import orjson
import requests

log = logging.getLogger("airq.openaq")

DEFAULT_BASE_URL = "https://api.openaq.org"
MAX_LIMIT = 1000  # the server rejects limit > 1000 with 422


# --------------------------------------------------------------------------------------------------------------
# Parameters (DB lookups/measurands.sql): each id fixes a unit; OpenAQ never converts between them.


class Parameter(NamedTuple):
    id: int
    name: str
    units: str
    display_name: str | None


PARAMETERS: dict[int, Parameter] = {
    p.id: p
    for p in (
        Parameter(1, "pm10", "µg/m³", "PM10"),
        Parameter(2, "pm25", "µg/m³", "PM2.5"),
        Parameter(3, "o3", "µg/m³", "O₃ mass"),
        Parameter(4, "co", "µg/m³", "CO mass"),
        Parameter(5, "no2", "µg/m³", "NO₂ mass"),
        Parameter(6, "so2", "µg/m³", "SO₂ mass"),
        Parameter(7, "no2", "ppm", "NO₂"),
        Parameter(8, "co", "ppm", "CO"),
        Parameter(9, "so2", "ppm", "SO₂"),
        Parameter(10, "o3", "ppm", "O₃"),
        Parameter(11, "bc", "µg/m³", "BC"),
        Parameter(15, "no2", "ppb", "NO₂"),
        Parameter(19, "pm1", "µg/m³", "PM1"),
        Parameter(24, "no", "ppb", "NO"),
        Parameter(23, "nox", "ppb", "NOx"),
        Parameter(27, "nox", "µg/m³", "NOx mass"),
        Parameter(32, "o3", "ppb", "O₃"),
        Parameter(35, "no", "ppm", "NO"),
        Parameter(98, "relativehumidity", "%", "RH"),
        Parameter(100, "temperature", "c", "Temperature (C)"),
        Parameter(101, "so2", "ppb", "SO₂"),
        Parameter(102, "co", "ppb", "CO"),
        Parameter(19840, "nox", "ppm", "NOx"),
        Parameter(19843, "no", "µg/m³", "NO mass"),
    )
}

# Every id of a pollutant, the primary one first: the ppm/mass ids used by AirNow and in the SDK examples.
POLLUTANT_IDS: dict[str, tuple[int, ...]] = {
    "pm25": (2,),
    "pm10": (1,),
    "pm1": (19,),
    "o3": (10, 3, 32),
    "no2": (7, 5, 15),
    "so2": (9, 6, 101),
    "co": (8, 4, 102),
    "no": (35, 19843, 24),
    "nox": (19840, 27, 23),
    "bc": (11,),
    "temperature": (100,),
    "relativehumidity": (98,),
}


def parameter_ids(names: Iterable[str]) -> dict[str, int]:
    """The primary OpenAQ parameter id of each name (pm25=2, pm10=1, o3=10, no2=7, so2=9, co=8); unknown names
    are logged and skipped. Stations reporting the same pollutant in another unit use other ids:
    see `parameter_variants`."""
    out: dict[str, int] = {}
    for name in names:
        ids = POLLUTANT_IDS.get(name)
        if not ids:
            log.warning("openaq: unknown parameter name %r skipped", name)
            continue
        out[name] = ids[0]
    return out


def parameter_variants(names: Iterable[str]) -> list[tuple[str, int]]:
    """Every (name, id) for the names, in every unit OpenAQ has (e.g. no2 → 7 ppm, 5 µg/m³, 15 ppb)."""
    out: list[tuple[str, int]] = []
    for name in names:
        ids = POLLUTANT_IDS.get(name)
        if not ids:
            log.warning("openaq: unknown parameter name %r skipped", name)
            continue
        out.extend((name, pid) for pid in ids)
    return out


# --------------------------------------------------------------------------------------------------------------
# Errors


class OpenAQError(Exception):
    """Any failure talking to OpenAQ. Messages never contain the API key."""


class OpenAQHTTPError(OpenAQError):
    """A non-retryable HTTP answer."""

    def __init__(self, status: int, path: str, detail: str) -> None:
        self.status = status
        self.path = path
        self.detail = detail
        super().__init__(f"HTTP {status} for {path}: {detail}")


class OpenAQAuthError(OpenAQHTTPError):
    """401 (missing or invalid key) or 403 (blocked by the WAF): retrying will not help."""


class OpenAQNotFoundError(OpenAQHTTPError):
    """404: the location, parameter or sensor does not exist."""


class OpenAQRequestError(OpenAQHTTPError):
    """422 or another 4xx: the query itself is wrong."""


class OpenAQUnavailableError(OpenAQError):
    """Retries exhausted on timeouts, connection errors, 408, 5xx or malformed bodies."""


class OpenAQRateLimitError(OpenAQError):
    """The server kept answering 429 after the allowed number of waits."""


# --------------------------------------------------------------------------------------------------------------
# Small helpers


def mask_key(key: str | None) -> str:
    """What may be shown of a key: only whether it is set."""
    return "***" if key else "<none>"


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _format_query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_format_query_value(v) for v in value)
    return str(value)


def encode_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Query parameters as OpenAQ wants them: lists comma-joined, booleans lower-case, datetimes in UTC with Z."""
    return {k: _format_query_value(v) for k, v in (params or {}).items() if v is not None}


def parse_utc(value: Any) -> datetime | None:
    """An ISO 8601 instant (`Z` or `+00:00` or any offset) as an aware UTC datetime; naive is taken as UTC;
    None when missing or unparseable."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        text = value.strip()
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def format_utc(dt: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` (fractions kept only when present); naive is taken as UTC."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise_utc(value: Any) -> str | None:
    """The same instant as `...Z`, or None."""
    dt = parse_utc(value)
    return None if dt is None else format_utc(dt)


# --------------------------------------------------------------------------------------------------------------
# Client-side rate budget


class RateBudget:
    """Blocks before a request would exceed `per_minute` or `per_hour`, and while the server says none remain.

    Sliding windows over the times requests *finished*: the server counts a request when it arrives, which is
    between send and finish, so spacing a send `window` after an earlier finish can never put more than the
    limit into any one of the server's calendar windows.
    """

    MARGIN_S = 0.05

    def __init__(
        self,
        per_minute: int,
        per_hour: int,
        *,
        minute_seconds: float = 60.0,
        hour_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute < 1 or per_hour < 1:
            raise ValueError("per_minute and per_hour must be at least 1")
        self.per_minute = per_minute
        self.per_hour = per_hour
        self.minute_seconds = float(minute_seconds)
        self.hour_seconds = float(hour_seconds) if hour_seconds is not None else 60.0 * self.minute_seconds
        self._clock = clock
        self._sleep = sleep
        self._minute: deque[float] = deque()
        self._hour: deque[float] = deque()
        self._server_limit: int | None = None
        self._server_remaining: int | None = None
        self._server_reset_at = 0.0
        self._blocked_until = 0.0
        self.waited_s = 0.0
        self.waits = 0

    def _purge(self, now: float) -> None:
        while self._minute and self._minute[0] <= now - self.minute_seconds:
            self._minute.popleft()
        while self._hour and self._hour[0] <= now - self.hour_seconds:
            self._hour.popleft()

    def wait_time(self, now: float | None = None) -> float:
        """Seconds to wait before the next request may be sent (0 when it may go now)."""
        now = self._clock() if now is None else now
        self._purge(now)
        wait = self._blocked_until - now
        limit_m = min(self.per_minute, self._server_limit) if self._server_limit else self.per_minute
        if len(self._minute) >= limit_m:
            wait = max(wait, self._minute[len(self._minute) - limit_m] + self.minute_seconds + self.MARGIN_S - now)
        if len(self._hour) >= self.per_hour:
            wait = max(wait, self._hour[len(self._hour) - self.per_hour] + self.hour_seconds + self.MARGIN_S - now)
        if self._server_remaining is not None:
            if now >= self._server_reset_at:
                self._server_remaining = None
            elif self._server_remaining <= 0:
                wait = max(wait, self._server_reset_at - now)
        return max(wait, 0.0)

    def acquire(self) -> float:
        """Sleep until a request may be sent; returns the seconds slept."""
        slept = 0.0
        while True:
            wait = self.wait_time()
            if wait <= 0:
                return slept
            log.debug("openaq: rate budget: waiting %.2f s", wait)
            self.waits += 1
            self._sleep(wait)
            slept += wait
            self.waited_s += wait

    def record(self, when: float | None = None) -> None:
        when = self._clock() if when is None else when
        self._minute.append(when)
        self._hour.append(when)
        if self._server_remaining is not None:
            self._server_remaining -= 1

    def observe_server(self, limit: int | None, remaining: int | None, reset_s: float | None) -> None:
        """Take the server's view of the current window into account."""
        if limit is not None and limit > 0:
            self._server_limit = limit
        if remaining is not None:
            self._server_remaining = remaining
            self._server_reset_at = self._clock() + _guard_reset(reset_s)

    def block_for(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def used(self) -> dict[str, int]:
        self._purge(self._clock())
        return {"minute": len(self._minute), "hour": len(self._hour)}


def _guard_reset(reset: float | None) -> float:
    """`x-ratelimit-reset` is seconds; -1/-2 (no TTL) or a missing header mean "about a second"."""
    if reset is None or reset <= 0:
        return 1.0
    return float(min(reset, 3600))


# --------------------------------------------------------------------------------------------------------------
# The client


class _Retry(Exception):
    """Internal: a transient failure worth another attempt."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _RateLimited(Exception):
    """Internal: a 429; the budget already blocks until the reset."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"429, wait {wait:.1f} s")
        self.wait = wait


class OpenAQClient:
    """Blocking OpenAQ v3 client with retries, a client-side rate budget and paging.

    Thread-safe: attempts are serialised so the budget holds when several threads share one client.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        per_minute: int = 60,
        per_hour: int = 2000,
        timeout: float | tuple[float, float] = (5, 15),
        max_retries: int = 5,
        session: requests.Session | None = None,
        minute_seconds: float = 60.0,
        hour_seconds: float | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_rate_limit_waits: int = 10,
        user_agent: str = "airq/0.1",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.__key = api_key or ""
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_rate_limit_waits = max_rate_limit_waits
        self._owns_session = session is None
        self.session = session or requests.Session()
        self._user_agent = user_agent
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.budget = RateBudget(
            per_minute, per_hour, minute_seconds=minute_seconds, hour_seconds=hour_seconds, clock=clock, sleep=sleep
        )
        self.request_count = 0
        self.status_counts: Counter[int] = Counter()
        self.error_counts: Counter[str] = Counter()
        self.retry_count = 0
        self.rate_limited_count = 0
        self.last_rate_limit_remaining: int | None = None
        self.last_rate_limit_limit: int | None = None
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"OpenAQClient(base_url={self.base_url!r}, api_key={mask_key(self.__key)})"

    def __enter__(self) -> OpenAQClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    @property
    def has_key(self) -> bool:
        return bool(self.__key)

    def _scrub(self, text: str) -> str:
        return text.replace(self.__key, mask_key(self.__key)) if self.__key else text

    def stats(self) -> dict[str, Any]:
        """Counters for status pages (no secrets)."""
        return {
            "requests": self.request_count,
            "responses_by_status": {str(k): v for k, v in sorted(self.status_counts.items())},
            "errors": dict(self.error_counts),
            "retries": self.retry_count,
            "rate_limited": self.rate_limited_count,
            "rate_limit_remaining": self.last_rate_limit_remaining,
            "rate_limit_limit": self.last_rate_limit_limit,
            "budget_waits": self.budget.waits,
            "budget_waited_s": round(self.budget.waited_s, 3),
            "budget_used": self.budget.used(),
            "last_error": self.last_error,
        }

    # -- one request -----------------------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * (2**attempt))
        return self._rng.uniform(delay / 2, delay)  # jitter: retries from many clients do not line up

    def _attempt(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        """One HTTP attempt under the budget; returns the envelope or raises `_Retry` / an `OpenAQError`."""
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        if self.__key:
            headers["X-API-Key"] = self.__key
        with self._lock:
            self.budget.acquire()
            self.request_count += 1
            log.debug("openaq: GET %s %s", path, query)
            try:
                # no redirects: requests would forward X-API-Key to whatever host a redirect names
                resp = self.session.get(
                    self.base_url + path, params=query, headers=headers, timeout=self.timeout, allow_redirects=False
                )
                body = resp.content  # read fully here so a broken body counts as this attempt's failure
            except requests.Timeout as exc:
                self.error_counts["timeout"] += 1
                raise _Retry(f"timeout: {self._scrub(type(exc).__name__)}") from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                self.error_counts["connection"] += 1
                raise _Retry(f"connection error: {self._scrub(str(exc))[:200]}") from None
            except requests.RequestException as exc:
                self.error_counts["request"] += 1
                raise OpenAQError(f"request for {path} failed: {self._scrub(str(exc))[:300]}") from None
            finally:
                self.budget.record()
            status = resp.status_code
            self.status_counts[status] += 1
            limit = _header_int(resp.headers, "x-ratelimit-limit")
            remaining = _header_int(resp.headers, "x-ratelimit-remaining")
            reset = _header_int(resp.headers, "x-ratelimit-reset")
            if remaining is not None:
                self.last_rate_limit_remaining = remaining
            if limit is not None:
                self.last_rate_limit_limit = limit
            self.budget.observe_server(limit, remaining, reset)

        if status == 200:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                self.error_counts["malformed"] += 1
                raise _Retry(f"malformed JSON body ({len(body)} bytes)") from None
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                self.error_counts["malformed"] += 1
                raise _Retry("unexpected body: no results list")
            return data
        detail = self._detail(body)
        if status == 429:
            self.rate_limited_count += 1
            wait = _guard_reset(reset)
            self.budget.block_for(wait)
            raise _RateLimited(wait)
        if status == 408 or status >= 500:
            retry_after = _header_int(resp.headers, "retry-after")
            raise _Retry(f"HTTP {status}: {detail}", float(retry_after) if retry_after else None)
        if status in (401, 403):
            raise OpenAQAuthError(status, path, detail)
        if status == 404:
            raise OpenAQNotFoundError(status, path, detail)
        raise OpenAQRequestError(status, path, detail)

    def _detail(self, body: bytes) -> str:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            text = body.decode("utf-8", "replace")
        else:
            if isinstance(data, dict):
                data = data.get("detail", data.get("message", data))
            text = data if isinstance(data, str) else orjson.dumps(data).decode()
        return self._scrub(text.strip())[:300] or "(empty body)"

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET one page: the whole envelope. Retries transient failures; waits out 429s."""
        if not path.startswith("/"):
            path = "/" + path
        query = encode_params(params)
        attempt = 0
        rate_waits = 0
        while True:
            try:
                return self._attempt(path, query)
            except _RateLimited as rl:
                rate_waits += 1
                if rate_waits > self.max_rate_limit_waits:
                    self.last_error = f"429 on {path} after {rate_waits - 1} waits"
                    log.error("openaq: %s", self.last_error)
                    raise OpenAQRateLimitError(self.last_error) from None
                log.warning("openaq: 429 Too many requests on %s: waiting %.1f s", path, rl.wait)
                # the budget already blocks until then; the next attempt sleeps there
            except _Retry as r:
                self.last_error = f"{path}: {r.reason}"
                if attempt >= self.max_retries:
                    log.error("openaq: giving up on %s after %d attempts: %s", path, attempt + 1, r.reason)
                    raise OpenAQUnavailableError(f"{path} failed after {attempt + 1} attempts: {r.reason}") from None
                delay = self._backoff(attempt)
                if r.retry_after:
                    delay = max(delay, min(r.retry_after, self.backoff_max))
                attempt += 1
                self.retry_count += 1
                log.warning("openaq: %s on %s; retry %d/%d in %.2f s", r.reason, path, attempt, self.max_retries, delay)
                self._sleep(delay)
            except OpenAQHTTPError as exc:
                self.last_error = str(exc)
                log.error("openaq: %s (not retried)", exc)
                raise

    # -- paging ----------------------------------------------------------------------------------------------------

    def iter_pages(
        self, path: str, params: Mapping[str, Any] | None = None, *, limit: int = MAX_LIMIT, max_pages: int = 100_000
    ) -> Iterator[list[dict[str, Any]]]:
        """Each page's results until a short page; `meta.found` is never trusted (it can be ">1000" or null)."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        base = dict(params or {})
        for page in range(1, max_pages + 1):
            data = self.get(path, {**base, "limit": limit, "page": page})
            results = [r for r in data["results"] if isinstance(r, dict)]
            yield results
            if len(data["results"]) < limit:
                return
        log.warning("openaq: %s: stopped after %d pages", path, max_pages)

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, *, limit: int = MAX_LIMIT
    ) -> Iterator[dict[str, Any]]:
        for results in self.iter_pages(path, params, limit=limit):
            yield from results

    # -- endpoints -------------------------------------------------------------------------------------------------

    def list_locations(
        self, filters: Mapping[str, Any] | None = None, *, limit: int = MAX_LIMIT
    ) -> list[dict[str, Any]]:
        """All locations matching the filters (`iso`, `countries_id`, `bbox`, `parameters_id`, `providers_id`,
        `monitor`, `mobile`, ...), every page, ordered by id. `iso` may be a list: the server takes one code per
        query, so each is fetched in turn."""
        filters = dict(filters or {})
        iso = filters.pop("iso", None)
        isos: list[Any] = list(iso) if isinstance(iso, list | tuple | set | frozenset) else [iso]
        by_id: dict[int, dict[str, Any]] = {}
        for code in isos:
            query = {**filters, "iso": code} if code else filters
            for loc in self.paginate("/v3/locations", query, limit=limit):
                if isinstance(loc.get("id"), int):
                    by_id[loc["id"]] = loc
        return [by_id[k] for k in sorted(by_id)]

    def get_location(self, location_id: int) -> dict[str, Any]:
        results = self.get(f"/v3/locations/{int(location_id)}")["results"]
        if not results:
            raise OpenAQNotFoundError(404, f"/v3/locations/{location_id}", "Location not found")
        return results[0]

    def location_latest(self, location_id: int, *, datetime_min: datetime | str | None = None) -> list[dict[str, Any]]:
        return list(self.paginate(f"/v3/locations/{int(location_id)}/latest", {"datetime_min": datetime_min}))

    def latest_for_parameter(
        self, parameter_id: int, *, datetime_min: datetime | str | None = None, limit: int = MAX_LIMIT
    ) -> Iterator[dict[str, Any]]:
        """Every sensor's latest value for one parameter id, worldwide, all pages."""
        return self.paginate(f"/v3/parameters/{int(parameter_id)}/latest", {"datetime_min": datetime_min}, limit=limit)

    def sensor_hours(
        self, sensor_id: int, datetime_from: datetime | str, datetime_to: datetime | str, *, limit: int = MAX_LIMIT
    ) -> list[dict[str, Any]]:
        """Hourly rows with period end in (datetime_from, datetime_to], for catching up after a gap."""
        params = {"datetime_from": datetime_from, "datetime_to": datetime_to}
        return list(self.paginate(f"/v3/sensors/{int(sensor_id)}/hours", params, limit=limit))

    def sensor_measurements(
        self, sensor_id: int, datetime_from: datetime | str, datetime_to: datetime | str, *, limit: int = MAX_LIMIT
    ) -> list[dict[str, Any]]:
        """Raw rows with period end in (datetime_from, datetime_to]."""
        params = {"datetime_from": datetime_from, "datetime_to": datetime_to}
        return list(self.paginate(f"/v3/sensors/{int(sensor_id)}/measurements", params, limit=limit))


# --------------------------------------------------------------------------------------------------------------
# Pure helpers: locations → sensor index, /latest and /hours rows → Measurement dicts

# Reasons a row does not become a measurement (for counters).
REASON_MALFORMED = "malformed"
REASON_UNKNOWN_SENSOR = "unknown_sensor"
REASON_BAD_VALUE = "bad_value"
REASON_BAD_DATETIME = "bad_datetime"


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def index_locations(locations: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """sensor id → what a measurement needs about it (JSON-serialisable, so it can be cached on disk):
    location_id, location_name, country, latitude, longitude, timezone, provider, parameter, parameter_id, unit."""
    index: dict[int, dict[str, Any]] = {}
    for loc in locations:
        if not isinstance(loc, Mapping):
            continue
        loc_id = _int(loc.get("id"))
        if loc_id is None:
            continue
        coords = _obj(loc.get("coordinates"))
        base = {
            "location_id": loc_id,
            "location_name": _str(loc.get("name")),
            "country": _str(_obj(loc.get("country")).get("code")),
            "latitude": _float(coords.get("latitude")),
            "longitude": _float(coords.get("longitude")),
            "timezone": _str(loc.get("timezone")),
            "provider": _str(_obj(loc.get("provider")).get("name")),
        }
        for sensor in loc.get("sensors") or ():
            if not isinstance(sensor, Mapping):
                continue
            sensor_id = _int(sensor.get("id"))
            param = _obj(sensor.get("parameter"))
            name = _str(param.get("name"))
            if sensor_id is None or name is None:
                continue
            pid = _int(param.get("id"))
            unit = _str(param.get("units")) or (PARAMETERS[pid].units if pid in PARAMETERS else None)
            if unit is None:
                continue
            index[sensor_id] = {**base, "parameter": name, "parameter_id": pid, "unit": unit}
    return index


def _fetched(fetched_at: datetime | str | None) -> str | None:
    # The poller passes one "...Z" string per cycle: skip re-parsing it for every row.
    if isinstance(fetched_at, str) and fetched_at.endswith("Z"):
        return fetched_at
    return normalise_utc(fetched_at)


def _measurement(
    meta: Mapping[str, Any],
    sensor_id: int,
    value: float,
    dt: Mapping[str, Any],
    coords: Mapping[str, Any],
    fetched_at: datetime | str | None,
) -> tuple[dict[str, Any] | None, str | None]:
    utc = normalise_utc(dt.get("utc"))
    if utc is None:
        return None, REASON_BAD_DATETIME
    lat = _float(coords.get("latitude"))
    lon = _float(coords.get("longitude"))
    if lat is None or lon is None:  # mobile rows carry their own position; stationary ones may be null
        lat, lon = meta.get("latitude"), meta.get("longitude")
    return {
        "location_id": meta["location_id"],
        "sensor_id": sensor_id,
        "parameter": meta["parameter"],
        "value": value,
        "unit": meta["unit"],
        "datetime_utc": utc,
        "parameter_id": meta.get("parameter_id"),
        "datetime_local": _str(dt.get("local")),
        "location_name": meta.get("location_name"),
        "country": meta.get("country"),
        "latitude": lat,
        "longitude": lon,
        "timezone": meta.get("timezone"),
        "provider": meta.get("provider"),
        "fetched_at": _fetched(fetched_at),
    }, None


def latest_to_measurement(
    item: Any, sensor_index: Mapping[int, Mapping[str, Any]], fetched_at: datetime | str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """One `/latest` row → (Measurement dict, None) or (None, reason). Values are kept as reported (negative and
    -999 included): judging them is the stream's job."""
    if not isinstance(item, Mapping):
        return None, REASON_MALFORMED
    sensor_id = _int(item.get("sensorsId"))
    if sensor_id is None:
        return None, REASON_MALFORMED
    meta = sensor_index.get(sensor_id)
    if meta is None:
        return None, REASON_UNKNOWN_SENSOR
    value = _float(item.get("value"))
    if value is None:
        return None, REASON_BAD_VALUE
    return _measurement(meta, sensor_id, value, _obj(item.get("datetime")), _obj(item.get("coordinates")), fetched_at)


def measurement_from_latest(
    item: Any,
    sensor_index: Mapping[int, Mapping[str, Any]],
    fetched_at: datetime | str | None,
    *,
    reasons: MutableMapping[str, int] | None = None,
) -> dict[str, Any] | None:
    """One `/latest` row → Measurement dict, or None (the reason is counted in `reasons` when given)."""
    m, reason = latest_to_measurement(item, sensor_index, fetched_at)
    if reason is not None and reasons is not None:
        reasons[reason] = reasons.get(reason, 0) + 1
    return m


def hour_to_measurement(
    row: Any, sensor_id: int, sensor_index: Mapping[int, Mapping[str, Any]], fetched_at: datetime | str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """One `/sensors/{id}/hours` or `/measurements` row (which carries no sensor id) → (Measurement, None) or
    (None, reason). The timestamp is the period end (`period.datetimeTo`), like `/latest`."""
    if not isinstance(row, Mapping):
        return None, REASON_MALFORMED
    meta = sensor_index.get(sensor_id)
    if meta is None:
        return None, REASON_UNKNOWN_SENSOR
    value = _float(row.get("value"))
    if value is None:
        return None, REASON_BAD_VALUE
    period = _obj(row.get("period"))
    return _measurement(
        meta, sensor_id, value, _obj(period.get("datetimeTo")), _obj(row.get("coordinates")), fetched_at
    )


def measurement_from_hour(
    row: Any,
    sensor_id: int,
    sensor_index: Mapping[int, Mapping[str, Any]],
    fetched_at: datetime | str | None,
    *,
    reasons: MutableMapping[str, int] | None = None,
) -> dict[str, Any] | None:
    m, reason = hour_to_measurement(row, sensor_id, sensor_index, fetched_at)
    if reason is not None and reasons is not None:
        reasons[reason] = reasons.get(reason, 0) + 1
    return m
