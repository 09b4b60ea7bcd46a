"""Reads that are more than a ``get``: message lookup and the log pages."""

from __future__ import annotations

from django.http import QueryDict

from broker.errors import ApplicationError, NotFound
from broker.filters import MESSAGE_FILTERS, message_q, page_count, page_cursor, page_order, values
from broker.models import LogEntry, Message

LOG_STATES = set(LogEntry.State.values)
# Filter aliases: IN_PROGRESS is every state of a message still being worked on.
STATE_ALIASES = {
    "IN_PROGRESS": ["ACTIVE", "RETRY", "ERROR"],
    "CANCELLED": ["CANCELED"],
}
LOG_PARAMS = MESSAGE_FILTERS | {"state", "cursor", "count", "order", "groupBy", "trimBody"}


def message_get_pending(*, message_id: str) -> Message:
    """The message while it is still to be delivered; NotFound once it is finished."""
    message = Message.objects.filter(message_id=message_id).first()
    if message is None or message.state not in Message.PENDING_STATES:
        raise NotFound(f"message {message_id} not found (it may be delivered, failed or canceled)")
    return message


def logs_page(*, query: QueryDict) -> tuple[list[LogEntry], str | None]:
    """One page of log rows matching the filters, and the cursor of the next page."""
    unknown = set(query.keys()) - LOG_PARAMS - {"qstash_token"}
    if unknown:
        raise ApplicationError(f"invalid filter: unknown parameter {sorted(unknown)[0]!r}")
    count = page_count(query, default=100, maximum=1000)
    order = page_order(query, default="latestFirst")
    cursor = page_cursor(query)
    qs = LogEntry.objects.select_related("message").filter(
        message_q(query, prefix="message__", date_field="time")
    )
    if states := values(query, "state"):
        wanted: list[str] = []
        for state in states:
            upper = state.upper()
            expanded = STATE_ALIASES.get(upper, [upper])
            if not set(expanded) <= LOG_STATES:
                raise ApplicationError(f"invalid state: {state!r}")
            wanted += expanded
        qs = qs.filter(state__in=wanted)
    if order == "latestFirst":
        qs = qs.order_by("-pk")
        if cursor is not None:
            qs = qs.filter(pk__lt=cursor)
    else:
        qs = qs.order_by("pk")
        if cursor is not None:
            qs = qs.filter(pk__gt=cursor)
    rows = list(qs[: count + 1])
    if len(rows) > count:
        return rows[:count], str(rows[count - 1].pk)
    return rows, None
