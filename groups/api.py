"""``/v2/topics``: URL groups on the wire."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from groups.models import UrlGroup
from groups.selectors import url_group_get, url_group_to_wire
from groups.services import (
    url_group_delete,
    url_group_remove_endpoints,
    url_group_set_headers,
    url_group_upsert_endpoints,
)


def _body(request: Request) -> dict[str, Any]:
    data = request.data if request.body else {}
    return data if isinstance(data, dict) else {"endpoints": None}


class UrlGroupsView(APIView):
    def get(self, request: Request) -> Response:
        groups = UrlGroup.objects.prefetch_related("endpoints").order_by("name")
        return Response([url_group_to_wire(group) for group in groups])


class UrlGroupView(APIView):
    def get(self, request: Request, name: str) -> Response:
        return Response(url_group_to_wire(url_group_get(name=name)))

    def delete(self, request: Request, name: str) -> Response:
        # 2xx for an unknown name: the SDK tests delete groups that may not exist.
        url_group_delete(name=name)
        return Response({"deleted": True})

    def patch(self, request: Request, name: str) -> Response:
        group = url_group_set_headers(name=name, headers=_body(request).get("headers"))
        return Response(url_group_to_wire(url_group_get(name=group.name)))


class UrlGroupEndpointsView(APIView):
    def post(self, request: Request, name: str) -> Response:
        url_group_upsert_endpoints(name=name, endpoints=_body(request).get("endpoints"))
        return Response(url_group_to_wire(url_group_get(name=name)))

    def delete(self, request: Request, name: str) -> Response:
        removed = url_group_remove_endpoints(name=name, endpoints=_body(request).get("endpoints"))
        return Response({"removed": removed})
