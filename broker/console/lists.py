"""List pages for tables too big to count: text filters, a paginator that never counts all."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.functional import cached_property

# A filtered list counts at most this many rows (the count reads "10001" beyond it).
COUNT_CAP = 10_000


def estimated_rows(model: type[Model]) -> int | None:
    """The planner's estimate of a table's rows (pg_class.reltuples), or None when unknown."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    # -1: never vacuumed or analysed since it was created.
    return int(row[0]) if row and row[0] >= 0 else None


class EstimatedCountPaginator(Paginator):
    """Pages without COUNT(*) over the whole table.

    Unfiltered, the count is PostgreSQL's estimate; filtered, it counts the first
    COUNT_CAP + 1 matches only, so a broad filter on ten million rows stays cheap.
    """

    @cached_property
    def count(self) -> int:
        rows: QuerySet[Any] = self.object_list  # type: ignore[assignment]
        if not rows.query.where:
            estimate = estimated_rows(rows.model)
            if estimate is not None:
                return estimate
        return int(rows.order_by()[: COUNT_CAP + 1].count())


class TextFilter(admin.SimpleListFilter):
    """A free-text box in the filter sidebar: an exact (indexed) lookup, no SELECT DISTINCT."""

    template = "admin/console/text_filter.html"
    lookup = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def value_for_lookup(self, value: str) -> Any:
        return value

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        try:
            return queryset.filter(**{self.lookup: self.value_for_lookup(value)})
        except (ValueError, ValidationError) as exc:
            # Bad input is a message on the page, not an error page: the filter is ignored.
            shown = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            messages.warning(request, f"{self.title}: {shown}")
            return queryset

    def choices(self, changelist: Any) -> Any:
        keep = QueryDict(changelist.get_query_string(remove=[self.parameter_name, "p"])[1:])
        yield {
            "name": self.parameter_name,
            "value": self.value() or "",
            "keep": [(k, v) for k, values in keep.lists() for v in values],
        }


def text_filter(title: str, parameter: str, lookup: str) -> type[TextFilter]:
    return type(
        f"{parameter.title()}Filter",
        (TextFilter,),
        {"title": title, "parameter_name": parameter, "lookup": lookup},
    )


class LabelFilter(TextFilter):
    title = "label"
    parameter_name = "label"
    lookup = "labels__contains"

    def value_for_lookup(self, value: str) -> Any:
        return f",{value},"  # labels are stored as ",a,b,"


class _MomentFilter(TextFilter):
    end_of_day = False

    def value_for_lookup(self, value: str) -> Any:
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            if day is None:
                raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or a date and time")
            moment = datetime.combine(day, time.max if self.end_of_day else time.min)
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, timezone.get_current_timezone())
        return moment


def moment_filter(title: str, parameter: str, lookup: str, end_of_day: bool) -> type[TextFilter]:
    return type(
        f"{parameter.title()}Filter",
        (_MomentFilter,),
        {"title": title, "parameter_name": parameter, "lookup": lookup, "end_of_day": end_of_day},
    )


class ExactIdSearch:
    """Search by an exact id through its unique index.

    The admin's "=field" search is case-insensitive (UPPER(...) = UPPER(...)),
    which no index serves: on a million rows that is a full scan per search.
    """

    id_lookups: tuple[str, ...] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        where = Q()
        for lookup in self.id_lookups:
            where |= Q(**{lookup: term})
        return queryset.filter(where), False
