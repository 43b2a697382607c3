"""Errors of the OpenAQ client, and keeping the API key out of every text the client produces.

The key is sent only as the `X-API-Key` header (https://docs.openaq.org/using-the-api/api-key). Libraries quote
what they reject in many forms: requests names a bad header value by its `repr` (`'key\\n'`), a URL shows it
percent-encoded, a JSON body escaped. `scrub` replaces every such form, so an exception's text can be logged, kept
as the last error or put in a message only after passing through it.
"""

from __future__ import annotations

import json
import unicodedata
from functools import lru_cache
from urllib.parse import quote, quote_plus

MASK = "***"


class OpenAQError(Exception):
    """Any failure talking to OpenAQ. Messages never contain the API key."""


class OpenAQKeyError(OpenAQError, ValueError):
    """The API key cannot be sent as an HTTP header (a control or non-ASCII character). Never shows the key."""


class OpenAQHTTPError(OpenAQError):
    """A non-retryable HTTP answer."""

    def __init__(self, status: int, path: str, detail: str) -> None:
        self.status = status
        self.path = path
        self.detail = detail
        super().__init__(f"HTTP {status} for {path}: {detail}")


class OpenAQAuthError(OpenAQHTTPError):
    """401 (missing or invalid key) or 403 (blocked by the WAF): retrying will not help."""


class OpenAQNotFoundError(OpenAQHTTPError):
    """404: the location, parameter or sensor does not exist."""


class OpenAQRequestError(OpenAQHTTPError):
    """422 or another 4xx: the query itself is wrong."""


class OpenAQUnavailableError(OpenAQError):
    """Retries exhausted on timeouts, connection errors, 408, 5xx or malformed bodies."""


class OpenAQRateLimitError(OpenAQError):
    """The server kept answering 429 after the allowed number of waits."""


class OpenAQResponseTooLargeError(OpenAQError):
    """A response body above the client's size cap: not read further, not retried."""


class OpenAQTooManyPagesError(OpenAQError):
    """A listing that did not end within the client's page cap (a full page every time)."""


def mask_key(key: str | None) -> str:
    """What may be shown of a key: only whether it is set."""
    return MASK if key else "<none>"


def clean_key(key: str | None) -> str:
    """The key as it is sent: surrounding whitespace stripped; "" when unset.

    OpenAQKeyError when a character inside it cannot go into an HTTP header (control characters such as a newline
    or NUL, or anything outside printable ASCII); the message names the position and kind, never the key.
    """
    text = (key or "").strip()
    for pos, ch in enumerate(text):
        if unicodedata.category(ch) == "Cc":
            raise OpenAQKeyError(
                f"the OpenAQ API key has a control character (U+{ord(ch):04X}) at position {pos + 1} "
                f"of {len(text)}: it cannot be sent as the X-API-Key header"
            )
        if not " " <= ch <= "~":
            raise OpenAQKeyError(
                f"the OpenAQ API key has a non-ASCII character at position {pos + 1} of {len(text)}: "
                "it cannot be sent as the X-API-Key header"
            )
    return text


@lru_cache(maxsize=16)
def secret_forms(secret: str) -> tuple[str, ...]:
    """Every spelling of a secret that a library or server may show, longest first (so a longer form is replaced
    before a shorter one inside it): as given and stripped, each `repr`/JSON-escaped, as a bytes `repr`, and
    percent-encoded (path, query and form styles)."""
    forms: set[str] = set()
    for s in {secret, secret.strip()}:
        if s:
            forms.update(
                (
                    s,
                    repr(s)[1:-1],
                    json.dumps(s)[1:-1],
                    json.dumps(s, ensure_ascii=False)[1:-1],
                    repr(s.encode("utf-8", "backslashreplace"))[2:-1],
                    quote(s, safe=""),
                    quote(s),
                    quote_plus(s),
                )
            )
    forms.discard("")
    return tuple(sorted(forms, key=len, reverse=True))


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every form of each secret (see `secret_forms`) replaced by `***`."""
    for secret in secrets:
        if secret:
            for form in secret_forms(secret):
                if form in text:
                    text = text.replace(form, MASK)
    return text


def describe(exc: BaseException, *secrets: str | None, limit: int = 300) -> str:
    """`TypeName: message` of an exception, scrubbed of the secrets, then cut to `limit` characters (scrubbing
    first, so a cut never leaves part of a key behind)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return scrub(text, *secrets)[:limit]
