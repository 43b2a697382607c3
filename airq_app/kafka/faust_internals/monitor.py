"""The app's monitor, without Faust's bookkeeping per message and per event.

Faust internals relied on (faust-streaming at `PINNED_VERSIONS`; the fingerprints in
`tests/unit/test_faust_internals.py` name each upstream object):

- The sensor hooks `Monitor.on_message_in`, `on_stream_event_in`, `on_stream_event_out` and `on_message_out`,
  called for every message and event, whose statistics only Faust's web pages read.
"""

from __future__ import annotations

from typing import Any

from faust.sensors import Monitor
from faust.types import TP


class QuietMonitor(Monitor):
    """Faust's monitor without its bookkeeping per message and per event (timestamps, counters, a state dict each
    time), which only Faust's web statistics read; airq keeps those pages off and counts in `WorkerStatus`."""

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: dict[str, Any] | None = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        return None
