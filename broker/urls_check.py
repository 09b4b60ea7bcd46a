"""Validation of the URLs a client gives us (destinations and callbacks)."""

from __future__ import annotations

from urllib.parse import urlsplit

from broker.errors import ApplicationError


def validate_http_url(url: str, *, field: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host, else raise a 400."""
    if not url.startswith(("http://", "https://")):
        raise ApplicationError(
            f"invalid {field}: endpoint has invalid scheme, add http:// or https://"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError as exc:
        raise ApplicationError(f"invalid {field}: {exc}") from None
    if not parts.hostname:
        raise ApplicationError(f"invalid {field}: the url has no host")
    if any(ch.isspace() for ch in url):
        raise ApplicationError(f"invalid {field}: the url contains whitespace")
    return url
