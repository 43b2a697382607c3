"""Web endpoints on this worker's port: health, readiness and status."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from faust.web import Request, Response, View

from airq_app import metrics
from airq_app.application import app, settings, web_host
from airq_app.status import status


def readiness() -> tuple[bool, list[str]]:
    """Ready = broker reached, partitions assigned, tables recovered, output writable."""
    problems: list[str] = []
    if status.broker_error:
        problems.append(f"broker: {status.broker_error}")
    if not app.consumer.assignment():
        problems.append("no partitions assigned yet (waiting for the broker and the group)")
    elif app.rebalancing:
        problems.append("rebalancing")
    elif app.in_recovery or not app.tables.recovery.completed.is_set():
        problems.append("tables recovering")
    if status.sink_blocked:
        problems.append(f"output blocked: {status.sink_blocked}")
    return (not problems, problems)


def assignment() -> dict[str, Any]:
    active: list[int] = []
    standby: list[int] = []
    try:
        assigned = app.assignor.assigned_actives()
        standbys = app.assignor.assigned_standbys()
    except Exception:
        assigned, standbys = set(), set()
    from airq_app.topics import MEASUREMENTS_TOPIC

    active = sorted(tp.partition for tp in assigned if tp.topic == MEASUREMENTS_TOPIC)
    # Standby replicas are table changelog partitions kept warm for a partition another worker owns.
    standby = sorted({tp.partition for tp in standbys} - set(active))
    return {"active": active, "standby": standby}


def consumer_lag() -> dict[int, int]:
    """Per active partition: high-water mark minus the next offset this worker will process."""
    from airq_app.topics import MEASUREMENTS_TOPIC

    lag: dict[int, int] = {}
    for tp in app.consumer.assignment():
        if tp.topic != MEASUREMENTS_TOPIC:
            continue
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:
            continue
        if highwater is None or highwater < 0:
            continue
        lag[tp.partition] = max(0, highwater - status.positions.get(tp.partition, 0))
    return lag


def _metrics_extra() -> dict[str, Any]:
    ok, _ = readiness()
    return {"lag": consumer_lag() if settings.processes else {}, "ready": ok, "active": assignment()["active"]}


metrics.install(status, _metrics_extra)


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        from aiohttp import web

        # aiohttp wants the charset apart from the content type; Prometheus wants both.
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.CONTENT_TYPE})  # type: ignore


STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {
    ".html": "text/html",
    ".js": "application/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@app.page("/airq/")
class Dashboard(View):
    """The live dashboard: one page, no outside network; it polls /airq/api/overview."""

    async def get(self, request: Request) -> Response:
        return self.html((STATIC_DIR / "dashboard.html").read_text(encoding="utf-8"))


@app.page("/airq/static/{name}")
class Static(View):
    async def get(self, request: Request, name: str) -> Response:
        path = STATIC_DIR / name
        if "/" in name or name.startswith(".") or not path.is_file() or path.suffix not in STATIC_TYPES:
            return self.json({"error": "not found"}, status=404)
        return self.bytes(path.read_bytes(), content_type=STATIC_TYPES[path.suffix])


@app.page("/airq/health")
class Health(View):
    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok", "uptime_s": round(time.time() - status.started, 1)})


@app.page("/airq/ready")
class Ready(View):
    async def get(self, request: Request) -> Response:
        ok, problems = readiness()
        return self.json({"ready": ok, "problems": problems}, status=200 if ok else 503)


@app.page("/airq/status")
class Status(View):
    async def get(self, request: Request) -> Response:
        ok, problems = readiness()
        return self.json(
            {
                "worker": {
                    "web_port": settings.web_port,
                    "role": settings.role,
                    "ready": ok,
                    "problems": problems,
                },
                "settings": settings.public(),
                "assignment": assignment(),
                "counters": status.snapshot(),
                "last_poll": asdict(status.last_poll),
                "consumer_lag": {str(p): n for p, n in sorted(consumer_lag().items())} if settings.processes else {},
                "is_leader": app.is_leader() if settings.polls else None,
            }
        )


if settings.processes:
    from airq_app.tables import latest_by_location, location_summaries

    @app.page("/airq/locations/{location_id}")
    @app.table_route(table=latest_by_location, match_info="location_id")
    async def location(web: View, request: Request, location_id: str) -> Response:
        """Latest value and AQI of each parameter at a location, answered by the worker that owns it."""
        if not location_id.isdigit():
            return web.json({"error": f"location id must be a number, got {location_id!r}"}, status=400)
        entry = location_summaries.get(location_id)
        if entry is None:
            return web.json({"error": f"no measurements for location {location_id} yet"}, status=404)
        return web.json({"location_id": int(location_id), **entry})

    @app.page("/airq/api/locations")
    class Locations(View):
        """Every location this worker holds (active and standby partitions): the dashboard's data."""

        async def get(self, request: Request) -> Response:
            entries = [{"location_id": int(k), **v} for k, v in location_summaries.items()]
            return self.json({"worker": f"http://{web_host}:{settings.web_port}", "locations": entries})

    @app.page("/airq/api/overview")
    class Overview(View):
        """All workers' locations and status, gathered from the peers named in the partition assignment."""

        async def get(self, request: Request) -> Response:
            import asyncio

            me = f"http://{web_host}:{settings.web_port}"
            peers = {me}
            try:
                peers |= {str(url).rstrip("/") for url in app.router.table_metadata("latest_by_location")}
            except Exception:
                pass
            results = await asyncio.gather(*(_fetch_peer(url, url == me) for url in sorted(peers)))
            locations: dict[int, dict[str, Any]] = {}
            workers = []
            for worker, entries in results:
                workers.append(worker)
                for entry in entries:
                    prev = locations.get(entry["location_id"])
                    if prev is None or _newest(entry) >= _newest(prev):
                        locations[entry["location_id"]] = entry
            return self.json(
                {
                    "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "workers": workers,
                    "locations": sorted(locations.values(), key=lambda e: -(e.get("aqi") or -1)),
                }
            )

    def _newest(entry: dict[str, Any]) -> str:
        return max((p.get("datetime_utc") or "" for p in entry.get("parameters", {}).values()), default="")

    async def _fetch_peer(url: str, local: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if local:
            ok, problems = readiness()
            entries = [{"location_id": int(k), **v} for k, v in location_summaries.items()]
            return _worker_summary(url, ok, problems, status.snapshot(), assignment(), consumer_lag()), entries
        try:
            async with app.http_client.get(f"{url}/airq/status", timeout=3) as resp:
                st = await resp.json()
            async with app.http_client.get(f"{url}/airq/api/locations", timeout=3) as resp:
                entries = (await resp.json())["locations"]
        except Exception as exc:
            return {"url": url, "reachable": False, "error": str(exc)[:200]}, []
        lag = {int(k): v for k, v in st.get("consumer_lag", {}).items()}
        worker = st.get("worker", {})
        summary = _worker_summary(
            url, worker.get("ready"), worker.get("problems"), st["counters"], st["assignment"], lag
        )
        return summary, entries

    def _worker_summary(
        url: str, ready: Any, problems: Any, counters: dict[str, Any], assigned: dict[str, Any], lag: dict[int, int]
    ) -> dict[str, Any]:
        return {
            "url": url,
            "reachable": True,
            "ready": ready,
            "problems": problems,
            "consumed": counters.get("consumed", 0),
            "written": counters.get("written", 0),
            "duplicates": counters.get("duplicates", 0),
            "dead_lettered": counters.get("dead_lettered", 0),
            "active": assigned.get("active", []),
            "standby": assigned.get("standby", []),
            "lag": sum(lag.values()),
        }
