"""``Authorization: Bearer <token>`` or ``?qstash_token=<token>``; anything else is 401."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from broker.services.credentials import token_matches


class ApiClient:
    """The authenticated caller: one token, no user accounts."""

    is_authenticated = True
    is_active = True
    pk = None


class QStashTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiClient, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationFailed(
                    "invalid Authorization header: use Bearer <QSTASH_TOKEN>"
                )
            token = token.strip()
        else:
            token = request.query_params.get("qstash_token", "")
            if not token:
                return None
        if not token_matches(token):
            raise AuthenticationFailed("invalid token")
        return ApiClient(), token

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="qstash"'
