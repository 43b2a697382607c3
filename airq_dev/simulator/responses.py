"""What the real server answers where a client can tell: error bodies, the JSON content type, gateway pages.

Shared by the middleware (auth, rate limit, injected faults) and the handlers (404s, 422s), so every error a client
sees has one shape whichever layer produced it.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

WAF_UNAUTHORIZED = {"message": "Unauthorized. A valid API key must be provided in the X-API-Key header."}
INVALID_CREDENTIALS = {"detail": "Invalid credentials"}
TOO_MANY_REQUESTS = {"detail": "Too many requests"}
DB_TIMEOUT = {"detail": "Connection timed out: Try to provide more specific query parameters or a smaller time frame."}
META_BASE = {"name": "openaq-api", "website": "/"}


class ApiError(Exception):
    """An error answer with the real server's JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class QueryError(ApiError):
    """A 422 with a pydantic-style body, for a query parameter or (`where="path"`) a path parameter."""

    def __init__(self, name: str, msg: str, value: Any = None, *, where: str = "query") -> None:
        super().__init__(422, {"detail": [{"type": "value_error", "loc": [where, name], "msg": msg, "input": value}]})


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json")


def error_response(status: int) -> web.Response:
    """The body the real service (or the gateway in front of it) gives for an HTTP error status."""
    if status == 408:
        return json_response(DB_TIMEOUT, 408)
    if status == 500:
        return json_response({"detail": "simulated database error"}, 500)
    if status in (502, 503, 504):  # gateway answers are not the app's JSON
        text = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}[status]
        return web.Response(text=f"<html><body><h1>{status} {text}</h1></body></html>", status=status,
                            content_type="text/html")  # fmt: skip
    if status == 404:
        return json_response({"detail": "Not Found"}, 404)
    if status == 401:
        return json_response(INVALID_CREDENTIALS, 401)
    if status == 403:
        return json_response({"message": "Forbidden. violation of rate limit policy. Contact dev@openaq.org"}, 403)
    return json_response({"detail": f"simulated HTTP {status}"}, status)
