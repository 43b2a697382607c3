"""KRaft cluster ids made by the development cluster tooling are ones the storage tool accepts."""

from __future__ import annotations

import base64

import pytest

from airq_dev.kafka_cluster import new_cluster_id

pytestmark = pytest.mark.unit


def test_cluster_ids_never_start_with_a_dash() -> None:
    # One id in 64 would start with "-", which kafka-storage's argument parser takes for an option.
    ids = {new_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
