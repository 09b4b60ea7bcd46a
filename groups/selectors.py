"""Reads of URL groups."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from broker.errors import NotFound
from broker.wire import ms
from groups.models import UrlGroup


def url_groups_by_name(names: Iterable[str]) -> dict[str, UrlGroup]:
    """The named groups with their endpoints, in two queries however many names."""
    groups = UrlGroup.objects.filter(name__in=set(names)).prefetch_related("endpoints")
    return {group.name: group for group in groups}


def url_group_get(*, name: str) -> UrlGroup:
    group = url_groups_by_name([name]).get(name)
    if group is None:
        raise NotFound(f"url group {name} not found")
    return group


def url_group_to_wire(group: UrlGroup) -> dict[str, Any]:
    endpoints = []
    for endpoint in sorted(group.endpoints.all(), key=lambda e: e.pk):
        item = {"url": endpoint.url}
        if endpoint.name:
            item["name"] = endpoint.name
        endpoints.append(item)
    data: dict[str, Any] = {
        "name": group.name,
        "createdAt": ms(group.created_at),
        "updatedAt": ms(group.updated_at),
        "endpoints": endpoints,
    }
    if group.default_headers:
        data["headers"] = group.default_headers
    return data
