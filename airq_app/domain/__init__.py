"""The pure domain of airq: what a measurement is, whether it is valid and kept, what it scores, what it writes.

No I/O beyond reading the index tables shipped with the package, once; the clock is read only where a time stamp
defaults to now (`processed_at`, `timeutil.now_utc`). The stream, the poller and the backfill decide with these
modules and do the reading and writing themselves. A module here imports only the standard library, its
libraries (faust for the message record) and other modules of this package, never the worker's wiring (`stream`,
`sink`, `kafka`, `ingest`, `backfill`, `web`, `openaq`, `settings`, ...).
"""
