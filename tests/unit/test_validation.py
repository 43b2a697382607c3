from __future__ import annotations

import json

import pytest

from airq_app.domain import validation
from airq_app.domain.measurement import MEASUREMENT_FIELDS
from airq_app.domain.timeutil import utc_seconds
from airq_app.domain.validation import InvalidMessage, parse_measurement
from airq_dev.harness import measurement

pytestmark = pytest.mark.unit


def raw(**changes: object) -> bytes:
    m = measurement(1001, "2026-11-24T10:00:00Z")
    m.update(changes)
    return json.dumps({k: v for k, v in m.items() if v is not ...}).encode()


def test_the_checked_fields_are_the_records() -> None:
    assert (*validation.REQUIRED, *validation.OPTIONAL) == MEASUREMENT_FIELDS
    assert validation.REQUIRED == {
        "location_id": (int,),
        "sensor_id": (int,),
        "parameter": (str,),
        "value": (int, float),
        "unit": (str,),
        "datetime_utc": (str,),
    }
    assert validation.OPTIONAL["latitude"] == (int, float) and validation.OPTIONAL["country"] == (str,)


def test_field_types_become_checks() -> None:
    fields = {"operator": str, "height": float | None, "floors": int | None, "weight": float}
    required, optional = validation._field_checks(fields)
    assert required == {"operator": (str,), "weight": (int, float)}
    assert optional == {"height": (int, float), "floors": (int,)}


def test_valid_message_is_normalised() -> None:
    m = parse_measurement(raw(datetime_utc="2026-11-24T10:00:00+00:00", value=7, latitude=40))
    assert m["datetime_utc"] == "2026-11-24T10:00:00Z"
    assert m["value"] == 7.0 and isinstance(m["value"], float)
    assert m["latitude"] == 40.0 and isinstance(m["latitude"], float)


def test_offsets_other_than_utc_are_converted() -> None:
    assert parse_measurement(raw(datetime_utc="2026-11-24T04:00:00-06:00"))["datetime_utc"] == "2026-11-24T10:00:00Z"


def test_the_time_is_read_once_and_carried_in_seconds() -> None:
    m = parse_measurement(raw(datetime_utc="2026-11-24T04:00:59.9-06:00"))
    assert m["datetime_utc"] == "2026-11-24T10:00:59Z"
    assert m["epoch"] == utc_seconds("2026-11-24T10:00:59Z") == 1795514459
    assert parse_measurement(raw(epoch=0))["epoch"] == utc_seconds("2026-11-24T10:00:00Z")  # never the sender's


def test_optional_fields_may_be_missing() -> None:
    m = json.loads(raw())
    for name in ("location_name", "country", "latitude", "longitude", "provider", "timezone", "parameter_id"):
        m.pop(name)
    parsed = parse_measurement(json.dumps(m).encode())
    assert parsed["country"] is None and parsed["latitude"] is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty_message"),
        (b"\x00\xff\xfe garbage", "not_json"),
        (b'{"sensor_id": 1, "value": ', "not_json"),
        (b"[1, 2, 3]", "wrong_schema: expected a JSON object"),
        (raw(sensor_id=...), "wrong_schema: missing field sensor_id"),
        (raw(sensor_id="12"), "wrong_schema: sensor_id has type str"),
        (raw(value=True), "wrong_schema: value has type bool"),
        (raw(value="NaN"), "wrong_schema: value has type str"),
        (raw(latitude="north"), "wrong_schema: latitude has type str"),
        (raw(sensor_id=-4), "wrong_schema: ids must be positive"),
        (raw(parameter=" "), "wrong_schema: empty parameter"),
        (raw(datetime_utc="yesterday"), "bad_datetime"),
        (raw(datetime_utc="9999-12-31T23:59:59-01:00"), "bad_datetime"),  # OverflowError when converted to UTC
        (raw(datetime_utc="0001-01-01T00:00:00+01:00"), "bad_datetime"),
        (raw(datetime_utc="2026-11-24T10:00:00Z" * 5000), "bad_datetime"),
        (raw(latitude=90.5), "bad_coordinates: latitude 90.5 is outside [-90, 90]"),
        (raw(latitude=-91), "bad_coordinates: latitude -91.0 is outside [-90, 90]"),
        (raw(longitude=180.01), "bad_coordinates: longitude 180.01 is outside [-180, 180]"),
        (raw(longitude=-1000), "bad_coordinates: longitude -1000.0 is outside [-180, 180]"),
    ],
)
def test_unusable_messages_raise_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_measurement(payload)
    assert str(err.value).startswith(reason)


def test_non_finite_value_is_rejected() -> None:
    with pytest.raises(InvalidMessage, match="not_json|finite"):
        parse_measurement(raw().replace(b'"value": 12.3', b'"value": Infinity'))


def test_coordinates_on_the_edges_are_valid() -> None:
    for lat, lon in ((90, 180), (-90, -180), (0, 0)):
        m = parse_measurement(raw(latitude=lat, longitude=lon))
        assert (m["latitude"], m["longitude"]) == (float(lat), float(lon))


def test_bad_datetime_reason_is_short() -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_measurement(raw(datetime_utc="9" * 100_000))
    assert len(str(err.value)) < 80
