"""Waiting for Kafka without a broker: the wait's 503 carries the one-line reason, retries back off, and the
readiness probe reports a lost cluster only after two failed checks in a row. Real sockets, no Kafka."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import urllib.error
import urllib.request

import pytest

from airq_app.kafka.admin import BrokerProbe, Wait, broker_problem, wait_until
from airq_app.kafka.security import KafkaSecurity
from airq_app.web import auth

pytestmark = pytest.mark.unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_wait_serves_the_reason_as_503_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "airq.startup")
    port = _free_port()
    delays: list[float] = []
    answers: list[tuple[int, dict]] = []
    reasons = iter(["Kafka authentication failed for user airq (SCRAM-SHA-512)"] * 3 + [None])

    async def sleep(delay: float) -> None:  # instead of waiting: what the waiting server answers meanwhile
        delays.append(delay)
        answers.append(await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/airq/ready"))
        answers.append(await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/airq/health"))

    async def attempt() -> str | None:
        return next(reasons)

    asyncio.run(wait_until(attempt, "127.0.0.1", port, max_delay=3, sleep=sleep))
    assert delays == [1.0, 2.0, 3.0]
    ready = [body for code, body in answers if code == 503]
    assert ready == [{"ready": False, "problems": ["Kafka authentication failed for user airq (SCRAM-SHA-512)"]}] * 3
    assert [code for code, body in answers if "waiting_for" in body] == [200] * 3
    lines = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert lines == [
        f"airq: Kafka authentication failed for user airq (SCRAM-SHA-512); retrying in {d:.0f} s" for d in (1, 2, 3)
    ]
    with pytest.raises(OSError):  # the waiting server is gone once the attempt succeeded
        urllib.request.urlopen(f"http://127.0.0.1:{port}/airq/ready", timeout=2)


def test_broker_problem_names_a_refused_connection() -> None:
    port = _free_port()
    problem = asyncio.run(broker_problem([f"127.0.0.1:{port}"], KafkaSecurity(), timeout=2))
    assert problem is not None and problem.startswith("Kafka broker refused the connection")


def test_probe_reports_only_after_two_failed_checks() -> None:
    port = _free_port()
    probe = BrokerProbe([f"127.0.0.1:{port}"], KafkaSecurity(), timeout=2)

    async def go() -> list[str | None]:
        return [await probe.check(), await probe.check(), probe.problem]

    first, second, current = asyncio.run(go())
    assert first is None
    assert second is not None and second.startswith("Kafka broker refused the connection") and current == second


def test_a_reason_that_stays_the_same_is_logged_again_only_after_the_repeat_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "airq.startup")
    now = [0.0]
    reasons = iter([Wait("too few brokers", logging.WARNING)] * 9 + ["broker refused", None])

    async def sleep(delay: float) -> None:
        now[0] += delay

    async def attempt() -> str | Wait | None:
        return next(reasons)

    port = _free_port()
    asyncio.run(wait_until(attempt, "127.0.0.1", port, max_delay=5, sleep=sleep, repeat_s=30, clock=lambda: now[0]))
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if "retrying in" in r.getMessage()]
    # Tries at 0, 1, 3, 7, 12, 17, 22, 27, 32 s: the warning at 0 and 32 s, the new reason at once, as an error.
    assert logged == [
        (logging.WARNING, "airq: too few brokers; retrying in 1 s"),
        (logging.WARNING, "airq: too few brokers; retrying in 5 s"),
        (logging.ERROR, "airq: broker refused; retrying in 5 s"),
    ]


def test_while_kafka_is_awaited_the_web_token_is_required_except_for_health() -> None:
    port = _free_port()
    answers: dict[str, int] = {}
    reasons = iter(["Kafka unreachable", None])

    def get(path: str, token: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    async def sleep(delay: float) -> None:
        for path, token in (("/airq/status", None), ("/airq/ready", None), ("/airq/health", None)):
            answers[path] = await asyncio.to_thread(get, path, token)
        answers["/airq/ready with the token"] = await asyncio.to_thread(get, "/airq/ready", "s3cret-token")

    async def attempt() -> str | None:
        return next(reasons)

    options = auth.application_options("s3cret-token")
    asyncio.run(wait_until(attempt, "127.0.0.1", port, max_delay=1, sleep=sleep, web_options=options))
    assert answers == {
        "/airq/status": 401,
        "/airq/ready": 401,
        "/airq/health": 200,
        "/airq/ready with the token": 503,
    }
