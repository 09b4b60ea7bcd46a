"""``Authorization: Bearer <token>`` or ``?qstash_token=<token>``; anything else is 401.

A query token is refused (403) on a request a browser marks as cross-origin. With
``make run`` the token is the public dev-server token, so any web page the developer
visits could otherwise publish (a form POST or an ``<img>``) through the local server
with it. A bearer header needs a CORS preflight from a foreign page, and we answer
none, so the header path is not at risk. Clients that are not browsers send neither
``Origin`` nor ``Sec-Fetch-Site`` and keep working.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request

from broker.services.credentials import token_matches

# "same-origin" and "none" (typed into the address bar) are the developer's own.
CROSS_ORIGIN_FETCH_SITES = {"cross-site", "same-site"}


class ApiClient:
    """The authenticated caller: one token, no user accounts."""

    is_authenticated = True
    is_active = True
    pk = None


def is_cross_origin(request: Request) -> bool:
    """True when a browser says the request comes from another origin's page."""
    if request.META.get("HTTP_SEC_FETCH_SITE", "").lower() in CROSS_ORIGIN_FETCH_SITES:
        return True
    origin = request.META.get("HTTP_ORIGIN")
    if origin is None:
        return False
    # "null" (sandboxed frames, file: pages) has no host, so it never matches;
    # neither does an Origin no browser would send.
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return True
    return netloc.lower() != request.get_host().lower()


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
            # Refused before the comparison, so a foreign page learns nothing either.
            if is_cross_origin(request):
                raise PermissionDenied(
                    "qstash_token in the query string is refused on cross-origin "
                    "browser requests: send Authorization: Bearer <QSTASH_TOKEN>"
                )
        if not token_matches(token):
            raise AuthenticationFailed("invalid token")
        return ApiClient(), token

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="qstash"'
