"""Writes to URL groups and their endpoints."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from broker.errors import ApplicationError, NotFound
from broker.header_check import check_headers
from broker.urls_check import validate_http_url
from groups.models import Endpoint, UrlGroup

NAME = re.compile(r"^[A-Za-z0-9\-_.]{1,200}$")
# The (group, url) unique index refuses a key longer than about 2,700 bytes
# (PostgreSQL's btree limit), a database error at insert; URLs are ASCII here.
MAX_ENDPOINT_URL_LENGTH = 2048


def validate_name(name: str, *, field: str = "url group name") -> str:
    if not NAME.match(name):
        raise ApplicationError(
            f"invalid {field} {name!r}: use 1-200 letters, digits, '-', '_' or '.'"
        )
    return name


def too_many_endpoints_message(count: int) -> str:
    return (
        f"invalid endpoints: the group would have {count} endpoints; the maximum is "
        f"{settings.QSTASH_MAX_GROUP_ENDPOINTS} (QSTASH_MAX_GROUP_ENDPOINTS)"
    )


def endpoint_specs_check(endpoints: Any, *, need_url: bool) -> list[tuple[str, str]]:
    """Validate ``[{"url", "name"?}]`` into (url, name) pairs."""
    if not isinstance(endpoints, list) or not endpoints:
        raise ApplicationError("invalid endpoints: expected a non-empty array of {url, name}")
    if len(endpoints) > settings.QSTASH_MAX_GROUP_ENDPOINTS:
        raise ApplicationError(too_many_endpoints_message(len(endpoints)))
    specs = []
    for index, item in enumerate(endpoints):
        if not isinstance(item, dict):
            raise ApplicationError(f"invalid endpoints[{index}]: expected an object")
        url, name = item.get("url") or "", item.get("name") or ""
        if not isinstance(url, str) or not isinstance(name, str):
            raise ApplicationError(f"invalid endpoints[{index}]: url and name must be strings")
        if need_url and not url:
            raise ApplicationError(f"invalid endpoints[{index}]: url is required")
        if not url and not name:
            raise ApplicationError(f"invalid endpoints[{index}]: give a url or a name")
        if len(url) > MAX_ENDPOINT_URL_LENGTH:
            raise ApplicationError(
                f"invalid endpoints[{index}].url: longer than {MAX_ENDPOINT_URL_LENGTH} characters"
            )
        if url:
            validate_http_url(url, field=f"endpoints[{index}].url")
        if name:
            validate_name(name, field=f"endpoints[{index}].name")
        specs.append((url, name))
    return specs


@transaction.atomic
def url_group_upsert_endpoints(*, name: str, endpoints: Any) -> UrlGroup:
    """Create the group if missing and add its endpoints, updating the name of a known url.

    Raises ApplicationError (400) for a bad group name, url or endpoint name;
    nothing is written then.
    """
    validate_name(name)
    specs = endpoint_specs_check(endpoints, need_url=True)
    now = timezone.now()
    group, created = UrlGroup.objects.select_for_update().get_or_create(
        name=name, defaults={"created_at": now, "updated_at": now}
    )
    for url, endpoint_name in specs:
        Endpoint.objects.update_or_create(group=group, url=url, defaults={"name": endpoint_name})
    if (count := group.endpoints.count()) > settings.QSTASH_MAX_GROUP_ENDPOINTS:
        # Raised inside the transaction: nothing of this request is kept.
        raise ApplicationError(too_many_endpoints_message(count))
    if not created:
        group.updated_at = now
        group.save(update_fields=["updated_at"])
    return group


@transaction.atomic
def url_group_remove_endpoints(*, name: str, endpoints: Any) -> int:
    """Remove endpoints matched by url or name; delete the group once it is empty.

    Raises NotFound for an unknown group. Returns how many endpoints went.
    """
    specs = endpoint_specs_check(endpoints, need_url=False)
    group = UrlGroup.objects.select_for_update().filter(name=name).first()
    if group is None:
        raise NotFound(f"url group {name} not found")
    removed = 0
    for url, endpoint_name in specs:
        matching = group.endpoints.all()
        if url:
            matching = matching.filter(url=url)
        if endpoint_name:
            matching = matching.filter(name=endpoint_name)
        removed += matching.delete()[0]
    if not group.endpoints.exists():
        group.delete()
    else:
        group.updated_at = timezone.now()
        group.save(update_fields=["updated_at"])
    return removed


def url_group_delete(*, name: str) -> bool:
    """Delete the group and its endpoints; messages already published are kept."""
    return UrlGroup.objects.filter(name=name).delete()[0] > 0


def validate_default_headers(headers: Any) -> dict[str, str | list[str]]:
    """``{"Name": "value" | ["value", ...]}``, or a 400 naming what is wrong."""

    def is_value(value: Any) -> bool:
        return isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )

    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and is_value(v) for k, v in headers.items()
    ):
        raise ApplicationError("invalid headers: expected an object of name to string or strings")
    check_headers(
        ((name, v) for name, value in headers.items() for v in _as_list(value)),
        max_count=settings.QSTASH_MAX_HEADERS,
        max_bytes=settings.QSTASH_MAX_HEADER_BYTES,
    )
    return headers


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def url_group_set_headers(*, name: str, headers: Any) -> UrlGroup:
    """Store default headers for every publish to the group. Raises NotFound, or 400."""
    validate_default_headers(headers)
    group = UrlGroup.objects.filter(name=name).first()
    if group is None:
        raise NotFound(f"url group {name} not found")
    group.default_headers = headers
    group.updated_at = timezone.now()
    group.save(update_fields=["default_headers", "updated_at"])
    return group
