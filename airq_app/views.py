"""Web endpoints on this worker's port: health, readiness and status."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from faust.web import Request, Response, View

from airq_app.application import app, settings
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
    changelog_standby = sorted({tp.partition for tp in standbys})
    standby = changelog_standby
    return {"active": active, "standby": standby}


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
                "is_leader": app.is_leader() if settings.polls else None,
            }
        )


if settings.processes:
    from airq_app.tables import latest_by_location

    @app.page("/airq/locations/{location_id}")
    @app.table_route(table=latest_by_location, match_info="location_id")
    async def location(web: View, request: Request, location_id: str) -> Response:
        """Latest value and AQI of each parameter at a location, answered by the worker that owns it."""
        if not location_id.isdigit():
            return web.json({"error": f"location id must be a number, got {location_id!r}"}, status=400)
        entry = latest_by_location.get(location_id)
        if entry is None:
            return web.json({"error": f"no measurements for location {location_id} yet"}, status=404)
        return web.json({"location_id": int(location_id), **entry})
