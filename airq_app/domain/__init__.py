"""The pure domain of airq: what a measurement is, whether it is valid and kept, what it scores, what it writes.

No I/O (beyond reading the index tables shipped with the package once) and no clock beyond the `now` a caller
passes (or `processed_at` defaulting to it): the stream, the poller and the backfill decide with these modules and
do the reading and writing themselves. A module here imports only the standard library, its libraries (faust for
the message record) and other modules of this package, never the worker's wiring (`stream`, `sink`, `kafka`,
`ingest`, `backfill`, `web`, `openaq`, `settings`, ...).
"""
