"""Unit normalisation for OpenAQ measurements (pure, no I/O).

Particles to `µg/m³` (U+00B5), `o3` and `co` to `ppm`, `no2` and `so2` to `ppb`, gases converted at 25 °C
(`µg/m³ = ppb × MW / 24.45`) in `Decimal` rounded to 9 significant digits; other parameters pass through. The
rules and why: docs/stream.md, step 3 (Normalise).
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

UG_M3 = "µg/m³"
PPM = "ppm"
PPB = "ppb"

MOLAR_VOLUME_L = Decimal("24.45")  # 25 °C, 1 atm
# g/mol (IUPAC standard atomic weights; e.g. https://pubchem.ncbi.nlm.nih.gov for each compound).
MOLECULAR_WEIGHT: dict[str, Decimal] = {
    "o3": Decimal("48.00"),
    "no2": Decimal("46.0055"),
    "so2": Decimal("64.066"),
    "co": Decimal("28.010"),
}

MASS_PARAMETERS = frozenset({"pm1", "pm25", "pm4", "pm10", "bc"})
GAS_UNIT: dict[str, str] = {"o3": PPM, "co": PPM, "no2": PPB, "so2": PPB}
SIGNIFICANT_DIGITS = 9

# Spellings seen in OpenAQ and other feeds, after `_unit_key` folding, mapped to a unit token.
_UNIT_ALIASES: dict[str, str] = {
    "ug/m3": "ug/m3",
    "ug/m^3": "ug/m3",
    "ugm-3": "ug/m3",
    "ug/m**3": "ug/m3",
    "mg/m3": "mg/m3",
    "mg/m^3": "mg/m3",
    "mgm-3": "mg/m3",
    "ng/m3": "ng/m3",
    "ng/m^3": "ng/m3",
    "ngm-3": "ng/m3",
    "ppm": "ppm",
    "ppb": "ppb",
    "ppt": "ppt",
}

# Scale of each token relative to µg/m³ (mass) or ppb (mixing ratio).
_MASS_SCALE: dict[str, Decimal] = {"ug/m3": Decimal(1), "mg/m3": Decimal(1000), "ng/m3": Decimal("0.001")}
_RATIO_SCALE: dict[str, Decimal] = {"ppb": Decimal(1), "ppm": Decimal(1000), "ppt": Decimal("0.001")}


def _unit_key(unit: str) -> str:
    """Fold a unit spelling: micro sign or Greek mu → `u`, superscript three → `3`, no spaces, lower case."""
    u = unit.strip().lower().replace("\u00b5", "u").replace("\u03bc", "u").replace("\u00b3", "3")
    return "".join(u.split())


def unit_token(unit: str | None) -> str | None:
    """`ug/m3`, `mg/m3`, `ng/m3`, `ppm`, `ppb` or `ppt` for a known spelling, else None."""
    if not isinstance(unit, str):
        return None
    return _UNIT_ALIASES.get(_unit_key(unit))


def to_decimal(value: float | int | Decimal | str) -> Decimal | None:
    """The decimal the float prints as (so 0.071 is exactly 0.071); None for NaN, infinity or junk."""
    if isinstance(value, bool):
        return None
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def round_significant(d: Decimal, digits: int = SIGNIFICANT_DIGITS) -> Decimal:
    """Round to `digits` significant digits (drops conversion noise far below any table precision)."""
    if d.is_zero():
        return Decimal(0)
    exponent = d.adjusted() - digits + 1
    return d.quantize(Decimal(1).scaleb(exponent)).normalize()


def convert_gas(parameter: str, value: Decimal, unit: str, target: str) -> Decimal | None:
    """Convert a gas concentration between `ug/m3`/`mg/m3`/`ng/m3` and `ppm`/`ppb`/`ppt` tokens.

    `unit` and `target` may be any spelling accepted by `unit_token`. The result is exact for ratio↔ratio and
    mass↔mass, and rounded to 9 significant digits when the molecular weight is involved. None when the gas or a
    unit is unknown.
    """
    src, dst = unit_token(unit), unit_token(target)
    if src is None or dst is None:
        return None
    if src == dst:
        return value
    if src in _RATIO_SCALE and dst in _RATIO_SCALE:
        return value * _RATIO_SCALE[src] / _RATIO_SCALE[dst]
    if src in _MASS_SCALE and dst in _MASS_SCALE:
        return value * _MASS_SCALE[src] / _MASS_SCALE[dst]
    mw = MOLECULAR_WEIGHT.get(parameter)
    if mw is None:
        return None
    if src in _MASS_SCALE:  # mass → ratio
        ppb = value * _MASS_SCALE[src] * MOLAR_VOLUME_L / mw
        return round_significant(ppb / _RATIO_SCALE[dst])
    ug = value * _RATIO_SCALE[src] * mw / MOLAR_VOLUME_L  # ratio → mass
    return round_significant(ug / _MASS_SCALE[dst])


def canonical_unit(parameter: str) -> str | None:
    """The output unit of a parameter, or None when it is passed through unchanged."""
    if parameter in MASS_PARAMETERS:
        return UG_M3
    return GAS_UNIT.get(parameter)


def normalise(parameter: str, value: float, unit: str) -> tuple[float, str] | None:
    """(value, unit) in the canonical unit of `parameter`, or None for an unknown unit/parameter combination.

    * particle mass: µg/m³ (mg/m³ and ng/m³ are scaled); a mixing ratio (ppm/ppb) for a particle is None;
    * o3, co → ppm; no2, so2 → ppb; from ppm/ppb/ppt or from µg/m³ / mg/m³ at 25 °C;
    * any other parameter: `(float(value), unit)` unchanged.

    A non-finite value keeps its unit conversion undefined, so it comes back unchanged as a float with the
    canonical unit (the filters decide what to do with it).
    """
    target = canonical_unit(parameter)
    if target is None:
        return float(value), unit
    token = unit_token(unit)
    if token is None:
        return None
    if parameter in MASS_PARAMETERS and token not in _MASS_SCALE:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return value, target
    d = to_decimal(value)
    if d is None:
        return None
    if parameter in MASS_PARAMETERS:
        out = d * _MASS_SCALE[token]
    else:
        converted = convert_gas(parameter, d, unit, target)
        if converted is None:
            return None
        out = converted
    return float(out), target
