"""Helpers for tests that talk HTTP to the OpenAQ simulator, run in-process on an ephemeral port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airq_app.openaq import OpenAQClient
from airq_dev.simulator import Faults, SimulatorThread, WorldConfig

TEST_KEY = "test-key-5f3a9c0e1d"  # distinctive, so a leak is easy to find in captured logs


@contextmanager
def running_simulator(faults: dict[str, Any] | None = None, **config: Any) -> Iterator[SimulatorThread]:
    """A simulator in a background thread; small world and no rate limit unless asked."""
    config.setdefault("locations", 60)
    config.setdefault("rate_limit_per_minute", 0)
    f = Faults()
    if faults:
        f.update(faults)
    sim = SimulatorThread(WorldConfig(faults=f, **config)).start()
    try:
        yield sim
    finally:
        sim.stop()


def fast_client(url: str, key: str | None = TEST_KEY, **kwargs: Any) -> OpenAQClient:
    """A client with short backoffs so retry tests take milliseconds."""
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    kwargs.setdefault("timeout", (2, 5))
    return OpenAQClient(url, key, **kwargs)


def latest_triples(items: list[dict[str, Any]]) -> list[tuple[int, str, float]]:
    return [(i["sensorsId"], i["datetime"]["utc"], i["value"]) for i in items]


def served_triples(sim: SimulatorThread, kind: str) -> list[tuple[int, str, float]]:
    return [(s, dt, v) for s, dt, v, _ in sim.served(kind)]
