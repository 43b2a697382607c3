"""Running the simulator: in a background thread (tests), as a subprocess, or from the command line.

python -m airq_dev.simulator --port 8765 --locations 200 [--seed 1] [--rate-limit-per-minute 60]
                             [--minute-seconds 60] [--faults '{"error_rate": 0.05}'] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import orjson
from aiohttp import web

from airq_dev.simulator.app import build_app
from airq_dev.simulator.config import HOUR, Faults, WorldConfig
from airq_dev.simulator.state import SIM_KEY


class SimulatorThread:
    """The simulator served from a background thread with its own event loop."""

    def __init__(self, config: WorldConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = build_app(config)
        self.sim = self.app[SIM_KEY]
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="openaq-simulator", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner = web.AppRunner(self.app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            self._loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> SimulatorThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"simulator did not start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # conveniences for tests (the same as the control endpoints)
    def set_faults(self, **changes: Any) -> dict[str, Any]:
        return self.sim.set_faults(**changes)

    def stats(self, include_served: bool = True) -> dict[str, Any]:
        return self.sim.stats.snapshot(include_served)

    def served(self, kind: str | None = None) -> list[tuple[int, str, float, str]]:
        with self.sim.stats.lock:
            return [r for r in self.sim.stats.served if kind is None or r[3] == kind]

    def reset(self) -> None:
        self.sim.reset_stats()

    def advance(self, hours: float) -> None:
        """Move the world's clock on (as `POST /_sim/clock` with `advance_hours`)."""
        self.sim.advance(hours)

    def set_world(self, **changes: Any) -> dict[str, Any]:
        """Any of `config.RUNTIME_OPTIONS`, e.g. `revision_rate` or `spike_rate` (as `POST /_sim/world`)."""
        return self.sim.set_world(**changes)

    def quality(
        self, start: str | None = None, end: str | None = None, location_ids: list[int] | None = None
    ) -> dict[str, Any]:
        """The data-quality faults whose hours fall in [start, end] (UTC ISO; as `GET /_sim/quality`)."""
        return self.sim.quality_report(start, end, location_ids)

    def archive(self) -> dict[str, Any]:
        """Archive files served and 404s (as `GET /_sim/archive`)."""
        return self.sim.stats.archive_snapshot()

    def values(self, revised_only: bool = False) -> dict[tuple[int, str], list[float]]:
        """Every distinct value served per (sensor id, datetime utc), in order (as `GET /_sim/values`)."""
        snap = self.sim.stats.values_snapshot(revised_only, None)
        return {(sid, dt): vals for sid, dt, vals in snap["values"]}


def start_subprocess(
    args: list[str] | None = None, *, python: str = sys.executable, timeout: float = 30.0
) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m airq_dev.simulator ARGS` (default `--port 0`); returns (process, base URL) once it
    listens. Stop it with `proc.terminate()`."""
    args = list(args) if args is not None else ["--port", "0"]
    proc = subprocess.Popen(
        [python, "-m", "airq_dev.simulator", *args], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].split()[0]
    proc.kill()
    raise RuntimeError("the simulator subprocess did not report where it listens")


def _parse_faults_arg(text: str) -> dict[str, Any]:
    """`--faults` as JSON (`{"error_rate": 0.1}`) or `name=value,name=value`."""
    text = text.strip()
    if text.startswith("{"):
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise ValueError("--faults JSON must be an object")
        return data
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        out[name.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m airq_dev.simulator", description="OpenAQ v3 simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--locations", type=int, default=200, help="1 to 20000")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate-limit-per-minute", type=int, default=60, help="per key; 0 = unlimited")
    p.add_argument("--rate-limit-per-hour", type=int, default=0, help="per key; 0 = unlimited")
    p.add_argument("--minute-seconds", type=float, default=60.0, help="length of a rate-limit minute (tests)")
    p.add_argument("--api-key", action="append", dest="api_keys", help="accept only these keys (repeatable)")
    p.add_argument("--inactive-fraction", type=float, default=0.02)
    p.add_argument("--time-offset-hours", type=float, default=0.0)
    p.add_argument("--no-record-served", action="store_true", help="do not keep the list of served values")
    p.add_argument("--revision-rate", type=float, default=0.0, help="share of sensor-hours corrected later, 0-1")
    p.add_argument(
        "--revision-delay-s", type=float, default=20.0, help="seconds after first serving until a correction shows"
    )
    p.add_argument("--archive-lag-hours", type=int, default=0, help="hours the archive is behind the API")
    p.add_argument("--batch-fraction", type=float, default=0.0, help="share of sensors uploading every 2-4 hours, 0-1")
    p.add_argument("--stuck-rate", type=float, default=0.0, help="share of sensors repeating one value for hours, 0-1")
    p.add_argument("--stuck-hours", type=int, default=8, help="length of a stuck run, 2-48 hours")
    p.add_argument("--spike-rate", type=float, default=0.0, help="share of sensor-hours that spike, 0-0.25")
    p.add_argument(
        "--pm25-gt-pm10-rate", type=float, default=0.0, help="share of locations whose PM2.5 exceeds PM10 at times, 0-1"
    )
    p.add_argument("--flag-rate", type=float, default=0.0, help="share of locations with flagged periods, 0-1")
    p.add_argument("--faults", default=None, help='JSON object or name=value,... (e.g. "error_rate=0.1")')
    for name in ("error", "timeout", "slow", "malformed", "sentinel", "negative", "stale", "repeat", "duplicate"):
        p.add_argument(f"--{name}-rate", type=float, default=None, dest=f"{name}_rate")
    p.add_argument("--delay", type=float, default=None, dest="delay_s", help="seconds for slow responses")
    p.add_argument("--stale-hours", type=int, default=None)
    p.add_argument("--fault-kinds", default=None, help="comma list of path kinds the request faults apply to")
    return p


def config_from_args(ns: argparse.Namespace) -> WorldConfig:
    faults = Faults()
    if ns.faults:
        faults.update(_parse_faults_arg(ns.faults))
    flags = {
        f"{n}_rate": getattr(ns, f"{n}_rate")
        for n in ("error", "timeout", "slow", "malformed", "sentinel", "negative", "stale", "repeat", "duplicate")
    }
    flags |= {"delay_s": ns.delay_s, "stale_hours": ns.stale_hours}
    faults.update({k: v for k, v in flags.items() if v is not None})
    if ns.fault_kinds:
        faults.kinds = [k.strip() for k in ns.fault_kinds.split(",") if k.strip()]
    return WorldConfig(
        locations=ns.locations,
        seed=ns.seed,
        rate_limit_per_minute=ns.rate_limit_per_minute,
        rate_limit_per_hour=ns.rate_limit_per_hour,
        minute_seconds=ns.minute_seconds,
        api_keys=ns.api_keys,
        inactive_fraction=ns.inactive_fraction,
        record_served=not ns.no_record_served,
        time_offset_s=ns.time_offset_hours * HOUR,
        revision_rate=ns.revision_rate,
        revision_delay_s=ns.revision_delay_s,
        archive_lag_hours=ns.archive_lag_hours,
        batch_fraction=ns.batch_fraction,
        stuck_rate=ns.stuck_rate,
        stuck_hours=ns.stuck_hours,
        spike_rate=ns.spike_rate,
        pm25_gt_pm10_rate=ns.pm25_gt_pm10_rate,
        flag_rate=ns.flag_rate,
        faults=faults,
    )


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sim = app[SIM_KEY]
    actual = runner.addresses[0][1]
    rate = sim.config.rate_limit_per_minute
    print(
        f"airq-simulator: listening on http://{host}:{actual} ({len(sim.world.locations)} locations, "
        f"{len(sim.world.sensors)} sensors, seed {sim.config.seed}, "
        f"{f'{rate} requests per {sim.config.minute_seconds:g} s per key' if rate > 0 else 'no rate limit'})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        config = config_from_args(ns)
    except ValueError as exc:
        print(f"airq-simulator: {exc}", file=sys.stderr)
        return 2
    app = build_app(config)
    try:
        asyncio.run(_serve(app, ns.host, ns.port))
    except OSError as exc:
        print(f"airq-simulator: cannot listen on {ns.host}:{ns.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
