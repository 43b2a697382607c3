"""The client-side request budget and the server's rate-limit headers.

OpenAQ limits each key per calendar minute (60 by default) and per hour (2,000 on a free key), and reports the
minute window in `x-ratelimit-limit/used/remaining/reset`, reset in seconds and possibly -1/-2 when the counter
has no expiry (https://docs.openaq.org/using-the-api/rate-limits). The hourly cap is not reported, so it is
tracked here. Headers are untrusted input: anything that is not a finite number within a sane range is ignored
(and counted by the client), never allowed to raise.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping

log = logging.getLogger("airq.openaq")


# Accepted range of each numeric header; values outside are malformed. -1/-2 are documented for reset.
HEADER_RANGES: dict[str, tuple[int, int]] = {
    "x-ratelimit-limit": (1, 1_000_000),
    "x-ratelimit-remaining": (0, 1_000_000),
    "x-ratelimit-used": (0, 1_000_000),
    "x-ratelimit-reset": (-2, 86_400),
    "retry-after": (0, 86_400),
}


class HeaderError(ValueError):
    """A rate-limit header that is present but not a number in its accepted range."""


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """The integer value of a numeric header (decimals truncated), None when it is absent or not a number at all
    (an HTTP-date `retry-after`). HeaderError when it is a number outside `HEADER_RANGES` or not finite
    (`inf`, `nan`, `1e400`)."""
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        number = float(raw)
    except ValueError:
        if name == "retry-after":
            return None  # an HTTP-date: allowed, not used
        raise HeaderError(f"{name}: not a number") from None
    lo, hi = HEADER_RANGES.get(name, (-(2**31), 2**31))
    if not math.isfinite(number) or not lo <= number <= hi:
        raise HeaderError(f"{name}: {str(raw)[:20]!r} is outside {lo}..{hi}")
    return int(number)


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
