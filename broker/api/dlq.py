"""``/v2/dlq``: list, get, delete and retry dead-lettered messages."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.errors import ApplicationError, NotFound
from broker.filters import values
from broker.selectors import dlq_entries, dlq_entry_get, dlq_page
from broker.services.dlq import dlq_delete, dlq_retry
from broker.wire import dlq_to_wire


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


class DlqListView(APIView):
    def get(self, request: Request) -> Response:
        rows, cursor = dlq_page(dlq_entries(query=request.query_params), request.query_params)
        return Response(_with_cursor({"messages": [dlq_to_wire(r) for r in rows]}, cursor))

    def delete(self, request: Request) -> Response:
        query = _body_query(request)
        entries = dlq_entries(query=query)
        if "dlqIds" in query:
            ids = list(entries.values_list("dlq_id", flat=True))
            return Response({"deleted": dlq_delete(dlq_ids=ids)})
        rows, cursor = dlq_page(entries, request.query_params)
        deleted = dlq_delete(dlq_ids=[r.dlq_id for r in rows])
        return Response(_with_cursor({"deleted": deleted}, cursor))


class DlqEntryView(APIView):
    def get(self, request: Request, dlq_id: str) -> Response:
        return Response(dlq_to_wire(dlq_entry_get(dlq_id=dlq_id)))

    def delete(self, request: Request, dlq_id: str) -> Response:
        if not dlq_delete(dlq_ids=[dlq_id]):
            raise NotFound(f"dlq message {dlq_id} not found")
        return Response({"deleted": 1})


class DlqRetryView(APIView):
    def post(self, request: Request, dlq_id: str) -> Response:
        (published,) = dlq_retry(
            entries=[dlq_entry_get(dlq_id=dlq_id)], overrides=request.headers, now=timezone.now()
        )
        return Response(published.to_wire(), status=201)


class DlqRetryManyView(APIView):
    def post(self, request: Request) -> Response:
        query = _body_query(request)
        entries = dlq_entries(query=query)
        cursor = None
        if "dlqIds" in query:
            rows = list(entries)
            missing = set(values(query, "dlqIds")) - {r.dlq_id for r in rows}
            if missing:
                raise NotFound(f"dlq message {sorted(missing)[0]} not found")
        else:
            rows, cursor = dlq_page(entries, request.query_params)
        published = dlq_retry(entries=rows, overrides=request.headers, now=timezone.now())
        return Response(
            _with_cursor({"responses": [p.to_wire() for p in published]}, cursor), status=201
        )
