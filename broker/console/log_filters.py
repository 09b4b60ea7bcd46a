"""The console's log page filters: those of ``GET /v2/logs``, under the same names, applied
by the API's own selector (``broker.selectors.logs_where``), so both find the same rows
through the same indexes (the message's partial and md5 indexes, the log's (state, time,
id) and (time, id) indexes)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from broker.console.lists import TextFilter
from broker.errors import ApplicationError
from broker.models import LogEntry
from broker.selectors import logs_where


def _where(
    request: HttpRequest, queryset: QuerySet[Any], title: str, query: dict[str, list[str]]
) -> QuerySet[Any]:
    try:
        return queryset.filter(logs_where(query))
    except ApplicationError as exc:
        # The API's 400, shown on the page; the filter is left out.
        messages.warning(request, f"{title}: {exc.message}")
        return queryset


class WireFilter(TextFilter):
    """A free-text filter named and applied as ``/v2/logs?<name>=`` is."""

    def wire_value(self, value: str) -> str:
        return value

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        try:
            wire = self.wire_value(value)
        except ValueError as exc:
            messages.warning(request, f"{self.title}: {exc}")
            return queryset
        return _where(request, queryset, str(self.title), {str(self.parameter_name): [wire]})


class WireMomentFilter(WireFilter):
    """``fromDate``/``toDate``: unix milliseconds as on the wire, or a date (and time)."""

    end_of_day = False

    def wire_value(self, value: str) -> str:
        if value.isdigit():
            return value
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            if day is None:
                raise ValueError(
                    f"{value!r} is not a date (YYYY-MM-DD), a date and time, "
                    "or a unix time in milliseconds"
                )
            moment = datetime.combine(day, time.max if self.end_of_day else time.min)
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, timezone.get_current_timezone())
        return str(int(moment.timestamp() * 1000))


class LogStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(s, s) for s in LogEntry.State.values] + [
            ("IN_PROGRESS", "IN_PROGRESS (active, retry or error)")
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        return _where(request, queryset, "state", {"state": [str(self.value())]})


def _text(title: str, wire: str) -> type[WireFilter]:
    return type(f"{wire}Filter", (WireFilter,), {"title": title, "parameter_name": wire})


def _moment(title: str, wire: str, end_of_day: bool) -> type[WireFilter]:
    return type(
        f"{wire}Filter",
        (WireMomentFilter,),
        {"title": title, "parameter_name": wire, "end_of_day": end_of_day},
    )


LOG_FILTERS: list[Any] = [
    LogStateFilter,
    _text("message id", "messageId"),
    _text("URL (exact)", "url"),
    _text("host", "host"),
    _text("path", "path"),
    _text("URL group", "topicName"),
    _text("endpoint name", "endpointName"),
    _text("queue", "queueName"),
    _text("schedule", "scheduleId"),
    _text("label", "label"),
    _text("flow-control key", "flowControlKey"),
    _text("caller IP", "callerIp"),
    _moment("from (date or ms)", "fromDate", end_of_day=False),
    _moment("to (date or ms)", "toDate", end_of_day=True),
]
