"""One generic sub-index calculator over the breakpoint tables (pure; the tables are read once).

`evaluate` picks the table's (pollutant, period) (`table_period`), converts to its unit in exact decimals, rounds or
truncates to its precision, applies the index's ceiling (`conventions.Convention.ceilings`), finds the band and
interpolates; `conventions.Convention.above_top` decides above the top. Each step: docs/indices.md, "The calculation".
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from airq_app.domain import units
from airq_app.domain.indices import breakpoints, conventions
from airq_app.domain.indices.breakpoints import Band, IndexTable, Scale

Number = int | float


class Result(NamedTuple):
    """A sub-index: its value, the band's name, level (1 = best) and colour, and the table period used."""

    value: Number
    category: str
    level: int
    color: str
    table_hours: float


def resolve(index: str) -> IndexTable | None:
    """The table of an index id; a table with a single variant also answers to its bare ISO code (`MC`, `EC`)."""
    all_tables = breakpoints.load()
    found = all_tables.get(index)
    if found is not None:
        return found
    same_iso = [t for t in all_tables.values() if t.iso == index]
    return same_iso[0] if len(same_iso) == 1 else None


def table_period(index: str, pollutant: str, averaging_hours: float) -> float | None:
    """The table period a mean over `averaging_hours` is used for: the same period, or for a 1-hour mean a period
    under an hour when the table has no 1-hour row for that pollutant (GB SO2 15 min → 0.25, IL CO 30 min → 0.5).
    None when the index has no row for that pollutant and period."""
    try:
        hours = float(averaging_hours)
    except (TypeError, ValueError):
        return None
    if not isinstance(index, str) or not isinstance(pollutant, str):
        return None
    return _table_period(index, pollutant, hours)


@lru_cache(maxsize=4096)
def _table_period(index: str, pollutant: str, hours: float) -> float | None:
    """`table_period` once per (index, pollutant, period): the stream asks it for every mean of every record."""
    table = resolve(index)
    if table is None:
        return None
    periods = table.periods(pollutant)
    if hours in periods:
        return hours
    if hours == 1.0:
        sub_hour = [p for p in periods if p < 1.0]
        if sub_hour:
            return max(sub_hour)
    return None


def _to_table_unit(pollutant: str, concentration: float | Decimal, unit: str, scale: Scale) -> Decimal | None:
    value = units.to_decimal(concentration)
    if value is None or value < 0:
        return None
    return units.convert_gas(pollutant, value, unit, scale.unit)


def _prepare(value: Decimal, scale: Scale, rule: conventions.Convention) -> Decimal:
    step = Decimal(1).scaleb(-scale.decimals)
    return value.quantize(step, rounding=ROUND_DOWN if rule.rounding == "truncate" else ROUND_HALF_UP)


def _round_value(value: Fraction | Decimal, places: int) -> Number:
    d = value if isinstance(value, Decimal) else Decimal(value.numerator) / Decimal(value.denominator)
    rounded = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return int(rounded) if places == 0 else float(rounded)


def _line(c: Decimal, c_lo: Decimal, c_hi: Decimal, i_lo: Decimal, i_hi: Decimal) -> Fraction:
    if c_hi == c_lo:
        return Fraction(i_lo)
    return Fraction(i_hi - i_lo) / Fraction(c_hi - c_lo) * Fraction(c - c_lo) + Fraction(i_lo)


def _closed(band: Band, anchor: tuple[str, int] | None) -> tuple[Decimal | None, Decimal | None]:
    """The band's upper concentration and index, closed by the index's anchor where the table leaves them open."""
    if anchor is not None and (band.conc_hi is None or band.index_hi is None):
        return Decimal(anchor[0]), Decimal(anchor[1])
    return band.conc_hi, band.index_hi


def _find(c: Decimal, bands: tuple[Band, ...], edge: conventions.Edge) -> tuple[Band, bool] | None:
    """(band, in_gap) for `c`, or None below the first band; the top band when `c` is above every band."""
    hits = [b for b in bands if b.conc_lo <= c and (b.conc_hi is None or c <= b.conc_hi)]
    if hits:
        return (hits[0] if edge == "lower" else hits[-1]), False
    if c < bands[0].conc_lo:
        return None
    above = [b for b in bands if b.conc_lo > c]
    if above:
        return min(above, key=lambda b: b.conc_lo), True
    return bands[-1], False


def _band_result(table: IndexTable, band: Band, value: Number, hours: float) -> Result:
    return Result(value, band.category, band.level, band.color, hours)


def _band_only_value(band: Band) -> Number:
    if band.index_lo is None:
        return band.level
    return _round_value(band.index_lo, 0)


def _numeric(
    table: IndexTable, scale: Scale, band: Band, c: Decimal, in_gap: bool, rule: conventions.Convention
) -> Result | None:
    places = table.value_decimals
    anchor = rule.anchors.get((scale.pollutant, scale.hours))
    c_hi, i_hi = _closed(band, anchor)
    i_lo = band.index_lo if band.index_lo is not None else Decimal(band.level)
    is_top = band is scale.bands[-1]
    if in_gap:
        return _band_result(table, band, _round_value(i_lo, places), scale.hours)
    if c_hi is None:  # open top band (no upper concentration)
        below = scale.bands[-2] if len(scale.bands) > 1 else None
        if rule.above_top == "extrapolate" and below is not None and below.conc_hi is not None:
            b_lo = below.index_lo if below.index_lo is not None else Decimal(below.level)
            b_hi = below.index_hi if below.index_hi is not None else b_lo
            slope = Fraction(b_hi - b_lo) / Fraction(below.conc_hi - below.conc_lo)
            value = Fraction(i_lo) + slope * Fraction(c - band.conc_lo)
            return _band_result(table, band, _round_value(value, places), scale.hours)
        return _band_result(table, band, _round_value(i_lo, places), scale.hours)
    if i_hi is None:  # a top band without an upper index (China's and Indonesia's): its lower index
        return _band_result(table, band, _round_value(i_lo, places), scale.hours)
    if c > c_hi and is_top:
        if rule.above_top == "none":
            return None
        if rule.above_top == "cap":
            return _band_result(table, band, _round_value(i_hi, places), scale.hours)
    return _band_result(table, band, _round_value(_line(c, band.conc_lo, c_hi, i_lo, i_hi), places), scale.hours)


def evaluate(
    index: str, pollutant: str, concentration: float | Decimal, unit: str, averaging_hours: float
) -> Result | None:
    """The sub-index of one pollutant mean; None where the index has no band for it (docs/indices.md)."""
    table = resolve(index)
    if table is None:
        return None
    hours = table_period(table.id, pollutant, averaging_hours)
    if hours is None:
        return None
    scale = table.scales[(pollutant, hours)]
    rule = conventions.convention(table.id)
    raw = _to_table_unit(pollutant, concentration, unit, scale)
    if raw is None:
        return None
    return _evaluate_prepared(table.id, pollutant, hours, _prepare(raw, scale, rule))


@lru_cache(maxsize=65536)
def _evaluate_prepared(index: str, pollutant: str, hours: float, c: Decimal) -> Result | None:
    """Steps 4-6 for a concentration already in the table's unit and precision. Prepared concentrations are few
    (0.1 µg/m³ or 1 ppb steps), so the stream mostly finds the result here instead of interpolating again."""
    table = breakpoints.load()[index]
    scale = table.scales[(pollutant, hours)]
    rule = conventions.convention(index)
    ceiling = rule.ceilings.get((pollutant, hours))
    if ceiling is not None and c > Decimal(ceiling[0]):
        if ceiling[1] == "none":
            return None
        c = Decimal(ceiling[0])
    found = _find(c, scale.bands, rule.shared_edge)
    if found is None:
        return None
    band, in_gap = found
    if table.numeric:
        return _numeric(table, scale, band, c, in_gap, rule)
    top = band is scale.bands[-1]
    if top and band.conc_hi is not None and c > band.conc_hi and rule.above_top == "none":
        return None
    return _band_result(table, band, _band_only_value(band), hours)


def sub_index(
    index: str, pollutant: str, concentration: float | Decimal, unit: str, averaging_hours: float
) -> tuple[Number, str] | None:
    """(value, category) of one pollutant mean under a national index, or None (docs/indices.md, "Functions")."""
    result = evaluate(index, pollutant, concentration, unit, averaging_hours)
    return None if result is None else (result.value, result.category)
