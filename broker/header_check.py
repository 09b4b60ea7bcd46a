"""Which request headers a client may hand us to store and forward. Pure logic.

A header reaches the destination byte for byte, on a pooled keep-alive
connection: a name outside the HTTP token alphabet, a control character in a
value, or a forwarded framing header (``Content-Length``, ``Transfer-Encoding``)
could split one request into two. Those are refused at publish with a 400 that
names the header, never stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from broker.errors import ApplicationError

# RFC 9110 token characters.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ISO-8859-1 plus space and tab: what http.client can put on the wire as is.
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

FORWARD_PREFIXES = (
    "upstash-forward-",
    "upstash-callback-forward-",
    "upstash-failure-callback-forward-",
)

# Framing, routing and hop-by-hop headers: the connection owns them.
NOT_FORWARDABLE = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
    }
)
# What the broker sets on every delivery: a forwarded copy would arrive first.
BROKER_SET = frozenset(
    {
        "upstash-signature",
        "upstash-message-id",
        "upstash-retried",
        "upstash-topic-name",
        "upstash-schedule-id",
        "upstash-caller-ip",
        "upstash-region",
    }
)


def owned_by_connection(name: str) -> bool:
    """Framing, routing and hop-by-hop headers: only the HTTP client may set them."""
    lname = name.lower()
    return lname in NOT_FORWARDABLE or lname.startswith("proxy-")


def forwardable(name: str) -> bool:
    return not (owned_by_connection(name) or name.lower() in BROKER_SET)


def check_header(name: str, value: str) -> None:
    """Raise a 400 naming ``name`` if it cannot be stored and sent as given."""
    if not _TOKEN.fullmatch(name):
        raise ApplicationError(
            f"invalid header name {name!r}: use letters, digits and !#$%&'*+-.^_`|~"
        )
    if not _VALUE.fullmatch(value):
        raise ApplicationError(
            f"invalid header {name}: its value holds a control character or a character "
            "outside ISO-8859-1"
        )
    lname = name.lower()
    for prefix in FORWARD_PREFIXES:
        if lname.startswith(prefix) and not forwardable(lname[len(prefix) :]):
            raise ApplicationError(
                f"invalid header {name}: {name[len(prefix) :]} is set by the broker "
                "or the connection and cannot be forwarded"
            )


def check_headers(items: Iterable[tuple[str, str]], *, max_count: int, max_bytes: int) -> None:
    """Every header, then the caps on their number and their total size."""
    count = size = 0
    for name, value in items:
        check_header(name, value)
        count += 1
        size += len(name) + len(value)
    if count > max_count:
        raise ApplicationError(f"invalid headers: {count} headers; the maximum is {max_count}")
    if size > max_bytes:
        raise ApplicationError(
            f"invalid headers: {size} bytes of headers; the maximum is {max_bytes}"
        )
