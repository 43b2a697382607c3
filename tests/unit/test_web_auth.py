"""The web token: its setting, and the middleware in front of every route of a worker built as `faust` builds it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from airq_app.settings import ConfigError, is_loopback, load_settings
from airq_app.web import auth
from airq_app.worker import build
from airq_dev.harness import ROOT

pytestmark = pytest.mark.unit
TOKEN = "s3cret-web-token-0123456789"
PIPELINE = {"AIRQ_PIPELINE": str(ROOT / "pipeline.json")}


def settings_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**PIPELINE, "AIRQ_DATA_DIR": str(tmp_path / "data"), "AIRQ_OUTPUT_DIR": str(tmp_path / "out"), **extra}


def with_client(web_app: web.Application, check: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def go() -> None:
        async with TestClient(TestServer(web_app)) as client:
            await check(client)

    asyncio.run(go())


def worker_web_app(tmp_path: Path, **extra: str) -> web.Application:
    """The aiohttp application of a worker with every role's routes (role `all`), its routes registered."""
    rt = build(load_settings(settings_env(tmp_path, AIRQ_ROLE="all", **extra), dotenv=False))
    rt.app.web.init_server()
    return rt.app.web.web_app  # type: ignore[attr-defined]


def route_paths(web_app: web.Application) -> set[str]:
    """Every registered path, a placeholder filled in (`{location_id}` -> 1, `{name}` -> world.svg)."""
    paths = set()
    for resource in web_app.router.resources():
        canonical = resource.canonical
        paths.add(re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) == "location_id" else "world.svg", canonical))
    return paths


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_a_loopback_bind_needs_no_token(bind: str) -> None:
    assert is_loopback(bind)
    s = load_settings({**PIPELINE, "AIRQ_WEB_BIND": bind}, dotenv=False)
    assert s.web.token == "" and s.public()["web_token_set"] is False


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "10.1.2.3", "worker-1.example", ""])
def test_a_bind_beyond_loopback_without_a_token_is_a_one_line_error_naming_it(bind: str) -> None:
    assert not is_loopback(bind)
    if bind:  # an empty AIRQ_WEB_BIND means "not set": the pipeline's 127.0.0.1
        with pytest.raises(ConfigError) as info:
            load_settings({**PIPELINE, "AIRQ_WEB_BIND": bind}, dotenv=False)
        message = str(info.value)
        assert message.startswith("AIRQ_WEB_TOKEN: required") and "\n" not in message


def test_the_token_is_read_stripped_and_never_shown() -> None:
    s = load_settings({**PIPELINE, "AIRQ_WEB_BIND": "0.0.0.0", "AIRQ_WEB_TOKEN": f"{TOKEN}\n"}, dotenv=False)
    assert s.web.token == TOKEN
    assert TOKEN not in repr(s) and TOKEN not in json.dumps(s.public())
    assert s.public()["web_token_set"] is True


@pytest.mark.parametrize("bad", ["two words", "tab\there", "caf\u00e9-token", "bell\x07"])
def test_a_token_with_spaces_control_or_non_ascii_characters_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**PIPELINE, "AIRQ_WEB_TOKEN": bad}, dotenv=False)
    assert str(info.value).startswith("AIRQ_WEB_TOKEN:") and bad not in str(info.value)


def test_the_token_is_taken_from_a_bearer_or_an_api_key_header() -> None:
    assert auth.presented_token({"Authorization": f"Bearer {TOKEN}"}) == TOKEN
    assert auth.presented_token({"Authorization": f"bearer  {TOKEN} "}) == TOKEN
    assert auth.presented_token({"X-API-Key": TOKEN}) == TOKEN
    assert auth.presented_token({"Authorization": f"Basic {TOKEN}"}) is None
    assert auth.presented_token({}) is None
    assert auth.token_headers("") == {} and auth.token_headers(TOKEN) == {"Authorization": f"Bearer {TOKEN}"}


def test_a_session_cookie_holds_no_token_and_ends_at_its_expiry_or_with_another_token() -> None:
    value = auth.session_value(TOKEN, 2_000)
    assert TOKEN not in value
    assert auth.session_valid(value, TOKEN, now=1_999)
    assert not auth.session_valid(value, TOKEN, now=2_000)
    assert not auth.session_valid(value, "another-token", now=1_000)
    assert not auth.session_valid(value.replace("2000.", "9999."), TOKEN, now=1_000)
    assert not auth.session_valid("garbage", TOKEN, now=1_000)


def test_without_a_token_no_middleware_is_installed(tmp_path: Path) -> None:
    assert auth.application_options("") == {}
    web_app = worker_web_app(tmp_path)
    assert not web_app.middlewares

    async def check(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/airq/api/indices")).status == 200

    with_client(web_app, check)


def test_with_a_token_every_route_but_health_answers_401_without_it(tmp_path: Path) -> None:
    web_app = worker_web_app(tmp_path, AIRQ_WEB_TOKEN=TOKEN)
    paths = route_paths(web_app)
    # The worker's own routes are all there (so a route added later is in this list too).
    assert {"/airq/health", "/airq/status", "/airq/ready", "/metrics", "/airq/", "/airq/login"} <= paths
    assert {"/airq/locations/1", "/airq/api/overview", "/airq/api/locations", "/airq/static/world.svg"} <= paths

    async def check(client: TestClient[Any, Any]) -> None:
        health = await client.get("/airq/health")
        assert health.status == 200 and (await health.json())["status"] == "ok"
        for path in sorted(paths - auth.EXEMPT_PATHS) + ["/no/such/route"]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": TOKEN}):
                resp = await client.get(path, headers=headers)
                assert resp.status == 401, (path, headers)
                assert resp.headers["WWW-Authenticate"].startswith("Bearer"), path
                body = await resp.json()
                assert body["detail"] and TOKEN not in json.dumps(body)
        login = await client.post("/airq/login")
        assert login.status == 401 and "Set-Cookie" not in login.headers

    with_client(web_app, check)


def test_with_a_token_a_bearer_or_api_key_header_gets_through(tmp_path: Path) -> None:
    web_app = worker_web_app(tmp_path, AIRQ_WEB_TOKEN=TOKEN)

    async def check(client: TestClient[Any, Any]) -> None:
        for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"X-API-Key": TOKEN}):
            for path in ("/airq/api/indices", "/airq/static/world.svg", "/airq/"):
                assert (await client.get(path, headers=headers)).status == 200, (path, headers)

    with_client(web_app, check)


def test_a_browser_opening_the_dashboard_gets_the_sign_in_page_and_then_a_session_cookie(tmp_path: Path) -> None:
    web_app = worker_web_app(tmp_path, AIRQ_WEB_TOKEN=TOKEN)

    async def check(client: TestClient[Any, Any]) -> None:
        page = await client.get("/airq/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert page.status == 401 and page.headers["WWW-Authenticate"].startswith("Bearer")
        text = await page.text()
        assert 'id="login"' in text and TOKEN not in text
        # The sign-in posts the token in the header once; the session cookie holds no token.
        login = await client.post("/airq/login", headers={"Authorization": f"Bearer {TOKEN}"})
        assert login.status == 204
        cookie = login.cookies[auth.SESSION_COOKIE]
        assert TOKEN not in cookie.value
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/airq/"
        # The client's cookie jar sends it from now on: the dashboard and its data load without a header.
        for path in ("/airq/", "/airq/api/indices", "/airq/static/world.svg"):
            assert (await client.get(path)).status == 200, path
        # The cookie is for reading only: it cannot sign in again.
        assert (await client.post("/airq/login")).status == 401
        # A forged cookie is refused.
        client.session.cookie_jar.clear()
        forged = {"Cookie": f"{auth.SESSION_COOKIE}=9999999999.{'0' * 64}"}
        assert (await client.get("/airq/api/indices", headers=forged)).status == 401

    with_client(web_app, check)
