"""The replication target and when creating topics waits for brokers: pure decisions on a view of the cluster."""

from __future__ import annotations

import pytest

from airq_app.kafka.replication import (
    BOOTSTRAP_GRACE_S,
    ClusterView,
    CreationPlan,
    Target,
    _read_view,
    creation_plan,
    replication_target,
    shortfalls,
)

pytestmark = pytest.mark.unit


def view(listed: int, answering: int, replicas: dict[str, int] | None = None) -> ClusterView:
    brokers = {n: f"b{n}:9092" for n in range(1, listed + 1)}
    return ClusterView(brokers, frozenset(range(1, answering + 1)), frozenset(replicas or {}), replicas or {})


def test_the_configured_factor_waits_for_brokers_a_cluster_without_quorum_still_lists() -> None:
    plan = creation_plan(view(3, 1), 3, bootstrap=3, waited_s=0)
    assert plan == CreationPlan(
        3,
        wait=(
            "too few Kafka brokers answer for 3 replicas (AIRQ_KAFKA_REPLICATION_FACTOR=3): 1 of the 3 in the"
            " metadata; no answer from 2 (b2:9092), 3 (b3:9092); topics are created once enough are back"
        ),
    )


def test_the_configured_factor_waits_while_fenced_brokers_are_left_out_of_the_metadata() -> None:
    plan = creation_plan(view(1, 1), 3, bootstrap=3, waited_s=1e9)
    assert plan.wait is not None and plan.wait.startswith("too few Kafka brokers answer for 3 replicas")
    assert "1 of the 1 in the metadata; topics are created" in plan.wait


def test_the_configured_factor_goes_ahead_once_enough_brokers_answer_whatever_the_bootstrap_list() -> None:
    assert creation_plan(view(3, 3), 3, bootstrap=3, waited_s=0) == CreationPlan(3)
    assert creation_plan(view(3, 1), 1, bootstrap=3, waited_s=0) == CreationPlan(1)


def test_automatic_factor_counts_listed_brokers_that_do_not_answer() -> None:
    plan = creation_plan(view(3, 2), None, bootstrap=1, waited_s=1e9)
    assert plan.factor == 3 and plan.wait is not None and "(min(3, 3 brokers)): 2 of the 3" in plan.wait


def test_automatic_factor_follows_the_copies_airqs_other_topics_have() -> None:
    plan = creation_plan(view(2, 2, {"t-measurements": 3}), None, bootstrap=2, waited_s=1e9)
    assert plan.factor == 3 and plan.wait is not None
    assert "for 3 replicas (airq's other topics have 3 replicas): 2 of the 2" in plan.wait


def test_automatic_factor_waits_a_grace_period_for_the_servers_airq_broker_names_then_warns() -> None:
    waiting = creation_plan(view(1, 1), None, bootstrap=3, waited_s=BOOTSTRAP_GRACE_S - 1)
    assert waiting == CreationPlan(
        1,
        wait="1 Kafka broker(s) answer but AIRQ_BROKER names 3 servers: waiting up to 60 s for the others before"
        " creating topics",
    )
    going = creation_plan(view(2, 2), None, bootstrap=3, waited_s=BOOTSTRAP_GRACE_S)
    assert going.factor == 2 and going.wait is None
    assert going.warning is not None and "creating topics with only 2 replica(s)" in going.warning
    assert "set AIRQ_KAFKA_REPLICATION_FACTOR to wait for the brokers instead" in going.warning


def test_automatic_factor_on_a_small_or_large_cluster_neither_waits_nor_warns() -> None:
    assert creation_plan(view(1, 1), None, bootstrap=1, waited_s=0) == CreationPlan(1)
    assert creation_plan(view(3, 3), None, bootstrap=3, waited_s=0) == CreationPlan(3)
    assert creation_plan(view(5, 5), None, bootstrap=5, waited_s=0) == CreationPlan(3)


def test_the_target_is_the_configured_factor_else_three_at_most() -> None:
    assert replication_target(2, 5, [3]) == Target(2, "AIRQ_KAFKA_REPLICATION_FACTOR=2")
    assert replication_target(None, 5, []) == Target(3, "min(3, 5 brokers)")
    assert replication_target(None, 1, [3, 1]) == Target(3, "airq's other topics have 3 replicas")
    assert replication_target(None, 0, []) == Target(1, "min(3, 0 brokers)")


def test_shortfalls_name_the_topics_below_the_target_one_line_per_replica_count() -> None:
    target = Target(3, "min(3, 3 brokers)")
    lines = shortfalls({"a": 1, "b": 3, "c": 2, "d": 1}, target)
    assert lines == [
        "topics a, d have 1 replica(s), target 3 (min(3, 3 brokers)): created with fewer (while brokers were down,"
        " or outside airq); raise it with kafka-reassign-partitions",
        "topic c has 2 replica(s), target 3 (min(3, 3 brokers)): created with fewer (while brokers were down,"
        " or outside airq); raise it with kafka-reassign-partitions",
    ]
    assert shortfalls({"a": 3, "b": 4}, target) == []


def test_the_view_reads_listed_brokers_existing_topics_and_their_fewest_copies() -> None:
    metadata = {
        "brokers": [{"node_id": 1, "host": "h1", "port": 9092}, {"node_id": 2, "host": "h2", "port": 9093}],
        "topics": [
            {"topic": "new", "error_code": 3, "partitions": []},
            {"topic": "half", "error_code": 0, "partitions": [{"replicas": [1, 2]}, {"replicas": [2]}]},
            {"topic": "electing", "error_code": 5, "partitions": []},
        ],
    }
    seen = _read_view(metadata, [2])
    assert seen.brokers == {1: "h1:9092", 2: "h2:9093"} and seen.answering == {2}
    assert seen.existing == {"half", "electing"} and seen.replicas == {"half": 1}
    assert seen.silent() == ["1 (h1:9092)"]
    assert _read_view(metadata, None).answering == {1, 2}
