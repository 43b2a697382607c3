"""Errors of the OpenAQ client. Their messages never contain the API key."""

from __future__ import annotations


class OpenAQError(Exception):
    """Any failure talking to OpenAQ. Messages never contain the API key."""


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


def mask_key(key: str | None) -> str:
    """What may be shown of a key: only whether it is set."""
    return "***" if key else "<none>"


def scrub(text: str, secret: str | None) -> str:
    """`text` with the secret replaced by `***`."""
    return text.replace(secret, mask_key(secret)) if secret else text
