"""Validation of the URLs a client gives us (destinations, endpoints and callbacks).

A URL is accepted only in a spelling that every parser reads the same way:
printable ASCII, no backslash, no userinfo, a host that is a plain DNS name, a
canonical dotted-quad IPv4 address or a bracketed IPv6 address, and an optional
numeric port. Whatever passes is then cross-checked against urllib3's parser,
the one the connection uses (``broker/http.py``), so the host the destination
policy judges is the host connected to.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from urllib3.util import parse_url

from broker.errors import ApplicationError

MAX_URL_LENGTH = 4096

# Printable ASCII except the backslash (WHATWG parsers read it as "/").
_URL_CHARS = re.compile(r"^[\x21-\x5b\x5d-\x7e]+$")
_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def _host_problem(host: str) -> str | None:
    if host.startswith("["):
        if not host.endswith("]"):
            return "the IPv6 address is not closed with ]"
        if "%" in host:
            return "IPv6 zone ids are not accepted"
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host} is not an IPv6 address"
        return None
    labels = host.rstrip(".").split(".")
    if labels[-1][:1].isdigit() or labels[-1].lower().startswith("0x"):
        # No top-level domain starts with a digit: this is an IPv4 literal, and
        # only the dotted-quad spelling is read alike by every resolver.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host} is not a dotted-quad IPv4 address"
        return None
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        return f"{host!r} is not a valid host name"
    return None


def validate_http_url(url: str, *, field: str) -> str:
    """Return ``url`` if it is an unambiguous absolute http(s) URL, else raise a 400.

    The check reads nothing but the string (no DNS), so a URL that passed once
    passes again: the last thousand or so accepted URLs are remembered per process and
    answered without parsing them twice, the way a client publishes to the same
    destinations over and over (issue 10). A rejected URL is never remembered
    (only what passed is added) and is checked in full every time.
    """
    if url in _ACCEPTED:
        return url
    _check_http_url(url, field)
    if len(_ACCEPTED) >= _ACCEPTED_MAX:
        _ACCEPTED.clear()  # crude bound; refilled by the next requests
    _ACCEPTED.add(url)
    return url


# URLs that passed _check_http_url (the field name only words the error).
_ACCEPTED: set[str] = set()
_ACCEPTED_MAX = 1024  # at most 4 MiB of URLs (MAX_URL_LENGTH each)


def _check_http_url(url: str, field: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ApplicationError(
            f"invalid {field}: endpoint has invalid scheme, add http:// or https://"
        )
    if len(url) > MAX_URL_LENGTH:
        raise ApplicationError(f"invalid {field}: longer than {MAX_URL_LENGTH} characters")
    if not _URL_CHARS.match(url):
        raise ApplicationError(
            f"invalid {field}: the url may hold only printable ASCII without spaces or "
            "backslashes (percent-encode the rest, and use punycode for host names)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ApplicationError(f"invalid {field}: {exc}") from None
    if "@" in parts.netloc:
        raise ApplicationError(f"invalid {field}: user information (user@host) is not accepted")
    host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
    if not host:
        raise ApplicationError(f"invalid {field}: the url has no host")
    if problem := _host_problem(host):
        raise ApplicationError(f"invalid {field}: {problem}")
    if parts.netloc.endswith(":") or port == 0:
        raise ApplicationError(f"invalid {field}: the port must be a number from 1 to 65535")
    try:
        other = parse_url(url)
    except ValueError:
        other = None
    expected_host = (parts.hostname or "").lower()
    if (
        other is None
        or (other.host or "").lower().strip("[]") != expected_host
        or other.port != port
        or other.scheme != parts.scheme
    ):
        raise ApplicationError(f"invalid {field}: the url can be read in more than one way")
