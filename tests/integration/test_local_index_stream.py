"""A real worker on the real broker scores each record with its location's national index and the US AQI of O3
from the sensor's 8-hour running mean, and shows each location's overall national index."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airq_app.domain import indices
from airq_dev.harness import Pipeline, encode, finished_records, measurement, produce, wait_for

pytestmark = pytest.mark.integration
UG = "µg/m³"


def hours_back(n: int) -> list[str]:
    """The last `n` whole hours, oldest first, ending at the current hour."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return [(now - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in range(n - 1, -1, -1)]


def series(sensor: int, location: int, country: str, values: list[float], **kw: Any) -> list[dict[str, Any]]:
    return [
        measurement(sensor, hour, value=v, location_id=location, country=country, **kw)
        for hour, v in zip(hours_back(len(values)), values, strict=True)
    ]


@pytest.fixture
def fast(kafka: str, tmp_path: Path):
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1, output__flush_interval_s=0.2)
    yield p
    p.stop_all()


def test_worker_writes_local_index_and_location_overall(fast: Pipeline) -> None:
    worker = fast.worker().start()
    messages = [
        *series(70_011, 7_001, "IN", [50.0 + 10 * (i % 2) for i in range(24)]),  # 24-hour mean 55
        *series(70_021, 7_002, "US", [0.050] * 7 + [0.130], parameter="o3", unit="ppm"),
        *series(70_031, 7_003, "FR", [55.0]),
        *series(70_041, 7_004, "JP", [55.0 + i % 3 for i in range(24)]),
        *series(70_051, 7_005, "CA", [20.0, 21.0, 19.0], parameter="no2", unit="ppb"),
        *series(70_052, 7_005, "CA", [0.030, 0.031, 0.029], parameter="o3", unit="ppm"),
        *series(70_053, 7_005, "CA", [10.0, 11.0, 9.0]),
    ]
    produce(fast.bootstrap, fast.topic, [encode(m) for m in messages])
    records = wait_for(
        lambda: (r := finished_records(fast.output_dir)) and len(r) >= len(messages) and r,
        90,
        what=f"{len(messages)} records in finished files",
    )
    by_sensor: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r["datetime_utc"]):
        assert "local_index" in r
        by_sensor[r["sensor_id"]].append(r)

    # India: PM2.5 has only a 24-hour row, defined from the 18th hour on; 55 µg/m³ → 92 "Satisfactory".
    india = by_sensor[70_011]
    assert [r["local_index"] is None for r in india] == [True] * 17 + [False] * 7
    last = india[-1]["local_index"]
    assert (last["index"], last["value"], last["category"], last["averaging_hours"]) == ("IN", 92, "Satisfactory", 24)
    expected = indices.local_index("IN", "pm25", {24: 55.0}, UG)
    assert expected is not None and last["color"] == expected["color"]

    # US O3: 0.130 ppm after seven hours of 0.050 is 107 from the 1-hour table, not 226; the 8-hour mean before it.
    ozone = by_sensor[70_021]
    assert [r["aqi_basis"] for r in ozone] == ["instant"] * 5 + ["mean_8h"] * 2 + ["instant"]
    assert ozone[-1]["aqi"] == 107 and ozone[-1]["local_index"]["index"] == "US"

    assert by_sensor[70_031][0]["local_index"]["index"] == "EU:new"
    assert by_sensor[70_031][0]["local_index"]["category"] == "Poor"
    assert all(r["local_index"] is None for r in by_sensor[70_041])  # Japan: no table

    def location(location_id: int) -> dict[str, Any] | None:
        code, body = worker.get(f"/airq/locations/{location_id}")
        return body if code == 200 and body.get("local_index") else None

    india_loc = wait_for(lambda: location(7_001), 30, what="India's location summary")
    assert india_loc["local_index"]["value"] == 92 and india_loc["parameters"]["pm25"]["local_index"]["index"] == "IN"
    # Canada: the AQHI of the three 3-hour means, 20 ppb NO2, 30 ppb O3, 10 µg/m³ PM2.5 → 4 "Moderate".
    canada = wait_for(lambda: location(7_005), 30, what="the Canadian location's AQHI")
    aqhi = indices.aqhi(20.0, 30.0, 10.0)
    assert aqhi is not None and (canada["local_index"]["index"], canada["local_index"]["value"]) == ("CA", aqhi[0])
    assert canada["local_index"]["category"] == "Moderate"
    assert {p["local_index"]["index"] for p in canada["parameters"].values()} == {"CA"}
    code, body = worker.get("/airq/locations/7004")
    assert code == 200 and body["local_index"] is None and body["aqi"] is not None
