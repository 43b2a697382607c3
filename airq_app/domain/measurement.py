"""Records that travel on the topics: the schema of a message on `air_quality_telematics`.

The poller builds each message as a `Measurement`; the stream reads messages as bytes and validates them itself
(`airq_app.domain.validation`), since any producer may write to the topic.
"""

from __future__ import annotations

import faust


class Measurement(faust.Record, serializer="json", allow_blessed_key=False):
    """One raw OpenAQ measurement as the poller saw it (topic `air_quality_telematics`).

    Values and units are exactly as OpenAQ reported them; normalisation happens in the stream.
    """

    location_id: int
    sensor_id: int
    parameter: str  # OpenAQ parameter name: pm25, pm10, o3, no2, so2, co, ...
    value: float
    unit: str  # as reported: "µg/m³", "ppm", "ppb", ...
    datetime_utc: str  # ISO 8601 ending in Z: end of the measurement period
    parameter_id: int | None = None
    datetime_local: str | None = None
    location_name: str | None = None
    country: str | None = None  # ISO 3166 alpha-2
    latitude: float | None = None
    longitude: float | None = None
    timezone: str | None = None
    provider: str | None = None
    fetched_at: str | None = None  # ISO 8601 Z: when the poller received it


MEASUREMENT_FIELDS = tuple(Measurement._options.fields)
