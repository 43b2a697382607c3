"""Blocking OpenAQ v3 client (run it in a worker thread): retries, a client-side rate budget, paging, and limits
on what a server may make it do.

Per OpenAQ's docs (rate limits, errors): `meta.found` may be an int, ">1000" or null, so paging stops at the first
short page; 408 and 5xx are retried, 401/403/404/422 not, 429 carries `x-ratelimit-*`. A server is not trusted:
bodies stop at `max_body_bytes`, listings at `max_pages`, a failed `/latest` page is skipped, bad rate-limit
headers are ignored and counted. The key goes only in `X-API-Key` and is scrubbed from every exception text
(`errors.scrub`); no library exception is chained to the client's own.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from typing import Any

import orjson
import requests

from airq_app.domain import timeutil
from airq_app.openaq.budget import HeaderError, RateBudget, _guard_reset, header_int
from airq_app.openaq.errors import (
    OpenAQAuthError,
    OpenAQError,
    OpenAQNotFoundError,
    OpenAQRateLimitError,
    OpenAQRequestError,
    OpenAQResponseTooLargeError,
    OpenAQTooManyPagesError,
    OpenAQUnavailableError,
    clean_key,
    describe,
    mask_key,
    scrub,
)

log = logging.getLogger("airq.openaq")

DEFAULT_BASE_URL = "https://api.openaq.org"
MAX_LIMIT = 1000  # the server rejects limit > 1000 with 422
MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_PAGES = 1000
FAILED_PAGES_IN_A_ROW = 3  # a listing that skips failed pages gives up after this many in a row


def _format_query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return timeutil.format_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_format_query_value(v) for v in value)
    return str(value)


def encode_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Query parameters as OpenAQ wants them: lists comma-joined, booleans lower-case, datetimes in UTC with Z."""
    return {k: _format_query_value(v) for k, v in (params or {}).items() if v is not None}


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

    Thread-safe: attempts are serialised so the budget holds when several threads share one client. The key is
    stripped of surrounding whitespace; a key with a control or non-ASCII character inside raises
    `OpenAQKeyError` (a `ValueError`) here, with a message that does not contain it.
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
        max_body_bytes: int = MAX_BODY_BYTES,
        max_pages: int = MAX_PAGES,
        user_agent: str = "airq/0.1",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.__key = clean_key(api_key)
        self.__given_key = api_key or ""  # as configured: scrubbing covers its forms and the stripped key's
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_rate_limit_waits = max_rate_limit_waits
        self.max_body_bytes = max(1, int(max_body_bytes))
        self.max_pages = max(1, int(max_pages))
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
        self.skipped_pages = 0
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

    def _scrub(self, text: str) -> str:
        return scrub(text, self.__given_key)

    def _describe(self, exc: BaseException, limit: int = 300) -> str:
        """An exception's type and text, scrubbed of the key: the only way exception text leaves the client."""
        return describe(exc, self.__given_key, limit=limit)

    def stats(self) -> dict[str, Any]:
        """Counters for status pages (no secrets)."""
        return {
            "requests": self.request_count,
            "responses_by_status": {str(k): v for k, v in sorted(self.status_counts.items())},
            "errors": dict(self.error_counts),
            "retries": self.retry_count,
            "rate_limited": self.rate_limited_count,
            "skipped_pages": self.skipped_pages,
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

    def _header(self, headers: Mapping[str, str], name: str) -> int | None:
        """A numeric response header, or None when absent or malformed (counted as `bad_header`)."""
        try:
            return header_int(headers, name)
        except HeaderError as exc:
            self.error_counts["bad_header"] += 1
            log.debug("openaq: ignoring a malformed header: %s", self._scrub(str(exc)))
            return None

    def _observe(self, resp: requests.Response) -> tuple[int | None, int | None]:
        """Count the status and feed the rate-limit headers to the budget; returns (reset, retry-after)."""
        self.status_counts[resp.status_code] += 1
        limit = self._header(resp.headers, "x-ratelimit-limit")
        remaining = self._header(resp.headers, "x-ratelimit-remaining")
        reset = self._header(resp.headers, "x-ratelimit-reset")
        if remaining is not None:
            self.last_rate_limit_remaining = remaining
        if limit is not None:
            self.last_rate_limit_limit = limit
        self.budget.observe_server(limit, remaining, reset)
        return reset, self._header(resp.headers, "retry-after")

    def _read_body(self, resp: requests.Response, path: str) -> bytes:
        """The whole (decoded) body, or OpenAQResponseTooLargeError as soon as it passes `max_body_bytes`."""
        cap = self.max_body_bytes
        declared = resp.headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > cap
        chunks: list[bytes] = []
        size = 0
        if not too_large:
            for chunk in resp.iter_content(chunk_size=64 * 1024):
                size += len(chunk)
                if size > cap:
                    too_large = True
                    break
                chunks.append(chunk)
        if too_large:
            self.error_counts["too_large"] += 1
            raise OpenAQResponseTooLargeError(
                f"response to {path} is larger than the {cap / 1e6:g} MB the client accepts; not read further"
            )
        return b"".join(chunks)

    def _send(self, path: str, query: dict[str, str]) -> tuple[int, bytes, int | None, int | None]:
        """One GET: (status, body, reset, retry-after). Failures are raised outside any `except` block, so no
        library exception (whose text may quote the key) is chained to them."""
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        if self.__key:
            headers["X-API-Key"] = self.__key
        failure: Exception
        try:
            # no redirects: requests would forward X-API-Key to whatever host a redirect names
            with self.session.get(
                self.base_url + path,
                params=query,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            ) as resp:
                reset, retry_after = self._observe(resp)
                # read fully here so a broken body counts as this attempt's failure
                return resp.status_code, self._read_body(resp, path), reset, retry_after
        except OpenAQError:
            raise
        except requests.Timeout as exc:
            self.error_counts["timeout"] += 1
            failure = _Retry(f"timeout: {type(exc).__name__}")
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            self.error_counts["connection"] += 1
            failure = _Retry(f"connection error: {self._describe(exc, 200)}")
        except Exception as exc:  # requests.RequestException and anything a library lets through
            self.error_counts["request"] += 1
            failure = OpenAQError(f"request for {path} failed: {self._describe(exc)}")
        raise failure

    def _attempt(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        """One HTTP attempt under the budget; returns the envelope or raises `_Retry` / an `OpenAQError`."""
        with self._lock:
            self.budget.acquire()
            self.request_count += 1
            log.debug("openaq: GET %s %s", path, query)
            try:
                status, body, reset, retry_after = self._send(path, query)
            finally:
                self.budget.record()

        if status == 200:
            parsed = True
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = False
            if not parsed:
                self.error_counts["malformed"] += 1
                raise _Retry(f"malformed JSON body ({len(body)} bytes)")
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
            data = body.decode("utf-8", "replace")
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
            except OpenAQError as exc:
                self.last_error = str(exc)
                log.error("openaq: %s (not retried)", exc)
                raise

    # -- paging ----------------------------------------------------------------------------------------------------

    def iter_pages(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        limit: int = MAX_LIMIT,
        max_pages: int | None = None,
        skip_failed_pages: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Each page's results (objects only) until a short page; `meta.found` is never trusted.

        More than `max_pages` (default: the client's `max_pages`) full pages raise OpenAQTooManyPagesError. With
        `skip_failed_pages`, a page that fails after its retries (or is too large) is logged, counted in
        `skipped_pages` and skipped, and the listing goes on with the next one; `FAILED_PAGES_IN_A_ROW` failures
        in a row end it with that error. Errors that no other page would escape (401, 404, 422, 429) always raise.
        """
        limit = max(1, min(int(limit), MAX_LIMIT))
        pages = self.max_pages if max_pages is None else max(1, int(max_pages))
        base = dict(params or {})
        failed_in_a_row = 0
        for page in range(1, pages + 1):
            try:
                data = self.get(path, {**base, "limit": limit, "page": page})
            except (OpenAQUnavailableError, OpenAQResponseTooLargeError) as exc:
                failed_in_a_row += 1
                if not skip_failed_pages or failed_in_a_row >= FAILED_PAGES_IN_A_ROW:
                    raise
                self.skipped_pages += 1
                log.warning("openaq: %s page %d skipped: %s", path, page, exc)
                continue
            failed_in_a_row = 0
            rows = data["results"]
            results = [r for r in rows if isinstance(r, dict)]
            if len(results) < len(rows):
                self.error_counts["malformed_row"] += len(rows) - len(results)
            yield results
            if len(rows) < limit:
                return
        self.error_counts["too_many_pages"] += 1
        self.last_error = f"{path}: more than {pages} pages of {limit}"
        log.error("openaq: %s; listing stopped", self.last_error)
        raise OpenAQTooManyPagesError(f"{self.last_error}; listing stopped")

    def paginate(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        limit: int = MAX_LIMIT,
        skip_failed_pages: bool = False,
    ) -> Iterator[dict[str, Any]]:
        for results in self.iter_pages(path, params, limit=limit, skip_failed_pages=skip_failed_pages):
            yield from results

    # -- endpoints -------------------------------------------------------------------------------------------------

    def list_locations(
        self, filters: Mapping[str, Any] | None = None, *, limit: int = MAX_LIMIT
    ) -> list[dict[str, Any]]:
        """All locations matching the filters (`iso`, `countries_id`, `bbox`, `parameters_id`, `providers_id`,
        `monitor`, `mobile`, ...), every page, ordered by id. `iso` may be a list: the server takes one code per
        query, so each is fetched in turn. All or nothing: a page that fails raises (a partial list would make
        the sensors of the missing page unknown until the next refresh)."""
        filters = dict(filters or {})
        iso = filters.pop("iso", None)
        isos: list[Any] = list(iso) if isinstance(iso, list | tuple | set | frozenset) else [iso]
        by_id: dict[int, dict[str, Any]] = {}
        for code in isos:
            query = {**filters, "iso": code} if code else filters
            for loc in self.paginate("/v3/locations", query, limit=limit):
                loc_id = loc.get("id")
                if isinstance(loc_id, int) and not isinstance(loc_id, bool):
                    by_id[loc_id] = loc
        return [by_id[k] for k in sorted(by_id)]

    def get_location(self, location_id: int) -> dict[str, Any]:
        results = self.get(f"/v3/locations/{int(location_id)}")["results"]
        if not results or not isinstance(results[0], dict):
            raise OpenAQNotFoundError(404, f"/v3/locations/{location_id}", "Location not found")
        return results[0]

    def location_latest(self, location_id: int, *, datetime_min: datetime | str | None = None) -> list[dict[str, Any]]:
        return list(self.paginate(f"/v3/locations/{int(location_id)}/latest", {"datetime_min": datetime_min}))

    def latest_for_parameter(
        self, parameter_id: int, *, datetime_min: datetime | str | None = None, limit: int = MAX_LIMIT
    ) -> Iterator[dict[str, Any]]:
        """Every sensor's latest value for one parameter id, worldwide, all pages. A page that fails after its
        retries is skipped (its values are polled again next cycle), see `iter_pages`."""
        return self.paginate(
            f"/v3/parameters/{int(parameter_id)}/latest",
            {"datetime_min": datetime_min},
            limit=limit,
            skip_failed_pages=True,
        )

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
