"""The AQI Hub breakpoint CSVs, read once from the package and turned into immutable scales.

Every `tables/*.csv` is read (a new country's file needs no code); spellings are normalised and
`conventions.CORRECTIONS` applied. Rows that define nothing are left out and listed in `anomalies`. The model:
`IndexTable` (one index id: categories and scales), `Category` (a legend band), `Scale` (one pollutant and period:
unit, precision, bands), `Band` (one row). The files' quirks and what is done with them: docs/indices.md.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources

from airq_app.domain import units
from airq_app.domain.indices import conventions

TABLES_PACKAGE = "airq_app.domain.indices"
TABLES_DIR = "tables"

_POLLUTANT_NAMES = {"pm2.5": "pm25", "pm10": "pm10", "o3": "o3", "no2": "no2", "so2": "so2", "co": "co"}


@dataclass(frozen=True)
class Band:
    level: int
    category: str
    color: str
    index_lo: Decimal | None
    index_hi: Decimal | None
    conc_lo: Decimal
    conc_hi: Decimal | None


@dataclass(frozen=True)
class Scale:
    pollutant: str
    hours: float
    unit: str  # a units.unit_token token: ug/m3, mg/m3, ppm, ppb
    decimals: int
    bands: tuple[Band, ...]


@dataclass(frozen=True)
class Category:
    level: int
    name: str
    color: str
    index_lo: Decimal | None
    index_hi: Decimal | None


@dataclass(frozen=True)
class IndexTable:
    id: str
    iso: str
    variant: str
    source: str
    numeric: bool
    value_decimals: int
    categories: tuple[Category, ...]
    scales: dict[tuple[str, float], Scale]
    anomalies: tuple[str, ...]

    def periods(self, pollutant: str) -> tuple[float, ...]:
        return tuple(sorted(h for p, h in self.scales if p == pollutant))

    @property
    def pollutants(self) -> tuple[str, ...]:
        return tuple(sorted({p for p, _ in self.scales}))


def pollutant_name(name: str) -> str:
    """OpenAQ's name for a table's pollutant: `PM2.5` → `pm25`; others lower case with `_` for spaces."""
    key = name.strip().lower()
    return _POLLUTANT_NAMES.get(key, key.replace(".", "").replace(" ", "_"))


def index_id(iso: str, variant: str) -> str:
    return f"{iso}:{variant}" if variant else iso


def _decimal(text: str) -> Decimal | None:
    if not text:
        return None
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _places(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _apply_corrections(idx: str, row: dict[str, str]) -> list[str]:
    """Apply the matching corrections to a cleaned row in place; the list of the ones applied."""
    applied = []
    pollutant = row["pollutant"]
    hours = _decimal(row["averaging_period"])
    for c in conventions.CORRECTIONS:
        if c.index != idx or (c.pollutant is not None and c.pollutant != pollutant):
            continue
        if c.hours is not None and (hours is None or float(hours) != c.hours):
            continue
        if c.category is not None and c.category != row["category"]:
            continue
        if row.get(c.column) == c.old:
            row[c.column] = c.new
            applied.append(f"{pollutant} {c.column} {c.old} → {c.new} ({c.reason})")
    return applied


def _read_rows(text: str) -> list[dict[str, str]]:
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not row.get("ISO"):
            continue
        row["pollutant"] = pollutant_name(row.get("pollutant", ""))
        rows.append(row)
    return rows


def _levels(rows: list[dict[str, str]]) -> dict[tuple[str, str], int]:
    """Level of each (category, colour): by lowest index bound, else by order of first appearance."""
    first: dict[tuple[str, str], int] = {}
    lowest: dict[tuple[str, str], Decimal] = {}
    for i, row in enumerate(rows):
        key = (row["category"], row["hex"])
        first.setdefault(key, i)
        lo = _decimal(row["category_lower"])
        if lo is not None and (key not in lowest or lo < lowest[key]):
            lowest[key] = lo
    if len(lowest) == len(first):
        order = sorted(first, key=lambda k: (lowest[k], first[k]))
    else:  # some category has no index bound (Australia): the file's order
        order = sorted(first, key=lambda k: first[k])
    return {key: n for n, key in enumerate(order, start=1)}


def _categories(rows: list[dict[str, str]], levels: dict[tuple[str, str], int]) -> tuple[Category, ...]:
    out = []
    for key, level in sorted(levels.items(), key=lambda kv: kv[1]):
        own = [r for r in rows if (r["category"], r["hex"]) == key]
        los = {d for r in own if (d := _decimal(r["category_lower"])) is not None}
        his = {d for r in own if (d := _decimal(r["category_upper"])) is not None}
        lo = min(los) if los else None
        # One lower bound with several upper ones: a band whose index range depends on the pollutant (Peru).
        hi = None if not his or (len(his) > 1 and len(los) == 1) else max(his)
        out.append(Category(level, key[0], key[1], lo, hi))
    return tuple(out)


def _scales(idx: str, rows: list[dict[str, str]], levels: dict[tuple[str, str], int], notes: list[str]):
    grouped: dict[tuple[str, float], list[dict[str, str]]] = {}
    for row in rows:
        period = _decimal(row["averaging_period"])
        if period is None or period <= 0:
            notes.append(f"{row['pollutant']}: no averaging period in a row of {row['category']}")
            continue
        grouped.setdefault((row["pollutant"], float(period)), []).append(row)
    scales: dict[tuple[str, float], Scale] = {}
    for (pollutant, hours), group in grouped.items():
        unit = units.unit_token(group[0]["units"])
        if unit is None or any(units.unit_token(r["units"]) != unit for r in group):
            notes.append(f"{pollutant} {hours:g} h: unit {group[0]['units']!r} cannot be converted; not used")
            continue
        defined = [r for r in group if _decimal(r["concentration_lower"]) is not None]
        top = max((levels[(r["category"], r["hex"])] for r in defined), default=0)
        bands, places = [], 0
        for r in group:
            lo, hi = _decimal(r["concentration_lower"]), _decimal(r["concentration_upper"])
            level = levels[(r["category"], r["hex"])]
            if lo is None:
                if hi is not None:
                    notes.append(f"{pollutant} {hours:g} h {r['category']}: upper bound without a lower one; not used")
                continue
            if hi is None and level != top:
                notes.append(f"{pollutant} {hours:g} h {r['category']}: open band below the top; not used")
                continue
            places = max(places, _places(r["concentration_lower"]), _places(r["concentration_upper"]))
            bands.append(
                Band(
                    level,
                    r["category"],
                    r["hex"],
                    _decimal(r["category_lower"]),
                    _decimal(r["category_upper"]),
                    lo,
                    hi,
                )
            )
        if not bands:
            continue
        bands.sort(key=lambda b: (b.level, b.conc_lo))
        _check_order(pollutant, hours, bands, Decimal(1).scaleb(-places), notes)
        scales[(pollutant, hours)] = Scale(pollutant, hours, unit, places, tuple(bands))
    return scales


def _check_order(pollutant: str, hours: float, bands: list[Band], step: Decimal, notes: list[str]) -> None:
    """Note bands that run backwards, overlap, or leave a gap wider than the table's precision."""
    for a, b in zip(bands, bands[1:], strict=False):
        where = f"{pollutant} {hours:g} h {a.category} / {b.category}"
        if a.conc_hi is not None and a.conc_hi < a.conc_lo:
            notes.append(f"{where}: upper bound {a.conc_hi} below lower bound {a.conc_lo}")
        elif a.conc_hi is None or b.conc_lo < a.conc_hi:
            notes.append(f"{where}: bands overlap ({a.conc_lo}–{a.conc_hi} and {b.conc_lo}–{b.conc_hi})")
        elif b.conc_lo - a.conc_hi > step:
            notes.append(f"{where}: gap between {a.conc_hi} and {b.conc_lo}")


def build(source: str, text: str) -> list[IndexTable]:
    """The indices of one CSV file (one per `ISO`/`variant` pair)."""
    by_index: dict[str, list[dict[str, str]]] = {}
    for row in _read_rows(text):
        by_index.setdefault(index_id(row["ISO"], row.get("variant", "")), []).append(row)
    out = []
    for idx, rows in by_index.items():
        applied: dict[str, int] = {}
        for row in rows:
            for c in _apply_corrections(idx, row):
                applied[c] = applied.get(c, 0) + 1
        notes = [f"corrected in {n} row{'s' if n > 1 else ''}: {c}" for c, n in applied.items()]
        levels = _levels(rows)
        numeric = any(r["category_lower"] and r["category_upper"] for r in rows)
        value_places = max((_places(r[c]) for r in rows for c in ("category_lower", "category_upper")), default=0)
        scales = _scales(idx, rows, levels, notes)
        out.append(
            IndexTable(
                id=idx,
                iso=rows[0]["ISO"],
                variant=rows[0].get("variant", ""),
                source=source,
                numeric=numeric,
                value_decimals=value_places if numeric else 0,
                categories=_categories(rows, levels),
                scales=scales,
                anomalies=tuple(notes),
            )
        )
    return out


@lru_cache(maxsize=1)
def load() -> dict[str, IndexTable]:
    """Every index of every shipped CSV, by index id (read once per process)."""
    folder = resources.files(TABLES_PACKAGE).joinpath(TABLES_DIR)
    out: dict[str, IndexTable] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".csv"):
            continue
        for table in build(entry.name, entry.read_text(encoding="utf-8-sig")):
            out[table.id] = table
    return out
