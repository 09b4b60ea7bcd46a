"""Messages: get one, cancel one, cancel many."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.http import QueryDict
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.errors import ApplicationError
from broker.filters import MESSAGE_FILTERS, message_q
from broker.selectors import message_get_pending
from broker.services.cancel import messages_cancel
from broker.wire import message_to_wire

CANCEL_MAX = 500


class MessageView(APIView):
    def get(self, request: Request, message_id: str) -> Response:
        return Response(message_to_wire(message_get_pending(message_id=message_id)))

    def delete(self, request: Request, message_id: str) -> Response:
        message = message_get_pending(message_id=message_id)
        cancelled = messages_cancel(where=Q(pk=message.pk), now=timezone.now())
        return Response({"cancelled": cancelled})


def _cancel_filters(request: Request) -> tuple[dict[str, list[str]], int | None]:
    """Filters from the query string (JS) or the legacy JSON body (PY), and the count."""
    query: QueryDict = request.query_params
    filters: dict[str, list[str]] = {k: query.getlist(k) for k in query if k in MESSAGE_FILTERS}
    unknown = set(query) - MESSAGE_FILTERS - {"count", "cursor", "qstash_token"}
    body: Any = request.data if request.body else {}
    if not isinstance(body, dict):
        raise ApplicationError('invalid body: expected a JSON object such as {"messageIds": [...]}')
    for key, value in body.items():
        if key == "count":
            continue
        if key not in MESSAGE_FILTERS:
            unknown.add(key)
            continue
        if key == "messageIds" and not isinstance(value, list):
            raise ApplicationError("invalid messageIds: expected an array of message ids")
        filters[key] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if unknown:
        raise ApplicationError(f"invalid filter: unknown parameter {sorted(unknown)[0]!r}")
    count = query.get("count") or (str(body["count"]) if "count" in body else None)
    if count is None:
        return filters, None
    try:
        number = int(count)
    except ValueError:
        raise ApplicationError(f"invalid count: {count!r} is not an integer") from None
    if not 1 <= number <= CANCEL_MAX:
        raise ApplicationError(f"invalid count: must be between 1 and {CANCEL_MAX}")
    return filters, number


class MessagesView(APIView):
    def delete(self, request: Request) -> Response:
        filters, count = _cancel_filters(request)
        ids = [i for v in filters.get("messageIds", []) for i in v.split(",") if i]
        # Given ids, every other filter is ignored (reference 2.5).
        where = Q(message_id__in=ids) if ids else message_q(filters)
        cancelled = messages_cancel(where=where, now=timezone.now(), limit=count, filters=filters)
        return Response({"cancelled": cancelled})
