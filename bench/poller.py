"""Poller cost: requests and time for one full polling cycle over a simulated world.

Runs the poller's cycle (locations, then every parameter's /latest listing in every unit) with the real client
and its rate budget against the simulator over HTTP. The simulator's rate-limit minute can be shortened
(`--minute-seconds`) so that a cycle bound by 60 requests a minute runs in seconds; cycle time is then also
reported in real minutes (requests / per-minute limit, the budget being the bound).

    python -m bench.poller --locations 20000               # real 60-second minutes
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from airq_app import openaq
from airq_dev.simulator import SimulatorThread, WorldConfig

PARAMETERS = ("pm25", "pm10", "o3", "no2", "so2", "co")


def run(locations: int, minute_seconds: float, per_minute: int = 60, per_hour: int = 2000) -> dict[str, Any]:
    sim = SimulatorThread(
        WorldConfig(
            locations=locations,
            seed=1,
            rate_limit_per_minute=per_minute,
            minute_seconds=minute_seconds,
            record_served=False,
        )
    ).start()
    try:
        client = openaq.OpenAQClient(
            sim.url,
            "bench-key",
            per_minute=per_minute,
            per_hour=per_hour,
            minute_seconds=minute_seconds,
            hour_seconds=minute_seconds * 60,
        )
        started = time.perf_counter()
        index = openaq.index_locations(client.list_locations({}))
        location_requests = client.request_count
        measurements = 0
        for _name, pid in openaq.parameter_variants(PARAMETERS):
            for item in client.latest_for_parameter(pid):
                if openaq.measurement_from_latest(item, index, "2026-01-01T00:00:00Z") is not None:
                    measurements += 1
        wall = time.perf_counter() - started
        stats = sim.stats(False)
        result = {
            "locations": locations,
            "sensors": len(index),
            "requests_per_cycle": client.request_count,
            "location_requests": location_requests,
            "measurements": measurements,
            "cycle_wall_s": round(wall, 1),
            "cycle_minutes_in_rate_limit_minutes": round(wall / minute_seconds, 2),
            "max_requests_in_a_minute": stats["max_requests_per_minute"],
            "max_requests_in_an_hour": stats["max_requests_per_hour"],
            "rate_limited_429": stats["rate_limited"],
            "minute_seconds": minute_seconds,
        }
        client.close()
        return result
    finally:
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=20_000)
    parser.add_argument("--minute-seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(json.dumps(run(args.locations, args.minute_seconds)))


if __name__ == "__main__":
    main()
