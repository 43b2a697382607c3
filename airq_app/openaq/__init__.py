"""The OpenAQ v3 side of the worker: the parameter catalogue (`catalogue`), the HTTP client with its rate budget
(`client`, `budget`, `errors`) and the mapping of payloads to measurements (`payloads`).

Everything callers use is re-exported here, so `from airq_app import openaq; openaq.X` is the one way to use it.
"""

from __future__ import annotations

from airq_app.domain.timeutil import format_utc, normalise_utc_or_none
from airq_app.domain.timeutil import parse_utc_or_none as parse_utc
from airq_app.openaq.budget import RateBudget
from airq_app.openaq.catalogue import PARAMETERS, POLLUTANT_IDS, Parameter, parameter_ids, parameter_variants
from airq_app.openaq.client import DEFAULT_BASE_URL, MAX_BODY_BYTES, MAX_LIMIT, MAX_PAGES, OpenAQClient, encode_params
from airq_app.openaq.errors import (
    OpenAQAuthError,
    OpenAQError,
    OpenAQHTTPError,
    OpenAQKeyError,
    OpenAQNotFoundError,
    OpenAQRateLimitError,
    OpenAQRequestError,
    OpenAQResponseTooLargeError,
    OpenAQTooManyPagesError,
    OpenAQUnavailableError,
    clean_key,
    mask_key,
    scrub,
)
from airq_app.openaq.payloads import (
    REASON_BAD_DATETIME,
    REASON_BAD_LOCATION,
    REASON_BAD_VALUE,
    REASON_MALFORMED,
    REASON_UNKNOWN_SENSOR,
    index_locations,
    measurement_from_hour,
    measurement_from_latest,
)

# `parse_utc`/`format_utc`/`normalise_utc` are airq_app.domain.timeutil's, kept here for callers of the old module;
# `parse_utc` and `normalise_utc` answer None for anything that is not an instant, as they did.
normalise_utc = normalise_utc_or_none

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_BODY_BYTES",
    "MAX_LIMIT",
    "MAX_PAGES",
    "PARAMETERS",
    "POLLUTANT_IDS",
    "REASON_BAD_DATETIME",
    "REASON_BAD_LOCATION",
    "REASON_BAD_VALUE",
    "REASON_MALFORMED",
    "REASON_UNKNOWN_SENSOR",
    "OpenAQAuthError",
    "OpenAQClient",
    "OpenAQError",
    "OpenAQHTTPError",
    "OpenAQKeyError",
    "OpenAQNotFoundError",
    "OpenAQRateLimitError",
    "OpenAQRequestError",
    "OpenAQResponseTooLargeError",
    "OpenAQTooManyPagesError",
    "OpenAQUnavailableError",
    "Parameter",
    "RateBudget",
    "clean_key",
    "encode_params",
    "format_utc",
    "index_locations",
    "mask_key",
    "measurement_from_hour",
    "measurement_from_latest",
    "normalise_utc",
    "parameter_ids",
    "parameter_variants",
    "parse_utc",
    "scrub",
]
