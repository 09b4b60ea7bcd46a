"""Reads that are more than a ``get``: message lookup and the log pages."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import QueryDict

from broker.errors import ApplicationError, NotFound
from broker.filters import MESSAGE_FILTERS, cursor_page, message_q, time_page, values
from broker.models import DlqEntry, LogEntry, Message
from broker.statement_timeout import statement_timeout

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


def logs_where(query: QueryDict | dict[str, list[str]]) -> Q:
    """The log rows named by the filters of ``/v2/logs`` (the API's and the console's).

    Raises ApplicationError for a malformed value (a state, a date, a long pattern).
    """
    where = message_q(query, prefix="message__", date_field="time")
    if states := values(query, "state"):
        wanted: list[str] = []
        for state in states:
            upper = state.upper()
            expanded = STATE_ALIASES.get(upper, [upper])
            if not set(expanded) <= LOG_STATES:
                raise ApplicationError(f"invalid state: {state!r}")
            wanted += expanded
        where &= Q(state__in=wanted)
    return where


def logs_page(*, query: QueryDict) -> tuple[list[LogEntry], str | None]:
    """One page of log rows matching the filters, and the cursor of the next page."""
    unknown = set(query.keys()) - LOG_PARAMS - {"qstash_token"}
    if unknown:
        raise ApplicationError(f"invalid filter: unknown parameter {sorted(unknown)[0]!r}")
    qs = LogEntry.objects.select_related("message").filter(logs_where(query))
    filters = set(query) & (MESSAGE_FILTERS | {"state"})
    with statement_timeout(what="the log query", filters=filters):
        return time_page(
            qs,
            query,
            time_field="time",
            default_order="latestFirst",
            default_count=100,
            max_count=1000,
        )


DLQ_FILTERS = {
    "messageId",
    "messageIds",
    "url",
    "topicName",
    "endpointName",
    "scheduleId",
    "queueName",
    "fromDate",
    "toDate",
    "responseStatus",
    "callerIp",
    "callerIP",
    "label",
    "flowControlKey",
    "dlqIds",
}
DLQ_PAGE_PARAMS = {"cursor", "count", "order", "qstash_token"}
DLQ_PAGE_MAX = 100


def dlq_entries(*, query: QueryDict | dict[str, list[str]]) -> QuerySet[DlqEntry]:
    """Entries matching the filters; given ``dlqIds``, every other filter is ignored."""
    unknown = set(query.keys()) - DLQ_FILTERS - DLQ_PAGE_PARAMS
    if unknown:
        raise ApplicationError(f"invalid filter: unknown parameter {sorted(unknown)[0]!r}")
    entries = DlqEntry.objects.select_related("message", "message__payload")
    if "dlqIds" in query:
        # An empty list names no entry: it must not widen to "all of them".
        return entries.filter(dlq_id__in=values(query, "dlqIds"))
    where = message_q(query, prefix="message__", date_field="created_at")
    if statuses := values(query, "responseStatus"):
        try:
            codes = [int(s) for s in statuses]
            if not all(100 <= code <= 999 for code in codes):
                raise ValueError
            # Every DLQ entry's message is FAILED; saying so lets the partial index
            # message_failed_status_idx serve the filter.
            where &= Q(message__state=Message.State.FAILED, message__last_response_status__in=codes)
        except ValueError:
            raise ApplicationError("invalid responseStatus: expected an HTTP status code") from None
    return entries.filter(where)


def dlq_page(entries: QuerySet[DlqEntry], query: QueryDict) -> tuple[list[DlqEntry], str | None]:
    """One page of ``entries`` by DLQ id order (the DLQ is bounded by its retention)."""
    with statement_timeout(what="the DLQ query", filters=set(query) & DLQ_FILTERS):
        return cursor_page(
            entries,
            query,
            default_order="earliestFirst",
            default_count=DLQ_PAGE_MAX,
            max_count=DLQ_PAGE_MAX,
        )


def dlq_entry_get(*, dlq_id: str) -> DlqEntry:
    entry = (
        DlqEntry.objects.select_related("message", "message__payload").filter(dlq_id=dlq_id).first()
    )
    if entry is None:
        raise NotFound(f"dlq message {dlq_id} not found")
    return entry
