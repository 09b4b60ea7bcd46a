"""``GET /v2/events`` (the SDKs) and ``GET /v2/logs`` (the docs): one page of log rows."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.selectors import logs_page
from broker.wire import log_to_wire


class LogsView(APIView):
    def get(self, request: Request) -> Response:
        rows, cursor = logs_page(query=request.query_params)
        events = [log_to_wire(row) for row in rows]
        data: dict[str, object] = {"events": events, "logs": events}
        if cursor is not None:
            data["cursor"] = cursor
        return Response(data)
