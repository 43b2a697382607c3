"""The OpenAQ simulator's data over time: revisions on every endpoint, the archive against the hours endpoint, and
the data-quality faults and flags against what `/_sim/quality` reports."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import requests

from airq_dev.fixtures_openaq import running_simulator
from airq_dev.simulator import HOUR, SimulatorThread, World, WorldConfig, config_from_args
from airq_dev.simulator.runner import build_parser
from tests.integration.test_simulator import get

pytestmark = pytest.mark.integration


# -- revisions -----------------------------------------------------------------------------------------------------


def _latest_by_sensor(s: SimulatorThread, path: str) -> dict[int, float]:
    return {i["sensorsId"]: i["value"] for i in get(s, path, limit=1000).json()["results"]}


def _series_value(s: SimulatorThread, sensor_id: int, kind: str, end_utc: str) -> float:
    end = datetime.fromisoformat(end_utc)
    start = datetime.fromtimestamp(end.timestamp() - HOUR, UTC)
    rows = get(s, f"/v3/sensors/{sensor_id}/{kind}", datetime_from=start.isoformat(), datetime_to=end.isoformat())
    [row] = rows.json()["results"]
    assert row["period"]["datetimeTo"]["utc"] == end_utc
    return row["value"]


def test_revision_shows_on_every_endpoint_after_the_delay() -> None:
    now = [datetime(2025, 6, 1, 12, 30, tzinfo=UTC).timestamp()]
    config: dict[str, Any] = {
        "clock": lambda: now[0],
        "inactive_fraction": 0,
        "revision_rate": 1.0,
        "revision_delay_s": 20,
    }
    with running_simulator(locations=20, **config) as s:
        hour = "2025-06-01T12:00:00Z"
        first = _latest_by_sensor(s, "/v3/locations/2178/latest")
        assert len(first) == 8
        assert _series_value(s, 3920, "hours", hour) == first[3920]
        assert _archive_values(s, 2178, date(2025, 6, 1))[(3920, hour)] == first[3920]
        now[0] += 19  # not yet due
        assert _latest_by_sensor(s, "/v3/locations/2178/latest") == first
        assert _series_value(s, 3920, "measurements", hour) == first[3920]
        now[0] += 1
        later = _latest_by_sensor(s, "/v3/locations/2178/latest")
        assert later.keys() == first.keys() and all(later[k] != first[k] for k in first)
        assert _latest_by_sensor(s, "/v3/parameters/2/latest")[3920] == later[3920]
        assert _series_value(s, 3920, "hours", hour) == later[3920]
        assert _series_value(s, 3920, "measurements", hour) == later[3920]
        assert _archive_values(s, 2178, date(2025, 6, 1))[(3920, hour)] == later[3920]
        # the control endpoint lists both values of each sensor-hour, in the order served, once each
        values = requests.get(s.url + "/_sim/values", params={"revised": 1}, timeout=5).json()
        by_key = {(sid, dt): vals for sid, dt, vals in values["values"]}
        for sid in first:
            assert by_key[(sid, hour)] == [first[sid], later[sid]]
        assert values["revised"] == len(by_key) >= 8
        assert s.values()[(3920, hour)] == [first[3920], later[3920]]
        revisions = requests.get(s.url + "/_sim/revisions", timeout=5).json()["revisions"]
        mine = {r["sensor_id"]: r for r in revisions if r["datetime"] == hour and r["sensor_id"] in first}
        assert {sid: (r["published"], r["revised"], r["visible"]) for sid, r in mine.items()} == {
            sid: (first[sid], later[sid], True) for sid in first
        }


def test_revision_share_and_runtime_switch() -> None:
    world = World(WorldConfig(locations=40, seed=5, revision_rate=0.25))
    base = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp()) // HOUR
    pairs = [(s, base + h) for s in world.sensors.values() for h in range(48)]
    revised = [(s, h) for s, h in pairs if world.is_revised(s, h)]
    assert 0.2 <= len(revised) / len(pairs) <= 0.3
    assert all(world.revised_value(s, h) != world.published_value(s, h) for s, h in revised)
    assert all(world.revised_value(s, h) >= 0 for s, h in revised)
    now = [datetime(2025, 6, 1, 12, 30, tzinfo=UTC).timestamp()]
    with running_simulator(locations=10, clock=lambda: now[0], inactive_fraction=0) as s:
        before = _latest_by_sensor(s, "/v3/locations/2178/latest")
        now[0] += 600  # ten minutes later nothing changed: the rate is 0
        assert _latest_by_sensor(s, "/v3/locations/2178/latest") == before
        assert requests.post(s.url + "/_sim/world", json={"revision_rate": 2}, timeout=5).status_code == 400
        assert requests.post(s.url + "/_sim/world", json={"locations": 2}, timeout=5).status_code == 400
        r = requests.post(s.url + "/_sim/world", json={"revision_rate": 1, "revision_delay_s": 5}, timeout=5)
        assert r.status_code == 200 and (r.json()["revision_rate"], r.json()["revision_delay_s"]) == (1.0, 5.0)
        assert _latest_by_sensor(s, "/v3/locations/2178/latest") == before  # the delay starts now
        requests.post(s.url + "/_sim/clock", json={"advance_seconds": 5}, timeout=5)
        after = _latest_by_sensor(s, "/v3/locations/2178/latest")
        assert all(after[k] != before[k] for k in before)


def test_revision_flags() -> None:
    ns = build_parser().parse_args(["--revision-rate", "0.1", "--revision-delay-s", "3"])
    config = config_from_args(ns)
    assert (config.revision_rate, config.revision_delay_s) == (0.1, 3.0)
    assert WorldConfig().revision_rate == 0.0
    with pytest.raises(ValueError):
        WorldConfig(revision_rate=1.5)


# -- archive -------------------------------------------------------------------------------------------------------

ARCHIVE_HEADER = ["location_id", "sensors_id", "location", "datetime", "lat", "lon", "parameter", "units", "value"]


def _archive_url(s: SimulatorThread, location_id: int, day: date) -> str:
    return (
        f"{s.url}/records/csv.gz/locationid={location_id}/year={day.year}/month={day.month:02d}/"
        f"location-{location_id}-{day:%Y%m%d}.csv.gz"
    )


def _archive_rows(s: SimulatorThread, location_id: int, day: date) -> list[dict[str, str]]:
    r = requests.get(_archive_url(s, location_id, day), timeout=10)  # no key: it is a public bucket
    assert r.status_code == 200, r.text
    text = gzip.decompress(r.content).decode("utf-8")
    assert text.splitlines()[0].split(",") == ARCHIVE_HEADER
    return list(csv.DictReader(io.StringIO(text)))


def _utc(local_iso: str) -> str:
    return datetime.fromisoformat(local_iso).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _archive_values(s: SimulatorThread, location_id: int, day: date) -> dict[tuple[int, str], float]:
    return {(int(r["sensors_id"]), _utc(r["datetime"])): float(r["value"]) for r in _archive_rows(s, location_id, day)}


def _hours_values(s: SimulatorThread, sensor_id: int, day: date) -> dict[tuple[int, str], float]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rows = get(
        s,
        f"/v3/sensors/{sensor_id}/hours",
        datetime_from=datetime.fromtimestamp(start.timestamp() - HOUR, UTC).isoformat(),
        datetime_to=datetime.fromtimestamp(start.timestamp() + 23 * HOUR, UTC).isoformat(),
    ).json()["results"]
    return {(sensor_id, r["period"]["datetimeTo"]["utc"]): r["value"] for r in rows}


@pytest.fixture(scope="module")
def archive_sim() -> Iterator[SimulatorThread]:
    now = datetime(2025, 6, 1, 12, 30, tzinfo=UTC).timestamp()
    with running_simulator(locations=120, seed=21, clock=lambda: now, inactive_fraction=0) as s:
        yield s


def test_archive_rows_match_the_hours_endpoint(archive_sim: SimulatorThread) -> None:
    s = archive_sim
    world = s.sim.world
    india = next(loc for loc in world.locations if loc.timezone == "Asia/Kolkata")
    s.reset()
    for loc, day in (
        (world.by_location[2178], date(2025, 5, 31)),
        (india, date(2025, 5, 31)),
        (india, date(2025, 6, 1)),
    ):
        rows = _archive_rows(s, loc.id, day)
        offsets = {r["datetime"][-6:] for r in rows}
        assert offsets == {"-06:00"} if loc.id == 2178 else offsets == {"+05:30"}
        assert {_utc(r["datetime"])[:10] for r in rows} == {day.isoformat()}
        assert {(r["location_id"], r["location"], r["lat"], r["lon"]) for r in rows} == {
            (str(loc.id), f"{loc.name}-{loc.id}", str(loc.latitude), str(loc.longitude))
        }
        by_sensor = {sen.id: sen for sen in loc.sensors}
        assert {(r["parameter"], r["units"]) for r in rows} == {
            (by_sensor[int(r["sensors_id"])].parameter.name, by_sensor[int(r["sensors_id"])].parameter.units)
            for r in rows
        }
        expected: dict[tuple[int, str], float] = {}
        for sensor in loc.sensors:
            expected |= _hours_values(s, sensor.id, day)
        archived = {(int(r["sensors_id"]), _utc(r["datetime"])): float(r["value"]) for r in rows}
        assert archived == expected and len(rows) == len(expected)
        if day == date(2025, 5, 31):
            assert len(rows) == 24 * len(loc.sensors)
        else:  # today: up to each sensor's latest hour (12:00Z at the most)
            assert 0 < len(rows) <= 13 * len(loc.sensors)
    assert "µg/m³" in {r["units"] for r in _archive_rows(s, india.id, date(2025, 5, 30))}
    files = requests.get(s.url + "/_sim/archive", timeout=5).json()
    counts = {(f["location_id"], f["day"]): f["rows"] for f in files["files"]}
    assert counts[(2178, "2025-05-31")] == 24 * 8
    assert counts[(india.id, "2025-06-01")] == len(s.served("archive")) - 24 * 8 - 2 * 24 * len(india.sensors)
    assert sum(f["requests"] for f in files["files"]) == 4


def test_archive_404s(archive_sim: SimulatorThread) -> None:
    s = archive_sim
    before = requests.get(s.url + "/_sim/archive", timeout=5).json()["not_found"]
    missing = [
        _archive_url(s, 2178, date(2025, 6, 2)),  # tomorrow
        _archive_url(s, 2178, date(2010, 1, 1)),  # before the station started
        _archive_url(s, 1, date(2025, 5, 31)),  # no such location
        _archive_url(s, 2178, date(2025, 5, 31)).replace("month=05", "month=5"),  # not the archive's key
        _archive_url(s, 2178, date(2025, 5, 31)).replace("locationid=2178", "locationid=2179"),
        s.url + "/records/csv.gz/locationid=2178/",
    ]
    for url in missing:
        r = requests.get(url, timeout=5)
        assert r.status_code == 404, url
        assert "<Code>NoSuchKey</Code>" in r.text and r.headers["Content-Type"].startswith("application/xml")
    after = requests.get(s.url + "/_sim/archive", timeout=5).json()["not_found"]
    assert after - before == len(missing)


def test_archive_lag_and_faults() -> None:
    now = datetime(2025, 6, 1, 12, 30, tzinfo=UTC).timestamp()
    with running_simulator(locations=5, seed=2, clock=lambda: now, inactive_fraction=0) as s:
        s.set_world(archive_lag_hours=24)
        assert requests.get(_archive_url(s, 2178, date(2025, 6, 1)), timeout=5).status_code == 404
        assert len(_archive_rows(s, 2178, date(2025, 5, 31))) == 13 * 8  # up to 12:00Z the day before
        s.set_world(archive_lag_hours=0)
        s.set_faults(fail_next=[503, "malformed"], kinds=["archive"])
        assert get(s, "/v3/locations/2178/latest").status_code == 200  # the API is not affected
        slow = requests.get(_archive_url(s, 2178, date(2025, 5, 31)), timeout=5)
        assert slow.status_code == 503 and "<Code>SlowDown</Code>" in slow.text
        cut = requests.get(_archive_url(s, 2178, date(2025, 5, 31)), timeout=5)
        assert cut.status_code == 200
        with pytest.raises((EOFError, OSError)):
            gzip.decompress(cut.content)
        assert len(_archive_rows(s, 2178, date(2025, 5, 31))) == 24 * 8
        assert s.archive()["files"] == [{"location_id": 2178, "day": "2025-05-31", "requests": 2, "rows": 192}]


# -- data-quality faults -------------------------------------------------------------------------------------------

QUALITY_NOW = datetime(2025, 6, 1, 12, 30, tzinfo=UTC).timestamp()
QUALITY_WORLD: dict[str, Any] = {"locations": 30, "seed": 11, "inactive_fraction": 0}
QUALITY_FAULTS: dict[str, Any] = {"stuck_rate": 0.4, "spike_rate": 0.1, "pm25_gt_pm10_rate": 1.0, "flag_rate": 1.0}
FLAG_KEYS = ["locationId", "flagType", "datetimeFrom", "datetimeTo", "sensorIds", "note"]


@pytest.fixture(scope="module")
def quality_sim() -> Iterator[SimulatorThread]:
    with running_simulator(clock=lambda: QUALITY_NOW, **QUALITY_WORLD, **QUALITY_FAULTS) as s:
        yield s


def _quality(s: SimulatorThread, **params: Any) -> dict[str, Any]:
    r = requests.get(s.url + "/_sim/quality", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_flags_endpoints_answer_with_the_real_shape_and_errors(quality_sim: SimulatorThread) -> None:
    s = quality_sim
    window: dict[str, Any] = {"datetime_from": "2025-05-25T00:00:00Z", "datetime_to": "2025-06-01T12:00:00Z"}
    body = get(s, "/v3/locations/2178/flags", **window).json()
    results = body["results"]
    assert body["meta"] == {"name": "openaq-api", "website": "/", "page": 1, "limit": 100, "found": len(results)}
    assert len(results) >= 2
    for flag in results:
        assert list(flag) == FLAG_KEYS and flag["locationId"] == 2178
        assert set(flag["flagType"]) == {"id", "label", "level"}
        assert flag["flagType"]["level"] in ("INFO", "WARNING", "ERROR")
        assert set(flag["datetimeFrom"]) == set(flag["datetimeTo"]) == {"utc", "local"}
        assert flag["datetimeFrom"]["utc"] < flag["datetimeTo"]["utc"]
        assert flag["datetimeTo"]["local"].endswith("-06:00")  # America/Denver in summer
    # the same periods /_sim/quality reports (it also gives station-wide flags their sensors)
    truth = _quality(s, location_id=2178, **{"from": "2025-05-25T01:00:00Z", "to": "2025-06-01T12:00:00Z"})["flags"]
    assert [(f["datetimeFrom"]["utc"], f["datetimeTo"]["utc"], f["flagType"], f["sensorIds"]) for f in results] == [
        (t["datetime_from"], t["datetime_to"], t["flag_type"], [] if t["location_wide"] else t["sensor_ids"])
        for t in truth
    ]
    named = next(f for f in results if f["sensorIds"])
    sensor_flags = get(s, f"/v3/sensors/{named['sensorIds'][0]}/flags", **window).json()["results"]
    assert named in sensor_flags and all(f["sensorIds"] == named["sensorIds"] for f in sensor_flags)
    paged = get(s, "/v3/locations/2178/flags", limit=1, page=2, **window).json()
    assert paged["results"] == results[1:2] and paged["meta"]["found"] == len(results)
    # the real server does not look the location up: an unknown one has no flags
    assert get(s, "/v3/locations/1/flags").json() == {"meta": {**body["meta"], "found": 0}, "results": []}
    zero = get(s, "/v3/locations/0/flags")
    assert zero.status_code == 422 and zero.json()["detail"][0]["loc"] == ["path", "location_id"]
    assert get(s, "/v3/sensors/abc/flags").status_code == 422
    backwards = get(s, "/v3/sensors/3920/flags", datetime_from="2025-06-01", datetime_to="2025-05-01")
    assert backwards.status_code == 422 and backwards.json()["detail"][0]["loc"] == ["query", "datetime_to"]
    assert get(s, "/v3/locations/2178/flags", headers=None).status_code == 401


def test_flags_requests_count_against_the_rate_limit() -> None:
    with running_simulator(locations=5, rate_limit_per_minute=2, flag_rate=1.0) as s:
        first = get(s, "/v3/locations/2178/flags")
        assert first.status_code == 200 and first.headers["x-ratelimit-used"] == "1"
        assert get(s, "/v3/sensors/3920/flags").headers["x-ratelimit-remaining"] == "0"
        limited = get(s, "/v3/locations/2178/flags")
        assert limited.status_code == 429 and limited.json() == {"detail": "Too many requests"}
        assert s.stats()["requests_by_kind"] == {"location_flags": 2, "sensor_flags": 1}


def test_latest_measurements_and_archive_agree_with_sim_quality(quality_sim: SimulatorThread) -> None:
    s = quality_sim
    start, end = "2025-05-30T13:00:00Z", "2025-06-01T12:00:00Z"
    truth = _quality(s, **{"from": start, "to": end})
    assert truth == s.quality(start, end) and truth["options"] == {**QUALITY_FAULTS, "stuck_hours": 8}
    clean = World(WorldConfig(**QUALITY_WORLD))  # the same world without the faults
    expected = {(r["sensor_id"], h): r["value"] for r in truth["stuck"] for h in r["hours"]}
    expected |= {(r["sensor_id"], r["datetime"]): r["value"] for r in truth["spikes"]}
    expected |= {(r["pm25_sensor_id"], r["datetime"]): r["pm25"] for r in truth["pm25_gt_pm10"]}
    flagged = {(sid, h) for f in truth["flags"] for sid in f["sensor_ids"] for h in f["hours"]}

    def value(sensor_id: int, utc: str) -> float:
        hour = int(datetime.fromisoformat(utc).timestamp()) // HOUR
        return expected.get((sensor_id, utc), clean.clean_value(clean.sensors[sensor_id], hour))

    served: dict[tuple[int, str], float] = {}
    for sensor_id in clean.sensors:
        rows = get(s, f"/v3/sensors/{sensor_id}/measurements", datetime_from="2025-05-30T12:00:00Z", datetime_to=end)
        for row in rows.json()["results"]:
            utc = row["period"]["datetimeTo"]["utc"]
            served[(sensor_id, utc)] = row["value"]
            assert row["value"] == value(sensor_id, utc), (sensor_id, utc)
            assert row["flagInfo"]["hasFlags"] == ((sensor_id, utc) in flagged), (sensor_id, utc)
    assert len(served) > 48 * 60
    # every kind of fault was served, and PM2.5 is above PM10 wherever the report says so
    assert {k for k in expected if k in served} >= {(r["sensor_id"], r["datetime"]) for r in truth["spikes"]}
    assert any((r["sensor_id"], r["first"]) in served for r in truth["stuck"]) and flagged & served.keys()
    for r in truth["pm25_gt_pm10"]:
        assert served[(r["pm25_sensor_id"], r["datetime"])] > served[(r["pm10_sensor_id"], r["datetime"])]
    for loc in clean.locations:
        for item in get(s, f"/v3/locations/{loc.id}/latest").json()["results"]:
            key = (item["sensorsId"], item["datetime"]["utc"])
            assert item["value"] == served[key] == value(*key)
    archived = _archive_values(s, 2178, date(2025, 5, 31))
    assert archived and all(v == served[k] for k, v in archived.items())


def test_quality_options_switch_at_runtime_and_are_checked(quality_sim: SimulatorThread) -> None:
    s = quality_sim
    assert requests.post(s.url + "/_sim/world", json={"spike_rate": 0.5}, timeout=5).status_code == 400
    assert requests.post(s.url + "/_sim/world", json={"stuck_hours": 60}, timeout=5).status_code == 400
    backwards = {"from": "2025-06-01", "to": "2025-05-01"}
    assert requests.get(s.url + "/_sim/quality", params=backwards, timeout=5).status_code == 400
    try:
        r = requests.post(s.url + "/_sim/world", json={"stuck_rate": 1, "stuck_hours": 12}, timeout=5)
        assert r.status_code == 200 and (r.json()["stuck_rate"], r.json()["stuck_hours"]) == (1.0, 12)
        world = requests.get(s.url + "/_sim/world", timeout=5).json()
        assert {k: world[k] for k in QUALITY_FAULTS} == {**QUALITY_FAULTS, "stuck_rate": 1.0}
        other = s.sim.world.locations[1].id
        runs = _quality(s, location_id=f"2178,{other}")["stuck"]
        assert runs and all(len(r["hours"]) == 12 for r in runs)
        assert {r["location_id"] for r in runs} == {2178, other}
    finally:
        s.set_world(stuck_rate=QUALITY_FAULTS["stuck_rate"], stuck_hours=8)
