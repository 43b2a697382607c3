"""The OpenAQ simulator over HTTP: shapes like the real API, auth, rate limits, faults, control endpoints (its data
over time: test_simulator_data.py)."""

from __future__ import annotations

import gzip
import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from airq_dev.fixtures_openaq import TEST_KEY, running_simulator
from airq_dev.simulator import HOUR, SimulatorThread, World, WorldConfig, start_subprocess

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data" / "openaq"
H = {"X-API-Key": TEST_KEY}
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-used", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with running_simulator(locations=300, seed=7) as s:
        yield s


def get(sim: SimulatorThread, path: str, headers: dict[str, str] | None = H, **params: Any) -> requests.Response:
    return requests.get(sim.url + path, params=params, headers=headers, timeout=10)


def sample(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


# -- auth ----------------------------------------------------------------------------------------------------------


def test_401_without_key_has_the_waf_body(sim: SimulatorThread) -> None:
    r = get(sim, "/v3/locations", headers=None)
    assert r.status_code == 401
    assert r.json() == {"message": "Unauthorized. A valid API key must be provided in the X-API-Key header."}
    assert get(sim, "/v3/locations", headers={"X-API-Key": ""}).status_code == 401
    assert get(sim, "/v3/locations", headers={"X-API-Key": "anything"}).status_code == 200


def test_configured_keys_reject_others() -> None:
    with running_simulator(api_keys=["good"]) as s:
        assert get(s, "/v3/locations", headers={"X-API-Key": "good"}).status_code == 200
        r = get(s, "/v3/locations", headers={"X-API-Key": "bad"})
        assert r.status_code == 401 and r.json() == {"detail": "Invalid credentials"}


# -- shapes --------------------------------------------------------------------------------------------------------


def test_location_shape_matches_the_real_payload(sim: SimulatorThread) -> None:
    real = sample("docs_location_2178.json")
    r = get(sim, "/v3/locations/2178")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["meta"] == {"name": "openaq-api", "website": "/", "page": 1, "limit": 100, "found": 1}
    ours, theirs = body["results"][0], real["results"][0]
    assert set(ours) == set(theirs)
    for key in ("id", "name", "locality", "timezone", "coordinates", "provider", "owner", "isMonitor", "bounds"):
        assert ours[key] == theirs[key], key
    assert sorted((s["id"], s["name"], s["parameter"]["id"]) for s in ours["sensors"]) == sorted(
        (s["id"], s["name"], s["parameter"]["id"]) for s in theirs["sensors"]
    )
    assert ours["datetimeLast"]["utc"].endswith(":00:00Z")


def test_latest_shape_matches_the_real_payload(sim: SimulatorThread) -> None:
    real = sample("docs_location_2178_latest.json")["results"][0]
    body = get(sim, "/v3/locations/2178/latest").json()
    assert body["meta"]["found"] == 8
    for item in body["results"]:
        assert set(item) == set(real)
        assert set(item["datetime"]) == {"utc", "local"}
        assert item["datetime"]["utc"].endswith(":00:00Z")
        assert item["locationsId"] == 2178
    # no2 and so2 in ppm, like the real station
    by_sensor = {i["sensorsId"]: i["value"] for i in body["results"]}
    assert 0 <= by_sensor[3916] < 0.5 and 0 <= by_sensor[3918] < 2


def test_hours_shape_matches_the_real_payload(sim: SimulatorThread) -> None:
    real = sample("sdk_sensor_hours.json")["results"][0]
    body = get(
        sim, "/v3/sensors/3920/hours", datetime_from="2025-01-01T00:00:00Z", datetime_to="2025-01-01T05:00:00Z"
    ).json()
    assert len(body["results"]) == 5
    row = body["results"][0]
    assert set(real) <= set(row)
    assert row["period"]["label"] == "1hour" and row["period"]["interval"] == "01:00:00"
    assert row["parameter"]["displayName"] is None
    raw = get(
        sim, "/v3/sensors/3920/measurements", datetime_from="2025-01-01T00:00:00Z", datetime_to="2025-01-01T02:00:00Z"
    )
    assert raw.json()["results"][0]["period"]["label"] == "raw"
    assert raw.json()["results"][0]["summary"] is None


def test_found_is_a_string_on_full_pages(sim: SimulatorThread) -> None:
    full = get(sim, "/v3/locations", limit=100).json()
    assert full["meta"]["found"] == ">100" and len(full["results"]) == 100
    last = get(sim, "/v3/locations", limit=70, page=5).json()
    assert last["meta"]["found"] == len(last["results"]) == 20
    # a full last page still says ">limit": only the next, empty page tells the end
    assert get(sim, "/v3/locations", limit=100, page=3).json()["meta"]["found"] == ">100"
    beyond = get(sim, "/v3/locations", limit=100, page=4).json()
    assert beyond["meta"]["found"] == 0 and beyond["results"] == []
    # /latest endpoints count every row
    latest = get(sim, "/v3/parameters/2/latest", limit=10).json()
    assert isinstance(latest["meta"]["found"], int) and latest["meta"]["found"] > 10


def test_paging_covers_every_location_once(sim: SimulatorThread) -> None:
    ids: list[int] = []
    for page in range(1, 20):
        results = get(sim, "/v3/locations", limit=37, page=page).json()["results"]
        ids += [r["id"] for r in results]
        if len(results) < 37:
            break
    assert len(ids) == 300 and ids == sorted(set(ids))
    desc = get(sim, "/v3/locations", limit=5, sort_order="desc").json()["results"]
    assert [r["id"] for r in desc] == sorted(ids, reverse=True)[:5]


def test_units_like_real_networks(sim: SimulatorThread) -> None:
    world = sim.sim.world
    units = {(s.parameter.name, s.parameter.units) for s in world.sensors.values()}
    for gas in ("no2", "so2", "o3", "co"):
        assert (gas, "ppm") in units and (gas, "µg/m³") in units
    assert ("no2", "ppb") in units and ("o3", "ppb") in units
    assert {p for p, _ in units} >= {"pm25", "pm10", "o3", "no2", "so2", "co"}


# -- filters and errors --------------------------------------------------------------------------------------------


def test_location_filters(sim: SimulatorThread) -> None:
    us = get(sim, "/v3/locations", iso="US", limit=1000).json()["results"]
    assert us and all(r["country"]["code"] == "US" for r in us)
    by_id = get(sim, "/v3/locations", countries_id="155", limit=1000).json()["results"]
    assert [r["id"] for r in by_id] == [r["id"] for r in us]
    box = get(sim, "/v3/locations", bbox="-125,30,-100,50", limit=1000).json()["results"]
    assert box and all(
        -125 <= r["coordinates"]["longitude"] <= -100 and 30 <= r["coordinates"]["latitude"] <= 50 for r in box
    )
    ppb_no2 = get(sim, "/v3/locations", parameters_id="15", limit=1000).json()["results"]
    assert ppb_no2 and all(any(s["parameter"]["id"] == 15 for s in r["sensors"]) for r in ppb_no2)
    near = get(sim, "/v3/locations", coordinates="35.1353,-106.584702", radius=1000).json()["results"]
    assert [r["id"] for r in near] == [2178] and near[0]["distance"] == 0.0


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"page": 0},
        {"iso": "US", "countries_id": 155},
        {"bbox": "10,10,0,0"},
        {"bbox": "x"},
    ],
)
def test_bad_queries_get_422(sim: SimulatorThread, params: dict[str, Any]) -> None:
    r = get(sim, "/v3/locations", **params)
    assert r.status_code == 422 and "detail" in r.json()


def test_not_found_bodies(sim: SimulatorThread) -> None:
    assert get(sim, "/v3/locations/1").json() == {"detail": "Location not found"}
    assert get(sim, "/v3/parameters/99999/latest").json() == {"detail": "Parameter not found"}
    assert get(sim, "/v3/sensors/1").json() == {"detail": "Sensor not found"}
    assert get(sim, "/v3/nothing").status_code == 404
    # an unknown sensor's series is an empty 200, as on the real server
    r = get(sim, "/v3/sensors/1/hours")
    assert r.status_code == 200 and r.json()["results"] == []


def test_series_window_semantics(sim: SimulatorThread) -> None:
    # datetime_from exclusive, datetime_to inclusive, both on the period end
    rows = get(sim, "/v3/sensors/3920/hours", datetime_from="2025-01-01T00:00:00Z", datetime_to="2025-01-01T03:00:00Z")
    ends = [r["period"]["datetimeTo"]["utc"] for r in rows.json()["results"]]
    assert ends == ["2025-01-01T01:00:00Z", "2025-01-01T02:00:00Z", "2025-01-01T03:00:00Z"]
    # a naive datetime is station-local (America/Denver is UTC-7 in January)
    local = get(sim, "/v3/sensors/3920/hours", datetime_from="2024-12-31T17:00:00", datetime_to="2024-12-31T18:00:00")
    assert [r["period"]["datetimeTo"]["utc"] for r in local.json()["results"]] == ["2025-01-01T01:00:00Z"]
    bad = get(sim, "/v3/sensors/3920/hours", datetime_from="2025-01-02T00:00:00Z", datetime_to="2025-01-01T00:00:00Z")
    assert bad.status_code == 422


# -- determinism and time ------------------------------------------------------------------------------------------


def test_world_is_deterministic() -> None:
    a, b, c = (
        World(WorldConfig(locations=50, seed=3)),
        World(WorldConfig(locations=50, seed=3)),
        World(WorldConfig(locations=50, seed=4)),
    )
    assert [loc.id for loc in a.locations] == [loc.id for loc in b.locations]
    assert sorted(a.sensors) == sorted(b.sensors)
    hour = 480_000
    assert all(a.value(s, hour) == b.value(b.sensors[s.id], hour) for s in a.sensors.values())
    assert [loc.name for loc in a.locations] != [loc.name for loc in c.locations]


def test_values_follow_the_clock() -> None:
    now = [datetime(2025, 6, 1, 12, 30, tzinfo=UTC).timestamp()]
    with running_simulator(locations=20, clock=lambda: now[0], inactive_fraction=0) as s:
        first = get(s, "/v3/locations/2178/latest").json()["results"]
        assert get(s, "/v3/locations/2178/latest").json()["results"] == first  # same hour, same answer
        assert {i["datetime"]["utc"] for i in first} == {"2025-06-01T12:00:00Z"}
        now[0] += HOUR
        later = get(s, "/v3/locations/2178/latest").json()["results"]
        assert {i["datetime"]["utc"] for i in later} == {"2025-06-01T13:00:00Z"}
        requests.post(s.url + "/_sim/clock", json={"advance_hours": 2}, timeout=5)
        moved = get(s, "/v3/locations/2178/latest").json()["results"]
        assert {i["datetime"]["utc"] for i in moved} == {"2025-06-01T15:00:00Z"}
        # the hourly series agrees with what /latest said for the same hour
        hours = get(
            s, "/v3/sensors/3920/hours", datetime_from="2025-06-01T12:00:00Z", datetime_to="2025-06-01T13:00:00Z"
        )
        assert hours.json()["results"][0]["value"] == next(i["value"] for i in later if i["sensorsId"] == 3920)


def test_batch_uploading_sensors_jump_in_latest_and_fill_in_hours() -> None:
    now = [datetime(2025, 6, 1, 12, 30, tzinfo=UTC).timestamp()]
    with running_simulator(locations=80, clock=lambda: now[0], inactive_fraction=0, batch_fraction=0.2) as s:
        world = World(WorldConfig(locations=80, seed=1, inactive_fraction=0, batch_fraction=0.2))
        every = {sid: world.batch_hours(sensor) for sid, sensor in world.sensors.items()}
        batched = {sid for sid, n in every.items() if n > 1}
        assert 0.1 < len(batched) / len(every) < 0.3 and {every[sid] for sid in batched} == {2, 3, 4}

        def latest() -> dict[int, int]:
            rows = get(s, "/v3/parameters/2/latest", limit=1000).json()["results"]
            return {r["sensorsId"]: int(datetime.fromisoformat(r["datetime"]["utc"]).timestamp()) // HOUR for r in rows}

        seen = [latest()]
        for _ in range(4):
            now[0] += HOUR
            seen.append(latest())
        for sid in seen[0]:
            hours = [snapshot[sid] for snapshot in seen]
            steps = {b - a for a, b in zip(hours, hours[1:], strict=False)} - {0}
            assert steps == ({every[sid]} if sid in batched else {1}), (sid, hours)
            assert all(h % every[sid] == 0 for h in hours)
        # The hours between two uploads are in /hours once the later upload is out, never before.
        sid = next(i for i in seen[-1] if i in batched and every[i] >= 3)
        last = seen[-1][sid]
        rows = get(
            s, f"/v3/sensors/{sid}/hours", datetime_from=utc(last - every[sid]), datetime_to=utc(last + 2)
        ).json()["results"]
        ends = [int(datetime.fromisoformat(r["period"]["datetimeTo"]["utc"]).timestamp()) // HOUR for r in rows]
        assert ends == list(range(last - every[sid] + 1, last + 1))


def utc(hour: int) -> str:
    return datetime.fromtimestamp(hour * HOUR, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_daily_cycle_is_plausible() -> None:
    world = World(WorldConfig(locations=1, seed=1))
    o3 = world.sensors[3917]  # ppm, America/Denver
    base = int(datetime(2025, 7, 1, tzinfo=UTC).timestamp()) // HOUR
    week = [world.clean_value(o3, base + h) for h in range(24 * 7)]
    assert all(0 <= v < 0.5 for v in week)
    by_local_hour = {h: sum(week[(h + 6) % 24 :: 24]) for h in range(24)}  # UTC-6 in July
    assert max(by_local_hour, key=by_local_hour.__getitem__) in range(11, 19)  # ozone peaks in the afternoon


# -- rate limit ----------------------------------------------------------------------------------------------------


def test_rate_limit_per_calendar_minute() -> None:
    with running_simulator(rate_limit_per_minute=5, minute_seconds=1.0) as s:
        # start just after a window boundary so the burst sits in one window
        time.sleep(1.0 - time.time() % 1.0 + 0.02)
        answers = [get(s, "/v3/parameters") for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        for i, a in enumerate(answers):
            assert all(h in a.headers for h in RATE_HEADERS)
            assert a.headers["x-ratelimit-limit"] == "5"
            assert a.headers["x-ratelimit-used"] == str(min(i + 1, 5))
        assert answers[-1].json() == {"detail": "Too many requests"}
        assert answers[-1].headers["x-ratelimit-remaining"] == "0"
        assert 1 <= int(answers[-1].headers["x-ratelimit-reset"]) <= 1
        # another key has its own bucket
        assert get(s, "/v3/parameters", headers={"X-API-Key": "other"}).status_code == 200
        time.sleep(float(answers[-1].headers["x-ratelimit-reset"]))
        assert get(s, "/v3/parameters").status_code == 200
        stats = requests.get(s.url + "/_sim/stats", timeout=5).json()
        assert stats["rate_limited"] == 1 and stats["max_requests_per_minute"] >= 7


# -- faults --------------------------------------------------------------------------------------------------------


def test_fail_next_and_kinds(sim: SimulatorThread) -> None:
    r = requests.post(
        sim.url + "/_sim/faults", json={"fail_next": [503, "malformed", 429], "kinds": ["parameters"]}, timeout=5
    )
    assert r.json()["fail_next"] == [503, "malformed", 429]
    try:
        assert get(sim, "/v3/locations", limit=1).status_code == 200  # other kinds untouched
        assert get(sim, "/v3/parameters").status_code == 503
        truncated = get(sim, "/v3/parameters")
        assert truncated.status_code == 200
        with pytest.raises(ValueError):
            truncated.json()
        too_many = get(sim, "/v3/parameters")
        assert too_many.status_code == 429 and too_many.json() == {"detail": "Too many requests"}
        assert get(sim, "/v3/parameters").status_code == 200
    finally:
        requests.post(sim.url + "/_sim/faults", json={"reset": True}, timeout=5)


def test_value_faults() -> None:
    with running_simulator(locations=30, faults={"sentinel_rate": 1.0}) as s:
        assert {i["value"] for i in get(s, "/v3/parameters/2/latest").json()["results"]} == {-999.0}
        s.set_faults(sentinel_rate=0.0, negative_rate=1.0)
        assert all(i["value"] < 0 for i in get(s, "/v3/parameters/2/latest").json()["results"])
        s.set_faults(negative_rate=0.0)
        assert all(i["value"] >= 0 for i in get(s, "/v3/parameters/2/latest").json()["results"])


def test_stale_and_duplicate_faults() -> None:
    now = [datetime(2025, 6, 1, 12, 30, tzinfo=UTC).timestamp()]
    with running_simulator(locations=30, clock=lambda: now[0], inactive_fraction=0) as s:
        fresh = {i["sensorsId"]: i["datetime"]["utc"] for i in get(s, "/v3/parameters/2/latest").json()["results"]}
        s.set_faults(stale_rate=1.0, stale_hours=48)
        stale = {i["sensorsId"]: i["datetime"]["utc"] for i in get(s, "/v3/parameters/2/latest").json()["results"]}
        assert stale.keys() == fresh.keys()
        for sid, utc in stale.items():
            gap = datetime.fromisoformat(fresh[sid]) - datetime.fromisoformat(utc)
            assert gap.total_seconds() == 48 * HOUR
        recent = get(s, "/v3/parameters/2/latest", datetime_min="2025-06-01T00:00:00Z").json()
        assert recent["results"] == [] and recent["meta"]["found"] == 0
        s.set_faults(stale_rate=0.0, duplicate_rate=1.0)
        rows = get(s, "/v3/parameters/2/latest").json()["results"]
        assert len(rows) == 2 * len(fresh) and rows[0] == rows[1]


def test_repeat_and_slow_faults() -> None:
    now = [datetime(2025, 6, 1, 12, 30, tzinfo=UTC).timestamp()]
    with running_simulator(locations=10, clock=lambda: now[0], faults={"repeat_rate": 1.0}) as s:
        first = get(s, "/v3/locations/2178/latest").json()
        now[0] += 3 * HOUR
        assert get(s, "/v3/locations/2178/latest").json() == first  # a stale cached payload
        s.set_faults(repeat_rate=0.0, slow_rate=1.0, delay_s=0.3)
        started = time.monotonic()
        assert get(s, "/v3/locations/2178/latest").json() != first
        assert time.monotonic() - started >= 0.3
        stats = s.stats(include_served=False)
        assert stats["faults_injected"]["repeat"] == 1 and stats["faults_injected"]["slow"] == 1


def test_error_rate() -> None:
    with running_simulator(locations=5, faults={"error_rate": 0.5}) as s:
        codes = [get(s, "/v3/parameters").status_code for _ in range(40)]
        assert set(codes) - {200} <= {500, 502, 503, 504}
        assert 5 <= codes.count(200) <= 35
        s.set_faults(error_rate=0.0, timeout_rate=1.0)
        assert get(s, "/v3/parameters").status_code == 408


def test_control_endpoints(sim: SimulatorThread) -> None:
    bad = requests.post(sim.url + "/_sim/faults", json={"eror_rate": 1}, timeout=5)
    assert bad.status_code == 400 and "eror_rate" in bad.json()["detail"]
    assert requests.post(sim.url + "/_sim/faults", json={"error_rate": 2}, timeout=5).status_code == 400
    world = requests.get(sim.url + "/_sim/world", timeout=5).json()
    assert world["locations"] == 300 and world["seed"] == 7
    requests.post(sim.url + "/_sim/reset", timeout=5)
    get(sim, "/v3/locations/2178/latest")
    get(sim, "/v3/locations", headers=None)
    stats = requests.get(sim.url + "/_sim/stats", params={"served": 1}, timeout=5).json()
    assert stats["requests_total"] == 2 and stats["requests_by_kind"] == {"location_latest": 1, "locations": 1}
    assert stats["responses_by_status"] == {"200": 1, "401": 1} and stats["unauthorized"] == 1
    assert len(stats["served"]) == 8 and stats["served"][0][3] == "latest"
    served = requests.get(sim.url + "/_sim/served", params={"since": 6}, timeout=5).json()
    assert len(served["served"]) == 2 and served["next"] == 8


def test_runs_as_a_process() -> None:
    args = ["--port", "0", "--locations", "25", "--seed", "2", "--faults", "error_rate=0", "--revision-rate", "0.5"]
    proc, url = start_subprocess([*args, "--revision-delay-s", "3", "--archive-lag-hours", "2"])
    try:
        assert url.startswith("http://127.0.0.1:")
        r = requests.get(url + "/v3/locations", headers=H, timeout=5)
        assert r.status_code == 200 and len(r.json()["results"]) == 25
        world = requests.get(url + "/_sim/world", timeout=5).json()
        assert (world["revision_rate"], world["revision_delay_s"], world["archive_lag_hours"]) == (0.5, 3.0, 2)
        yesterday = datetime.fromtimestamp(time.time() - 86_400, UTC).date()
        path = f"/records/csv.gz/locationid=2178/year={yesterday.year}/month={yesterday.month:02d}/"
        archive = requests.get(url + path + f"location-2178-{yesterday:%Y%m%d}.csv.gz", timeout=5)
        assert archive.status_code == 200 and gzip.decompress(archive.content).startswith(b"location_id,sensors_id,")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
