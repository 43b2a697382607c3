"""National indices: the calculator against the shipped CSV rows (expected values derived here, independently of
airq_app.domain.indices, from the raw files), against worked examples published by each index's method, and the
country defaults, local/overall objects, AQHI and legends the stream and dashboard use."""

from __future__ import annotations

import configparser
import csv
import math
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from airq_app.domain import aqi as us
from airq_app.domain import indices
from airq_app.domain.indices import breakpoints

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "airq_app" / "domain" / "indices" / "tables"
POLLUTANTS = {"PM2.5": "pm25", "PM10": "pm10", "O3": "o3", "NO2": "no2", "SO2": "so2", "CO": "co"}
UG = "µg/m³"

# index id → (file, truncates instead of rounding, upper bounds exclusive)
ROW_CHECKED = {
    "IN": ("india.csv", False, False),
    "CN": ("china.csv", False, False),
    "GB": ("uk.csv", False, False),
    "EU:new": ("eu.csv", False, False),
    "IE": ("ireland.csv", False, False),
    "US": ("us.csv", True, False),
    "KR": ("south-korea.csv", False, False),
    "MY": ("malaysia.csv", False, False),
    "TH": ("thailand.csv", False, False),
    "MX:national": ("mexico.csv", False, False),
    "BR:São Paulo": ("brazil.csv", False, False),
    "UY:new": ("uruguay.csv", False, False),
    "AU:NSW": ("australia.csv", True, True),
    "LK": ("sri-lanka.csv", True, True),
}

# Rows a documented convention takes out of plain table lookup (docs/indices.md, "Conventions").
EXCLUDED = {
    ("CN", "so2", "1", "801"): "HJ 633: 1-hour SO2 above 800 is not indexed",
    ("CN", "o3", "8", "801"): "HJ 633: 8-hour O3 above 800 is not indexed",
    ("US", "o3", "8", "0.201"): "EPA: 8-hour O3 defines no AQI above 0.200 ppm",
    ("US", "so2", "1", "305"): "EPA: SO2 from 305 ppb is a 24-hour row",
    ("US", "so2", "1", "605"): "EPA: SO2 from 305 ppb is a 24-hour row",
}

# Corrections of the raw rows (docs/indices.md, "Quirks"): the UK's SO2 period is 15 minutes; Uruguay's CO is mg/m³.
PERIOD_FIX = {("GB", "so2", "15"): 0.25}
UNIT_FIX = {("UY:new", "co"): "mg/m³"}


def _rows(index: str) -> list[dict[str, str]]:
    file, _, _ = ROW_CHECKED[index]
    iso, _, variant = index.partition(":")
    with (TABLES / file).open(encoding="utf-8", newline="") as f:
        return [
            {k: (v or "").strip() for k, v in r.items()}
            for r in csv.DictReader(f)
            if r["ISO"] == iso and (r["variant"] or "").strip() == variant
        ]


def legend_of(index: str) -> list[dict[str, Any]]:
    """`indices.categories` of an index that has them."""
    legend = indices.categories(index)
    assert legend is not None, index
    return legend


def _places(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _row_cases() -> list[tuple[str, str, float, str, float, object, str]]:
    """(index, pollutant, concentration, unit, hours, expected value, expected category) from the raw rows."""
    cases = []
    for index, (_, truncates, exclusive) in ROW_CHECKED.items():
        rows = _rows(index)
        order: list[tuple[str, str]] = []
        for r in rows:
            if (r["category"], r["hex"]) not in order:
                order.append((r["category"], r["hex"]))
        for r in rows:
            pollutant = POLLUTANTS.get(r["pollutant"])
            lo, hi = r["concentration_lower"], r["concentration_upper"]
            if pollutant is None or not lo or (index, pollutant, r["averaging_period"], lo) in EXCLUDED:
                continue
            same = [
                s for s in rows if s["pollutant"] == r["pollutant"] and s["averaging_period"] == r["averaging_period"]
            ]
            if not hi and r is not max(same, key=lambda s: Decimal(s["concentration_lower"] or "-1")):
                continue  # an open row below the top defines nothing
            places = max(_places(s[c]) for s in same for c in ("concentration_lower", "concentration_upper"))
            step = Decimal(1).scaleb(-places)
            i_lo, i_hi = r["category_lower"], r["category_upper"]
            shared = any(s["concentration_upper"] and Decimal(s["concentration_upper"]) == Decimal(lo) for s in same)
            points = [] if shared and not exclusive else [Decimal(lo)]  # a shared edge is the lower band's
            if hi:
                mid = ((Decimal(lo) + Decimal(hi)) / 2).quantize(step, ROUND_DOWN if truncates else ROUND_HALF_UP)
                points.append(mid)
                if not exclusive:
                    points.append(Decimal(hi))
            for c in points:
                if i_lo and i_hi and hi:
                    raw = Decimal(i_lo) + (Decimal(i_hi) - Decimal(i_lo)) * (c - Decimal(lo)) / (
                        Decimal(hi) - Decimal(lo)
                    )
                    expected: object = int(raw.quantize(Decimal(1), ROUND_HALF_UP))
                elif i_lo:
                    expected = int(Decimal(i_lo))
                else:  # no index numbers at all (Australia): the band's place in the scale
                    expected = order.index((r["category"], r["hex"])) + 1
                hours = PERIOD_FIX.get((index, pollutant, r["averaging_period"]), float(r["averaging_period"]))
                unit = UNIT_FIX.get((index, pollutant), r["units"])
                cases.append((index, pollutant, float(c), unit, hours, expected, r["category"]))
    return cases


ROW_CASES = _row_cases()


def test_row_cases_cover_the_indices():
    assert {c[0] for c in ROW_CASES} == set(ROW_CHECKED)
    assert len(ROW_CASES) > 600


@pytest.mark.parametrize("index,pollutant,conc,unit,hours,expected,category", ROW_CASES)
def test_band_edges_and_midpoints(index, pollutant, conc, unit, hours, expected, category):
    assert indices.sub_index(index, pollutant, conc, unit, hours) == (expected, category)


def test_the_issue_fact_55_ugm3_pm25():
    """The issue's sentence, checked against the tables: EU:new has no 24-hour PM2.5 band (it is hourly)."""
    assert indices.sub_index("CN", "pm25", 55, UG, 24) == (75, "Good")
    assert indices.sub_index("IN", "pm25", 55, UG, 24) == (92, "Satisfactory")
    assert indices.sub_index("US", "pm25", 55, UG, 24) == (149, "Unhealthy for Sensitive Groups")
    assert indices.sub_index("EU:new", "pm25", 55, UG, 24) is None
    assert indices.sub_index("EU:new", "pm25", 55, UG, 1) == (4, "Poor")
    assert indices.sub_index("GB", "pm25", 55, UG, 24) == (7, "High")


def test_contracted_path():
    import airq_app.indices

    assert airq_app.indices.sub_index("IN", "pm25", 55, UG, 24) == (92, "Satisfactory")
    assert airq_app.indices.sub_index is indices.sub_index


# Published worked examples and published values, one or more per index, from each index's own method document.
WORKED = [
    # EPA TAD examples: 8-hour O3 0.078 ppm → 126, PM2.5 35.9 → 102, CO 8.4 ppm → 90.
    ("US", "o3", 0.078, "ppm", 8, (126, "Unhealthy for Sensitive Groups")),
    ("US", "pm25", 35.9, UG, 24, (102, "Unhealthy for Sensitive Groups")),
    ("US", "co", 8.4, "ppm", 8, (90, "Moderate")),
    # EPA TAD footnote: AQI 500 at 325.4 µg/m³ PM2.5 and 604 µg/m³ PM10, extrapolated above.
    ("US", "pm25", 325.4, UG, 24, (500, "Hazardous")),
    ("US", "pm10", 604, UG, 24, (500, "Hazardous")),
    # CPCB: "sub-index for PM2.5 will be 51 at 31 µg/m³, 100 at 60 µg/m³ and 75 at 45 µg/m³".
    ("IN", "pm25", 31, UG, 24, (51, "Satisfactory")),
    ("IN", "pm25", 60, UG, 24, (100, "Satisfactory")),
    ("IN", "pm25", 45, UG, 24, (75, "Satisfactory")),
    # HJ 633-2012 Table 1: PM2.5 24 h 75 µg/m³ is IAQI 100, 115 is 150; CO 1 h 10 mg/m³ is 100.
    ("CN", "pm25", 75, UG, 24, (100, "Good")),
    ("CN", "pm25", 115, UG, 24, (150, "Lightly polluted")),
    ("CN", "co", 10, "mg/m³", 1, (100, "Good")),
    # Defra DAQI bands: PM2.5 24 h 54–58 → 7, O3 8 h 100 → 3 and 101 → 4, NO2 1 h 601 → 10.
    ("GB", "pm25", 56, UG, 24, (7, "High")),
    ("GB", "o3", 100, UG, 8, (3, "Low")),
    ("GB", "o3", 101, UG, 8, (4, "Moderate")),
    ("GB", "no2", 601, UG, 1, (10, "Very high")),
    # EEA 2024 bands (hourly): PM2.5 50–90 Poor, O3 over 180 Extremely poor, NO2 10–25 Fair.
    ("EU:new", "pm25", 70, UG, 1, (4, "Poor")),
    ("EU:new", "o3", 200, UG, 1, (6, "Extremely Poor")),
    ("EU:new", "no2", 20, UG, 1, (2, "Fair")),
    # Sri Lanka method page: PM2.5 45 µg/m³ → 90, Moderate.
    ("LK", "pm25", 45, UG, 24, (90, "Moderate")),
    # Uruguay (2010 method): PM10 70 µg/m³ → 45, Buena.
    ("UY:new", "pm10", 70, UG, 24, (45, "Good")),
    # BelATMO: 8-hour O3 68 µg/m³ falls in 61–80 → index 4, Fairly Good.
    ("BE:BelAtmo", "o3", 68, UG, 8, (4, "Fairly Good")),
    # IQCA formulas: PM2.5 IQCA = 2 C up to 50; C + 50 above 250; NO2 IQCA = 0.5 C up to 200.
    ("EC:Quito", "pm25", 45, UG, 24, (90, "Acceptable")),
    ("EC:Quito", "pm25", 400, UG, 24, (450, "Emergency Level")),
    ("EC:Quito", "no2", 150, UG, 1, (75, "Acceptable")),
    # INCA = C × 100 / standard (PM2.5 25, PM10 150): 20 → 80, 200 → 800, PM10 100 → 67.
    ("PE", "pm25", 20, UG, 24, (80, "Moderate")),
    ("PE", "pm25", 200, UG, 24, (800, "Threshold of Concern")),
    ("PE", "pm10", 100, UG, 24, (67, "Moderate")),
    # Thailand: any concentration in the top range gets AQI 201.
    ("TH", "pm25", 120, UG, 24, (201, "Impact on health")),
    # NSW categories, upper limits not inclusive: PM2.5 1 h 0–25 Good, 25–50 Fair.
    ("AU:NSW", "pm25", 24.9, UG, 1, (1, "Good")),
    ("AU:NSW", "pm25", 25, UG, 1, (2, "Fair")),
    ("AU:NSW", "co", 13.5, "ppm", 8, (4, "Very poor")),
    # CETESB: PM10 24 h 0–50 Boa (IQA 0–40), >50–100 Moderada (41–80).
    ("BR:São Paulo", "pm10", 50, UG, 24, (40, "Good")),
    ("BR:São Paulo", "pm10", 100, UG, 24, (80, "Moderate")),
    # Índice AIRE Y SALUD table: PM2.5 24 h 26–45 Acceptable.
    ("MX:national", "pm25", 45, UG, 24, (100, "Acceptable")),
]


@pytest.mark.parametrize("index,pollutant,conc,unit,hours,expected", WORKED)
def test_published_examples(index, pollutant, conc, unit, hours, expected):
    assert indices.sub_index(index, pollutant, conc, unit, hours) == expected


@pytest.mark.parametrize(
    "pollutant,averaging,hours,unit,values",
    [
        ("pm25", "24h", 24, UG, [x / 10 for x in range(0, 6000, 7)]),
        ("pm10", "24h", 24, UG, range(0, 800, 3)),
        ("o3", "8h", 8, "ppm", [x / 1000 for x in range(0, 260)]),
        ("o3", "1h", 1, "ppm", [x / 1000 for x in range(0, 700, 3)]),
        ("co", "8h", 8, "ppm", [x / 10 for x in range(0, 600, 3)]),
        ("so2", "1h", 1, "ppb", range(0, 1200, 3)),
        ("so2", "24h", 24, "ppb", range(0, 1200, 3)),
        ("no2", "1h", 1, "ppb", range(0, 2400, 3)),
        ("no2", "1h", 1, UG, range(0, 3000, 7)),
        ("o3", "8h", 8, UG, range(0, 500, 3)),
    ],
)
def test_us_table_agrees_with_the_epa_implementation(pollutant, averaging, hours, unit, values):
    for v in values:
        assert indices.sub_index("US", pollutant, v, unit, hours) == us.us_aqi(pollutant, v, unit, averaging), v


def test_conventions_at_the_edges():
    assert indices.sub_index("US", "o3", 0.21, "ppm", 8) is None  # no 8-hour O3 AQI above 0.200 ppm
    assert indices.sub_index("US", "so2", 400, "ppb", 1) == (200, "Unhealthy")
    assert indices.sub_index("US", "so2", 400, "ppb", 24) == (232, "Very Unhealthy")
    assert indices.sub_index("CN", "so2", 900, UG, 1) is None
    assert indices.sub_index("CN", "pm25", 300, UG, 24) == (300, "Severely polluted")
    assert indices.sub_index("KR", "pm25", 600, UG, 24) == (500, "Very unhealthy")  # capped
    assert indices.sub_index("EU:old", "pm25", 900, UG, 24) is None  # above Extremely poor: erroneous
    assert indices.sub_index("EU:old", "no2", 500, UG, 1) == (6, "Extremely poor")  # 340.1, not 800.1
    assert indices.sub_index("IN", "pm25", 250, UG, 24) == (400, "Very Poor")  # shared edge: lower band
    assert indices.sub_index("IN", "pm25", 250.5, UG, 24) == (401, "Severe")  # open top: its lower index
    assert indices.sub_index("IL", "pm25", 37.2, UG, 24) == (101, "Low")  # a gap belongs to the next band
    assert indices.sub_index("US", "pm25", -1, UG, 24) is None
    assert indices.sub_index("US", "pm25", 10, "ppm", 24) is None  # a mixing ratio for a particle
    assert indices.sub_index("US", "pm25", 10, UG, 8) is None  # no 8-hour PM2.5 row
    assert indices.sub_index("XX", "pm25", 10, UG, 24) is None
    assert indices.sub_index("US", "pm25", float("nan"), UG, 24) is None
    assert indices.sub_index("US", "pm25", 10, UG, "24h") is None  # type: ignore[arg-type]
    assert indices.sub_index("CA", "pm25", 10, UG, "3h") is None  # type: ignore[arg-type]


def test_corrected_quirks():
    assert indices.sub_index("KW", "no2", 0.2, "ppm", 1) == (120, "Moderate")  # Moderate from 0.101, not 0
    assert indices.sub_index("ID", "no2", 150, UG, 24) == (79, "Moderate")  # 81–200 → 51–100, not 81–2000
    assert indices.sub_index("SG", "pm10", 250, UG, 24) == (150, "Unhealthy")  # 151–350, not 351–420
    assert indices.sub_index("VN", "co", 100000, UG, 1) == (234, "Very Unhealthy")  # 90000–120000, not 12000
    assert indices.sub_index("VN", "no2", 0.05, "ppm", 1) == (47, "Good")  # the bounds are µg/m³: 94 µg/m³
    assert indices.sub_index("IL", "co", 30, "ppm", 1) == (56, "Medium")  # ppm; 30-minute row from the hour
    assert indices.sub_index("MO", "co", 4, "mg/m³", 8) == (40, "Good")
    assert indices.sub_index("PH", "pm25", 30, UG, 24) == (30.0, "Fair")  # µg/Nm³ read as µg/m³; tenths


def test_sub_hour_periods_are_served_from_the_hour():
    assert indices.table_period("GB", "so2", 1) == 0.25
    assert indices.table_period("IL", "co", 1) == 0.5
    assert indices.table_period("IL", "nox", 1) == 0.5
    assert indices.table_period("GB", "no2", 1) == 1.0
    assert indices.table_period("GB", "so2", 24) is None
    assert indices.periods("US", "o3") == (1.0, 8.0)
    assert indices.sub_index("GB", "so2", 300, UG, 1) == (4, "Moderate")  # 267–354 µg/m³ (15 min)


def _aqhi_expected(no2: float, o3: float, pm25: float) -> int:
    raw = (
        1000 / 10.4 * ((math.exp(0.000871 * no2) - 1) + (math.exp(0.000537 * o3) - 1) + (math.exp(0.000487 * pm25) - 1))
    )
    return max(1, int(Decimal(repr(raw)).quantize(Decimal(1), ROUND_HALF_UP)))


@pytest.mark.parametrize(
    "no2,o3,pm25,category",
    [(0, 0, 0, "Low"), (10, 25, 5, "Low"), (20, 30, 10, "Moderate"), (40, 60, 35, "High"), (60, 80, 150, "Very High")],
)
def test_aqhi(no2, o3, pm25, category):
    value = _aqhi_expected(no2, o3, pm25)
    assert indices.aqhi(no2, o3, pm25) == (value, category)
    objs = [
        indices.local_index("CA", "no2", {3: no2}, "ppb"),
        indices.local_index("CA", "o3", {1: 999, 3: o3}, "ppb"),
        indices.local_index("CA", "pm25", {3: pm25}, UG),
    ]
    overall = indices.overall_index(objs)
    assert overall is not None and (overall["value"], overall["category"]) == (value, category)
    assert overall["color"] == legend_of("CA")[min(value, 11) - 1]["color"]


def test_aqhi_known_values():
    # AQHI 4 (Moderate) at 20 ppb NO2, 30 ppb O3, 10 µg/m³ PM2.5: 96.15 × (0.01757 + 0.01624 + 0.00488) = 3.72.
    assert indices.aqhi(20, 30, 10) == (4, "Moderate")
    assert indices.aqhi(0, 0, 0) == (1, "Low")  # the scale starts at 1
    assert indices.aqhi(None, 30, 10) is None  # type: ignore[arg-type]
    assert indices.sub_index("CA", "no2", 40, "ppb", 3) == (3, "Low")  # 96.15 × (e^0.03484 − 1) = 3.41
    assert indices.sub_index("CA", "no2", 40, "ppb", 1) is None
    assert indices.local_index("CA", "o3", {1: 40}, "ppb") is None  # needs the 3-hour mean
    assert indices.overall_index([indices.local_index("CA", "o3", {3: 40}, "ppb")]) is None  # needs all three


def test_local_index_object():
    obj = indices.local_index("US", "o3", {1: 0.13, 3: 0.1, 8: 0.06, 24: None}, "ppm")
    assert obj == {
        "index": "US",
        "name": "Air Quality Index (US EPA)",
        "value": 107,
        "category": "Unhealthy for Sensitive Groups",
        "level": 3,
        "color": "#ff7e00",
        "averaging_hours": 1,
        "pollutant": "o3",
    }
    low = indices.local_index("US", "o3", {1: 0.10, 8: 0.06}, "ppm")  # 1-hour below 0.125: the 8-hour value
    assert low is not None and (low["value"], low["averaging_hours"]) == (67, 8)
    assert indices.local_index("IN", "pm25", {1: 80, 8: 70}, UG) is None  # no 24-hour mean yet
    gb = indices.local_index("GB", "so2", {1: 300}, UG)
    assert gb is not None and (gb["value"], gb["level"], gb["color"], gb["averaging_hours"]) == (4, 4, "#ffff00", 1)
    ca = indices.local_index("CA", "no2", {3: 18}, "ppb")
    assert ca is not None and ca["index"] == "CA" and ca["averaging_hours"] == 3
    assert indices.local_index("MC", "no2", {1: 100}, UG)["index"] == "MC:Monaco"  # type: ignore[index]
    assert indices.local_index("XX", "pm25", {24: 10}, UG) is None


def test_overall_index_is_the_worst():
    subs = [
        indices.local_index("IN", "pm25", {24: 55}, UG),
        indices.local_index("IN", "pm10", {24: 300}, UG),
        indices.local_index("IN", "no2", {24: 20}, UG),
        None,
    ]
    overall = indices.overall_index(subs)
    assert overall is not None and (overall["pollutant"], overall["category"], overall["level"]) == ("pm10", "Poor", 4)
    assert indices.overall_index([]) is None
    with pytest.raises(ValueError):
        indices.overall_index([subs[0], indices.local_index("US", "pm25", {24: 55}, UG)])


@pytest.mark.parametrize(
    "country,expected",
    [
        ("IN", "IN"),
        ("cn", "CN"),
        ("GB", "GB"),
        ("US", "US"),
        ("DE", "EU:new"),
        ("FR", "EU:new"),
        ("BE", "BE:newBelAQIHour"),
        ("IE", "IE"),
        ("FI", "FI"),
        ("BR", "BR:Espírito Santo"),
        ("AU", "AU:NSW"),
        ("MX", "MX:national"),
        ("CO", "CO:Colombia"),
        ("UY", "UY:new"),
        ("MC", "MC:Monaco"),
        ("EC", "EC:Quito"),
        ("CA", "CA"),
        ("NO", None),
        ("JP", None),
        ("", None),
        (None, None),
    ],
)
def test_index_for_country(country, expected):
    assert indices.index_for_country(country) == expected


def test_country_overrides():
    assert indices.index_for_country("IN", {"in": "US"}) == "US"
    assert indices.index_for_country("DE", {"DE": None}) is None
    assert indices.index_for_country("JP", {"JP": "EU:new"}) == "EU:new"
    assert indices.index_for_country("MC", {"MC": "MC"}) == "MC:Monaco"
    with pytest.raises(ValueError):
        indices.index_for_country("IN", {"IN": "EU"})
    assert indices.validate_overrides({"IN": "US", "DE": None}) == []
    assert len(indices.validate_overrides({"IND": "US", "DE": "nope"})) == 2


def test_supported_indices_and_legends():
    listed = {d["index"]: d for d in indices.supported_indices()}
    assert len(listed) == 45  # 44 table variants and the AQHI
    for ident in ("IN", "CN", "GB", "US", "EU:new", "EU:old", "BR:São Paulo", "AU:NSW", "CA", "MC:Monaco"):
        assert listed[ident]["name"]
    assert listed["GB"]["scale"] == "bands" and listed["IN"]["scale"] == "numeric"
    assert "pm25" in listed["EU:new"]["pollutants"]
    for ident in listed:
        legend = indices.categories(ident)
        assert legend and [c["level"] for c in legend] == list(range(1, len(legend) + 1))
        assert all(c["color"].startswith("#") and len(c["color"]) == 7 for c in legend), ident
    gb = legend_of("GB")
    assert [c["category"] for c in gb] == ["Low"] * 3 + ["Moderate"] * 3 + ["High"] * 3 + ["Very high"]
    assert gb[6]["color"] == "#ff9292"
    assert legend_of("IN")[5] == {
        "level": 6,
        "category": "Severe",
        "color": "#c00000",
        "lower": 401,
        "upper": 500,
    }
    assert len(legend_of("CA")) == 11
    assert indices.categories("XX") is None


def test_category_names_are_trimmed():
    assert indices.sub_index("BR:São Paulo", "pm10", 75, UG, 24) == (61, "Moderate")  # "Moderate " in the file
    assert legend_of("BE:BelAtmo")[1]["color"] == "#007EFD"  # " #007EFD" in the file


def test_tables_are_data_and_report_what_they_fixed():
    loaded = breakpoints.load()
    assert len(loaded) == 44 and len(list(TABLES.glob("*.csv"))) == 33
    assert any("800.1 → 340.1" in note for note in loaded["EU:old"].anomalies)
    assert any("unit 'bsp'" in note for note in loaded["AU:NSW"].anomalies)
    header = "ISO,variant,category,hex,category_lower,category_upper,pollutant,units,averaging_period"
    extra = header + ",concentration_lower,concentration_upper\n"
    extra += "ZZ,,Fine,#00ff00,0,50,PM2.5,ug/m3,24,0,20\nZZ,,Bad ,#ff0000,51,100,PM2.5,ug/m3,24,20.1,40\n"
    (built,) = breakpoints.build("zz.csv", extra)
    assert built.id == "ZZ" and built.numeric and built.scales[("pm25", 24.0)].decimals == 1
    assert [c.name for c in built.categories] == ["Fine", "Bad"]
    assert (TABLES / "NOTICE.md").read_text(encoding="utf-8").count("CC BY-SA 4.0") >= 1


def test_tables_ship_as_package_data():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    assert cfg["options.package_data"]["airq_app.domain.indices"].strip() == "tables/*"
