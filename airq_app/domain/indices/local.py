"""A location's national index: which index a country uses, one measurement's sub-index object, the overall index.

These are the functions the stream calls for the `local_index` field of each output line (see README "Output") and the
dashboard calls for its legend; see the package docstring for the contract of each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from airq_app.domain.indices import breakpoints, calculator, canada, conventions

IndexObject = dict[str, Any]


def _number(value: Decimal | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _hours(hours: float) -> int | float:
    return int(hours) if float(hours).is_integer() else float(hours)


def is_known(index_id: str) -> bool:
    return index_id == conventions.AQHI_ID or calculator.resolve(index_id) is not None


def canonical(index_id: str) -> str | None:
    """The canonical id of an index (`MC` → `MC:Monaco`), or None when unknown."""
    if index_id == conventions.AQHI_ID:
        return index_id
    table = calculator.resolve(index_id)
    return None if table is None else table.id


def index_name(index_id: str) -> str | None:
    """The human name of an index (`GB` → "Daily Air Quality Index (DAQI)"), or None when unknown."""
    ident = canonical(index_id)
    if ident is None:
        return None
    if ident in conventions.INDEX_NAMES:
        return conventions.INDEX_NAMES[ident]
    table = breakpoints.load()[ident]
    return f"Air quality index ({table.iso}{' ' + table.variant if table.variant else ''})"


def validate_overrides(overrides: Mapping[str, str | None]) -> list[str]:
    """Problems in a `{country: index_id}` mapping (e.g. pipeline.json `indices`); empty when it is usable."""
    problems = []
    for country, ident in overrides.items():
        if not isinstance(country, str) or len(country.strip()) != 2:
            problems.append(f"{country!r}: not an ISO 3166 alpha-2 country code")
        if ident is not None and (not isinstance(ident, str) or not is_known(ident)):
            problems.append(f"{country}: unknown index {ident!r}")
    return problems


def index_for_country(country: str | None, overrides: Mapping[str, str | None] | None = None) -> str | None:
    """The index id a location in `country` (ISO alpha-2) is scored with, or None.

    An entry of `overrides` wins (None there means "no national index"); then the country's documented default
    (`conventions.COUNTRY_DEFAULTS`), then the country's own table, then `EU:new` for an EU member state.
    ValueError for an override that names an unknown index (check with `validate_overrides` at start-up).
    """
    if not isinstance(country, str) or not country.strip():
        return None
    code = country.strip().upper()
    if overrides:
        normalised = {k.strip().upper(): v for k, v in overrides.items() if isinstance(k, str)}
        if code in normalised:
            ident = normalised[code]
            if ident is None:
                return None
            resolved = canonical(ident)
            if resolved is None:
                raise ValueError(f"unknown index {ident!r} for country {code}")
            return resolved
    if code in conventions.COUNTRY_DEFAULTS:
        return conventions.COUNTRY_DEFAULTS[code]
    if code in breakpoints.load():
        return code
    if code in conventions.EU_MEMBERS:
        return conventions.EU_DEFAULT
    return None


def _known_for(country: str) -> list[str]:
    """The index ids a country's own tables offer (for an error message)."""
    return sorted(t.id for t in breakpoints.load().values() if t.iso == country)


@dataclass(frozen=True)
class IndexConfig:
    """The `pipeline.json` section `indices`: whether records get a `local_index`, and per-country choices.

    `by_country` maps an ISO alpha-2 code to an index id (`"BR": "BR:São Paulo"`) or None (no national index
    there); other countries get `index_for_country`'s default. Build it with `from_dict`, which checks every entry.
    """

    enabled: bool = True
    by_country: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))
    # country → index id, filled as the stream asks (a few hundred countries at most)
    _cache: dict[str | None, str | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> IndexConfig:
        """From the section as JSON gives it; ValueError with one line naming the first bad entry."""
        d = dict(d or {})
        unknown = sorted(set(d) - {"enabled", "by_country"})
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key")
        enabled = d.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"enabled: {enabled!r} is not true or false")
        given = d.get("by_country") or {}
        if not isinstance(given, Mapping):
            raise ValueError("by_country: must be an object of country code → index id or null")
        by_country: dict[str, str | None] = {}
        for country, ident in given.items():
            problems = validate_overrides({country: ident})
            if problems:
                hint = ""
                if isinstance(country, str) and len(country.strip()) == 2:
                    offered = _known_for(country.strip().upper())
                    hint = f" (tables for {country.strip().upper()}: {', '.join(offered)})" if offered else ""
                raise ValueError(f"by_country.{problems[0]}{hint}")
            by_country[country.strip().upper()] = None if ident is None else canonical(ident)
        return cls(enabled=enabled, by_country=MappingProxyType(by_country))

    def index_for(self, country: str | None) -> str | None:
        """The index id of a location in `country`, or None (also when the section is disabled)."""
        if not self.enabled:
            return None
        try:
            return self._cache[country]
        except (KeyError, TypeError):
            pass
        try:
            found = index_for_country(country, self.by_country)
        except ValueError:  # only for a mapping not built by from_dict
            found = None
        if isinstance(country, str) and len(self._cache) < 4096:
            self._cache[country] = found
        return found


def _means(means: Mapping[Any, float | None]) -> list[tuple[float, float]]:
    out = []
    for key, value in means.items():
        try:
            hours = float(key)
        except (TypeError, ValueError):
            continue
        if value is None or isinstance(value, bool):
            continue
        out.append((hours, value))
    return sorted(out)


def _aqhi_object(pollutant: str, means: Mapping[Any, float | None], unit: str) -> IndexObject | None:
    value = dict(_means(means)).get(canada.AVERAGING_HOURS)
    if value is None:
        return None
    c = canada.to_aqhi_unit(pollutant, value, unit)
    if c is None:
        return None
    index_value = canada.round_aqhi(canada.term(pollutant, c))
    return {
        "index": conventions.AQHI_ID,
        "name": conventions.INDEX_NAMES[conventions.AQHI_ID],
        "value": index_value,
        "category": canada.category(index_value),
        "level": canada.level(index_value),
        "color": canada.color(index_value),
        "averaging_hours": 3,
        "pollutant": pollutant,
        "concentration": c,
    }


def local_index(index_id: str, pollutant: str, means: Mapping[Any, float | None], unit: str) -> IndexObject | None:
    """The sub-index object of one pollutant at one hour, or None.

    `means` maps averaging hours (1, 3, 8, 12, 24) to the sensor's mean over that period ending at this hour (None
    or absent where not defined), all in `unit`. Every period the index's table defines for the pollutant whose
    mean is available is evaluated (a 1-hour mean stands in for a table period under an hour) and the worst result
    is kept, as the EPA, HJ 633 and CPCB methods do when an 8-hour and a 1-hour O3 value both exist. Where the
    hourly value stands in for a shorter table period the object also has `table_averaging_hours` (0.25, 0.5).
    """
    if index_id == conventions.AQHI_ID:
        return _aqhi_object(pollutant, means, unit)
    table = calculator.resolve(index_id)
    if table is None:
        return None
    best: tuple[calculator.Result, float] | None = None
    for hours, value in _means(means):
        if calculator.table_period(table.id, pollutant, hours) is None:
            continue
        result = calculator.evaluate(table.id, pollutant, value, unit, hours)
        if result is not None and (best is None or (result.level, result.value) > (best[0].level, best[0].value)):
            best = (result, hours)
    if best is None:
        return None
    result, hours = best
    obj: IndexObject = {
        "index": table.id,
        "name": index_name(table.id),
        "value": result.value,
        "category": result.category,
        "level": result.level,
        "color": result.color,
        "averaging_hours": _hours(hours),
        "pollutant": pollutant,
    }
    if result.table_hours != hours:
        # A table period under an hour served by the hourly value (GB SO2 15 min, IL CO 30 min): say so.
        obj["table_averaging_hours"] = _hours(result.table_hours)
    return obj


def overall_index(sub_indices: Iterable[Mapping[str, Any] | None]) -> IndexObject | None:
    """The location's index from its pollutants' sub-index objects (all of one index), or None.

    Table indices: the worst sub-index (highest level, then highest value), with the pollutant that gives it.
    AQHI: the formula over the NO2, O3 and PM2.5 3-hour means the objects carry; None unless all three are there.
    ValueError when the objects belong to different indices.
    """
    objects = [o for o in sub_indices if o is not None]
    if not objects:
        return None
    ids = {o["index"] for o in objects}
    if len(ids) > 1:
        raise ValueError(f"sub-indices of different indices: {sorted(ids)}")
    if ids == {conventions.AQHI_ID}:
        conc = {o.get("pollutant"): o.get("concentration") for o in objects}
        result = canada.aqhi(conc.get("no2"), conc.get("o3"), conc.get("pm25"))  # type: ignore[arg-type]
        if result is None:
            return None
        value, cat = result
        return {
            "index": conventions.AQHI_ID,
            "name": conventions.INDEX_NAMES[conventions.AQHI_ID],
            "value": value,
            "category": cat,
            "level": canada.level(value),
            "color": canada.color(value),
            "averaging_hours": 3,
            "pollutant": None,
        }
    worst = max(objects, key=lambda o: (o["level"], o["value"]))
    return dict(worst)


def categories(index_id: str) -> list[dict[str, Any]] | None:
    """The bands of an index for a legend, best first: `{"level", "category", "color", "lower", "upper"}` where
    lower/upper are the band's index range (None where the table gives none, or where it differs by pollutant)."""
    if index_id == conventions.AQHI_ID:
        return [
            {
                "level": n,
                "category": canada.category(n),
                "color": canada.color(n),
                "lower": n,
                "upper": n if n <= 10 else None,
            }
            for n in range(1, 12)
        ]
    table = calculator.resolve(index_id)
    if table is None:
        return None
    return [
        {
            "level": c.level,
            "category": c.name,
            "color": c.color,
            "lower": _number(c.index_lo) if table.numeric or c.index_lo is not None else c.level,
            "upper": _number(c.index_hi),
        }
        for c in table.categories
    ]


@lru_cache(maxsize=1)
def legends() -> dict[str, dict[str, Any]]:
    """Every index id → `{"name", "categories"}` (the `categories` legend): what the dashboard draws its local-index
    colours and category names from (one shared object: read it, do not change it)."""
    return {d["index"]: {"name": d["name"], "categories": categories(d["index"])} for d in supported_indices()}


def supported_indices() -> list[dict[str, Any]]:
    """Every index id with its name, country code, variant, scale kind (`numeric` or `bands`) and pollutants."""
    out = [
        {
            "index": t.id,
            "name": index_name(t.id),
            "country": t.iso,
            "variant": t.variant or None,
            "scale": "numeric" if t.numeric else "bands",
            "pollutants": list(t.pollutants),
        }
        for t in breakpoints.load().values()
    ]
    out.append(
        {
            "index": conventions.AQHI_ID,
            "name": conventions.INDEX_NAMES[conventions.AQHI_ID],
            "country": "CA",
            "variant": None,
            "scale": "numeric",
            "pollutants": list(canada.POLLUTANTS),
        }
    )
    return sorted(out, key=lambda d: d["index"])
