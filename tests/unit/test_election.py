"""The poller election's status facts: errors without the Kafka password, one admin lookup for many requests."""

from __future__ import annotations

import asyncio

import pytest

from airq_app.ingest import election as election_module
from airq_app.ingest.election import PollerElection
from airq_app.kafka.security import KafkaSecurity

pytestmark = pytest.mark.unit


def make(**kwargs: object) -> PollerElection:
    return PollerElection(["127.0.0.1:9"], "t-airq_poller_election", "airq-poller", "http://w1:6066", **kwargs)  # type: ignore[arg-type]


def test_an_election_error_never_carries_the_kafka_password() -> None:
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", mechanism="PLAIN", username="airq", password="s3cret-Pw!")
    election = make(redact=security.redact)
    election.record_error(RuntimeError("authentication failed for airq with password s3cret-Pw! at 127.0.0.1:9"))
    assert election.error is not None
    assert "s3cret-Pw!" not in election.error and "***" in election.error and "authentication failed" in election.error


def test_two_hundred_concurrent_status_requests_make_one_admin_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def describe(*args: object, **kwargs: object) -> str:
        calls.append("lookup")
        await asyncio.sleep(0.05)  # the admin round trip
        return "http://w2:6066"

    monkeypatch.setattr(election_module, "describe_poller", describe)
    election = make()

    async def main() -> list[str | None]:
        first = await asyncio.gather(*(election.current_poller(max_age_s=1.0) for _ in range(200)))
        again = await election.current_poller(max_age_s=1.0)  # within the second: the cached answer
        return [*first, again]

    answers = asyncio.run(main())
    assert calls == ["lookup"]
    assert set(answers) == {"http://w2:6066"}
    assert election.admin_lookups == 1  # the count /airq/status and /metrics show
