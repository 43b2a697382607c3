"""Running means from a sensor's hourly history, the US AQI from 8-hour means, and each record's national index.

Expected index values come from the engine (`airq_app.domain.indices.sub_index`) fed with the mean worked out here by
hand, and, where the docs quote it, from the published value (55 µg/m³ PM2.5 over 24 h: IN 92, CN 75, GB 7, US 149).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from airq_app.domain import indices
from airq_app.domain.decide import decide, location_summary
from airq_app.domain.filters import FilterConfig
from airq_app.domain.indices import IndexConfig
from airq_app.domain.record import OutputRecord
from airq_app.domain.scoring import hourly_window, local_index, required_hours, running_means, score
from airq_app.domain.timeutil import epoch_seconds, format_utc
from airq_app.domain.validation import parse_measurement
from airq_dev.harness import encode, measurement

pytestmark = pytest.mark.unit

UG = "µg/m³"
NOW = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
END = datetime(2026, 11, 24, 23, tzinfo=UTC)
RETENTION = 72 * 3600
CONTRACT_KEYS = {"index", "name", "value", "category", "level", "color", "averaging_hours"}


def at(hours_before_end: int) -> str:
    return format_utc(END - timedelta(hours=hours_before_end))


def epoch_at(hours_before_end: int) -> int:
    return epoch_seconds(END - timedelta(hours=hours_before_end))


def window(values_newest_first: Sequence[float | None]) -> list[float | None]:
    """A sensor window as `hourly_window` builds it from these hourly values (None: no value that hour)."""
    hours: dict[str, float] = {}
    for back in range(len(values_newest_first) - 1, 0, -1):
        v = values_newest_first[back]
        if v is not None:
            hours, _ = hourly_window(hours, epoch_at(back), v)
    head = values_newest_first[0]
    assert head is not None
    return hourly_window(hours, epoch_at(0), head)[1]


def run(
    values_oldest_first: Sequence[float | None],
    cfg: FilterConfig | None = None,
    sensor: int = 501,
    **kw: Any,
) -> list[dict[str, Any]]:
    """Feed one sensor's hourly values (ending at END) through `decide`; the written records, oldest first."""
    cfg = cfg or FilterConfig()
    history = None
    records: list[OutputRecord] = []
    n = len(values_oldest_first)
    for i, v in enumerate(values_oldest_first):
        if v is None:
            continue
        m = parse_measurement(encode(measurement(sensor, at(n - 1 - i), value=v, **kw))[1])
        d = decide(m, {"topic": "t", "partition": 0, "offset": i}, history, cfg, RETENTION, NOW)
        assert d.outcome == "write", d
        history = d.history
        assert d.record is not None
        records.append(d.record)
    return cast(list[dict[str, Any]], records)  # read freely, local_index included


# -- running means and the 75 % rule --------------------------------------------------------------------------------


def test_required_hours_is_75_percent_rounded_up() -> None:
    assert {h: required_hours(h) for h in (1, 3, 4, 8, 12, 24)} == {1: 1, 3: 3, 4: 3, 8: 6, 12: 9, 24: 18}


def test_24_hour_mean_needs_18_of_24_hours() -> None:
    eighteen = [10.0] * 18 + [None] * 6
    assert running_means(window([30.0, *eighteen[1:]]))[24] == pytest.approx((30.0 + 17 * 10.0) / 18)
    seventeen = [30.0] + [10.0] * 16 + [None] * 7
    assert running_means(window(seventeen))[24] is None
    # The missing hours may be anywhere in the 24.
    spread = [20.0 if i % 4 else None for i in range(24)]
    spread[0] = 20.0
    assert sum(v is not None for v in spread) == 19 and running_means(window(spread))[24] == 20.0


def test_8_hour_mean_needs_6_of_8_and_uses_only_hours_present() -> None:
    six = [0.09, None, 0.07, 0.06, None, 0.05, 0.04, 0.03]
    assert running_means(window(six))[8] == pytest.approx((0.09 + 0.07 + 0.06 + 0.05 + 0.04 + 0.03) / 6)
    five = [0.09, None, 0.07, None, None, 0.05, 0.04, 0.03]
    assert running_means(window(five))[8] is None
    # An hour 8 or more hours back is not part of the 8-hour mean.
    longer = [0.01] * 8 + [9.0] * 4
    assert running_means(window(longer))[8] == 0.01


def test_3_hour_aqhi_mean_needs_all_three_hours() -> None:
    assert running_means(window([30.0, 20.0, 10.0]))[3] == 20.0
    assert running_means(window([30.0, None, 10.0]))[3] is None
    assert running_means(window([30.0, 20.0]))[3] is None


def test_12_hour_and_1_hour_means_and_exact_decimals() -> None:
    m = running_means(window([0.071] * 9 + [None] * 3))
    assert m[1] == 0.071 and m[12] == 0.071 and m[8] == 0.071  # no 0.07099999999999999 to truncate to 0.070
    assert running_means(window([0.071] * 8 + [None] * 4))[12] is None
    assert running_means([])[1] is None and running_means(None)[24] is None


def test_means_end_at_the_measurements_own_hour() -> None:
    # A late value for 3 hours before the newest one: its means look back from its own hour.
    hours: dict[str, float] = {}
    for back, v in ((5, 1.0), (4, 2.0), (0, 100.0)):
        hours, _ = hourly_window(hours, epoch_at(back), v)
    _, late = hourly_window(hours, epoch_at(3), 3.0)
    assert running_means(late)[3] == 2.0  # hours -3, -4, -5: 3, 2, 1


# -- US AQI: O3 and CO from their 8-hour running mean ---------------------------------------------------------------


def test_ozone_hourly_0_13_ppm_is_no_longer_226_with_an_8_hour_mean() -> None:
    # Seven hours of 0.050 ppm, then 0.130: 8-hour mean 0.060 → 8-hour table 51+49*5/15 = 67.3 → 67; the hour
    # itself is ≥ 0.125, so also the 1-hour table: 101+49*5/39 = 107.3 → 107. The higher, 107, from the hour.
    assert score("o3", 0.130, "ppm", window([0.130] + [0.050] * 7)) == (
        (107, "Unhealthy for Sensitive Groups"),
        "instant",
        None,
    )
    # Without history the same hour read through the 8-hour table gives 226: what the dashboard used to show.
    assert score("o3", 0.130, "ppm", window([0.130]))[0] == (226, "Very Unhealthy")


def test_ozone_8_hour_mean_basis() -> None:
    # Eight hours of 0.080: mean 0.080 → 101+49*(0.080-0.071)/(0.085-0.071) = 132.5 → 133; hour below 0.125.
    assert score("o3", 0.080, "ppm", window([0.080] * 8)) == ((133, "Unhealthy for Sensitive Groups"), "mean_8h", None)
    # 0.130 after seven hours of 0.090: mean 0.095 → 151+49*9/19 = 174.2 → 174, above the hour's 107.
    assert score("o3", 0.130, "ppm", window([0.130] + [0.090] * 7)) == ((174, "Unhealthy"), "mean_8h", None)
    # A mean above 0.200 ppm has no 8-hour index: the 1-hour table, 201+99*95/199 = 248.3 → 248.
    assert score("o3", 0.300, "ppm", window([0.300] * 8)) == ((248, "Very Unhealthy"), "instant", None)


def test_carbon_monoxide_8_hour_mean_basis() -> None:
    # 12.0 ppm after seven hours of 4.0: mean 5.0 → 51+49*0.5/4.9 = 56; the hour alone would be 143.
    assert score("co", 12.0, "ppm", window([12.0] + [4.0] * 7)) == ((56, "Moderate"), "mean_8h", None)
    assert score("co", 12.0, "ppm", window([12.0, 4.0, 4.0])) == (
        (143, "Unhealthy for Sensitive Groups"),
        "instant",
        None,
    )


def test_decide_scores_ozone_from_the_sensors_8_hour_mean() -> None:
    records = run([0.050] * 7 + [0.130], parameter="o3", unit="ppm")
    assert [r["aqi_basis"] for r in records[:5]] == ["instant"] * 5
    assert records[5]["aqi_basis"] == "mean_8h"  # 6 of 8 hours from the sixth value on
    assert records[-1]["aqi"] == 107 and records[-1]["aqi_basis"] == "instant"


# -- each record's national index -----------------------------------------------------------------------------------


def test_india_pm25_needs_a_24_hour_mean() -> None:
    records = run([55.0] * 24, country="IN")
    assert all(r["local_index"] is None for r in records[:17])  # fewer than 18 hours
    li = records[17]["local_index"]
    assert li is not None and CONTRACT_KEYS <= set(li)
    assert (li["index"], li["averaging_hours"], li["pollutant"]) == ("IN", 24, "pm25")
    assert (li["value"], li["category"]) == (92, "Satisfactory") == indices.sub_index("IN", "pm25", 55.0, UG, 24)
    assert li["name"] == indices.index_name("IN") and li["color"].startswith("#") and li["level"] == 2


def test_china_and_uk_from_the_24_hour_mean() -> None:
    values = [40.0] * 12 + [70.0] * 12  # mean 55
    cn = run(values, country="CN")[-1]["local_index"]
    gb = run(values, country="GB")[-1]["local_index"]
    assert (cn["index"], cn["value"], cn["category"], cn["averaging_hours"]) == ("CN", 75, "Good", 24)
    assert (gb["index"], gb["value"], gb["category"], gb["averaging_hours"]) == ("GB", 7, "High", 24)


def test_uk_sulphur_dioxide_15_minute_period_served_by_the_hour() -> None:
    li = run([40.0], country="GB", parameter="so2", unit="ppb")[0]["local_index"]
    assert li["averaging_hours"] == 1 and li["table_averaging_hours"] == 0.25
    assert (li["value"], li["category"]) == indices.sub_index("GB", "so2", 40.0, "ppb", 0.25)


def test_eu_member_without_its_own_table_gets_eu_new_from_the_hour() -> None:
    li = run([55.0], country="FR")[0]["local_index"]
    assert (li["index"], li["value"], li["category"], li["averaging_hours"]) == ("EU:new", 4, "Poor", 1)
    assert run([55.0], country="DE")[0]["local_index"]["index"] == "EU:new"


def test_country_without_an_index_or_without_a_country_is_null() -> None:
    assert run([55.0] * 24, country="JP")[-1]["local_index"] is None
    assert run([55.0] * 24, country=None)[-1]["local_index"] is None


def test_indices_section_overrides_and_disables() -> None:
    sp = FilterConfig(indices=IndexConfig.from_dict({"by_country": {"BR": "BR:São Paulo", "FR": None}}))
    br = run([100.0] * 24, cfg=sp, country="BR", parameter="pm10")[-1]["local_index"]
    assert br["index"] == "BR:São Paulo"
    assert (br["value"], br["category"]) == indices.sub_index("BR:São Paulo", "pm10", 100.0, UG, 24)
    assert run([55.0], cfg=sp, country="FR")[0]["local_index"] is None
    default_br = run([100.0] * 24, country="BR", parameter="pm10")[-1]["local_index"]
    assert default_br["index"] == "BR:Espírito Santo"
    off = FilterConfig(indices=IndexConfig(enabled=False))
    record = run([55.0], cfg=off, country="FR")[0]
    assert "local_index" in record and record["local_index"] is None


def test_index_config_rejects_unknown_indices_in_one_line() -> None:
    with pytest.raises(ValueError) as bad:
        IndexConfig.from_dict({"by_country": {"BR": "BR:Sao Paulo"}})
    assert "by_country.BR" in str(bad.value) and "BR:São Paulo" in str(bad.value) and "\n" not in str(bad.value)
    with pytest.raises(ValueError, match="not an ISO 3166"):
        IndexConfig.from_dict({"by_country": {"BRA": "US"}})
    with pytest.raises(ValueError, match="enabled"):
        IndexConfig.from_dict({"enabled": "yes"})


def test_local_index_helper_matches_the_engine() -> None:
    w = window([55.0] * 24)
    m = {"country": "IN", "parameter": "pm25"}
    assert local_index(m, UG, w) == indices.local_index("IN", "pm25", running_means(w), UG)


# -- the location summary's overall index ---------------------------------------------------------------------------


def summary_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    entry = None
    for r in records:
        entry = location_summary(entry, cast(OutputRecord, r)) or entry
    assert entry is not None
    return entry


def test_summary_overall_is_the_worst_sub_index() -> None:
    loc: dict[str, Any] = {"location_id": 77, "country": "FR"}
    pm = run([8.0], sensor=771, **loc)[-1]  # EU:new PM2.5 8 → Fair
    no2 = run([60.0], sensor=772, parameter="no2", unit="ppb", **loc)[-1]  # 60 ppb = 113 µg/m³ → Very poor
    o3 = run([0.03], sensor=773, parameter="o3", unit="ppm", **loc)[-1]
    entry = summary_of([pm, no2, o3])
    subs = {name: p["local_index"] for name, p in entry["parameters"].items()}
    assert {s["index"] for s in subs.values()} == {"EU:new"}
    worst = max(subs.values(), key=lambda s: (s["level"], s["value"]))
    assert entry["local_index"] == worst and entry["local_index"]["pollutant"] == "no2"
    expected = indices.sub_index("EU:new", "no2", 60.0, "ppb", 1)
    assert expected is not None and entry["local_index"]["category"] == expected[1]
    assert subs["pm25"]["category"] == "Fair"


def test_summary_overall_aqhi_from_its_formula() -> None:
    loc: dict[str, Any] = {"location_id": 88, "country": "CA"}
    no2 = run([20.0] * 3, sensor=881, parameter="no2", unit="ppb", **loc)
    o3 = run([0.030] * 3, sensor=882, parameter="o3", unit="ppm", **loc)
    pm = run([10.0] * 3, sensor=883, **loc)
    partial = summary_of(no2 + pm)
    assert partial["parameters"]["no2"]["local_index"]["index"] == "CA"
    assert partial["local_index"] is None  # the AQHI needs NO2, O3 and PM2.5
    entry = summary_of(no2 + pm + o3)
    # 20 ppb NO2, 30 ppb O3, 10 µg/m³ PM2.5 → 3.72 → 4, Moderate (docs/indices.md)
    assert (entry["local_index"]["value"], entry["local_index"]["category"]) == (4, "Moderate")
    aqhi = indices.aqhi(20.0, 30.0, 10.0)
    assert aqhi is not None and entry["local_index"]["value"] == aqhi[0]


def test_summary_without_a_local_index() -> None:
    entry = summary_of(run([55.0], country="JP"))
    assert entry["local_index"] is None and entry["parameters"]["pm25"]["local_index"] is None
    assert entry["aqi"] is not None
