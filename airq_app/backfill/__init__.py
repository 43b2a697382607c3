"""History through the live path: `faust -A airq_app backfill --from YYYY-MM-DD --to YYYY-MM-DD`.

Sends OpenAQ's history (the public archive, or the API's hourly series) to `air_quality_telematics` as the poller
sends live values, so it is validated, filtered, scored, de-duplicated and written exactly once by the running
workers, revisions included. Modules: `command` (the Faust command and its options), `job` (units, progress,
sending), `sources` (archive and API), `progress` (the resumable progress file and the progress bar).
"""

from airq_app.backfill.command import install

__all__ = ["install"]
