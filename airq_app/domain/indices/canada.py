"""Canada's Air Quality Health Index (index id `CA`): a formula over three 3-hour means, not a breakpoint table.

`aqhi` applies Health Canada's formula and needs all three means; `term` and `sub_index` give one pollutant's share.
The formula, its units, rounding, categories and colours: docs/indices.md, "Canada's AQHI".
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

from airq_app.domain import units

AVERAGING_HOURS = 3.0
SCALE = 1000 / 10.4
COEFFICIENTS: dict[str, float] = {"no2": 0.000871, "o3": 0.000537, "pm25": 0.000487}
UNITS: dict[str, str] = {"no2": units.PPB, "o3": units.PPB, "pm25": units.UG_M3}
POLLUTANTS = ("no2", "o3", "pm25")

LOW, MODERATE, HIGH, VERY_HIGH = "Low", "Moderate", "High", "Very High"
# Colour of each value 1 … 10 and of 10+ (level 11).
COLORS = (
    "#02cbff",
    "#0099ca",
    "#01649b",
    "#fffe02",
    "#ffcb00",
    "#fe9933",
    "#fd6765",
    "#fc0100",
    "#cb0003",
    "#9a0000",
    "#650100",
)


def category(value: int) -> str:
    if value <= 3:
        return LOW
    if value <= 6:
        return MODERATE
    if value <= 10:
        return HIGH
    return VERY_HIGH


def level(value: int) -> int:
    """The step of the 11-colour scale: the value itself from 1 to 10, 11 above 10."""
    return min(max(value, 1), 11)


def color(value: int) -> str:
    return COLORS[level(value) - 1]


def is_three_hours(averaging_hours: object) -> bool:
    try:
        return float(averaging_hours) == AVERAGING_HOURS  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def to_aqhi_unit(pollutant: str, concentration: float | Decimal, unit: str) -> float | None:
    """The concentration in the formula's unit (ppb for gases, µg/m³ for PM2.5), or None."""
    if pollutant not in UNITS:
        return None
    value = units.to_decimal(concentration)
    if value is None or value < 0:
        return None
    converted = units.convert_gas(pollutant, value, unit, UNITS[pollutant])
    return None if converted is None else float(converted)


def term(pollutant: str, concentration: float) -> float:
    """One pollutant's part of the AQHI, unrounded (concentration in the formula's unit)."""
    return SCALE * (math.exp(COEFFICIENTS[pollutant] * concentration) - 1.0)


def round_aqhi(raw: float) -> int:
    """Nearest whole number, half up, and at least 1."""
    return max(1, int(Decimal(repr(raw)).quantize(Decimal(1), rounding=ROUND_HALF_UP)))


def aqhi(no2_ppb: float, o3_ppb: float, pm25_ugm3: float) -> tuple[int, str] | None:
    """(AQHI, category) from the three 3-hour means; None when one is missing, negative or not finite."""
    values = (no2_ppb, o3_ppb, pm25_ugm3)
    if any(v is None or not math.isfinite(v) or v < 0 for v in values):
        return None
    raw = sum(term(p, float(v)) for p, v in zip(POLLUTANTS, values, strict=True))
    value = round_aqhi(raw)
    return value, category(value)


def sub_index(
    pollutant: str, concentration: float | Decimal, unit: str, averaging_hours: float
) -> tuple[int, str] | None:
    """(value, category) of one pollutant's share of the AQHI; None unless a 3-hour mean of NO2, O3 or PM2.5."""
    if not is_three_hours(averaging_hours):
        return None
    c = to_aqhi_unit(pollutant, concentration, unit)
    if c is None:
        return None
    value = round_aqhi(term(pollutant, c))
    return value, category(value)
