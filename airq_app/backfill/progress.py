"""What a backfill has finished (a progress file, so that it resumes), and how far it is (a bar on stderr).

The progress file (`<data dir>/backfill/<source>.done`) has one line per finished unit, `<location id> <YYYY-MM-DD>`,
appended and fsynced once every message of the unit was acknowledged by the broker. A line cut short by a crash is
ignored, so the unit is sent again: harmless, since the stream de-duplicates (a resent measurement is a duplicate,
a changed value a revision). Days less than `RECHECK_HOURS` old are never recorded: OpenAQ's archive is updated per
location every 72 hours, so a later run fetches them again.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

RECHECK_HOURS = 72


class ProgressFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[tuple[int, str]] = set()
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0].isdigit() and len(parts[1]) == 10:
                    self.done.add((int(parts[0]), parts[1]))

    def is_done(self, location_id: int, day: date) -> bool:
        return (location_id, day.isoformat()) in self.done

    def mark(self, location_id: int, day: date, now: datetime | None = None) -> bool:
        """Record a finished unit (unless its day is too recent to be final); True when recorded."""
        now = now or datetime.now(UTC)
        day_end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        if now - day_end < timedelta(hours=RECHECK_HOURS):
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{location_id} {day.isoformat()}\n")
            f.flush()
            os.fsync(f.fileno())
        self.done.add((location_id, day.isoformat()))
        return True


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressBar:
    """Units done of the total, measurements sent, their rate and the ETA, on one stderr line.

    On a terminal the line is redrawn at most 10 times a second; elsewhere (a log file) a line is printed every
    `plain_interval_s`.
    """

    def __init__(
        self, total: int, *, stream: TextIO | None = None, width: int = 24, plain_interval_s: float = 10.0
    ) -> None:
        self.total = max(total, 0)
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self.plain_interval_s = plain_interval_s
        self.units = 0
        self.measurements = 0
        self.failed = 0
        self.started = time.monotonic()
        self._drawn = 0.0

    def advance(self, measurements: int, *, failed: bool = False) -> None:
        self.units += 1
        self.measurements += measurements
        self.failed += int(failed)
        self.draw()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        share = self.units / self.total if self.total else 1.0
        filled = int(self.width * share)
        rate = self.measurements / elapsed
        eta = elapsed / self.units * (self.total - self.units) if self.units else 0.0
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"backfill [{'#' * filled}{'.' * (self.width - filled)}] {self.units}/{self.total} days{failed} "
            f"{share:4.0%}  {self.measurements:,} measurements  {rate:,.0f}/s  "
            f"elapsed {_duration(elapsed)}  ETA {_duration(eta)}"
        )

    def draw(self, final: bool = False) -> None:
        now = time.monotonic()
        interval = 0.1 if self.tty else self.plain_interval_s
        if not final and now - self._drawn < interval:
            return
        self._drawn = now
        if self.tty:
            self.stream.write("\r" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
