"""The web token (`AIRQ_WEB_TOKEN`): when set, every endpoint but /airq/health answers 401 without it.

One middleware checks every request (a route added later is covered): `Authorization: Bearer <token>` or
`X-API-Key: <token>`, compared in constant time. A browser cannot add a header when it navigates, so the dashboard
signs in once (`/airq/login`) for a session cookie (HttpOnly, SameSite=Strict, 12 hours: an expiry and its HMAC under
the token), taken for GET only; another token ends every session. docs/operations.md, "Web token".
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

EXEMPT_PATHS = frozenset({"/airq/health"})  # what load balancers and orchestrators probe without credentials
DASHBOARD_PATH = "/airq/"
LOGIN_PATH = "/airq/login"
SESSION_COOKIE = "airq_session"
SESSION_MAX_AGE_S = 12 * 3600
COOKIE_METHODS = frozenset({"GET", "HEAD"})
LOGIN_PAGE = Path(__file__).with_name("static") / "login.html"
HINT = "send the web token as 'Authorization: Bearer <token>' or 'X-API-Key: <token>'"


def token_headers(token: str) -> dict[str, str]:
    """The headers of a request to another worker of the same deployment (none when no token is set)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The token a request carries in `Authorization: Bearer …` or `X-API-Key: …`, if any."""
    scheme, _, value = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get("X-API-Key", "").strip()
    return key or None


def _same(given: str, token: str) -> bool:
    # Bytes: compare_digest refuses str with non-ASCII characters, which a client may well send.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


def session_value(token: str, expires: int) -> str:
    """A dashboard session cookie valid until `expires` (Unix seconds): that time and its HMAC under the token."""
    mac = hmac.new(token.encode(), f"airq-dashboard-session:{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def session_valid(value: str, token: str, now: float) -> bool:
    expires, _, _ = value.partition(".")
    if not expires.isdigit() or int(expires) <= now:
        return False
    return _same(value, session_value(token, int(expires)))


def authorized(request: web.Request, token: str, now: float) -> tuple[bool, bool]:
    """(allowed, a token or session was offered): the header token, or for GET the dashboard's session cookie."""
    given = presented_token(request.headers)
    if given is not None:
        return _same(given, token), True
    cookie = request.cookies.get(SESSION_COOKIE) if request.method in COOKIE_METHODS else None
    if cookie:
        return session_valid(cookie, token, now), True
    return False, False


def unauthorized(request: web.Request, offered: bool) -> web.Response:
    """401 with `WWW-Authenticate: Bearer`: JSON, or the sign-in page for a browser opening the dashboard."""
    challenge = 'Bearer realm="airq", error="invalid_token"' if offered else 'Bearer realm="airq"'
    headers = {"WWW-Authenticate": challenge, "Cache-Control": "no-store"}
    if request.path == DASHBOARD_PATH and "text/html" in request.headers.get("Accept", ""):
        page = LOGIN_PAGE.read_text(encoding="utf-8")
        return web.Response(status=401, text=page, content_type="text/html", headers=headers)
    detail = f"invalid web token: {HINT}" if offered else f"web token required: {HINT}"
    return web.json_response({"detail": detail}, status=401, headers=headers)


def middleware(token: str) -> Middleware:
    """The check in front of every route of the worker's web server (Faust's `web_application_options`)."""

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in EXEMPT_PATHS:
            return await handler(request)
        allowed, offered = authorized(request, token, time.time())
        if not allowed:
            return unauthorized(request, offered)
        return await handler(request)

    return require_token


def application_options(token: str) -> dict[str, list[Middleware]]:
    """Faust's `web_application_options` for this token: the check as the aiohttp application's middleware."""
    return {"middlewares": [middleware(token)]} if token else {}


async def login(request: web.Request, token: str) -> web.Response:
    """POST /airq/login (the middleware has checked the header token): the dashboard's session cookie."""
    expires = int(time.time()) + SESSION_MAX_AGE_S
    response = web.Response(status=204, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        SESSION_COOKIE,
        session_value(token, expires),
        max_age=SESSION_MAX_AGE_S,
        path=DASHBOARD_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response
