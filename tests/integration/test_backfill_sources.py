"""Backfill pieces over real HTTP to the simulator, and its progress file on a real disk (no broker)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from airq_app import openaq
from airq_app.backfill.command import BackfillFailed, parse_request
from airq_app.backfill.job import message
from airq_app.backfill.progress import ProgressBar, ProgressFile
from airq_app.backfill.sources import ApiSource, ArchiveSource
from airq_app.domain.validation import parse_measurement
from airq_dev.simulator import SimulatorThread, WorldConfig

pytestmark = pytest.mark.integration
DAY = datetime.now(UTC).date() - timedelta(days=5)


@pytest.fixture(scope="module")
def sim():
    s = SimulatorThread(WorldConfig(locations=10, seed=5, rate_limit_per_minute=0)).start()
    yield s
    s.stop()


def test_archive_day_is_every_hour_of_every_sensor_as_served(sim: SimulatorThread) -> None:
    world = sim.sim.world
    loc = world.locations[1]
    source = ArchiveSource(sim.url, {}, sleep=lambda s: None)
    rows = source.fetch(loc.id, DAY)
    served = {(sid, dt): v for sid, dt, v, kind in sim.served() if kind == "archive"}
    assert {(m["sensor_id"], m["datetime_utc"]): m["value"] for m in rows} == served
    assert len(rows) == 24 * len(loc.sensors)
    assert {m["datetime_utc"][:10] for m in rows} == {DAY.isoformat()}
    first = rows[0]
    assert first["location_id"] == loc.id and first["location_name"] == loc.name
    assert first["parameter"] == world.sensors[first["sensor_id"]].parameter.name
    # The message is what the poller sends, plus the backfill mark, and the stream accepts it.
    key, value = message(first)
    parsed = parse_measurement(value)
    assert key == str(loc.id).encode() and parsed["backfill"] is True and parsed["value"] == first["value"]
    assert source.fetch(loc.id, date(2001, 1, 1)) == []  # 404: no data that day
    assert source.fetch(999_999_999, DAY) == []


def test_archive_failures_are_retried(sim: SimulatorThread) -> None:
    loc = sim.sim.world.locations[2]
    sim.set_faults(fail_next=[503, "malformed", 500], kinds=["archive"])
    try:
        rows = ArchiveSource(sim.url, {}, sleep=lambda s: None).fetch(loc.id, DAY)
    finally:
        sim.set_faults(reset=True)
    assert len(rows) == 24 * len(loc.sensors)


def test_api_source_reads_the_hours_of_the_day(sim: SimulatorThread) -> None:
    loc = sim.sim.world.locations[3]
    client = openaq.OpenAQClient(sim.url, "backfill-test-key", per_minute=600, per_hour=36000)
    index = openaq.index_locations([client.get_location(loc.id)])
    rows = ApiSource(client, index).fetch(loc.id, DAY)
    archive = ArchiveSource(sim.url, index, sleep=lambda s: None).fetch(loc.id, DAY)
    key = lambda m: (m["sensor_id"], m["datetime_utc"], m["value"])  # noqa: E731
    assert sorted(map(key, rows)) == sorted(map(key, archive)) and rows
    assert all(m["country"] == loc.country["code"] for m in rows + archive)  # metadata from the sensor index


def test_progress_file_resumes_ignores_a_cut_line_and_never_records_recent_days(tmp_path: Path) -> None:
    path = tmp_path / "backfill" / "archive.done"
    progress = ProgressFile(path)
    assert progress.mark(7, DAY) and not progress.mark(7, datetime.now(UTC).date() - timedelta(days=1))
    with open(path, "a") as f:
        f.write("8 2026-0")  # a crash in the middle of a line
    again = ProgressFile(path)
    assert again.is_done(7, DAY) and not again.is_done(8, date(2026, 1, 1)) and len(again.done) == 1


def test_progress_bar_shows_rate_and_eta() -> None:
    out = io.StringIO()
    bar = ProgressBar(4, stream=out, plain_interval_s=0)
    bar.advance(100)
    bar.advance(50, failed=True)
    text = out.getvalue()
    assert "2/4 days, 1 failed" in text and "150 measurements" in text and "/s" in text and "ETA" in text


def test_bad_options_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    for (date_from, date_to, source, locations, countries), expected in (
        (("2026-01-05", "2026-01-01", "archive", (), ()), "before"),
        (("2026-13-01", "2026-01-01", "archive", (), ()), "--from"),
        (("2026-01-01", "2026-01-01", "s3", (), ()), "--source"),
        (("2026-01-01", "2026-01-01", "archive", ("12,x",), ()), "--location"),
        (("2026-01-01", "2026-01-01", "archive", (), ("USA",)), "--country"),
    ):
        with pytest.raises(BackfillFailed) as exc:
            parse_request(date_from, date_to, source, locations, countries, "https://archive.example")
        assert exc.value.code == 2 and expected in capsys.readouterr().err
    request = parse_request("2026-01-30", "2026-02-02", "api", ("1,2", "3"), ("us",), "https://archive.example")
    assert request.locations == (1, 2, 3) and request.countries == ("US",) and len(request.days()) == 4
    assert request.archive_url == "https://archive.example"
