"""Web endpoints on this worker's port: health, readiness, status, metrics, the dashboard and its files.

With `AIRQ_WEB_TOKEN` set, every one of them but /airq/health wants the token (`airq_app.web.auth`, a middleware
in front of all routes), and /airq/login gives the dashboard its session.

Location lookups and the dashboard's overview (which need the stream's tables) are in `airq_app.web.locations`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View

from airq_app.domain import indices
from airq_app.metrics import CONTENT_TYPE
from airq_app.runtime import Runtime
from airq_app.web import auth

STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {
    ".html": "text/html",
    ".js": "application/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def install(rt: Runtime) -> None:
    app, settings, status = rt.app, rt.settings, rt.status
    rt.metrics.install(status, rt.metrics_extra)

    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # aiohttp wants the charset apart from the content type; Prometheus wants both.
            return aiohttp_web.Response(  # type: ignore[return-value]
                body=rt.metrics.render(), headers={"Content-Type": CONTENT_TYPE}
            )

    class Dashboard(View):
        """The live dashboard: one page, no outside network; it polls /airq/api/overview."""

        async def get(self, request: Request) -> Response:
            return self.html((STATIC_DIR / "dashboard.html").read_text(encoding="utf-8"))

    class Static(View):
        async def get(self, request: Request, name: str) -> Response:
            path = STATIC_DIR / name
            if "/" in name or name.startswith(".") or not path.is_file() or path.suffix not in STATIC_TYPES:
                return self.json({"error": "not found"}, status=404)
            return self.bytes(path.read_bytes(), content_type=STATIC_TYPES[path.suffix])

    class Indices(View):
        """Every national index's name, category names and colours: the dashboard's local-index legend."""

        async def get(self, request: Request) -> Response:
            return self.json({"indices": indices.legends()})

    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "uptime_s": round(time.time() - status.started, 1)})

    class Ready(View):
        async def get(self, request: Request) -> Response:
            ok, problems = rt.readiness()
            return self.json({"ready": ok, "problems": problems}, status=200 if ok else 503)

    class Status(View):
        async def get(self, request: Request) -> Response:
            ok, problems = rt.readiness()
            poller = None
            if rt.election is not None:
                poller = {
                    "this_worker_polls": rt.election.leading,
                    "polling_since": rt.election.leading_since,
                    "polling_worker": await rt.election.current_poller(),
                    "admin_lookups": rt.election.admin_lookups,  # at most one per 2 s, however many ask
                    "ingest": rt.poller.summary() if rt.poller is not None else None,
                }
            return self.json(
                {
                    "worker": {
                        "url": rt.url,
                        "web_port": settings.web.port,
                        "role": settings.app.role,
                        "ready": ok,
                        "problems": problems,
                    },
                    "settings": settings.public(),
                    "assignment": rt.assignment(),
                    "counters": status.snapshot(),
                    "last_poll": asdict(status.last_poll),
                    "poller": poller,
                    "consumer_lag": {str(p): n for p, n in sorted(rt.consumer_lag().items())},
                }
            )

    app.page("/metrics")(Metrics)
    app.page("/airq/")(Dashboard)
    app.page("/airq/static/{name}")(Static)
    app.page("/airq/api/indices")(Indices)
    app.page("/airq/health")(Health)
    app.page("/airq/ready")(Ready)
    app.page("/airq/status")(Status)

    if settings.web.token:
        token = settings.web.token

        class Login(View):
            """The dashboard's sign-in: the header token (checked by the middleware) for a session cookie."""

            async def post(self, request: Request) -> Response:
                return await auth.login(request, token)  # type: ignore[arg-type,return-value]

        app.page(auth.LOGIN_PATH)(Login)
