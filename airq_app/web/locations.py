"""Location lookups and the dashboard's overview, answered by any processing worker.

`/airq/locations/{id}` is answered here when this worker holds the location, else forwarded to the owner of the
partition the poller's key (the location id's bytes) puts it on; Faust's `table_route` hashes the JSON-encoded table
key instead, which names another worker. `/airq/api/overview` asks only peers whose host `web.peer_hosts` allows (no
arbitrary URLs); a forwarded request carries none of the original's headers, only this worker's own web token.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import ClientTimeout
from faust.web import Request, Response, View
from yarl import URL

from airq_app.runtime import Runtime
from airq_app.stream.processor import StreamProcessor
from airq_app.web.auth import token_headers

PEER_TIMEOUT = ClientTimeout(total=3.0)
LOCAL_CACHE_S = 2.0


class LocalLocations:
    """This worker's location summaries as dashboard entries, decoded at most every `LOCAL_CACHE_S`."""

    def __init__(self, stream: StreamProcessor) -> None:
        self.stream = stream
        self._at = 0.0
        self._entries: list[dict[str, Any]] = []

    def entries(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        if now - self._at >= LOCAL_CACHE_S:
            self._entries = [{"location_id": int(k), **v} for k, v in self.stream.summaries.items()]
            self._at = now
        return self._entries


def install(rt: Runtime) -> None:
    assert rt.stream is not None
    stream: StreamProcessor = rt.stream  # not Optional: the views below see it narrowed
    app = rt.app
    local = LocalLocations(stream)
    allowed = set(rt.settings.web.peer_hosts)
    changelog = stream.tables.latest_by_location.changelog_topic_name
    peer_headers = token_headers(rt.settings.web.token)

    def owner_url(location_id: str) -> str | None:
        try:
            return str(app.assignor.key_store(changelog, location_id.encode())).rstrip("/")
        except Exception:
            return None

    class Location(View):
        """Latest value and AQI of each parameter at a location."""

        async def get(self, request: Request, location_id: str) -> Response:
            if not location_id.isdigit() or len(location_id) > 18:
                return self.json({"error": f"location id must be a number, got {location_id[:40]!r}"}, status=400)
            entry = stream.summaries.get(location_id)
            if entry is not None:
                return self.json({"location_id": int(location_id), **entry})
            owner = owner_url(location_id)
            forwarded = request.headers.get("X-Airq-Forwarded") is not None
            if owner and owner != rt.url and not forwarded and URL(owner).host in allowed:
                try:
                    async with app.http_client.get(
                        f"{owner}/airq/locations/{location_id}",
                        headers={"X-Airq-Forwarded": "1", **peer_headers},
                        timeout=PEER_TIMEOUT,
                    ) as resp:
                        body = await resp.read()
                        return self.bytes(body, content_type="application/json", status=resp.status)
                except Exception as exc:
                    return self.json({"error": f"worker {owner} holding location {location_id}: {exc}"}, status=503)
            return self.json({"error": f"no measurements for location {location_id} yet"}, status=404)

    class Locations(View):
        """Every location this worker holds (active and standby partitions): the dashboard's data."""

        async def get(self, request: Request) -> Response:
            return self.json({"worker": rt.url, "locations": local.entries()})

    class Overview(View):
        """All workers' locations and status, gathered from the peers named in the partition assignment."""

        async def get(self, request: Request) -> Response:
            peers = {rt.url}
            try:
                for url in app.router.table_metadata("latest_by_location"):
                    peer = str(url).rstrip("/")
                    if URL(peer).scheme == "http" and URL(peer).host in allowed:
                        peers.add(peer)
            except Exception:
                pass
            results = await asyncio.gather(*(self._peer(url) for url in sorted(peers)))
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

        async def _peer(self, url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            if url == rt.url:
                ok, problems = rt.readiness()
                summary = _worker_summary(url, ok, problems, rt.status.snapshot(), rt.assignment(), rt.consumer_lag())
                return summary, local.entries()
            try:
                async with app.http_client.get(
                    f"{url}/airq/status", headers=peer_headers, timeout=PEER_TIMEOUT
                ) as resp:
                    resp.raise_for_status()  # a 401 (another web token) says so, not a missing key
                    st = orjson.loads(await resp.read())
                async with app.http_client.get(
                    f"{url}/airq/api/locations", headers=peer_headers, timeout=PEER_TIMEOUT
                ) as resp:
                    resp.raise_for_status()
                    entries = [e for e in orjson.loads(await resp.read())["locations"] if "location_id" in e]
                lag = {int(k): int(v) for k, v in st.get("consumer_lag", {}).items()}
                worker = st.get("worker", {})
                summary = _worker_summary(
                    url, worker.get("ready"), worker.get("problems"), st["counters"], st["assignment"], lag
                )
                return summary, entries
            except Exception as exc:  # one bad peer must not break the overview
                return {"url": url, "reachable": False, "error": str(exc)[:200]}, []

    app.page("/airq/locations/{location_id}")(Location)
    app.page("/airq/api/locations")(Locations)
    app.page("/airq/api/overview")(Overview)


def _newest(entry: dict[str, Any]) -> str:
    return max((p.get("datetime_utc") or "" for p in entry.get("parameters", {}).values()), default="")


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
