"""From "publish this to that" to drafts: a URL gives one, a URL group one per endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from broker.errors import ApplicationError
from broker.models import Payload
from broker.publish_options import Limits, parse_publish_options
from broker.services.publish import Draft
from broker.urls_check import validate_http_url
from groups.models import UrlGroup


def is_url(destination: str) -> bool:
    return destination.startswith(("http://", "https://"))


@dataclass
class PublishRequest:
    """One publish as the client sent it (a request, a batch item, a DLQ retry)."""

    destination: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str]
    caller_ip: str = ""
    queue: str = ""  # enqueue: the queue the messages go through


# Messages of a queue go in order, as soon as the queue admits them.
_NOT_FOR_QUEUES = ("upstash-delay", "upstash-not-before")


def _check_queue_options(request: PublishRequest) -> None:
    given = {name.lower() for name in request.headers} | {k.lower() for k in request.query}
    for name in _NOT_FOR_QUEUES:
        if name in given:
            raise ApplicationError(
                f"invalid {name.title()}: a message enqueued to a queue cannot be delayed"
            )


def group_named(groups: Mapping[str, UrlGroup], destination: str) -> UrlGroup:
    """The URL group a destination that is not a URL names; ApplicationError when none."""
    group = groups.get(destination)
    if group is None:
        raise ApplicationError(
            f"invalid destination {destination!r}: not a url (add http:// or https://) "
            "and no url group has that name"
        )
    return group


def with_defaults(defaults: Mapping[str, object], headers: Mapping[str, str]) -> dict[str, str]:
    """The group's default headers overlaid by the request's own (names case-insensitive)."""
    given = {name.lower() for name in headers}
    merged = {
        name: ", ".join(value) if isinstance(value, list) else str(value)
        for name, value in defaults.items()
        if name.lower() not in given
    }
    merged.update(headers)
    return merged


def drafts_for(
    request: PublishRequest,
    *,
    groups: Mapping[str, UrlGroup],
    now: datetime,
    limits: Limits,
) -> tuple[list[Draft], bool]:
    """The drafts to publish and whether the destination was a group.

    ``groups`` holds the groups named by the caller's destinations (prefetched
    with their endpoints). Raises ApplicationError for bad input.
    """
    destination = request.destination
    payload = Payload(body=request.body)
    if request.queue:
        _check_queue_options(request)
    if is_url(destination):
        validate_http_url(destination, field="destination url")
        options = parse_publish_options(request.headers, request.query, now=now, limits=limits)
        draft = Draft(destination, payload, options, caller_ip=request.caller_ip)
        draft.queue_name = request.queue
        return [draft], False
    group = group_named(groups, destination)
    headers = with_defaults(group.default_headers, request.headers)
    options = parse_publish_options(headers, request.query, now=now, limits=limits)
    drafts = [
        Draft(
            endpoint.url,
            payload,
            options,
            caller_ip=request.caller_ip,
            topic_name=group.name,
            endpoint_name=endpoint.name,
            queue_name=request.queue,
        )
        for endpoint in sorted(group.endpoints.all(), key=lambda e: e.pk)
    ]
    return drafts, True
