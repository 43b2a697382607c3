"""US EPA Air Quality Index (May 2024 table) and the PM NowCast; pure functions, no I/O.

`us_aqi` is None for a (pollutant, averaging) without a table: an hourly PM index is the NowCast, or the hourly value
with `24h` (`scoring.score`). The breakpoints are `TABLES` (EPA-454/B-24-002, Table 6); the sources, SO2 above
304 ppb, truncation, exact decimals and the extrapolation above the top: docs/indices.md, "The US EPA AQI".
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, Decimal, localcontext
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from airq_app.domain import units

GOOD = "Good"
MODERATE = "Moderate"
USG = "Unhealthy for Sensitive Groups"
UNHEALTHY = "Unhealthy"
VERY_UNHEALTHY = "Very Unhealthy"
HAZARDOUS = "Hazardous"

CATEGORIES: tuple[tuple[int, str], ...] = (
    (50, GOOD),
    (100, MODERATE),
    (150, USG),
    (200, UNHEALTHY),
    (300, VERY_UNHEALTHY),
)

CATEGORY_COLORS: dict[str, str] = {
    GOOD: "#00E400",
    MODERATE: "#FFFF00",
    USG: "#FF7E00",
    UNHEALTHY: "#FF0000",
    VERY_UNHEALTHY: "#8F3F97",
    HAZARDOUS: "#7E0023",
}

AQI_TABLE_VERSION = "EPA-2024-05"


class Row(NamedTuple):
    c_lo: Decimal
    c_hi: Decimal
    i_lo: int
    i_hi: int


def _rows(*rows: tuple[str, str, int, int]) -> tuple[Row, ...]:
    return tuple(Row(Decimal(a), Decimal(b), i, j) for a, b, i, j in rows)


# (pollutant, averaging) → (table unit, truncation step, rows). Values: EPA-454/B-24-002, Table 6.
TABLES: dict[tuple[str, str], tuple[str, Decimal, tuple[Row, ...]]] = {
    ("pm25", "24h"): (
        units.UG_M3,
        Decimal("0.1"),
        _rows(
            ("0.0", "9.0", 0, 50),
            ("9.1", "35.4", 51, 100),
            ("35.5", "55.4", 101, 150),
            ("55.5", "125.4", 151, 200),
            ("125.5", "225.4", 201, 300),
            ("225.5", "325.4", 301, 500),
        ),
    ),
    ("pm10", "24h"): (
        units.UG_M3,
        Decimal("1"),
        _rows(
            ("0", "54", 0, 50),
            ("55", "154", 51, 100),
            ("155", "254", 101, 150),
            ("255", "354", 151, 200),
            ("355", "424", 201, 300),
            ("425", "604", 301, 500),
        ),
    ),
    ("o3", "8h"): (
        units.PPM,
        Decimal("0.001"),
        _rows(
            ("0.000", "0.054", 0, 50),
            ("0.055", "0.070", 51, 100),
            ("0.071", "0.085", 101, 150),
            ("0.086", "0.105", 151, 200),
            ("0.106", "0.200", 201, 300),
        ),
    ),
    ("o3", "1h"): (
        units.PPM,
        Decimal("0.001"),
        _rows(
            ("0.125", "0.164", 101, 150),
            ("0.165", "0.204", 151, 200),
            ("0.205", "0.404", 201, 300),
            ("0.405", "0.604", 301, 500),
        ),
    ),
    ("co", "8h"): (
        units.PPM,
        Decimal("0.1"),
        _rows(
            ("0.0", "4.4", 0, 50),
            ("4.5", "9.4", 51, 100),
            ("9.5", "12.4", 101, 150),
            ("12.5", "15.4", 151, 200),
            ("15.5", "30.4", 201, 300),
            ("30.5", "50.4", 301, 500),
        ),
    ),
    ("so2", "1h"): (
        units.PPB,
        Decimal("1"),
        _rows(
            ("0", "35", 0, 50),
            ("36", "75", 51, 100),
            ("76", "185", 101, 150),
            ("186", "304", 151, 200),
        ),
    ),
    ("so2", "24h"): (
        units.PPB,
        Decimal("1"),
        _rows(
            ("305", "604", 201, 300),
            ("605", "1004", 301, 500),
        ),
    ),
    ("no2", "1h"): (
        units.PPB,
        Decimal("1"),
        _rows(
            ("0", "53", 0, 50),
            ("54", "100", 51, 100),
            ("101", "360", 101, 150),
            ("361", "649", 151, 200),
            ("650", "1249", 201, 300),
            ("1250", "2049", 301, 500),
        ),
    ),
}

# Tables whose top row may be extrapolated beyond AQI 500 (the ones that reach Hazardous).
_EXTRAPOLATE = {("pm25", "24h"), ("pm10", "24h"), ("o3", "1h"), ("co", "8h"), ("so2", "24h"), ("no2", "1h")}

# NowCast truncation step per pollutant (µg/m³).
NOWCAST_STEP: dict[str, Decimal] = {"pm25": Decimal("0.1"), "pm10": Decimal("1")}
NOWCAST_HOURS = 12
NOWCAST_MIN_WEIGHT = Decimal("0.5")


def category(aqi: int) -> str:
    """Category name of an AQI value (anything above 300, including beyond 500, is Hazardous)."""
    for top, name in CATEGORIES:
        if aqi <= top:
            return name
    return HAZARDOUS


def category_color(category_name: str) -> str:
    """EPA hex colour of a category, e.g. `#00E400` for Good; KeyError for an unknown name."""
    return CATEGORY_COLORS[category_name]


def truncate(value: Decimal, step: Decimal) -> Decimal:
    """Truncate toward zero to a multiple of `step` (a power of ten): 9.09 → 9.0 at step 0.1."""
    return value.quantize(step, rounding=ROUND_DOWN)


def round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _to_table_unit(pollutant: str, value: Decimal, unit: str, table_unit: str) -> Decimal | None:
    token = units.unit_token(unit)
    if token is None:
        return None
    if pollutant in ("pm25", "pm10"):
        # Particles have no mixing ratio; only mass units make sense.
        if token not in ("ug/m3", "mg/m3", "ng/m3"):
            return None
        scale = {"ug/m3": Decimal(1), "mg/m3": Decimal(1000), "ng/m3": Decimal("0.001")}[token]
        return value * scale
    return units.convert_gas(pollutant, value, unit, table_unit)


def _interpolate(c: Decimal, row: Row) -> int:
    # Multiply before dividing, all in Fraction: exact .5 ties stay exact.
    c_f, lo, hi = Fraction(c), Fraction(row.c_lo), Fraction(row.c_hi)
    return round_half_up(Fraction(row.i_hi - row.i_lo) * (c_f - lo) / (hi - lo) + row.i_lo)


@lru_cache(maxsize=65536)  # exact arithmetic is slow and readings repeat (one decimal): a pure function, cached
def us_aqi(pollutant: str, concentration: float, unit: str, averaging: str) -> tuple[int, str] | None:
    """US EPA AQI (May 2024) and category for one concentration, or None where the table has no value.

    `unit`: `µg/m³` (also `ug/m3`, Greek-mu `μg/m³`, `mg/m³`), `ppm` or `ppb`; gases in mass units are converted
    at 25 °C. `averaging`: `1h`, `8h` or `24h`; the pairs that have a table are the keys of `TABLES`.
    """
    spec = TABLES.get((pollutant, averaging))
    if spec is None:
        return None
    table_unit, step, rows = spec
    raw = units.to_decimal(concentration)
    if raw is None or raw < 0:
        return None
    value = _to_table_unit(pollutant, raw, unit, table_unit)
    if value is None:
        return None
    c = truncate(value, step)
    if pollutant == "so2" and averaging == "1h" and c > rows[-1].c_hi:
        # TAD: the 1-hour SO2 index stops at 200; higher needs the 24-hour mean (use averaging '24h').
        return 200, category(200)
    if c < rows[0].c_lo:
        return None  # O3 1h below 0.125 ppm, SO2 24h below 305 ppb
    for row in rows:
        if row.c_lo <= c <= row.c_hi:
            aqi = _interpolate(c, row)
            return aqi, category(aqi)
    if c > rows[-1].c_hi and (pollutant, averaging) in _EXTRAPOLATE:
        aqi = _interpolate(c, rows[-1])
        return aqi, category(aqi)
    return None  # O3 8h above 0.200 ppm


def nowcast(hourly: list[float | None], pollutant: str = "pm25") -> float | None:
    """EPA/AirNow NowCast (2013 "Reff" method) for `pm25` or `pm10`, in µg/m³, truncated to 0.1 / 1.

    `hourly`: hourly means, newest first (index 0 is the current hour), at most 12; None (or NaN) marks a missing
    hour. Weighting: w = max(cmin / cmax, 0.5) over the valid hours; NowCast = Σ wⁱ·cᵢ / Σ wⁱ with i the hours
    ago, both sums over valid hours only (a missing hour leaves numerator and denominator). Negative hourly
    values count as 0, as AirNow/AirMonitor do before the NowCast. cmax = 0 gives 0.0.

    None when fewer than 2 of the 3 newest hours are valid (fewer than 3 entries count the absent ones as
    missing). ValueError for more than 12 values or a pollutant other than pm25/pm10.
    """
    step = NOWCAST_STEP.get(pollutant)
    if step is None:
        raise ValueError(f"nowcast: unsupported pollutant {pollutant!r} (pm25 or pm10)")
    if len(hourly) > NOWCAST_HOURS:
        raise ValueError(f"nowcast: at most {NOWCAST_HOURS} hourly values, got {len(hourly)}")
    values: list[tuple[int, Decimal]] = []
    for i, v in enumerate(hourly):
        d = units.to_decimal(v) if v is not None else None
        if d is not None:
            values.append((i, max(d, Decimal(0))))
    if sum(1 for i, _ in values if i < 3) < 2:
        return None
    cmax = max(d for _, d in values)
    if cmax == 0:
        return 0.0
    cmin = min(d for _, d in values)
    with localcontext() as ctx:
        ctx.prec = 40
        w = max(cmin / cmax, NOWCAST_MIN_WEIGHT)
        num = sum((d * w**i for i, d in values), Decimal(0))
        den = sum((w**i for i, _ in values), Decimal(0))
        result = num / den
    # Rounding to 12 significant digits first keeps an exact mean (e.g. 12.3) from truncating to 12.2.
    return float(truncate(units.round_significant(result, 12), step))


# WHO Global Air Quality Guidelines 2021 (https://apps.who.int/iris/handle/10665/345329), Table 0.1: AQG levels
# in µg/m³ (CO in mg/m³).
WHO_AQG_2021: dict[tuple[str, str], float] = {
    ("pm25", "annual"): 5,
    ("pm25", "24h"): 15,
    ("pm10", "annual"): 15,
    ("pm10", "24h"): 45,
    ("o3", "peak_season"): 60,
    ("o3", "8h"): 100,
    ("no2", "annual"): 10,
    ("no2", "24h"): 25,
    ("so2", "24h"): 40,
    ("co", "24h"): 4,
}


def who_exceeds(parameter: str, value: float, averaging: str) -> bool | None:
    """True when `value` (in the output unit of `parameter`, `units.canonical_unit`) is above the WHO 2021 level.

    Gases are converted to µg/m³ (CO to mg/m³) at 25 °C first. `averaging`: `24h`, `8h`, `annual` or
    `peak_season`, as the guideline defines them. None when WHO gives no guideline for the pair or the value is
    unusable.
    """
    level = WHO_AQG_2021.get((parameter, averaging))
    canonical = units.canonical_unit(parameter)
    d = units.to_decimal(value)
    if level is None or canonical is None or d is None:
        return None
    if parameter in units.GAS_UNIT:
        target = "mg/m3" if parameter == "co" else "ug/m3"
        converted = units.convert_gas(parameter, d, canonical, target)
        if converted is None:
            return None
        d = converted
    return d > Decimal(str(level))
