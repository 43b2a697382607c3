from __future__ import annotations

import math

import pytest

from airq_app.domain.units import canonical_unit, normalise

pytestmark = pytest.mark.unit

MICRO = "\u00b5g/m\u00b3"  # canonical: MICRO SIGN + SUPERSCRIPT THREE


@pytest.mark.parametrize("unit", ["µg/m³", "μg/m³", "ug/m3", "UG/M3", "µg/m3", "ug/m^3", "µg m-3"])
def test_particle_spellings(unit: str):
    out = normalise("pm25", 12.5, unit)
    assert out == (12.5, MICRO)
    assert out is not None and out[1].encode("utf-8") == b"\xc2\xb5g/m\xc2\xb3"


def test_particle_scaling():
    assert normalise("pm10", 0.0125, "mg/m³") == (12.5, MICRO)
    assert normalise("pm1", 2500, "ng/m3") == (2.5, MICRO)
    assert normalise("pm10", 30, "µg/m³") == (30.0, MICRO)


@pytest.mark.parametrize(
    "parameter,value,unit,expected",
    [
        ("o3", 50, "ppb", (0.05, "ppm")),
        ("o3", 0.05, "ppm", (0.05, "ppm")),
        ("co", 250, "ppb", (0.25, "ppm")),
        ("no2", 0.071, "ppm", (71.0, "ppb")),
        ("no2", 0.035, "ppm", (35.0, "ppb")),  # 0.035*1000 is 35.00000000000001 in binary floating point
        ("so2", 0.0355, "ppm", (35.5, "ppb")),
        ("so2", 12, "ppb", (12.0, "ppb")),
    ],
)
def test_mixing_ratios(parameter: str, value: float, unit: str, expected: tuple[float, str]):
    assert normalise(parameter, value, unit) == expected


@pytest.mark.parametrize(
    "parameter,ug,mw,scale,unit",
    [
        ("o3", 98.2, 48.00, 1000, "ppm"),  # ppm = µg/m³ × 24.45 / MW / 1000
        ("co", 1146, 28.010, 1000, "ppm"),
        ("no2", 18.8, 46.0055, 1, "ppb"),  # ppb = µg/m³ × 24.45 / MW
        ("so2", 261.8, 64.066, 1, "ppb"),
    ],
)
def test_mass_to_mixing_ratio(parameter: str, ug: float, mw: float, scale: int, unit: str):
    out = normalise(parameter, ug, "µg/m³")
    assert out is not None
    assert out[1] == unit
    assert out[0] == pytest.approx(ug * 24.45 / mw / scale, rel=1e-8)


def _value(parameter: str, value: float, unit: str) -> float:
    out = normalise(parameter, value, unit)
    assert out is not None
    return out[0]


def test_mass_conversion_worked_values():
    # quemist worked checks: 50 ppb O3 = 98.2 µg/m³, 10 ppb NO2 = 18.8, 100 ppb SO2 = 261.8 (3 significant digits).
    assert _value("o3", 98.2, "µg/m³") == pytest.approx(0.0500, abs=5e-5)
    assert _value("no2", 18.8, "µg/m³") == pytest.approx(10.0, abs=0.05)
    assert _value("so2", 261.8, "µg/m³") == pytest.approx(100.0, abs=0.1)
    # mg/m³ for CO: 1.146 mg/m³ ≈ 1 ppm.
    assert _value("co", 1.146, "mg/m³") == pytest.approx(1.0003, abs=1e-4)


def test_conversion_does_not_fall_below_breakpoint():
    # 0.071 ppm O3 written in µg/m³ comes back as exactly 0.071, not 0.0709999...
    assert normalise("o3", 71 * 48 / 24.45, "µg/m³") == (0.071, "ppm")


@pytest.mark.parametrize(
    "parameter,value,unit",
    [
        ("temperature", 21.5, "c"),
        ("relativehumidity", 55, "%"),
        ("um003", 1234, "particles/cm³"),
        ("no", 3.2, "ppb"),
        ("pressure", 1013, "hpa"),
    ],
)
def test_other_parameters_pass_through(parameter: str, value: float, unit: str):
    assert normalise(parameter, value, unit) == (float(value), unit)


@pytest.mark.parametrize(
    "parameter,value,unit",
    [
        ("pm25", 3, "ppm"),
        ("pm10", 3, "ppb"),
        ("o3", 3, "furlongs"),
        ("no2", 3, ""),
        ("co", 3, "particles/cm³"),
    ],
)
def test_unknown_combinations(parameter: str, value: float, unit: str):
    assert normalise(parameter, value, unit) is None


def test_negative_and_nan_keep_their_sign():
    assert normalise("no2", -0.002, "ppm") == (-2.0, "ppb")
    out = normalise("pm25", float("nan"), "µg/m³")
    assert out is not None and math.isnan(out[0]) and out[1] == MICRO


def test_canonical_unit():
    assert canonical_unit("pm25") == MICRO
    assert canonical_unit("o3") == "ppm"
    assert canonical_unit("co") == "ppm"
    assert canonical_unit("no2") == "ppb"
    assert canonical_unit("so2") == "ppb"
    assert canonical_unit("temperature") is None
