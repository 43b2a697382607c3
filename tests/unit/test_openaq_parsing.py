"""Pure OpenAQ helpers against real payloads (tests/data/openaq: OpenAQ documentation examples and SDK fixtures)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airq_app import openaq
from airq_app.domain.measurement import MEASUREMENT_FIELDS, Measurement

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parent.parent / "data" / "openaq"
FETCHED = "2024-09-25T22:05:00Z"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture
def del_norte_index() -> dict[int, dict[str, Any]]:
    return openaq.index_locations(load("docs_location_2178.json")["results"])


# -- parameters ----------------------------------------------------------------------------------------------------


def test_parameter_ids_are_the_openaq_ids() -> None:
    ids = openaq.parameter_ids(["pm25", "pm10", "o3", "no2", "so2", "co"])
    assert ids == {"pm25": 2, "pm10": 1, "o3": 10, "no2": 7, "so2": 9, "co": 8}


def test_parameter_ids_skip_unknown_names(caplog: pytest.LogCaptureFixture) -> None:
    assert openaq.parameter_ids(["pm25", "smog"]) == {"pm25": 2}
    assert "smog" in caplog.text


def test_parameter_variants_cover_every_unit() -> None:
    variants = openaq.parameter_variants(["no2", "pm25"])
    assert variants == [("no2", 7), ("no2", 5), ("no2", 15), ("pm25", 2)]
    units = {openaq.PARAMETERS[pid].units for name, pid in variants if name == "no2"}
    assert units == {"ppm", "µg/m³", "ppb"}


def test_parameter_table_matches_the_sample_location(del_norte_index: dict[int, dict[str, Any]]) -> None:
    for meta in del_norte_index.values():
        p = openaq.PARAMETERS[meta["parameter_id"]]
        assert (p.name, p.units) == (meta["parameter"], meta["unit"])


# -- index_locations -----------------------------------------------------------------------------------------------


def test_index_locations_from_the_docs_payload(del_norte_index: dict[int, dict[str, Any]]) -> None:
    assert set(del_norte_index) == {25227, 4272226, 3916, 4272103, 3917, 3919, 3920, 3918}
    assert del_norte_index[3916] == {
        "location_id": 2178,
        "location_name": "Del Norte",
        "country": "US",
        "latitude": 35.1353,
        "longitude": -106.584702,
        "timezone": "America/Denver",
        "provider": "AirNow",
        "parameter": "no2",
        "parameter_id": 7,
        "unit": "ppm",
    }
    assert del_norte_index[3918]["parameter"] == "so2" and del_norte_index[3918]["unit"] == "ppm"
    assert del_norte_index[3920]["unit"] == "µg/m³"
    json.dumps(del_norte_index)  # cached on disk by the poller


@pytest.mark.parametrize("name", ["sdk_locations.json", "sdk_locations_variation.json", "r_list_locations.json"])
def test_index_locations_other_payloads(name: str) -> None:
    locations = load(name)["results"]
    index = openaq.index_locations(locations)
    assert len(index) == sum(len(loc["sensors"]) for loc in locations)
    assert all(set(v) == {*index[next(iter(index))]} for v in index.values())


def test_index_locations_tolerates_nulls_and_junk() -> None:
    loc = load("docs_location_2178.json")["results"][0]
    broken = json.loads(json.dumps(loc))
    broken.update(name=None, country=None, provider=None, coordinates=None, timezone=None)
    broken["sensors"].append({"id": 1, "name": "x", "parameter": None})  # no parameter: skipped
    broken["sensors"].append({"id": "2", "parameter": {"id": 2, "name": "pm25", "units": "µg/m³"}})  # bad id
    broken["sensors"].append({"id": 3, "parameter": {"id": 2, "name": "pm25"}})  # units from the table
    index = openaq.index_locations([broken, {"id": None}, "junk", {"id": 5, "sensors": None}])  # type: ignore[list-item]
    assert 1 not in index and 2 not in index
    assert index[3]["unit"] == "µg/m³"
    meta = index[3916]
    assert meta["location_name"] is None and meta["country"] is None and meta["latitude"] is None
    assert meta["provider"] is None and meta["timezone"] is None


@pytest.mark.parametrize(
    "change",
    [{"sensors": 5}, {"sensors": "pm25"}, {"sensors": {"id": 1}}, {"id": True}, {"id": "12"}, {"id": None}],
)
def test_a_malformed_location_is_skipped_and_counted(change: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    good = load("docs_location_2178.json")["results"][0]
    bad = {**good, "id": 4242, **change}
    reasons: Counter[str] = Counter()
    assert openaq.index_locations([bad, good], reasons=reasons) == openaq.index_locations([good])
    assert reasons == {openaq.REASON_BAD_LOCATION: 1}
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 1


def test_odd_fields_inside_a_location_are_tolerated() -> None:
    good = load("docs_location_2178.json")["results"][0]
    sensors = [
        {"id": 1, "parameter": {"id": 2, "name": "pm25", "units": 5}},  # units from the table
        {"id": 2, "parameter": {"id": [2], "name": "pm25"}},  # no usable id nor units: this sensor only
    ]
    reasons: Counter[str] = Counter()
    index = openaq.index_locations([{**good, "coordinates": 7, "country": [], "sensors": sensors}], reasons=reasons)
    assert set(index) == {1} and index[1]["unit"] == "µg/m³" and index[1]["latitude"] is None
    assert index[1]["country"] is None and reasons == {}


# -- measurement_from_latest ---------------------------------------------------------------------------------------


def test_latest_payload_becomes_measurements(del_norte_index: dict[int, dict[str, Any]]) -> None:
    items = load("docs_location_2178_latest.json")["results"]
    ms = [openaq.measurement_from_latest(i, del_norte_index, FETCHED) for i in items]
    assert all(m is not None for m in ms)
    by_sensor = {m["sensor_id"]: m for m in ms if m}
    assert tuple(by_sensor[3916]) == MEASUREMENT_FIELDS
    assert by_sensor[3916] == {
        "location_id": 2178,
        "sensor_id": 3916,
        "parameter": "no2",
        "value": 0.0023,
        "unit": "ppm",
        "datetime_utc": "2024-09-25T22:00:00Z",
        "parameter_id": 7,
        "datetime_local": "2024-09-25T16:00:00-06:00",
        "location_name": "Del Norte",
        "country": "US",
        "latitude": 35.1353,
        "longitude": -106.584702,
        "timezone": "America/Denver",
        "provider": "AirNow",
        "fetched_at": FETCHED,
    }
    assert by_sensor[3919]["value"] == 29.0 and isinstance(by_sensor[3919]["value"], float)
    assert by_sensor[4272226]["value"] == 0.0
    Measurement(**by_sensor[3920])  # the record accepts it as it is


def test_measurement_serialises_and_validates(del_norte_index: dict[int, dict[str, Any]]) -> None:
    from airq_app.domain.validation import parse_measurement

    item = load("docs_location_2178_latest.json")["results"][0]
    m = openaq.measurement_from_latest(item, del_norte_index, FETCHED)
    assert m is not None
    assert parse_measurement(json.dumps(m).encode())["datetime_utc"] == "2024-09-25T22:00:00Z"


def test_offsets_are_normalised_to_z(del_norte_index: dict[int, dict[str, Any]]) -> None:
    item = load("docs_location_2178_latest.json")["results"][0]
    for utc in ("2024-09-25T22:00:00+00:00", "2024-09-25T16:00:00-06:00", "2024-09-25T22:00:00z"):
        m = openaq.measurement_from_latest({**item, "datetime": {"utc": utc}}, del_norte_index, None)
        assert m is not None
        assert m["datetime_utc"] == "2024-09-25T22:00:00Z"
        assert m["datetime_local"] is None and m["fetched_at"] is None


def test_fetched_at_may_be_a_datetime(del_norte_index: dict[int, dict[str, Any]]) -> None:
    item = load("docs_location_2178_latest.json")["results"][0]
    m = openaq.measurement_from_latest(item, del_norte_index, datetime(2024, 9, 25, 22, 5, tzinfo=UTC))
    assert m is not None and m["fetched_at"] == FETCHED


def test_null_coordinates_fall_back_to_the_location(del_norte_index: dict[int, dict[str, Any]]) -> None:
    item = load("docs_location_2178_latest.json")["results"][0]
    m = openaq.measurement_from_latest({**item, "coordinates": None}, del_norte_index, FETCHED)
    assert m is not None and (m["latitude"], m["longitude"]) == (35.1353, -106.584702)


def test_negative_and_sentinel_values_are_kept_as_reported(del_norte_index: dict[int, dict[str, Any]]) -> None:
    item = load("docs_location_2178_latest.json")["results"][0]
    for value in (-1, -999, -0.5):
        m = openaq.measurement_from_latest({**item, "value": value}, del_norte_index, FETCHED)
        assert m is not None and m["value"] == float(value)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sensorsId": 999999}, openaq.REASON_UNKNOWN_SENSOR),
        ({"sensorsId": None}, openaq.REASON_MALFORMED),
        ({"sensorsId": "3916"}, openaq.REASON_MALFORMED),
        ({"value": None}, openaq.REASON_BAD_VALUE),
        ({"value": "0.1"}, openaq.REASON_BAD_VALUE),
        ({"value": True}, openaq.REASON_BAD_VALUE),
        ({"datetime": None}, openaq.REASON_BAD_DATETIME),
        ({"datetime": {"utc": "yesterday"}}, openaq.REASON_BAD_DATETIME),
        ({"datetime": {"local": "2024-09-25T16:00:00-06:00"}}, openaq.REASON_BAD_DATETIME),
    ],
)
def test_unusable_rows_give_a_reason(
    change: dict[str, Any], reason: str, del_norte_index: dict[int, dict[str, Any]]
) -> None:
    item = {**load("docs_location_2178_latest.json")["results"][0], **change}
    reasons: Counter[str] = Counter()
    assert openaq.measurement_from_latest(item, del_norte_index, FETCHED, reasons=reasons) is None
    assert reasons == {reason: 1}
    assert openaq.measurement_from_latest(item, del_norte_index, FETCHED) is None  # counting is optional


def test_non_object_rows_are_malformed(del_norte_index: dict[int, dict[str, Any]]) -> None:
    reasons: Counter[str] = Counter()
    item: object
    for item in (None, [], "x", 3):
        assert openaq.measurement_from_latest(item, del_norte_index, FETCHED, reasons=reasons) is None
        assert openaq.measurement_from_hour(item, 3916, del_norte_index, FETCHED, reasons=reasons) is None
    assert reasons == {openaq.REASON_MALFORMED: 8}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"datetime": {"utc": "9999-12-31T23:59:59-01:00"}}, openaq.REASON_BAD_DATETIME),  # after datetime.max in UTC
        ({"datetime": {"utc": "0001-01-01T00:00:00+01:00"}}, openaq.REASON_BAD_DATETIME),  # before datetime.min
        ({"datetime": {"utc": "2024-09-25T22:00:00Z" * 1000}}, openaq.REASON_BAD_DATETIME),
        ({"value": 10**400}, openaq.REASON_BAD_VALUE),  # an int beyond the float range
        ({"value": float("nan")}, openaq.REASON_BAD_VALUE),
    ],
)
def test_hostile_rows_give_a_reason_never_an_exception(
    change: dict[str, Any], reason: str, del_norte_index: dict[int, dict[str, Any]]
) -> None:
    item = {**load("docs_location_2178_latest.json")["results"][0], **change}
    reasons: Counter[str] = Counter()
    assert openaq.measurement_from_latest(item, del_norte_index, FETCHED, reasons=reasons) is None
    assert reasons == {reason: 1}


def test_coordinates_outside_the_globe_become_unknown(del_norte_index: dict[int, dict[str, Any]]) -> None:
    loc = load("docs_location_2178.json")["results"][0]
    index = openaq.index_locations([{**loc, "coordinates": {"latitude": 91.0, "longitude": -106.5}}])
    assert index and {(v["latitude"], v["longitude"]) for v in index.values()} == {(None, -106.5)}
    item = load("docs_location_2178_latest.json")["results"][0]
    m = openaq.measurement_from_latest(
        {**item, "coordinates": {"latitude": 10.0, "longitude": 181.0}}, del_norte_index, FETCHED
    )
    assert m is not None and (m["latitude"], m["longitude"]) == (35.1353, -106.584702)  # the location's instead


def test_parameter_latest_with_a_sensor_outside_the_index() -> None:
    # The R cassette's /parameters/2/latest has sensor 5, whose location is not in its /locations page.
    index = openaq.index_locations(load("r_list_locations.json")["results"])
    reasons: Counter[str] = Counter()
    ms = [
        openaq.measurement_from_latest(i, index, FETCHED, reasons=reasons)
        for i in load("r_parameter_2_latest.json")["results"]
    ]
    assert reasons == {openaq.REASON_UNKNOWN_SENSOR: 1}
    good = [m for m in ms if m]
    assert len(good) == 6
    assert all(m["parameter"] == "pm25" and m["datetime_utc"].endswith("Z") for m in good)
    assert {m["location_id"] for m in good} == {1, 2, 3, 4, 6, 7}


# -- /hours rows ---------------------------------------------------------------------------------------------------


def test_hours_rows_use_the_period_end() -> None:
    index = openaq.index_locations(load("sdk_locations.json")["results"])
    pm25 = next(sid for sid, meta in index.items() if meta["parameter"] == "pm25")
    rows = load("sdk_sensor_hours.json")["results"]
    ms = [openaq.measurement_from_hour(r, pm25, index, FETCHED) for r in rows]
    assert [m["datetime_utc"] for m in ms if m] == ["2023-10-16T13:00:00Z", "2023-10-16T14:00:00Z"]
    assert [m["value"] for m in ms if m] == [6.0, 7.5]
    assert ms[0] is not None and ms[0]["datetime_local"] == "2023-10-16T07:00:00-06:00"
    reasons: Counter[str] = Counter()
    assert openaq.measurement_from_hour(rows[0], 123, index, FETCHED, reasons=reasons) is None
    assert reasons == {openaq.REASON_UNKNOWN_SENSOR: 1}


def test_found_may_be_a_string_in_real_payloads() -> None:
    meta = load("r_sensor_measurements_limit_5.json")["meta"]
    assert meta["found"] == ">5" and meta["limit"] == 5


# -- small helpers -------------------------------------------------------------------------------------------------


def test_old_time_names_still_answer_none_for_junk() -> None:
    # the poller of earlier versions used openaq.parse_utc/format_utc; they are airq_app.domain.timeutil's now
    assert openaq.normalise_utc("2023-03-07T00:00:00-0500") == "2023-03-07T05:00:00Z"
    assert openaq.normalise_utc(None) is None and openaq.normalise_utc("") is None and openaq.normalise_utc(5) is None
    assert openaq.parse_utc("9999-12-31T23:59:59-01:00") is None
    assert openaq.format_utc(datetime(2024, 9, 25, 22, tzinfo=UTC)) == "2024-09-25T22:00:00Z"


def test_encode_params() -> None:
    q = openaq.encode_params(
        {
            "iso": "US",
            "bbox": (-107.0, 35.0, -106.0, 36.0),
            "parameters_id": [2, 7],
            "monitor": True,
            "datetime_from": datetime(2024, 1, 1, tzinfo=UTC),
            "skip": None,
        }
    )
    assert q == {
        "iso": "US",
        "bbox": "-107.0,35.0,-106.0,36.0",
        "parameters_id": "2,7",
        "monitor": "true",
        "datetime_from": "2024-01-01T00:00:00Z",
    }


def test_key_is_masked_in_repr_and_stats() -> None:
    client = openaq.OpenAQClient("http://127.0.0.1:9", "s3cr3t-key-value")
    assert "s3cr3t" not in repr(client)
    assert "s3cr3t" not in json.dumps(client.stats())
    assert openaq.mask_key("s3cr3t") == "***" and openaq.mask_key("") == "<none>"
    client.close()


# -- the rate budget (fake clock, no sleeping) ---------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_budget_spaces_requests_over_the_minute() -> None:
    t = FakeTime()
    budget = openaq.RateBudget(3, 100, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        assert budget.acquire() == 0
        budget.record()
        t.now += 1
    waited = budget.acquire()
    assert waited == pytest.approx(60 - 3 + budget.MARGIN_S)
    budget.record()
    # never more than 3 in any 60 s: the 5th waits for the 2nd to leave the window
    assert budget.wait_time() == pytest.approx(1.0, abs=0.01)


def test_budget_hour_limit() -> None:
    t = FakeTime()
    budget = openaq.RateBudget(60, 5, minute_seconds=1, clock=t.clock, sleep=t.sleep)
    assert budget.hour_seconds == 60
    for _ in range(5):
        budget.acquire()
        budget.record()
    assert budget.wait_time() == pytest.approx(60 + budget.MARGIN_S)


def test_budget_honours_server_remaining_and_limit() -> None:
    t = FakeTime()
    budget = openaq.RateBudget(60, 2000, clock=t.clock, sleep=t.sleep)
    budget.record()
    budget.observe_server(limit=60, remaining=0, reset_s=7)
    assert budget.wait_time() == pytest.approx(7)
    t.now += 7
    assert budget.wait_time() == 0
    budget.observe_server(limit=1, remaining=None, reset_s=None)  # a lower server limit wins
    assert budget.wait_time() > 50


@pytest.mark.parametrize("reset", [-1, -2, 0, None])
def test_budget_guards_odd_reset_values(reset: int | None) -> None:
    t = FakeTime()
    budget = openaq.RateBudget(60, 2000, clock=t.clock, sleep=t.sleep)
    budget.observe_server(limit=60, remaining=0, reset_s=reset)
    assert budget.wait_time() == pytest.approx(1.0)
