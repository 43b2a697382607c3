"""The `backfill` Faust command: `faust -A airq_app backfill --from 2026-01-01 --to 2026-01-31 [--source archive|api]
[--location ID ...] [--country CC ...]`.

Options, the default selection, the archive URL and the exit statuses (0 all sent, 1 some failed, 2 bad options):
docs/output.md, "Backfill".
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import date
from typing import Any

from faust.cli import AppCommand, option

from airq_app.backfill import job
from airq_app.backfill.sources import SourceError
from airq_app.settings import Settings

log = logging.getLogger("airq.backfill")


class BackfillFailed(SystemExit):
    """Ends the command with a non-zero status: 2 for a bad option (the message says which), 1 for failed days."""

    def __init__(self, message: str, code: int = 2) -> None:
        print(message, file=sys.stderr, flush=True)
        super().__init__(code)


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise BackfillFailed(f"airq backfill: {name} {text!r} is not a date YYYY-MM-DD") from None


def _split(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def parse_request(
    date_from: str,
    date_to: str,
    source: str,
    locations: Iterable[str],
    countries: Iterable[str],
    archive_url: str,
) -> job.BackfillRequest:
    """The request from the command's options and the archive to read (`backfill.archive_url`); BackfillFailed
    (status 2) names a bad option."""
    first, last = _day(date_from, "--from"), _day(date_to, "--to")
    if last < first:
        raise BackfillFailed(f"airq backfill: --to {last} is before --from {first}")
    if source not in job.SOURCES:
        raise BackfillFailed(f"airq backfill: --source must be one of {', '.join(job.SOURCES)}")
    ids = []
    for text in _split(locations):
        if not text.isdigit() or int(text) <= 0:
            raise BackfillFailed(f"airq backfill: --location {text!r} is not a location id")
        ids.append(int(text))
    codes = [c.upper() for c in _split(countries)]
    for code in codes:
        if len(code) != 2 or not code.isalpha():
            raise BackfillFailed(f"airq backfill: --country {code!r} is not an ISO 3166 alpha-2 code")
    return job.BackfillRequest(first, last, archive_url, source, tuple(ids), tuple(codes))


def install(app: Any, settings: Settings) -> None:
    """Register the `backfill` command on the app (called by `airq_app.worker.build`)."""

    @app.command(
        option("--from", "date_from", required=True, help="First UTC day, YYYY-MM-DD."),
        option("--to", "date_to", required=True, help="Last UTC day (inclusive), YYYY-MM-DD."),
        option("--source", default="archive", show_default=True, help="archive (OpenAQ's S3 archive) or api."),
        option("--location", "locations", multiple=True, help="Location id(s); repeat or comma-separate."),
        option("--country", "countries", multiple=True, help="ISO country code(s); repeat or comma-separate."),
        base=AppCommand,
    )
    async def backfill(
        self: AppCommand,
        date_from: str,
        date_to: str,
        source: str,
        locations: tuple[str, ...],
        countries: tuple[str, ...],
    ) -> None:
        """Send OpenAQ history through the stream, exactly once; resumable."""
        request = parse_request(date_from, date_to, source, locations, countries, settings.backfill.archive_url)
        try:
            outcome = await job.run(settings, request)
        except SourceError as exc:
            raise BackfillFailed(f"airq backfill: {exc}", 1) from None
        summary = (
            f"airq backfill: {outcome.sent_units} of {outcome.units} days sent ({outcome.skipped_units} sent before), "
            f"{outcome.measurements:,} measurements in {outcome.elapsed_s:.1f} s"
            f" ({outcome.measurements / max(outcome.elapsed_s, 1e-9):,.0f}/s)"
        )
        print(summary, file=sys.stderr, flush=True)
        if not outcome.ok:
            for line in outcome.failed[:20]:
                print(f"airq backfill: failed: {line}", file=sys.stderr)
            raise BackfillFailed(f"airq backfill: {len(outcome.failed)} days failed; run it again to retry them", 1)

    # `faust -A airq_app backfill` looks the command up by this name.
    assert backfill is not None
