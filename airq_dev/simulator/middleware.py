"""The layer in front of every handler: the real API's auth, per-key rate limit and headers, and injected faults.

Control paths (`/_sim/...`) bypass it and only get their errors turned into JSON.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from airq_dev.simulator.archive import archive_middleware
from airq_dev.simulator.responses import (
    DB_TIMEOUT,
    INVALID_CREDENTIALS,
    TOO_MANY_REQUESTS,
    WAF_UNAUTHORIZED,
    ApiError,
    error_response,
    json_response,
)
from airq_dev.simulator.state import SERVED_KEY, SIM_KEY, Handler


def _kind(request: web.Request) -> str:
    route = request.match_info.route
    name = getattr(route, "name", None)
    if name:
        return name
    return "control" if request.path.startswith("/_sim/") else "other"


@web.middleware
async def openaq_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    if request.path.startswith("/records/"):
        return await archive_middleware(sim, request, handler)
    if not request.path.startswith("/v3/"):
        return await _control_errors(request, handler)
    now = sim.world.now()
    kind = _kind(request)
    sim.stats.count_request(kind, time.time())
    key = request.headers.get("X-API-Key", "")

    def finish(resp: web.Response, rate_headers: dict[str, str]) -> web.Response:
        resp.headers.update(rate_headers)
        if resp.status < 500:
            resp.headers["Cache-Control"] = "public, max-age=900"
        with sim.stats.lock:
            sim.stats.by_status[resp.status] += 1
        return resp

    if not key:
        with sim.stats.lock:
            sim.stats.unauthorized += 1
        return finish(json_response(WAF_UNAUTHORIZED, 401), {})
    if sim.config.api_keys is not None and key not in sim.config.api_keys:
        with sim.stats.lock:
            sim.stats.unauthorized += 1
        return finish(json_response(INVALID_CREDENTIALS, 401), {})

    faults = sim.faults
    applies = faults.kinds is None or kind in faults.kinds
    forced: int | str | None = None
    if applies and faults.fail_next:
        with sim.lock:
            forced = faults.fail_next.pop(0) if faults.fail_next else None
    if forced == 429:
        with sim.stats.lock:
            sim.stats.rate_limited += 1
            sim.stats.faults["forced_429"] += 1
        return finish(json_response(TOO_MANY_REQUESTS, 429), sim.forced_429_headers(key, now))

    allowed, rate_headers = sim.rate_check(key, time.time())
    if not allowed:
        with sim.stats.lock:
            sim.stats.rate_limited += 1
        return finish(json_response(TOO_MANY_REQUESTS, 429), rate_headers)

    if isinstance(forced, int):
        with sim.stats.lock:
            sim.stats.faults[f"forced_{forced}"] += 1
        return finish(error_response(forced), rate_headers)
    if forced == "slow" or (applies and sim.chance(faults.slow_rate)):
        with sim.stats.lock:
            sim.stats.faults["slow"] += 1
        await asyncio.sleep(faults.delay_s or (1.0 if forced == "slow" else 0.0))
    if applies and sim.chance(faults.error_rate):
        status = sim._rng.choice((500, 502, 503, 504))
        with sim.stats.lock:
            sim.stats.faults[f"error_{status}"] += 1
        return finish(error_response(status), rate_headers)
    if applies and sim.chance(faults.timeout_rate):
        with sim.stats.lock:
            sim.stats.faults["timeout_408"] += 1
        return finish(json_response(DB_TIMEOUT, 408), rate_headers)

    url = str(request.rel_url)
    cached = None
    if applies and faults.repeat_rate and sim.chance(faults.repeat_rate):
        with sim.lock:
            cached = sim._cache.get(url)
    if cached is not None:
        body, served = cached
        with sim.stats.lock:
            sim.stats.faults["repeat"] += 1
        resp = web.Response(body=body, content_type="application/json")
    else:
        try:
            handled = await handler(request)
        except ApiError as exc:
            return finish(json_response(exc.body, exc.status), rate_headers)
        except web.HTTPNotFound:
            return finish(json_response({"detail": "Not Found"}, 404), rate_headers)
        except web.HTTPMethodNotAllowed:
            return finish(json_response({"detail": "Method Not Allowed"}, 405), rate_headers)
        if not isinstance(handled, web.Response):
            return handled
        resp = handled
        served = request.get(SERVED_KEY, [])
        if resp.status == 200 and faults.repeat_rate and isinstance(resp.body, bytes):
            with sim.lock:
                sim._cache[url] = (resp.body, served)
                while len(sim._cache) > 512:
                    sim._cache.popitem(last=False)

    if resp.status == 200 and (forced == "malformed" or (applies and sim.chance(faults.malformed_rate))):
        body = resp.body if isinstance(resp.body, bytes) else b""
        with sim.stats.lock:
            sim.stats.faults["malformed"] += 1
        return finish(web.Response(body=body[: max(len(body) // 2, 1)], content_type="application/json"), rate_headers)
    if resp.status == 200 and served and sim.config.record_served:
        sim.stats.record_served(served)
    return finish(resp, rate_headers)


async def _control_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return json_response({"detail": exc.reason}, exc.status)
    except (ValueError, TypeError) as exc:
        return json_response({"detail": str(exc)}, 400)
