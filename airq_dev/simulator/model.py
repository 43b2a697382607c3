"""The simulated world's building blocks: locations and sensors, deterministic draws, and the API's number and time
formats. `world` builds the world from them and `quality` its data-quality faults; neither imports the other's
internals through here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from airq_app.domain.units import MOLAR_VOLUME_L, MOLECULAR_WEIGHT
from airq_app.openaq.catalogue import Parameter
from airq_dev.simulator.config import HOUR
from airq_dev.simulator.regions import GAS_LEVEL_PPB


def uniform(seed: int, *parts: object) -> float:
    """A deterministic uniform number in [0, 1) from the seed and parts."""
    digest = hashlib.blake2b(f"{seed}|{'|'.join(map(str, parts))}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sig3(x: float) -> float:
    """Three significant digits, as the API's `sig_digits` does for aggregates."""
    return 0.0 if x == 0 else float(f"{x:.3g}")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def hour_to_dt(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR, UTC)


def dt_object(hour: int, tz: str) -> dict[str, str]:
    """The API's datetime object: utc with Z, local with the station's offset."""
    dt = hour_to_dt(hour)
    return {"utc": dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "local": dt.astimezone(zone(tz)).isoformat()}


def utc_str(hour: int) -> str:
    return hour_to_dt(hour).strftime("%Y-%m-%dT%H:%M:%SZ")


def dt_object_ts(ts: float, tz: str) -> dict[str, str]:
    """The API's datetime object for any instant (flag periods start and end between hours)."""
    dt = datetime.fromtimestamp(ts, UTC)
    return {"utc": dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "local": dt.astimezone(zone(tz)).isoformat()}


def generation_factor(parameter: Parameter) -> float:
    """What a level in the generation unit (ppb for gases, µg/m³ for the rest) is multiplied by for the sensor's
    unit; gas mass concentrations at 25 °C with the molecular weights of `airq_app.domain.units`."""
    if parameter.name not in GAS_LEVEL_PPB or parameter.units == "ppb":
        return 1.0
    if parameter.units == "ppm":
        return 1e-3
    weight = MOLECULAR_WEIGHT.get(parameter.name)
    if parameter.units != "µg/m³" or weight is None:
        raise ValueError(f"the simulator cannot generate {parameter.name} in {parameter.units}")
    return float(weight / MOLAR_VOLUME_L)


@dataclass
class Sensor:
    id: int
    parameter: Parameter
    location: Location
    base: float  # typical level in the canonical unit (µg/m³ for particles, ppb for gases)
    lag_h: int  # hours the provider is behind
    first_hour: int
    unit_factor: float = field(init=False, default=1.0)  # generation unit -> the sensor's unit

    def __post_init__(self) -> None:
        self.unit_factor = generation_factor(self.parameter)

    @property
    def name(self) -> str:
        return f"{self.parameter.name} {self.parameter.units}"


@dataclass
class Location:
    id: int
    name: str | None
    locality: str | None
    timezone: str
    country: dict[str, Any]
    owner: dict[str, Any]
    provider: dict[str, Any]
    is_monitor: bool
    latitude: float
    longitude: float
    licenses: list[dict[str, Any]] | None
    inactive_last_hour: int | None
    sensors: list[Sensor] = field(default_factory=list)
