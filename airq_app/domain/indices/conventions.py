"""What the breakpoint tables do not say: names, per-index conventions, corrections and country defaults.

The tables hold bands, not methods; each index's method decides how a concentration is prepared and what happens at
the table's edges, kept here as data so the calculator stays generic: `CONVENTIONS` (rounding, shared edges, the
top, ceilings), `CORRECTIONS` (evident errors, applied only while the file still holds the value they replace),
`INDEX_NAMES`, `COUNTRY_DEFAULTS`, `EU_MEMBERS`. docs/indices.md explains every entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Rounding = Literal["round", "truncate"]
Edge = Literal["lower", "upper"]
AboveTop = Literal["cap", "extrapolate", "none"]
CeilingAction = Literal["none", "cap"]

AQHI_ID = "CA"


@dataclass(frozen=True)
class Convention:
    """How one index turns a concentration into a band.

    rounding: `round` (half up) or `truncate` the converted concentration to the table's precision (the most
        decimals any bound of that pollutant and period is written with).
    shared_edge: where a concentration equal to one band's upper and the next band's lower bound belongs:
        `lower` (bounds inclusive, as written "0–50") or `upper` (upper bounds exclusive).
    above_top: above a closed top band, `cap` at the top of the scale, `extrapolate` along the top band's slope, or
        `none` (no index). Inside an open top band (no upper concentration) `extrapolate` continues the slope of
        the band below; otherwise the band's lower index is reported.
    anchors: (pollutant, hours) → (concentration, index) closing an open top band, from the index's method.
    ceilings: (pollutant, hours) → (concentration, action): above it the period is not used (`none`) or the value
        is held at that concentration (`cap`).
    """

    rounding: Rounding = "round"
    shared_edge: Edge = "lower"
    above_top: AboveTop = "cap"
    anchors: dict[tuple[str, float], tuple[str, int]] = field(default_factory=dict)
    ceilings: dict[tuple[str, float], tuple[str, CeilingAction]] = field(default_factory=dict)


DEFAULT = Convention()

# US EPA TAD (May 2024): truncation, AQI 500 at these concentrations (the footnote quoted on the AQI Hub US page),
# the Hazardous slope continued beyond 500; 8-hour O3 defines no AQI above 0.200 ppm; 1-hour SO2 of 305 ppb or more
# reports 200 (the 24-hour rows take over).
_US = Convention(
    rounding="truncate",
    above_top="extrapolate",
    anchors={
        ("pm25", 24.0): ("325.4", 500),
        ("pm10", 24.0): ("604", 500),
        ("co", 8.0): ("50.4", 500),
        ("o3", 1.0): ("0.604", 500),
        ("so2", 24.0): ("1004", 500),
        ("no2", 1.0): ("2049", 500),
    },
    ceilings={("o3", 8.0): ("0.200", "none"), ("so2", 1.0): ("304", "cap")},
)

CONVENTIONS: dict[str, Convention] = {
    "US": _US,
    # Taiwan's AQI is the EPA scale: 8-hour O3 stops at 0.200 ppm, SO2 from AQI 200 on is a 24-hour value.
    "TW": Convention(ceilings={("o3", 8.0): ("0.200", "none"), ("so2", 1.0): ("304", "cap")}),
    # Kuwait's table copies the EPA O3 rows: no 8-hour value above 0.200 ppm.
    "KW": Convention(ceilings={("o3", 8.0): ("0.200", "none")}),
    # HJ 633-2012: SO2 1-hour above 800 µg/m³ and O3 8-hour above 800 µg/m³ are not indexed (24-hour SO2 and
    # 1-hour O3 are used instead).
    "CN": Convention(ceilings={("so2", 1.0): ("800", "none"), ("o3", 8.0): ("800", "none")}),
    # CPCB: above 208 µg/m³ the 8-hour O3 gives way to the 1-hour value.
    "IN": Convention(ceilings={("o3", 8.0): ("208", "none")}),
    # DENR: 8-hour O3 above 0.374 ppm is replaced by the 1-hour value.
    "PH": Convention(ceilings={("o3", 8.0): ("0.374", "none")}),
    # PSI: the 8-hour O3 rows end at 235 µg/m³ and the 1-hour rows begin at 236.
    "SG": Convention(ceilings={("o3", 8.0): ("235", "none")}),
    # VN AQI: 8-hour O3 above 400 µg/m³ is not used; the 1-hour value is.
    "VN": Convention(ceilings={("o3", 8.0): ("400", "none")}),
    # Resolution 2254/2017: above 394 µg/m³ only the 1-hour O3 index applies.
    "CO:Colombia": Convention(ceilings={("o3", 8.0): ("394", "none")}),
    # EEA (2017 bands): concentrations above the Extremely poor upper bound are treated as erroneous.
    "EU:old": Convention(above_top="none"),
    # Australian states: the upper limit of each category is not inclusive. With half-open bands a value belongs to
    # the band whose lower bound it has reached, so it is truncated, not rounded (24.9 µg/m³ stays below 25).
    "AU:NSW": Convention(rounding="truncate", shared_edge="upper"),
    "AU:NT": Convention(rounding="truncate", shared_edge="upper"),
    "AU:TS": Convention(rounding="truncate", shared_edge="upper"),
    # Sri Lanka: upper bounds taken as exclusive (AQI Hub method page); truncated for the same reason.
    "LK": Convention(rounding="truncate", shared_edge="upper"),
    # INCA is C × 100 / standard, a straight line without a ceiling.
    "PE": Convention(above_top="extrapolate"),
    # IQCA: the formula of the last segment continues above the last breakpoint.
    "EC:Quito": Convention(above_top="extrapolate"),
}


def convention(index_id: str) -> Convention:
    """The convention of an index (the default one for an index with nothing special)."""
    return CONVENTIONS.get(index_id, DEFAULT)


@dataclass(frozen=True)
class Correction:
    """Replace `old` by `new` in column `column` of the rows that match (None matches anything).

    `hours` is the averaging period as the file writes it (before any period correction).
    """

    index: str
    pollutant: str | None
    hours: float | None
    category: str | None
    column: str
    old: str
    new: str
    reason: str


CORRECTIONS: tuple[Correction, ...] = (
    Correction("GB", "so2", 15.0, None, "averaging_period", "15", "0.25", "SO2's 15-minute mean, not 15 hours"),
    Correction(
        "EU:old", "no2", 1.0, "Extremely poor", "concentration_lower", "800.1", "340.1", "Very poor ends at 340"
    ),
    Correction("KW", "no2", 1.0, "Moderate", "concentration_lower", "0", "0.101", "Acceptable ends at 0.1 ppm"),
    Correction("IL", "o3", 8.0, "Very low", "concentration_lower", "15", "156", "the band before ends at 155"),
    Correction("ID", "no2", 24.0, "Moderate", "concentration_upper", "2000", "200", "Not healthy starts at 201"),
    Correction("SG", "pm10", 24.0, "Unhealthy", "concentration_lower", "351", "151", "Moderate ends at 150"),
    Correction("SG", "pm10", 24.0, "Unhealthy", "concentration_upper", "420", "350", "Very Unhealthy starts at 351"),
    Correction("VN", "co", 1.0, "Very Unhealthy", "concentration_upper", "12000", "120000", "Hazardous from 120001"),
    Correction("PE", "co", 8.0, "Moderate", "concentration_lower", "505", "5050", "Good ends at 5049"),
    Correction("EC:Quito", "no2", 1.0, "Desirable", "concentration_upper", "10", "100", "IQCA = 0.5 × C to 200"),
    # EPA and Taiwan: the SO2 rows from AQI 201 up are 24-hour rows (the 1-hour table stops at 200).
    Correction("US", "so2", 1.0, "Very Unhealthy", "averaging_period", "1", "24", "24-hour SO2 rows"),
    Correction("US", "so2", 1.0, "Hazardous", "averaging_period", "1", "24", "24-hour SO2 rows"),
    Correction("TW", "so2", 1.0, "Very unhealthy", "averaging_period", "1", "24", "24-hour SO2 rows"),
    Correction("TW", "so2", 1.0, "Hazardous", "averaging_period", "1", "24", "24-hour SO2 rows"),
    # Units that the magnitudes contradict.
    Correction("VN", "no2", None, None, "units", "ppm", "ug/m3", "bounds up to 3850 are µg/m³"),
    Correction("VN", "o3", None, None, "units", "ppm", "ug/m3", "bounds up to 1200 are µg/m³"),
    Correction("VN", "co", None, None, "units", "ppm", "ug/m3", "bounds up to 150000 are µg/m³"),
    Correction("VN", "so2", None, None, "units", "ppm", "ug/m3", "bounds up to 2630 are µg/m³"),
    Correction("EC:Quito", "co", None, None, "units", "mg/m3", "ug/m3", "IQCA 100 at 10 mg/m³ = 10000"),
    Correction("MO", "co", None, None, "units", "ug/m3", "mg/m3", "bounds 0–57 are mg/m³"),
    Correction("MN", "co", None, None, "units", "ug/m3", "mg/m3", "bounds 0–150 are mg/m³"),
    Correction("UY:old", "co", None, None, "units", "ug/m3", "mg/m3", "bounds 0–33 are mg/m³"),
    Correction("UY:new", "co", None, None, "units", "ug/m3", "mg/m3", "bounds 0–33 are mg/m³"),
    Correction("IL", "co", None, None, "units", "ppb", "ppm", "bounds 0–156 are ppm"),
    Correction("PH", None, None, None, "units", "ug/Nm3", "ug/m3", "normal cubic metre read as m³"),
)

INDEX_NAMES: dict[str, str] = {
    "AU:NSW": "Air Quality Categories (New South Wales)",
    "AU:NT": "Air Quality Categories (Northern Territory)",
    "AU:TS": "Air Quality Categories (Tasmania)",
    "BE:oldBelAQI": "BelAQI (before November 2022)",
    "BE:newBelAQI": "BelAQI",
    "BE:newBelAQIHour": "BelAQI (hourly)",
    "BE:BelAtmo": "BelATMO",
    "BR:Rio de Janeiro": "Índice de Qualidade do Ar (Rio de Janeiro, SMAC)",
    "BR:São Paulo": "Índice de Qualidade do Ar (São Paulo, CETESB)",
    "BR:Espírito Santo": "Índice de Qualidade do Ar (IQAr, Espírito Santo)",
    "CA": "Air Quality Health Index (AQHI)",
    "CN": "Air Quality Index (China, HJ 633-2012)",
    "CO:Bogotá": "Índice Bogotano de Calidad del Aire (IBOCA)",
    "CO:Colombia": "Índice de Calidad del Aire (ICA)",
    "CR": "Índice Costarricense de Calidad del Aire (ICCA)",
    "EC:Quito": "Índice Quiteño de la Calidad del Aire (IQCA)",
    "EU:new": "European Air Quality Index (EAQI)",
    "EU:old": "European Air Quality Index (EAQI, 2017 bands)",
    "FI": "Air Quality Index (Finland)",
    "GB": "Daily Air Quality Index (DAQI)",
    "ID": "Indeks Standar Pencemar Udara (ISPU)",
    "IE": "Air Quality Index for Health (AQIH)",
    "IL": "Air Quality Index (Israel)",
    "IN": "National Air Quality Index (India)",
    "KR": "Comprehensive Air-quality Index (CAI)",
    "KW": "Kuwait Air Quality Index (KAQI)",
    "LK": "Air Quality Index (AQI-SL)",
    "MC:Monaco": "Indice Qualité de l'Air (Monaco)",
    "MK": "Air Quality Index (North Macedonia)",
    "MN": "Air Quality Index (Mongolia, АЧИ)",
    "MO": "Air Quality Index (Macao)",
    "MX:cdmx": "Índice Metropolitano de la Calidad del Aire (IMECA)",
    "MX:national": "Índice AIRE Y SALUD",
    "MY": "Air Pollution Index (API)",
    "PE": "Índice de Calidad del Aire (INCA)",
    "PH": "Air Quality Index (Philippines)",
    "SG": "Pollutant Standards Index (PSI)",
    "TH": "Air Quality Index (Thailand)",
    "TR": "Hava Kalitesi İndeksi (HKİ)",
    "TW": "Air Quality Index (Taiwan)",
    "US": "Air Quality Index (US EPA)",
    "UY:new": "Índice de Calidad del Aire (ICAire)",
    "UY:old": "Índice de Calidad del Aire (ICAire, until 2009)",
    "VN": "Vietnam Air Quality Index (VN_AQI)",
    "ZA": "National Air Quality Indicator (NAQI)",
}

# Country → index for the countries whose table has variants, or whose table is filed under another code.
COUNTRY_DEFAULTS: dict[str, str] = {
    "AU": "AU:NSW",  # no national scheme; the NSW categories are the ones most states share
    "BE": "BE:newBelAQIHour",  # the current BelAQI on hourly means
    "BR": "BR:Espírito Santo",  # follows the Ministry of the Environment's national guide (2025), has PM2.5
    "CA": AQHI_ID,
    "CO": "CO:Colombia",  # national ICA (Resolution 2254/2017)
    "EC": "EC:Quito",  # the only Ecuadorian index in the tables
    "MC": "MC:Monaco",
    "MX": "MX:national",
    "UY": "UY:new",
}

# EU member states; those without a table of their own use the European index.
EU_MEMBERS = frozenset("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split())
EU_DEFAULT = "EU:new"
