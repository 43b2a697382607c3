"""Log lines that repeat (a blocked output fails on every partition at every tick) at most once a minute.

The first line of a kind gets through at once; its repeats within the interval are counted, and the count is
added to the next line of that kind that gets through, or logged on its own by `flush` once the interval is
over, so that no failure goes unmentioned and none floods the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass
class _Window:
    started: float
    suppressed: int
    level: int
    msg: str
    args: tuple[object, ...]


class RateLimitedLog:
    def __init__(
        self, logger: logging.Logger, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._windows: dict[Hashable, _Window] = {}

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        """Log `msg % args` unless a line with the same `key` got through less than `interval_s` ago."""
        now = self.clock()
        window = self._windows.get(key)
        if window is not None and now - window.started < self.interval_s:
            window.suppressed += 1
            window.level, window.msg, window.args = level, msg, args
            return False
        self._windows[key] = _Window(now, 0, level, msg, args)
        if window is not None and window.suppressed:
            msg += " (%d more like this in the last %.0f s)"
            args = (*args, window.suppressed, now - window.started)
        self.logger.log(level, msg, *args)
        return True

    def flush(self) -> None:
        """Report the repeats of the windows that are over; forget them."""
        now = self.clock()
        for key, window in list(self._windows.items()):
            if now - window.started < self.interval_s:
                continue
            del self._windows[key]
            if window.suppressed:
                self.logger.log(
                    window.level,
                    "%d more like this in the last %.0f s, the last: " + window.msg,
                    window.suppressed,
                    now - window.started,
                    *window.args,
                )
