"""National air-quality indices: every location scored with its own country's index, next to the US AQI.

Why: a reader in Delhi, Beijing or London judges air by the CPCB AQI, HJ 633 or the DAQI, not by the EPA scale;
55 µg/m³ of PM2.5 over 24 hours is "Good" in China (75), "Satisfactory" in India (92), "Unhealthy for Sensitive
Groups" in the US (149) and "High" (band 7) in the UK. The bands are OpenAQ's AQI Hub tables, shipped as data in
`tables/` beside this file (CC BY-SA 4.0, see `tables/NOTICE.md`) and read by one generic calculator; what the tables
leave open is in `conventions.py`. Pure functions: no I/O beyond reading the shipped files once. `docs/indices.md`
lists the indices, defaults, conventions and the quirks of the tables.

Index ids: the table's `ISO`, plus `:variant` where the table has variants (`IN`, `CN`, `GB`, `US`, `EU:new`,
`BR:São Paulo`, `AU:NSW`, …; a table with a single variant also answers to its bare code, `MC` → `MC:Monaco`),
and `CA` for Canada's AQHI (a formula, not a table). Pollutants use OpenAQ names (`pm25`, `pm10`, `o3`, `no2`,
`so2`, `co`); units are `µg/m³` (or `ug/m3`), `mg/m³`, `ppm`, `ppb`, converted at 25 °C.

Public functions

`sub_index(index, pollutant, concentration, unit, averaging_hours)` → `(value, category)` or None
    as contracted. `value` is the interpolated index (whole number; tenths for the Philippines) on numeric scales,
    the band's level on band-only scales; `category` the band's name as the table spells it, trimmed. None where
    the index has no band for that pollutant and period or the concentration is outside every band (except where
    the index caps or extrapolates above its top). For `CA` the pollutant's share of the AQHI from a 3-hour mean.
`table_period(index, pollutant, averaging_hours)` → float or None
    The table period a mean over `averaging_hours` serves: the same period, or for a 1-hour mean a period under
    an hour (`GB` SO2 → 0.25, `IL` CO and NOx → 0.5). None where the table has no such row.
`periods(index, pollutant)` → tuple of the table periods (hours) defined for a pollutant.
`index_for_country(country, overrides=None)` → index id or None
    A location's index from its ISO alpha-2 country: `overrides` (`{country: index_id or None}`, the
    `by_country` of the `pipeline.json` section `indices`, see `IndexConfig`) first, then the documented default
    for countries with several schemes (`conventions.COUNTRY_DEFAULTS`: AU → `AU:NSW`, BE → `BE:newBelAQIHour`,
    BR → `BR:Espírito Santo`, CO → `CO:Colombia`, EC → `EC:Quito`, MC → `MC:Monaco`, MX → `MX:national`,
    UY → `UY:new`, CA → `CA`),
    then the country's own table, then `EU:new` for EU member states; None otherwise.
    `validate_overrides(overrides)` → list of problems, for checking the mapping at start-up.
`local_index(index_id, pollutant, means, unit)` → object or None
    `means`: averaging hours (1, 3, 8, 12, 24) → the sensor's mean over that period ending at this hour (None or
    absent where undefined). Evaluates each period the table defines for the pollutant whose mean is available
    and keeps the worst. Object: `{"index", "name", "value", "category", "level", "color", "averaging_hours",
    "pollutant"}` (`level`: band ordinal, 1 = best; `color`: the table's hex; AQHI objects also carry
    `concentration`, the 3-hour mean in ppb or µg/m³, for the overall formula; `table_averaging_hours` where the
    hourly value serves a table period under an hour).
`overall_index(sub_indices)` → object or None
    The location's index from its sub-index objects: the worst one; for `CA` the AQHI formula over NO2, O3 and
    PM2.5 (all three needed).
`aqhi(no2_ppb, o3_ppb, pm25_ugm3)` → `(value, category)` or None: Canada's AQHI from the three 3-hour means.
`supported_indices()` → list of `{"index", "name", "country", "variant", "scale", "pollutants"}`.
`categories(index_id)` → list of `{"level", "category", "color", "lower", "upper"}` for a legend, or None.
`index_name(index_id)` → human name or None.
`legends()` → every index id → `{"name", "categories"}`, for the dashboard.
`IndexConfig`: the `pipeline.json` section `indices` (`enabled`, `by_country`), checked by `from_dict`.
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
    """(value, category) of one pollutant mean under a national index, or None (see the module docstring)."""
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
