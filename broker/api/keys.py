"""Signing keys: read and rotate."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.services.credentials import credentials_get, signing_keys_rotate


class KeysView(APIView):
    def get(self, request: Request) -> Response:
        keys = credentials_get()
        return Response({"current": keys.current, "next": keys.next})


class KeysRotateView(APIView):
    def post(self, request: Request) -> Response:
        keys = signing_keys_rotate()
        return Response({"current": keys.current, "next": keys.next})
