"""JSON values in tables, and location summaries written once per burst instead of once per record."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from airq_app.stream.table_values import LocationSummaries, read, write

pytestmark = pytest.mark.unit


class RecordingTable(dict):
    """Stands in for a Faust table: a mapping of bytes whose `data` is its store; counts writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.changelog: list[tuple[int, str, bytes]] = []

    @property
    def data(self) -> dict[str, bytes]:
        return self

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)

    def send_changelog(self, partition: int, key: str, value: bytes) -> None:
        self.changelog.append((partition, key, value))


def summary(value: float) -> dict[str, Any]:
    return {"parameters": {"pm25": {"value": value}}}


def test_values_are_json_bytes() -> None:
    table = RecordingTable()
    write(table, "7", {"newest": 1, "seen": {"1": [0, 5]}})
    assert dict.__getitem__(table, "7") == b'{"newest":1,"seen":{"1":[0,5]}}'
    assert read(table, "7") == {"newest": 1, "seen": {"1": [0, 5]}}
    assert read(table, "8") is None


def test_a_burst_is_one_write_per_location_and_reads_see_pending() -> None:
    table = RecordingTable()
    summaries = LocationSummaries(table, max_delay_s=60)
    for value in (1.0, 2.0, 3.0):
        summaries.put(2, "90", summary(value))
    summaries.put(2, "91", summary(9.0))
    assert table.writes == []
    assert summaries.get("90") == summary(3.0)
    assert not summaries.due(2, caught_up=lambda: False)
    assert summaries.due(2, caught_up=lambda: True)
    summaries.flush(2)
    assert sorted(table.writes) == ["90", "91"]
    assert read(table, "90") == summary(3.0) and summaries.get("91") == summary(9.0)
    assert not summaries.due(2, caught_up=lambda: True)  # nothing pending


def test_summaries_are_written_when_old_enough_even_mid_burst() -> None:
    table = RecordingTable()
    summaries = LocationSummaries(table, max_delay_s=0.0)
    summaries.put(1, "5", summary(4.0))
    assert summaries.due(1, caught_up=lambda: False)


def test_a_failed_write_stays_pending_and_a_revoked_partition_hands_its_summaries_over() -> None:
    class Failing(RecordingTable):
        def __setitem__(self, key: str, value: bytes) -> None:
            raise RuntimeError("changelog not writable yet")

    summaries = LocationSummaries(Failing(), max_delay_s=60)
    summaries.put(3, "40", summary(1.0))
    with pytest.raises(RuntimeError):
        summaries.flush(3)
    assert summaries.pending[3] == {"40": summary(1.0)}
    summaries.put(4, "41", summary(2.0))
    # Revoked before its flush: the summary goes to partition 3's changelog, where the new owner recovers it.
    assert summaries.hand_over(3) == 1
    assert summaries.table.changelog == [(3, "40", orjson.dumps(summary(1.0)))]
    assert summaries.get("40") is None and 3 not in summaries.pending
    assert summaries.get("41") == summary(2.0)  # another partition's pending summaries stay


def test_items_merge_the_table_with_pending() -> None:
    table = RecordingTable()
    write(table, "1", summary(1.0))
    write(table, "2", summary(2.0))
    summaries = LocationSummaries(table)
    summaries.put(0, "2", summary(20.0))
    assert dict(summaries.items()) == {"1": summary(1.0), "2": summary(20.0)}
    assert orjson.loads(dict.__getitem__(table, "2")) == summary(2.0)
