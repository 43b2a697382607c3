from __future__ import annotations

import math

import pytest

from airq_app.domain.aqi import category_color, nowcast, us_aqi, who_exceeds

pytestmark = pytest.mark.unit

G, M, U1, U2, VU, H = (
    "Good",
    "Moderate",
    "Unhealthy for Sensitive Groups",
    "Unhealthy",
    "Very Unhealthy",
    "Hazardous",
)
UG = "µg/m³"

# May 2024 EPA breakpoints (EPA-454/B-24-002, Table 6), written out independently of airq_app.domain.aqi:
# (pollutant, averaging, unit, [(c_lo, c_hi, i_lo, i_hi, category), ...])
EPA_2024: list[tuple[str, str, str, list[tuple[float, float, int, int, str]]]] = [
    (
        "pm25",
        "24h",
        UG,
        [
            (0.0, 9.0, 0, 50, G),
            (9.1, 35.4, 51, 100, M),
            (35.5, 55.4, 101, 150, U1),
            (55.5, 125.4, 151, 200, U2),
            (125.5, 225.4, 201, 300, VU),
            (225.5, 325.4, 301, 500, H),
        ],
    ),
    (
        "pm10",
        "24h",
        UG,
        [
            (0, 54, 0, 50, G),
            (55, 154, 51, 100, M),
            (155, 254, 101, 150, U1),
            (255, 354, 151, 200, U2),
            (355, 424, 201, 300, VU),
            (425, 604, 301, 500, H),
        ],
    ),
    (
        "o3",
        "8h",
        "ppm",
        [
            (0.000, 0.054, 0, 50, G),
            (0.055, 0.070, 51, 100, M),
            (0.071, 0.085, 101, 150, U1),
            (0.086, 0.105, 151, 200, U2),
            (0.106, 0.200, 201, 300, VU),
        ],
    ),
    (
        "o3",
        "1h",
        "ppm",
        [
            (0.125, 0.164, 101, 150, U1),
            (0.165, 0.204, 151, 200, U2),
            (0.205, 0.404, 201, 300, VU),
            (0.405, 0.604, 301, 500, H),
        ],
    ),
    (
        "co",
        "8h",
        "ppm",
        [
            (0.0, 4.4, 0, 50, G),
            (4.5, 9.4, 51, 100, M),
            (9.5, 12.4, 101, 150, U1),
            (12.5, 15.4, 151, 200, U2),
            (15.5, 30.4, 201, 300, VU),
            (30.5, 50.4, 301, 500, H),
        ],
    ),
    (
        "so2",
        "1h",
        "ppb",
        [
            (0, 35, 0, 50, G),
            (36, 75, 51, 100, M),
            (76, 185, 101, 150, U1),
            (186, 304, 151, 200, U2),
        ],
    ),
    ("so2", "24h", "ppb", [(305, 604, 201, 300, VU), (605, 1004, 301, 500, H)]),
    (
        "no2",
        "1h",
        "ppb",
        [
            (0, 53, 0, 50, G),
            (54, 100, 51, 100, M),
            (101, 360, 101, 150, U1),
            (361, 649, 151, 200, U2),
            (650, 1249, 201, 300, VU),
            (1250, 2049, 301, 500, H),
        ],
    ),
]

EDGES = [
    pytest.param(p, avg, unit, c, i, cat, id=f"{p}-{avg}-{c}")
    for p, avg, unit, rows in EPA_2024
    for lo, hi, i_lo, i_hi, cat in rows
    for c, i in ((lo, i_lo), (hi, i_hi))
]


@pytest.mark.parametrize("pollutant,averaging,unit,conc,expected_aqi,expected_cat", EDGES)
def test_every_row_edge(pollutant: str, averaging: str, unit: str, conc: float, expected_aqi: int, expected_cat: str):
    assert us_aqi(pollutant, conc, unit, averaging) == (expected_aqi, expected_cat)


def test_contract_example():
    assert us_aqi("pm25", 35.4, "µg/m³", "24h") == (100, "Moderate")


def test_contracted_paths():
    from airq_app import aqi

    assert aqi.us_aqi("pm25", 35.4, "µg/m³", "24h") == (100, "Moderate")
    assert aqi.us_aqi is us_aqi and aqi.nowcast is nowcast


@pytest.mark.parametrize(
    "pollutant,conc,unit,averaging,expected",
    [
        # Interior values, by hand from I = (Ihi-Ilo)/(BPhi-BPlo)*(C-BPlo)+Ilo.
        ("pm25", 9.3, UG, "24h", (51, M)),  # 51.37
        ("pm25", 12.0, UG, "24h", (56, M)),  # 56.40
        ("pm25", 15, UG, "24h", (62, M)),  # 61.99
        ("pm25", 150.4, UG, "24h", (226, VU)),  # 225.68
        ("pm25", 235.4, UG, "24h", (321, H)),  # 320.72
        ("pm25", 275.4, UG, "24h", (400, H)),  # single 301-500 Hazardous row
        ("pm25", 300.0, UG, "24h", (449, H)),  # 449.42
        ("pm10", 100, UG, "24h", (73, M)),  # 51+49*45/99 = 73.27
        ("o3", 0.130, "ppm", "1h", (107, U1)),  # 101+49*5/39 = 107.28
        ("o3", 0.130, "ppm", "8h", (226, VU)),  # 201+99*24/94 = 226.28
        ("so2", 400, "ppb", "24h", (232, VU)),  # 201+99*95/299 = 232.45
        ("no2", 120, "ppb", "1h", (105, U1)),  # 101+49*19/259 = 104.59
    ],
)
def test_interior_values(pollutant: str, conc: float, unit: str, averaging: str, expected: tuple[int, str]):
    assert us_aqi(pollutant, conc, unit, averaging) == expected


@pytest.mark.parametrize(
    "pollutant,conc,unit,averaging,expected",
    [
        ("pm25", 9.04, UG, "24h", (50, G)),  # same as 9.0
        ("pm25", 9.05, UG, "24h", (50, G)),  # truncated, not rounded up to 9.1
        ("pm25", 9.09, UG, "24h", (50, G)),
        ("pm25", 35.49, UG, "24h", (100, M)),
        ("pm10", 54.9, UG, "24h", (50, G)),
        ("o3", 0.0549, "ppm", "8h", (50, G)),
        ("o3", 0.0709, "ppm", "8h", (100, M)),
        ("co", 4.49, "ppm", "8h", (50, G)),
        ("so2", 35.9, "ppb", "1h", (50, G)),
        ("no2", 53.99, "ppb", "1h", (50, G)),
        ("no2", 100.9, "ppb", "1h", (100, M)),
    ],
)
def test_truncation_before_lookup(pollutant: str, conc: float, unit: str, averaging: str, expected: tuple[int, str]):
    assert us_aqi(pollutant, conc, unit, averaging) == expected


@pytest.mark.parametrize(
    "pollutant,conc,unit,averaging,expected",
    [
        ("o3", 0.072, "ppm", "8h", (105, U1)),  # 104.5
        ("o3", 0.080, "ppm", "8h", (133, U1)),  # 132.5
        ("co", 1.1, "ppm", "8h", (13, G)),  # 12.5
        ("no2", 77, "ppb", "1h", (76, M)),  # 75.5
    ],
)
def test_ties_round_half_up(pollutant: str, conc: float, unit: str, averaging: str, expected: tuple[int, str]):
    assert us_aqi(pollutant, conc, unit, averaging) == expected


def test_ppm_to_ppb_lands_on_breakpoint():
    # 0.101 ppm NO2 = 101 ppb exactly: first USG value, not 100.99... → 100.
    assert us_aqi("no2", 0.101, "ppm", "1h") == (101, U1)
    assert us_aqi("so2", 0.036, "ppm", "1h") == (51, M)
    assert us_aqi("no2", 0.054, "ppm", "1h") == (51, M)
    # ppb → ppm for ozone: 71 ppb = 0.071 ppm.
    assert us_aqi("o3", 71, "ppb", "8h") == (101, U1)


def test_gas_in_mass_units():
    # 0.071 ppm O3 expressed in µg/m³ at 25 °C (×48/24.45): must not truncate to 0.070.
    assert us_aqi("o3", 71 * 48 / 24.45, "µg/m³", "8h") == (101, U1)
    # 98.2 µg/m³ O3 = 0.0500206 ppm → 0.050 → 50*0.050/0.054 = 46.3.
    assert us_aqi("o3", 98.2, "ug/m3", "8h") == (46, G)
    # 1146 µg/m³ CO = 1.00035 ppm → 1.0 → 11.36.
    assert us_aqi("co", 1146, "μg/m³", "8h") == (11, G)  # Greek mu spelling
    # 261.8 µg/m³ SO2 = 99.91 ppb → 99 → 101+49*23/109 = 111.3.
    assert us_aqi("so2", 261.8, "µg/m³", "1h") == (111, U1)
    # 190 µg/m³ NO2 = 100.97 ppb → 100 → 100.
    assert us_aqi("no2", 190, "µg/m³", "1h") == (100, M)


def test_unit_spellings_for_pm():
    assert us_aqi("pm25", 12.0, "ug/m3", "24h") == (56, M)
    assert us_aqi("pm25", 12.0, "μg/m³", "24h") == (56, M)
    assert us_aqi("pm25", 0.012, "mg/m³", "24h") == (56, M)


@pytest.mark.parametrize(
    "pollutant,conc,unit,averaging",
    [
        ("pm25", -0.1, UG, "24h"),
        ("no2", -1, "ppb", "1h"),
        ("pm25", float("nan"), UG, "24h"),
        ("pm25", float("inf"), UG, "24h"),
        ("o3", 0.124, "ppm", "1h"),  # below the 1-hour table
        ("o3", 0.201, "ppm", "8h"),  # 8-hour table stops at 0.200
        ("so2", 304, "ppb", "24h"),  # 24-hour SO2 rows start at 305
        ("pm25", 12.0, UG, "1h"),  # PM has only a 24-hour table
        ("pm10", 50, UG, "8h"),
        ("co", 1.0, "ppm", "1h"),
        ("no2", 50, "ppb", "8h"),
        ("o3", 0.05, "ppm", "24h"),
        ("pm25", 12.0, "ppm", "24h"),  # no mixing ratio for particles
        ("o3", 0.05, "furlongs", "8h"),
        ("nox", 10, "ppb", "1h"),
    ],
)
def test_none_cases(pollutant: str, conc: float, unit: str, averaging: str):
    assert us_aqi(pollutant, conc, unit, averaging) is None


def test_so2_one_hour_above_table_is_200():
    assert us_aqi("so2", 305, "ppb", "1h") == (200, U2)
    assert us_aqi("so2", 900, "ppb", "1h") == (200, U2)


def test_above_500_extrapolates_hazardous_slope():
    assert us_aqi("pm25", 325.9, UG, "24h") == (501, H)  # 301+199*100.4/99.9 = 501.0
    assert us_aqi("pm25", 375, UG, "24h") == (599, H)  # 598.8
    assert us_aqi("pm25", 1000, UG, "24h") == (1844, H)  # 1843.9
    assert us_aqi("no2", 2050, "ppb", "1h") == (500, H)  # 500.25


def test_category_colors():
    assert category_color("Good") == "#00E400"
    assert category_color("Moderate") == "#FFFF00"
    assert category_color("Unhealthy for Sensitive Groups") == "#FF7E00"
    assert category_color("Unhealthy") == "#FF0000"
    assert category_color("Very Unhealthy") == "#8F3F97"
    assert category_color("Hazardous") == "#7E0023"


# ---- NowCast ----


def test_nowcast_epa_worked_example():
    # EPA "Computing the NowCast": 50 80 75 90 82 53 64 74 21 10 16 13 (oldest first); w = 1-80/90 → 0.5; 17.4.
    assert nowcast([13, 16, 10, 21, 74, 64, 53, 82, 90, 75, 80, 50]) == 17.4


def test_nowcast_missing_hour_drops_out_of_both_sums():
    # c2 missing, w = max(10/40, 0.5) = 0.5: (40 + 20*0.25 + 10*0.125) / (1 + 0.25 + 0.125) = 46.25/1.375 = 33.63.
    # Keeping the missing hour's weight (0.5) in the denominator would give 24.6.
    assert nowcast([40, None, 20, 10]) == 33.6


def test_nowcast_weight_without_floor():
    # w = 16/20 = 0.8: (20 + 16*0.8 + 18*0.64) / (1 + 0.8 + 0.64) = 44.32/2.44 = 18.16.
    assert nowcast([20, 16, 18]) == 18.1


def test_nowcast_weight_floor():
    # cmin/cmax = 0.1 → w = 0.5: (100 + 10*0.5)/1.5 = 70.0 (unfloored it would be 91.8).
    assert nowcast([100, 10]) == 70.0


def test_nowcast_all_equal_is_mean():
    assert nowcast([12.3] * 12) == 12.3
    assert nowcast([8.0, None, 8.0, 8.0, None, 8.0]) == 8.0


@pytest.mark.parametrize(
    "hourly,expected",
    [
        ([None, None, 10, 10, 10], None),
        ([10, None, None, 10, 10], None),
        ([None, 10, None, 10], None),
        ([10], None),
        ([], None),
        ([None, 10, 10], 10.0),
        ([10, None, 10], 10.0),
        ([10, 12], 10.9),  # w = 10/12: (10 + 12*5/6)/(1 + 5/6) = 20/1.8333 = 10.909
    ],
)
def test_nowcast_two_of_three(hourly: list[float | None], expected: float | None):
    assert nowcast(hourly) == expected


def test_nowcast_truncation_per_pollutant():
    assert nowcast([55.9, 55.9], "pm10") == 55.0
    assert nowcast([55.99, 55.99], "pm25") == 55.9


def test_nowcast_zero_and_negative():
    assert nowcast([0, 0, 0]) == 0.0
    # Negative counts as 0: w = 0 → 0.5; (0 + 10*0.5)/1.5 = 3.33.
    assert nowcast([-5, 10]) == 3.3


def test_nowcast_nan_is_missing():
    assert nowcast([10, math.nan, math.nan]) is None


def test_nowcast_rejects_bad_input():
    with pytest.raises(ValueError):
        nowcast([1.0] * 13)
    with pytest.raises(ValueError):
        nowcast([1.0, 1.0], "o3")


def test_nowcast_feeds_aqi():
    nc = nowcast([20, 16, 18])
    assert nc == 18.1
    assert us_aqi("pm25", nc, UG, "24h") == (68, M)  # 51+49*9.0/26.3 = 67.77


# ---- WHO ----


def test_who_exceeds():
    assert who_exceeds("pm25", 15.1, "24h") is True
    assert who_exceeds("pm25", 15.0, "24h") is False
    assert who_exceeds("pm10", 46, "24h") is True
    # O3 8h guideline 100 µg/m³ = 0.0509 ppm at 25 °C.
    assert who_exceeds("o3", 0.051, "8h") is True
    assert who_exceeds("o3", 0.050, "8h") is False
    # CO 24h guideline 4 mg/m³ = 3.49 ppm.
    assert who_exceeds("co", 3.5, "24h") is True
    assert who_exceeds("co", 3.4, "24h") is False
    assert who_exceeds("so2", 1, "1h") is None
    assert who_exceeds("temperature", 30, "24h") is None
