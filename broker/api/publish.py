"""``POST /v2/publish/{destination}`` and ``POST /v2/batch``."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from django.conf import settings
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from broker.api.lean import LeanAPIView, RawBodyAPIView
from broker.destinations import PublishRequest, drafts_for, is_url
from broker.errors import ApplicationError
from broker.services.publish import Draft, Published, messages_publish, publish_limits
from broker.services.queues import queue_name_check
from groups.selectors import url_groups_by_name

# Proxies may collapse "https://" in a path to "https:/".
COLLAPSED_SCHEME = re.compile(r"^(https?):/+", re.IGNORECASE)
# HTTP clients percent-encode the brackets of an IPv6 destination in our path.
ENCODED_IPV6_HOST = re.compile(r"^(https?://)%5B([0-9A-Fa-f:.]+)%5D", re.IGNORECASE)


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
    destination = ENCODED_IPV6_HOST.sub(r"\1[\2]", destination)
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


def check_fan_out(count: int) -> None:
    """One request may create at most QSTASH_MAX_MESSAGES_PER_REQUEST messages, fan-out counted."""
    if count > settings.QSTASH_MAX_MESSAGES_PER_REQUEST:
        raise ApplicationError(
            f"this request would create {count} messages; the maximum is "
            f"{settings.QSTASH_MAX_MESSAGES_PER_REQUEST} (QSTASH_MAX_MESSAGES_PER_REQUEST)"
        )


def answer(published: list[Published], is_group: bool) -> tuple[Any, bool]:
    """The wire shape (object for a URL, bare array for a group) and whether all were dups."""
    duplicate = bool(published) and all(p.deduplicated for p in published)
    if is_group:
        return [p.to_wire() for p in published], duplicate
    return published[0].to_wire(), duplicate


def publish_answer(request: Request, prefix: str, *, queue: str = "") -> Response:
    """Publish (or enqueue, with ``queue``) the request's body to the destination after
    ``prefix`` in its path, and answer as the SDKs expect."""
    destination, config = split_destination(request, prefix)
    if not destination:
        raise ApplicationError(f"invalid destination: use {prefix}<url or url group>")
    body = read_body(request)
    groups = {} if is_url(destination) else url_groups_by_name([destination])
    now = timezone.now()
    publish = PublishRequest(
        destination,
        request.headers,
        body,
        config,
        request.META.get("REMOTE_ADDR", ""),
        queue=queue,
    )
    drafts, is_group = drafts_for(publish, groups=groups, now=now, limits=publish_limits())
    check_fan_out(len(drafts))
    data, duplicate = answer(messages_publish(drafts=drafts, now=now), is_group)
    return Response(data, status=202 if duplicate else 200)


class PublishView(RawBodyAPIView):
    def post(self, request: Request, destination: str) -> Response:
        return publish_answer(request, "/v2/publish/")


def _batch_item(item: Any, index: int, caller_ip: str) -> PublishRequest:
    if not isinstance(item, dict):
        raise ApplicationError(f"invalid batch[{index}]: expected an object")
    destination = item.get("destination")
    if not isinstance(destination, str) or not destination:
        raise ApplicationError(f"invalid batch[{index}].destination: it is required")
    queue = item.get("queue") or ""
    if queue:
        queue_name_check(queue, field=f"batch[{index}].queue")
    headers = item.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ApplicationError(f"invalid batch[{index}].headers: expected string values")
    body = item.get("body")
    if body is not None and not isinstance(body, str):
        raise ApplicationError(f"invalid batch[{index}].body: expected a string or null")
    encoded = (body or "").encode()
    if len(encoded) > settings.QSTASH_MAX_BODY_BYTES:
        raise ApplicationError(
            f"invalid batch[{index}].body: {len(encoded)} bytes; "
            f"the maximum is {settings.QSTASH_MAX_BODY_BYTES}"
        )
    return PublishRequest(destination, headers, encoded, {}, caller_ip, queue=queue)


class BatchView(LeanAPIView):
    """Many publishes in one request and one transaction: the fast path.

    A bad item answers its own ``{"error"}`` in place; the others are published.
    """

    def post(self, request: Request) -> Response:
        items = request.data
        if not isinstance(items, list):
            raise ApplicationError("invalid batch: expected a JSON array of messages")
        if len(items) > settings.QSTASH_MAX_BATCH_ITEMS:
            raise ApplicationError(
                f"invalid batch: {len(items)} messages; the maximum is "
                f"{settings.QSTASH_MAX_BATCH_ITEMS} (QSTASH_MAX_BATCH_ITEMS)"
            )
        now = timezone.now()
        limits = publish_limits()
        caller_ip = request.META.get("REMOTE_ADDR", "")
        groups = url_groups_by_name(
            item["destination"]
            for item in items
            if isinstance(item, dict)
            and isinstance(item.get("destination"), str)
            and not is_url(item["destination"])
        )
        answers: list[Any] = [None] * len(items)
        planned: list[tuple[int, bool, int]] = []  # (item index, is group, draft count)
        drafts: list[Draft] = []
        for index, item in enumerate(items):
            try:
                item_drafts, is_group = drafts_for(
                    _batch_item(item, index, caller_ip), groups=groups, now=now, limits=limits
                )
            except ApplicationError as exc:
                answers[index] = {"error": exc.message}
                continue
            planned.append((index, is_group, len(item_drafts)))
            drafts += item_drafts
        check_fan_out(len(drafts))
        published = messages_publish(drafts=drafts, now=now) if drafts else []
        offset = 0
        for index, is_group, count in planned:
            answers[index] = answer(published[offset : offset + count], is_group)[0]
            offset += count
        return Response(answers)
