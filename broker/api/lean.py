"""DRF views that do only what the publish path needs (issue 10).

DRF builds new renderer, parser, authenticator and permission objects for every
request and negotiates the renderer from ``Accept``. The API answers JSON whatever
the client accepts (QStash does too), and these objects hold no state, so one of
each per process serves every request; there is no throttling. Authentication is
still ``QStashTokenAuthentication``: one constant-time compare against the token
``broker.services.credentials`` caches (re-read every few seconds, so a change
made by another process takes effect here too).
"""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from broker.api.auth import QStashTokenAuthentication

_RENDERER = JSONRenderer()
_AUTHENTICATORS: list[BaseAuthentication] = [QStashTokenAuthentication()]
_PERMISSIONS: list[BasePermission] = [IsAuthenticated()]


class LeanAPIView(APIView):
    renderer_classes = [JSONRenderer]
    authentication_classes = [QStashTokenAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = []

    def get_renderers(self) -> list[BaseRenderer]:
        return [_RENDERER]

    def get_authenticators(self) -> list[BaseAuthentication]:
        return _AUTHENTICATORS

    def get_permissions(self) -> list[BasePermission]:
        return _PERMISSIONS

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        return _RENDERER, _RENDERER.media_type


class RawBodyAPIView(LeanAPIView):
    """A view that reads ``request.body`` itself: no parser is ever run."""

    parser_classes = []
