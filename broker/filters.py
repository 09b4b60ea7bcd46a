"""The shared filter language of logs, bulk cancel and the DLQ (reference 2.5, 2.9, 2.10).

A filter may repeat its key (``label=a&label=b``) or list values with commas
(``label=a,b``): values of one filter are ORed, different filters ANDed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from django.db import connection
from django.db.models import F, Func, Model, Q, QuerySet, TextField, Value
from django.db.models.functions import MD5, Lower
from django.db.models.lookups import Exact, In
from django.http import QueryDict

from broker.errors import ApplicationError
from broker.urls_check import MAX_URL_LENGTH

# Wire name -> how it applies to a Message (prefix "message__" when filtering logs).
MESSAGE_FILTERS = {
    "messageId",
    "messageIds",
    "url",
    "host",
    "path",
    "topicName",
    "endpointName",
    "queueName",
    "scheduleId",
    "label",
    "flowControlKey",
    "callerIp",
    "callerIP",
    "fromDate",
    "toDate",
}


# A filter costs the database as much whether or not anything matches. Host and
# path filters are regexes: PostgreSQL compiles a case-insensitive one in time
# growing with the square of its length (30,000 characters: 4 s, a megabyte:
# minutes) and refuses a long one as too complex (a 500); each value of a label,
# host or path filter is one more OR'd condition. No longer host or path can
# match a stored URL anyway.
MAX_HOST_FILTER_LENGTH = 260  # a DNS name (253 characters) and a port
MAX_PATTERN_VALUES = 100


def _pattern_values(
    query: QueryDict | dict[str, list[str]], key: str, *, max_length: int | None = None
) -> list[str]:
    found = values(query, key)
    if len(found) > MAX_PATTERN_VALUES:
        raise ApplicationError(
            f"invalid {key}: {len(found)} values; the maximum is {MAX_PATTERN_VALUES}"
        )
    if max_length and (too_long := [v for v in found if len(v) > max_length]):
        raise ApplicationError(
            f"invalid {key}: {too_long[0][:40]!r}... is longer than {max_length} characters"
        )
    return found


def values(query: QueryDict | dict[str, list[str]], key: str) -> list[str]:
    raw = query.getlist(key) if isinstance(query, QueryDict) else query.get(key, [])
    out: list[str] = []
    for item in raw:
        if isinstance(item, list):
            out += [str(v) for v in item]
        else:
            out += [v.strip() for v in str(item).split(",") if v.strip()]
    return out


def _any(qs: Iterable[Q]) -> Q:
    result = Q()
    for q in qs:
        result |= q
    return result


def millis(value: str, *, name: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise ApplicationError(
            f"invalid {name}: {value!r} is not a unix time in milliseconds"
        ) from None


# The host and the path of a stored URL, as indexed on PostgreSQL (migration 0002:
# btree indexes over their md5, so that a URL of any length fits). Written exactly as
# the indexes' expressions, or the planner cannot use them.
# The host is read from the lower-cased URL (the filter ignores case); the path as is.
HOST_PATTERN = "^https?://([^/?#:]*)"
PATH_PATTERN = "^https?://[^/]+(/[^?#]*)"


def _md5(text: str) -> str:
    # The digest of PostgreSQL's md5(): of the UTF-8 bytes, in hex.
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _url_part(url: F | Func, pattern: str) -> Func:
    return Func(url, Value(pattern), function="substring", output_field=TextField())


def _host_q(host: str, *, prefix: str) -> Q:
    """URLs whose host (and port, if given) is ``host``, case-insensitively.

    The regex is the definition; on PostgreSQL the indexed host narrows it first. It
    can only when the value is a host, or host:port (none of "/?#").
    """
    q = Q(**{f"{prefix}url__iregex": rf"^https?://{re.escape(host)}([:/?#]|$)"})
    if connection.vendor == "postgresql" and not set(host) & set("/?#"):
        name = host.split(":", 1)[0].lower()
        q &= Q(Exact(MD5(_url_part(Lower(F(f"{prefix}url")), HOST_PATTERN)), Value(_md5(name))))
    return q


def _path_q(path: str, *, prefix: str) -> Q:
    """URLs whose path is ``path`` (the query and fragment aside).

    As for the host: the regex is the definition, the indexed path narrows it when the
    value is a path ("/" first, none of "?#").
    """
    q = Q(**{f"{prefix}url__regex": rf"^https?://[^/]+{re.escape(path)}([?#]|$)"})
    if connection.vendor == "postgresql" and path.startswith("/") and not set(path) & set("?#"):
        q &= Q(Exact(MD5(_url_part(F(f"{prefix}url"), PATH_PATTERN)), Value(_md5(path))))
    return q


def message_q(
    query: QueryDict | dict[str, list[str]], *, prefix: str = "", date_field: str = "created_at"
) -> Q:
    """The Message conditions named by ``query`` (``prefix`` "message__" from a log row)."""
    q = Q()
    f = prefix
    if ids := values(query, "messageIds") + values(query, "messageId"):
        q &= Q(**{f"{f}message_id__in": ids})
    if urls := values(query, "url"):
        q &= Q(**{f"{f}url__in": urls})
        if connection.vendor == "postgresql":
            # message_url_md5_idx; the url itself still decides.
            q &= Q(In(MD5(F(f"{f}url")), [_md5(url) for url in urls]))
    if hosts := _pattern_values(query, "host", max_length=MAX_HOST_FILTER_LENGTH):
        q &= _any(_host_q(h, prefix=f) for h in hosts)
    if paths := _pattern_values(query, "path", max_length=MAX_URL_LENGTH):
        q &= _any(_path_q(p, prefix=f) for p in paths)
    for wire, field in (
        ("topicName", "topic_name"),
        ("endpointName", "endpoint_name"),
        ("queueName", "queue_name"),
        ("scheduleId", "schedule_id"),
        ("flowControlKey", "flow_control_key"),
    ):
        if vals := values(query, wire):
            q &= Q(**{f"{f}{field}__in": vals})
    if ips := values(query, "callerIp") + values(query, "callerIP"):
        q &= Q(**{f"{f}caller_ip__in": ips})
    if labels := _pattern_values(query, "label"):
        q &= _any(Q(**{f"{f}labels__contains": f",{label},"}) for label in labels)
    if (start := values(query, "fromDate")) and start[0] != "0":
        q &= Q(**{f"{date_field}__gte": millis(start[0], name="fromDate")})
    if (end := values(query, "toDate")) and end[0] != "0":
        q &= Q(**{f"{date_field}__lte": millis(end[0], name="toDate")})
    return q


def page_count(query: QueryDict, *, default: int, maximum: int) -> int:
    raw = query.get("count")
    if raw in (None, ""):
        return default
    try:
        count = int(raw)
    except ValueError:
        raise ApplicationError(f"invalid count: {raw!r} is not an integer") from None
    if count < 1:
        raise ApplicationError("invalid count: must be at least 1")
    return min(count, maximum)


def page_cursor(query: QueryDict) -> int | None:
    raw = query.get("cursor")
    if raw in (None, ""):
        return None
    try:
        cursor = int(raw.split("-")[-1])
    except ValueError:
        cursor = -1
    if not 0 <= cursor < 2**63:
        raise ApplicationError(f"invalid cursor: {raw!r}")
    return cursor


def page_order(query: QueryDict, *, default: str) -> str:
    order = query.get("order") or default
    if order not in ("earliestFirst", "latestFirst"):
        raise ApplicationError(f"invalid order: {order!r}, use earliestFirst or latestFirst")
    return order


M = TypeVar("M", bound=Model)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_cursor(query: QueryDict) -> tuple[datetime | None, int] | None:
    """A cursor of the (time, id) keyset: ``"<time in microseconds>-<id>"``.

    A bare id (a cursor of an older version) bounds the id only.
    """
    raw = query.get("cursor")
    if raw in (None, ""):
        return None
    head, _, tail = raw.rpartition("-")
    try:
        pk = int(tail)
        # Integer microseconds: a float would round some of them, and the keyset
        # would then repeat or skip the rows of the page boundary.
        when = EPOCH + timedelta(microseconds=int(head)) if head else None
    except (ValueError, OverflowError, OSError):
        raise ApplicationError(f"invalid cursor: {raw!r}") from None
    if not 0 <= pk < 2**63:
        raise ApplicationError(f"invalid cursor: {raw!r}")
    return when, pk


def time_page(
    rows: QuerySet[M],
    query: QueryDict,
    *,
    time_field: str,
    default_order: str,
    default_count: int,
    max_count: int,
) -> tuple[list[M], str | None]:
    """One page of ``rows`` in (time, id) order, and the cursor of the next (None on the last).

    Keyset pagination on (time, id) rather than on the id alone: a time filter is then
    a range of the (time, id) index that is read in order, however far back it lies,
    instead of a walk of every newer id (ids only roughly follow time).
    """
    count = page_count(query, default=default_count, maximum=max_count)
    cursor = time_cursor(query)
    newest_first = page_order(query, default=default_order) == "latestFirst"
    if cursor is not None:
        when, pk = cursor
        if when is None:
            rows = rows.filter(pk__lt=pk) if newest_first else rows.filter(pk__gt=pk)
        elif newest_first:
            rows = rows.filter(
                Q(**{f"{time_field}__lt": when}) | Q(**{time_field: when, "pk__lt": pk})
            )
        else:
            rows = rows.filter(
                Q(**{f"{time_field}__gt": when}) | Q(**{time_field: when, "pk__gt": pk})
            )
    order = (f"-{time_field}", "-pk") if newest_first else (time_field, "pk")
    page = list(rows.order_by(*order)[: count + 1])
    if len(page) <= count:
        return page, None
    last = page[count - 1]
    stamp = getattr(last, time_field)
    micros = (stamp - EPOCH) // timedelta(microseconds=1)
    return page[:count], f"{micros}-{last.pk}"


def cursor_page(
    rows: QuerySet[M], query: QueryDict, *, default_order: str, default_count: int, max_count: int
) -> tuple[list[M], str | None]:
    """One page of ``rows`` by primary key, and the cursor of the next (None on the last).

    The cursor is the last pk returned; the SDKs stop when it is absent.
    """
    count = page_count(query, default=default_count, maximum=max_count)
    cursor = page_cursor(query)
    if page_order(query, default=default_order) == "latestFirst":
        rows = rows.order_by("-pk")
        if cursor is not None:
            rows = rows.filter(pk__lt=cursor)
    else:
        rows = rows.order_by("pk")
        if cursor is not None:
            rows = rows.filter(pk__gt=cursor)
    page = list(rows[: count + 1])
    if len(page) > count:
        return page[:count], str(page[count - 1].pk)
    return page, None
