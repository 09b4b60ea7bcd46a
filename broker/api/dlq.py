"""``/v2/dlq``: list, get, delete and retry dead-lettered messages."""

from __future__ import annotations

import base64
from typing import Any

from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.errors import ApplicationError, NotFound
from broker.filters import message_q, page_count, page_cursor, page_order, values
from broker.models import DlqEntry
from broker.services.dlq import dlq_delete, dlq_retry
from broker.wire import message_to_wire

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
PAGE_PARAMS = {"cursor", "count", "order", "qstash_token"}
PAGE_MAX = 100


def dlq_to_wire(entry: DlqEntry) -> dict[str, Any]:
    message = entry.message
    data = message_to_wire(message)
    data["dlqId"] = entry.dlq_id
    data["responseStatus"] = message.last_response_status or 0
    data["responseHeader"] = message.last_response_header or {}
    if message.last_error:
        data["error"] = message.last_error
    body = bytes(message.last_response_body or b"")
    try:
        data["responseBody"] = body.decode("utf-8")
    except UnicodeDecodeError:
        data["responseBodyBase64"] = base64.b64encode(body).decode()
    return data


def _filtered(query: QueryDict | dict[str, list[str]]) -> QuerySet[DlqEntry]:
    """Entries matching the filters; given ``dlqIds``, every other filter is ignored."""
    unknown = set(query.keys()) - DLQ_FILTERS - PAGE_PARAMS
    if unknown:
        raise ApplicationError(f"invalid filter: unknown parameter {sorted(unknown)[0]!r}")
    entries = DlqEntry.objects.select_related("message", "message__payload")
    if "dlqIds" in query:
        # An empty list names no entry: it must not widen to "all of them".
        return entries.filter(dlq_id__in=values(query, "dlqIds"))
    where = message_q(query, prefix="message__", date_field="created_at")
    if statuses := values(query, "responseStatus"):
        try:
            where &= Q(message__last_response_status__in=[int(s) for s in statuses])
        except ValueError:
            raise ApplicationError("invalid responseStatus: expected an integer") from None
    return entries.filter(where)


def _page(entries: QuerySet[DlqEntry], query: QueryDict) -> tuple[list[DlqEntry], str | None]:
    count = page_count(query, default=PAGE_MAX, maximum=PAGE_MAX)
    cursor = page_cursor(query)
    if page_order(query, default="earliestFirst") == "latestFirst":
        entries = entries.order_by("-pk")
        if cursor is not None:
            entries = entries.filter(pk__lt=cursor)
    else:
        entries = entries.order_by("pk")
        if cursor is not None:
            entries = entries.filter(pk__gt=cursor)
    rows = list(entries[: count + 1])
    if len(rows) > count:
        return rows[:count], str(rows[count - 1].pk)
    return rows, None


def _body_query(request: Request) -> QueryDict | dict[str, list[str]]:
    """Query parameters, or the legacy JSON body ``{"dlqIds": [...]}`` (PY and GO)."""
    if not request.body:
        return request.query_params
    body = request.data
    if not isinstance(body, dict):
        raise ApplicationError('invalid body: expected a JSON object such as {"dlqIds": [...]}')
    merged: dict[str, list[str]] = {
        k: request.query_params.getlist(k) for k in request.query_params
    }
    for key, value in body.items():
        merged[key] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return merged


def _with_cursor(data: dict[str, Any], cursor: str | None) -> dict[str, Any]:
    if cursor is not None:
        data["cursor"] = cursor
    return data


def _entry(dlq_id: str) -> DlqEntry:
    entry = (
        DlqEntry.objects.select_related("message", "message__payload").filter(dlq_id=dlq_id).first()
    )
    if entry is None:
        raise NotFound(f"dlq message {dlq_id} not found")
    return entry


class DlqListView(APIView):
    def get(self, request: Request) -> Response:
        rows, cursor = _page(_filtered(request.query_params), request.query_params)
        return Response(_with_cursor({"messages": [dlq_to_wire(r) for r in rows]}, cursor))

    def delete(self, request: Request) -> Response:
        query = _body_query(request)
        entries = _filtered(query)
        if "dlqIds" in query:
            ids = list(entries.values_list("dlq_id", flat=True))
            return Response({"deleted": dlq_delete(dlq_ids=ids)})
        rows, cursor = _page(entries, request.query_params)
        deleted = dlq_delete(dlq_ids=[r.dlq_id for r in rows])
        return Response(_with_cursor({"deleted": deleted}, cursor))


class DlqEntryView(APIView):
    def get(self, request: Request, dlq_id: str) -> Response:
        return Response(dlq_to_wire(_entry(dlq_id)))

    def delete(self, request: Request, dlq_id: str) -> Response:
        if not dlq_delete(dlq_ids=[dlq_id]):
            raise NotFound(f"dlq message {dlq_id} not found")
        return Response({"deleted": 1})


class DlqRetryView(APIView):
    def post(self, request: Request, dlq_id: str) -> Response:
        (published,) = dlq_retry(
            entries=[_entry(dlq_id)], overrides=request.headers, now=timezone.now()
        )
        return Response(published.to_wire(), status=201)


class DlqRetryManyView(APIView):
    def post(self, request: Request) -> Response:
        query = _body_query(request)
        entries = _filtered(query)
        cursor = None
        if "dlqIds" in query:
            rows = list(entries)
            missing = set(values(query, "dlqIds")) - {r.dlq_id for r in rows}
            if missing:
                raise NotFound(f"dlq message {sorted(missing)[0]} not found")
        else:
            rows, cursor = _page(entries, request.query_params)
        published = dlq_retry(entries=rows, overrides=request.headers, now=timezone.now())
        return Response(
            _with_cursor({"responses": [p.to_wire() for p in published]}, cursor), status=201
        )
