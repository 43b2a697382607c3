"""OpenAQ's parameter catalogue: which id means which pollutant in which unit.

Each OpenAQ parameter id fixes a unit, and OpenAQ never converts between them, so one pollutant has several ids
(NO2 in ppm, µg/m³ and ppb). The ids and units are those of OpenAQ's `measurands` table
(https://github.com/openaq/openaq-db/blob/main/openaqdb/lookups/measurands.sql), listed by the API under
`/v3/parameters` (https://docs.openaq.org/resources/parameters).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import NamedTuple

log = logging.getLogger("airq.openaq")


class Parameter(NamedTuple):
    id: int
    name: str
    units: str
    display_name: str | None


PARAMETERS: dict[int, Parameter] = {
    p.id: p
    for p in (
        Parameter(1, "pm10", "µg/m³", "PM10"),
        Parameter(2, "pm25", "µg/m³", "PM2.5"),
        Parameter(3, "o3", "µg/m³", "O₃ mass"),
        Parameter(4, "co", "µg/m³", "CO mass"),
        Parameter(5, "no2", "µg/m³", "NO₂ mass"),
        Parameter(6, "so2", "µg/m³", "SO₂ mass"),
        Parameter(7, "no2", "ppm", "NO₂"),
        Parameter(8, "co", "ppm", "CO"),
        Parameter(9, "so2", "ppm", "SO₂"),
        Parameter(10, "o3", "ppm", "O₃"),
        Parameter(11, "bc", "µg/m³", "BC"),
        Parameter(15, "no2", "ppb", "NO₂"),
        Parameter(19, "pm1", "µg/m³", "PM1"),
        Parameter(24, "no", "ppb", "NO"),
        Parameter(23, "nox", "ppb", "NOx"),
        Parameter(27, "nox", "µg/m³", "NOx mass"),
        Parameter(32, "o3", "ppb", "O₃"),
        Parameter(35, "no", "ppm", "NO"),
        Parameter(98, "relativehumidity", "%", "RH"),
        Parameter(100, "temperature", "c", "Temperature (C)"),
        Parameter(101, "so2", "ppb", "SO₂"),
        Parameter(102, "co", "ppb", "CO"),
        Parameter(19840, "nox", "ppm", "NOx"),
        Parameter(19843, "no", "µg/m³", "NO mass"),
    )
}

# Every id of a pollutant, the primary one first: the ppm/mass ids AirNow stations report.
POLLUTANT_IDS: dict[str, tuple[int, ...]] = {
    "pm25": (2,),
    "pm10": (1,),
    "pm1": (19,),
    "o3": (10, 3, 32),
    "no2": (7, 5, 15),
    "so2": (9, 6, 101),
    "co": (8, 4, 102),
    "no": (35, 19843, 24),
    "nox": (19840, 27, 23),
    "bc": (11,),
    "temperature": (100,),
    "relativehumidity": (98,),
}


def _ids(name: str) -> tuple[int, ...]:
    ids = POLLUTANT_IDS.get(name, ())
    if not ids:
        log.warning("openaq: unknown parameter name %r skipped", name)
    return ids


def parameter_ids(names: Iterable[str]) -> dict[str, int]:
    """The primary OpenAQ parameter id of each name (pm25=2, pm10=1, o3=10, no2=7, so2=9, co=8); unknown names
    are logged and skipped. Stations reporting the same pollutant in another unit use other ids:
    see `parameter_variants`."""
    return {name: ids[0] for name in names if (ids := _ids(name))}


def parameter_variants(names: Iterable[str]) -> list[tuple[str, int]]:
    """Every (name, id) for the names, in every unit OpenAQ has (e.g. no2 → 7 ppm, 5 µg/m³, 15 ppb)."""
    return [(name, pid) for name in names for pid in _ids(name)]
