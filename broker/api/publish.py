"""``POST /v2/publish/{destination}``: the destination comes raw in the path."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote_plus

from django.conf import settings
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.errors import ApplicationError
from broker.publish_options import parse_publish_options
from broker.services.publish import Draft, messages_publish, publish_limits
from broker.urls_check import validate_http_url

# Proxies may collapse "https://" in a path to "https:/".
COLLAPSED_SCHEME = re.compile(r"^(https?):/+", re.IGNORECASE)


def _is_config_param(pair: str) -> bool:
    name = unquote_plus(pair.partition("=")[0]).lower()
    return name.startswith("upstash-") or name == "qstash_token"


def split_destination(request: Request, prefix: str) -> tuple[str, dict[str, str]]:
    """The destination as the client wrote it, and the ``upstash-*`` query settings.

    The SDKs append the destination unencoded, so its own query string arrives
    as the request's: it is re-attached without our settings and token.
    """
    raw = request.META.get("RAW_URI") or request.get_full_path()
    path, _, query = raw.partition("?")
    destination = path[path.index(prefix) + len(prefix) :] if prefix in path else ""
    destination = COLLAPSED_SCHEME.sub(lambda m: m.group(1).lower() + "://", destination)
    kept = [pair for pair in query.split("&") if pair and not _is_config_param(pair)]
    if kept:
        destination += "?" + "&".join(kept)
    config = {
        k.lower(): v
        for k, v in parse_qsl(query, keep_blank_values=True)
        if k.lower().startswith("upstash-")
    }
    return destination, config


def read_body(request: Request) -> bytes:
    limit = settings.QSTASH_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise ApplicationError(f"body is {declared} bytes; the maximum is {limit}", status=413)
    body = request.body
    if len(body) > limit:
        raise ApplicationError(f"body is {len(body)} bytes; the maximum is {limit}", status=413)
    return body


class PublishView(APIView):
    def post(self, request: Request, destination: str) -> Response:
        url, config = split_destination(request, "/v2/publish/")
        body = read_body(request)
        if not url:
            raise ApplicationError(
                "invalid destination: the path must be /v2/publish/<url or group>"
            )
        validate_http_url(url, field="destination url")
        now = timezone.now()
        options = parse_publish_options(request.headers, config, now=now, limits=publish_limits())
        draft = Draft(
            url=url, body=body, options=options, caller_ip=request.META.get("REMOTE_ADDR", "")
        )
        (published,) = messages_publish(drafts=[draft], now=now)
        return Response(published.to_wire(), status=202 if published.deduplicated else 200)
