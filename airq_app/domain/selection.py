"""Which measurements the pipeline is about: the `selection` section (parameters, countries, bbox, location ids).

One home for the rule: the poller asks OpenAQ only for the selection and skips what falls outside it, and the
stream drops anything outside it that reaches the topic anyway (another producer, an older configuration).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Selection:
    parameters: frozenset[str]
    countries: frozenset[str]  # upper-case ISO 3166 alpha-2; empty = every country
    bbox: tuple[float, float, float, float] | None  # min lon, min lat, max lon, max lat
    location_ids: frozenset[int]  # empty = every location

    @classmethod
    def from_settings(cls, settings: Any) -> Selection:
        return cls(
            frozenset(settings.parameters),
            frozenset(c.upper() for c in settings.countries),
            tuple(settings.bbox) if settings.bbox else None,
            frozenset(settings.location_ids),
        )

    def query_filters(self) -> dict[str, Any]:
        """Query filters for OpenAQ's /v3/locations."""
        filters: dict[str, Any] = {}
        if self.countries:
            filters["iso"] = sorted(self.countries)
        if self.bbox:
            filters["bbox"] = list(self.bbox)
        return filters

    def has_location(self, location_id: int) -> bool:
        return not self.location_ids or location_id in self.location_ids

    def reason(self, m: Mapping[str, Any]) -> str | None:
        """Why measurement `m` is outside the selection (`parameter_not_allowed`, `location`, `country`, `bbox`)."""
        if self.parameters and m.get("parameter") not in self.parameters:
            return "parameter_not_allowed"
        if self.location_ids and m.get("location_id") not in self.location_ids:
            return "location"
        if self.countries:
            country = m.get("country")
            if not isinstance(country, str) or country.upper() not in self.countries:
                return "country"
        if self.bbox is not None:
            lon, lat = m.get("longitude"), m.get("latitude")
            if lon is None or lat is None:
                return "bbox"
            min_lon, min_lat, max_lon, max_lat = self.bbox
            if not (min_lon <= lon <= max_lon and min_lat <= lat <= max_lat):
                return "bbox"
        return None

    def matches(self, m: Mapping[str, Any]) -> bool:
        return self.reason(m) is None
