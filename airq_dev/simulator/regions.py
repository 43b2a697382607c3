"""Where simulated stations are: regions with their timezone, provider, unit habits and pollution levels.

Kept apart from the value function so the world model reads as logic, not data. Units follow what real networks
report: US AirNow in ppm, European and Indian stations in µg/m³, Taiwanese, Thai and Chilean ones in ppb.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from airq_dev.simulator.config import HOUR


@dataclass(frozen=True)
class Region:
    code: str
    country_id: int
    country: str
    timezone: str
    lat: tuple[float, float]
    lon: tuple[float, float]
    profile: str
    weight: int
    provider: tuple[int, str]
    pm_level: float  # typical PM2.5, µg/m³
    cities: tuple[str, ...]


REGIONS: tuple[Region, ...] = (
    Region(
        "US",
        155,
        "United States",
        "America/Los_Angeles",
        (32.6, 47.0),
        (-123.0, -116.5),
        "airnow",
        3,
        (119, "AirNow"),
        9.0,
        ("Los Angeles", "Fresno", "Sacramento", "Portland", "Seattle", "San Diego"),
    ),
    Region(
        "US",
        155,
        "United States",
        "America/Denver",
        (33.0, 45.0),
        (-112.0, -104.5),
        "airnow",
        2,
        (119, "AirNow"),
        7.0,
        ("Denver", "Albuquerque", "Salt Lake City", "Boise", "Colorado Springs"),
    ),
    Region(
        "US",
        155,
        "United States",
        "America/Chicago",
        (29.5, 44.0),
        (-97.5, -87.5),
        "airnow",
        2,
        (119, "AirNow"),
        8.5,
        ("Chicago", "Houston", "Dallas", "St. Louis", "Minneapolis"),
    ),
    Region(
        "US",
        155,
        "United States",
        "America/New_York",
        (33.8, 44.5),
        (-84.0, -71.0),
        "airnow",
        3,
        (119, "AirNow"),
        8.0,
        ("New York", "Philadelphia", "Boston", "Atlanta", "Pittsburgh", "Baltimore"),
    ),
    Region(
        "GB",
        79,
        "United Kingdom",
        "Europe/London",
        (50.5, 55.8),
        (-4.5, 0.5),
        "eea",
        2,
        (70, "EEA"),
        9.0,
        ("London", "Manchester", "Birmingham", "Leeds", "Bristol"),
    ),
    Region(
        "DE",
        50,
        "Germany",
        "Europe/Berlin",
        (47.8, 54.5),
        (6.5, 14.5),
        "eea",
        2,
        (70, "EEA"),
        10.0,
        ("Berlin", "Hamburg", "München", "Köln", "Stuttgart", "Leipzig"),
    ),
    Region(
        "FR",
        22,
        "France",
        "Europe/Paris",
        (43.3, 50.5),
        (-1.5, 7.5),
        "eea",
        2,
        (70, "EEA"),
        10.0,
        ("Paris", "Lyon", "Marseille", "Lille", "Toulouse", "Strasbourg"),
    ),
    Region(
        "ES",
        67,
        "Spain",
        "Europe/Madrid",
        (36.5, 43.3),
        (-8.5, 3.0),
        "eea",
        1,
        (70, "EEA"),
        11.0,
        ("Madrid", "Barcelona", "Valencia", "Sevilla", "Bilbao"),
    ),
    Region(
        "IN",
        9,
        "India",
        "Asia/Kolkata",
        (12.0, 29.0),
        (72.5, 88.5),
        "cpcb",
        2,
        (168, "CPCB"),
        55.0,
        ("Delhi", "Mumbai", "Kolkata", "Lucknow", "Patna", "Bengaluru"),
    ),
    Region(
        "TW",
        173,
        "Taiwan",
        "Asia/Taipei",
        (22.0, 25.2),
        (120.1, 121.8),
        "ppb",
        1,
        (180, "Taiwan MOENV"),
        16.0,
        ("Taipei", "Taichung", "Kaohsiung", "Tainan"),
    ),
    Region(
        "TH",
        111,
        "Thailand",
        "Asia/Bangkok",
        (13.4, 18.9),
        (98.9, 100.9),
        "ppb",
        1,
        (201, "Thailand PCD"),
        25.0,
        ("Bangkok", "Chiang Mai", "Nakhon Sawan", "Lampang"),
    ),
    Region(
        "CL",
        3,
        "Chile",
        "America/Santiago",
        (-38.0, -30.0),
        (-72.5, -70.3),
        "ppb_co",
        1,
        (164, "Chile - SINCA"),
        20.0,
        ("Santiago", "Temuco", "Rancagua", "Talca"),
    ),
    Region(
        "AU",
        5,
        "Australia",
        "Australia/Sydney",
        (-34.5, -32.5),
        (150.3, 151.5),
        "ppm",
        1,
        (150, "Australia - New South Wales"),
        7.0,
        ("Sydney", "Newcastle", "Wollongong"),
    ),
)

# Parameter ids a profile may carry, with the chance a station has each.
PROFILES: dict[str, tuple[tuple[int, float], ...]] = {
    "airnow": ((2, 0.95), (1, 0.6), (10, 0.7), (7, 0.45), (8, 0.3), (9, 0.25)),
    "ppm": ((2, 0.9), (1, 0.8), (10, 0.7), (7, 0.6), (8, 0.4), (9, 0.3)),
    "eea": ((2, 0.75), (1, 0.85), (3, 0.6), (5, 0.85), (6, 0.3), (4, 0.2)),
    "cpcb": ((2, 0.95), (1, 0.85), (3, 0.7), (5, 0.8), (6, 0.6), (4, 0.6)),
    "ppb": ((2, 0.9), (1, 0.8), (32, 0.8), (15, 0.8), (101, 0.6), (8, 0.6)),
    "ppb_co": ((2, 0.9), (1, 0.7), (32, 0.6), (15, 0.6), (101, 0.5), (102, 0.4)),
    "lowcost": ((2, 1.0), (1, 0.5)),
}
LOWCOST_PROVIDERS = ((166, "PurpleAir"), (209, "AirGradient"))
GAS_LEVEL_PPB = {"o3": 30.0, "no2": 14.0, "so2": 2.5, "co": 350.0, "no": 6.0, "nox": 20.0}

# 2016-01-01 and 2025-01-01 as epoch hours: history starts and inactive stations stop within fixed ranges.
H2016 = int(datetime(2016, 1, 1, tzinfo=UTC).timestamp()) // HOUR
H2025 = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp()) // HOUR
