"""How many copies airq's topics should have, and whether they have them.

The automatic factor is `min(3, brokers)`, with the cluster's size read from everything that shows it, so a first
start while part of the cluster is down does not create topics with fewer copies for good:
- the brokers the metadata lists and which of them answer (a KRaft cluster without its controller quorum still
  lists unreachable brokers; a fenced broker is not listed);
- the copies airq's existing topics already have;
- the servers `AIRQ_BROKER` names: a hint only, delaying the first creation by at most `BOOTSTRAP_GRACE_S`.
A configured `kafka.replication_factor` is the target instead: topics wait for that many brokers. Fewer copies
than the target is a readiness problem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airq_app.kafka.security import KafkaConfigError, KafkaSecurity, bootstrap_servers, connection_error

AUTO_MAX = 3  # three copies survive a lost broker with writes still accepted at min.insync.replicas=2
BOOTSTRAP_GRACE_S = 60.0
UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION: the topic does not exist


class TooFewBrokers(KafkaConfigError):
    """Creating topics now would give them fewer copies than the target: wait and look again."""


@dataclass(frozen=True)
class ClusterView:
    """One look at the cluster: the brokers its metadata lists (node id -> host:port), those that answer this
    worker, airq's topics that exist, and the fewest copies of any partition of each of them."""

    brokers: Mapping[int, str]
    answering: frozenset[int]
    existing: frozenset[str]
    replicas: Mapping[str, int]

    def silent(self) -> list[str]:
        """The listed brokers that do not answer, as `id (host:port)`."""
        return [f"{node} ({address})" for node, address in sorted(self.brokers.items()) if node not in self.answering]


@dataclass(frozen=True)
class Target:
    """The replication factor airq's topics should have, and why (for the messages)."""

    factor: int
    why: str


def replication_target(configured: int | None, brokers: int, replicas: Iterable[int]) -> Target:
    """The configured factor; else `min(3, cluster size)`, the size being the larger of the brokers listed in the
    metadata and the copies any of airq's topics already has."""
    if configured is not None:
        return Target(configured, f"AIRQ_KAFKA_REPLICATION_FACTOR={configured}")
    largest = max(replicas, default=0)
    factor = min(AUTO_MAX, max(brokers, largest, 1))
    if largest > brokers:
        return Target(factor, f"airq's other topics have {largest} replicas")
    return Target(factor, f"min({AUTO_MAX}, {brokers} brokers)")


@dataclass(frozen=True)
class CreationPlan:
    """The factor to create missing topics with; `wait` says why not yet, `warning` what to shout when going on."""

    factor: int
    wait: str | None = None
    warning: str | None = None


def creation_plan(view: ClusterView, configured: int | None, bootstrap: int, waited_s: float) -> CreationPlan:
    """Whether missing topics can be created now (see the module's rule), `waited_s` after the first try."""
    target = replication_target(configured, len(view.brokers), view.replicas.values())
    alive = len(view.answering)
    if alive < target.factor:
        silent = view.silent()
        return CreationPlan(
            target.factor,
            wait=(
                f"too few Kafka brokers answer for {target.factor} replicas ({target.why}): {alive} of the"
                f" {len(view.brokers)} in the metadata{'; no answer from ' + ', '.join(silent) if silent else ''};"
                " topics are created once enough are back"
            ),
        )
    if configured is None and alive < AUTO_MAX and bootstrap > alive:
        seen = f"{alive} Kafka broker(s) answer but AIRQ_BROKER names {bootstrap} servers"
        if waited_s < BOOTSTRAP_GRACE_S:
            return CreationPlan(
                target.factor,
                wait=f"{seen}: waiting up to {BOOTSTRAP_GRACE_S:.0f} s for the others before creating topics",
            )
        return CreationPlan(
            target.factor,
            warning=(
                f"{seen}: creating topics with only {target.factor} replica(s), which they keep when the others"
                " come back (then add replicas with kafka-reassign-partitions); set AIRQ_KAFKA_REPLICATION_FACTOR"
                " to wait for the brokers instead"
            ),
        )
    return CreationPlan(target.factor)


def shortfalls(replicas: Mapping[str, int], target: Target) -> list[str]:
    """One line per replica count below the target, naming its topics: readiness problems and log lines."""
    below: dict[int, list[str]] = {}
    for name, count in sorted(replicas.items()):
        if count < target.factor:
            below.setdefault(count, []).append(name)
    return [
        f"{'topics' if len(names) > 1 else 'topic'} {', '.join(names)} {'have' if len(names) > 1 else 'has'}"
        f" {count} replica(s), target {target.factor} ({target.why}): created with fewer (while brokers were down,"
        " or outside airq); raise it with kafka-reassign-partitions"
        for count, names in sorted(below.items())
    ]


def _read_view(metadata: Mapping[str, Any], answering: Iterable[int] | None) -> ClusterView:
    brokers = {b["node_id"]: f"{b['host']}:{b['port']}" for b in metadata.get("brokers") or []}
    existing = [t for t in metadata.get("topics") or [] if t.get("error_code") != UNKNOWN_TOPIC]
    return ClusterView(
        brokers,
        frozenset(brokers if answering is None else answering),
        frozenset(t["topic"] for t in existing),
        {
            t["topic"]: min(len(p.get("replicas") or []) for p in t["partitions"])
            for t in existing
            if t.get("partitions")
        },
    )


async def _metadata(bootstrap: Sequence[str], security: KafkaSecurity, names: list[str], timeout: float) -> Any:
    """The metadata of `names` (never creating them) from the first bootstrap server that answers."""
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    first: BaseException | None = None
    for host, port in bootstrap_servers(",".join(bootstrap)):
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=int(timeout * 1000), **security.aiokafka_kwargs()), timeout
            )
        except Exception as exc:  # the next server may answer
            first = first or exc
            continue
        try:
            request = MetadataRequest(names, allow_auto_topic_creation=False)
            return (await asyncio.wait_for(conn.send(request), timeout)).to_object()
        except Exception as exc:
            first = first or exc
        finally:
            conn.close()
    raise first or KafkaConfigError("no bootstrap server")


async def cluster_view(
    bootstrap: Sequence[str], security: KafkaSecurity, names: Iterable[str], timeout: float = 10.0, probe: bool = True
) -> ClusterView:
    """The cluster as one bootstrap server's metadata shows it; with `probe`, each listed broker is asked too
    (connection, TLS, SASL, one request), since a cluster without its quorum lists brokers that are gone."""
    metadata = await _metadata(bootstrap, security, sorted(names), timeout)
    answering = None
    if probe:
        brokers = [(b["node_id"], f"{b['host']}:{b['port']}") for b in metadata.get("brokers") or []]
        errors = await asyncio.gather(*(connection_error(address, security, timeout) for _, address in brokers))
        answering = [node for (node, _), error in zip(brokers, errors, strict=True) if error is None]
    return _read_view(metadata, answering)
