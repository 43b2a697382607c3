"""National air-quality indices: every location scored with its own country's index, next to the US AQI.

Why: people judge air by their own country's scale (India's CPCB AQI, China's HJ 633, the UK's DAQI), and the same
55 µg/m³ of PM2.5 is "Good" in one and "Unhealthy for Sensitive Groups" in another. The bands are OpenAQ's AQI Hub
tables, shipped in `tables/` (CC BY-SA 4.0, `tables/NOTICE.md`), read once by one generic calculator; what the tables
leave open is in `conventions.py`. The functions, index ids, defaults and conventions: docs/indices.md.
"""

from __future__ import annotations

from decimal import Decimal

from airq_app.domain.indices import calculator, conventions
from airq_app.domain.indices import canada as _aqhi
from airq_app.domain.indices.canada import aqhi
from airq_app.domain.indices.local import (
    IndexConfig,
    categories,
    index_for_country,
    index_name,
    legends,
    local_index,
    overall_index,
    supported_indices,
    validate_overrides,
)

__all__ = [
    "IndexConfig",
    "aqhi",
    "categories",
    "index_for_country",
    "index_name",
    "legends",
    "local_index",
    "overall_index",
    "periods",
    "sub_index",
    "supported_indices",
    "table_period",
    "validate_overrides",
]


def sub_index(
    index: str, pollutant: str, concentration: float | Decimal, unit: str, averaging_hours: float
) -> tuple[int | float, str] | None:
    """(value, category) of one pollutant mean under a national index, or None (docs/indices.md, "Functions")."""
    if index == conventions.AQHI_ID:
        return _aqhi.sub_index(pollutant, concentration, unit, averaging_hours)
    return calculator.sub_index(index, pollutant, concentration, unit, averaging_hours)


def periods(index: str, pollutant: str) -> tuple[float, ...]:
    """The averaging periods (hours) the index's table defines for a pollutant; (3.0,) for the AQHI's three."""
    if index == conventions.AQHI_ID:
        return (_aqhi.AVERAGING_HOURS,) if pollutant in _aqhi.POLLUTANTS else ()
    table = calculator.resolve(index)
    return () if table is None else table.periods(pollutant)


def table_period(index: str, pollutant: str, averaging_hours: float) -> float | None:
    """The table period a mean over `averaging_hours` serves (see `calculator.table_period`); 3.0 for the AQHI."""
    if index == conventions.AQHI_ID:
        ok = pollutant in _aqhi.POLLUTANTS and _aqhi.is_three_hours(averaging_hours)
        return _aqhi.AVERAGING_HOURS if ok else None
    return calculator.table_period(index, pollutant, averaging_hours)
