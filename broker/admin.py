"""The console, first cut: messages with their state, destination and log, read-only."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from broker.cron import describe, parse_cron
from broker.errors import ApplicationError
from broker.models import DlqEntry, FlowControlKey, LogEntry, Message, Queue, Schedule
from broker.schedule_selectors import schedule_get, schedule_triggers
from broker.services.dlq import dlq_delete, dlq_retry
from broker.services.flow_control import (
    flow_key_pause,
    flow_key_reset_rate,
    flow_key_resume,
    flow_key_unpin,
)
from broker.services.queues import queue_pause, queue_resume
from broker.services.schedules import schedule_delete, schedule_pause, schedule_resume
from broker.wire import visible_header


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LogEntryInline(ReadOnlyMixin, admin.TabularInline):
    model = LogEntry
    fields = ("time", "state", "response_status", "error", "next_delivery_time")
    readonly_fields = fields
    ordering = ("pk",)
    extra = 0
    can_delete = False


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("message_id", "state", "method", "url", "retried", "created_at", "due_at")
    list_filter = ("state", "method", "topic_name", "queue_name")
    search_fields = ("message_id", "url", "labels")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    inlines = [LogEntryInline]
    fields = (
        "message_id",
        "state",
        "url",
        "method",
        "shown_header",
        "shown_body",
        "retried",
        "max_retries",
        "retry_delay_expression",
        "timeout_seconds",
        "not_before",
        "due_at",
        "created_at",
        "finished_at",
        "callback",
        "failure_callback",
        "labels",
        "caller_ip",
        "last_response_status",
        "last_error",
    )
    readonly_fields = fields

    @admin.display(description="headers")
    def shown_header(self, obj: Message) -> dict[str, list[str]]:
        return visible_header(obj)

    @admin.display(description="body")
    def shown_body(self, obj: Message) -> str:
        from broker.wire import body_fields

        fields = body_fields(
            obj.body, redact="body" in obj.redact_fields, text_key="text", base64_key="b64"
        )
        return fields.get("text") or f"(base64) {fields.get('b64', '')}"


@admin.register(LogEntry)
class LogEntryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("time", "message", "state", "response_status", "error")
    list_filter = ("state",)
    list_select_related = ("message",)
    search_fields = ("message__message_id",)
    ordering = ("-pk",)


@admin.register(DlqEntry)
class DlqEntryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The dead-letter queue; retry and delete call the same services as the API."""

    list_display = ("dlq_id", "message", "url", "response_status", "created_at")
    list_select_related = ("message",)
    search_fields = ("dlq_id", "message__message_id", "message__url")
    ordering = ("-pk",)
    actions = ["retry", "remove"]
    fields = ("dlq_id", "message", "created_at", "url", "response_status", "error")
    readonly_fields = fields

    @admin.display(description="url")
    def url(self, obj: DlqEntry) -> str:
        return obj.message.url

    @admin.display(description="last status")
    def response_status(self, obj: DlqEntry) -> int | None:
        return obj.message.last_response_status

    @admin.display(description="last error")
    def error(self, obj: DlqEntry) -> str:
        return obj.message.last_error

    @admin.action(description="Retry: publish again and remove from the DLQ")
    def retry(self, request: HttpRequest, queryset: QuerySet[DlqEntry]) -> None:
        entries = list(queryset.select_related("message", "message__payload"))
        try:
            published = dlq_retry(entries=entries, overrides={}, now=timezone.now())
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        ids = ", ".join(p.message_id for p in published)
        self.message_user(request, f"Published {len(published)} message(s): {ids}")

    @admin.action(description="Delete from the DLQ")
    def remove(self, request: HttpRequest, queryset: QuerySet[DlqEntry]) -> None:
        deleted = dlq_delete(dlq_ids=list(queryset.values_list("dlq_id", flat=True)))
        self.message_user(request, f"Deleted {deleted} DLQ entr{'y' if deleted == 1 else 'ies'}.")


@admin.register(Queue)
class QueueAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Queues with their lag; pause and resume call the same services as the API."""

    list_display = ("name", "parallelism", "paused", "lag", "updated_at")
    search_fields = ("name",)
    ordering = ("name",)
    actions = ["pause", "resume"]
    fields = ("name", "parallelism", "paused", "lag", "created_at", "updated_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Queue]:
        # The lag of the listed queues only, through the pending-by-queue index.
        pending = Message.objects.filter(
            queue_name=OuterRef("name"), state__in=Message.PENDING_STATES
        ).exclude(queue_name="")
        return (
            super()
            .get_queryset(request)
            .annotate(
                _lag=Subquery(pending.values("queue_name").annotate(n=Count("id")).values("n")[:1])
            )
        )

    @admin.display(description="lag (undelivered)")
    def lag(self, obj: Queue) -> int:
        return getattr(obj, "_lag", None) or 0

    @admin.action(description="Pause: deliver nothing more until resumed")
    def pause(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        for name in queryset.values_list("name", flat=True):
            queue_pause(name=name, now=timezone.now())
        self.message_user(request, f"Paused {queryset.count()} queue(s).")

    @admin.action(description="Resume")
    def resume(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        for name in queryset.values_list("name", flat=True):
            queue_resume(name=name, now=timezone.now())
        self.message_user(request, f"Resumed {queryset.count()} queue(s).")


@admin.register(FlowControlKey)
class FlowControlKeyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Flow-control keys with their live counts (the same reads as the API)."""

    list_display = (
        "key",
        "limits",
        "wait_list",
        "in_flight",
        "paused",
        "pinned_parallelism",
        "pinned_rate",
    )
    search_fields = ("key",)
    ordering = ("key",)
    actions = ["pause", "resume", "reset_rate", "unpin"]
    fields = ("key", "limits", "wait_list", "in_flight", "paused", "created_at", "updated_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[FlowControlKey]:
        def count(**where: Any) -> Subquery:
            rows = Message.objects.filter(flow_control_key=OuterRef("key"), **where)
            return Subquery(rows.values("flow_control_key").annotate(n=Count("id")).values("n")[:1])

        return (
            super()
            .get_queryset(request)
            .annotate(
                _waiting=count(waiting_for=Message.Waiting.FLOW),
                _in_flight=count(flow_slot=True),
            )
        )

    @admin.display(description="limits")
    def limits(self, obj: FlowControlKey) -> str:
        parts = []
        if obj.parallelism:
            parts.append(f"parallelism={obj.parallelism}")
        if obj.rate:
            parts.append(f"rate={obj.rate}/{obj.period}s")
        return ", ".join(parts) or "none"

    @admin.display(description="waitlist")
    def wait_list(self, obj: FlowControlKey) -> int:
        return getattr(obj, "_waiting", None) or 0

    @admin.display(description="in flight")
    def in_flight(self, obj: FlowControlKey) -> int:
        return getattr(obj, "_in_flight", None) or 0

    def _each(self, request: HttpRequest, queryset: QuerySet[FlowControlKey], act: Any) -> None:
        keys = list(queryset.values_list("key", flat=True))
        for key in keys:
            act(key=key, now=timezone.now())
        self.message_user(request, f"Done for {len(keys)} key(s).")

    @admin.action(description="Pause")
    def pause(self, request: HttpRequest, queryset: QuerySet[FlowControlKey]) -> None:
        self._each(request, queryset, flow_key_pause)

    @admin.action(description="Resume")
    def resume(self, request: HttpRequest, queryset: QuerySet[FlowControlKey]) -> None:
        self._each(request, queryset, flow_key_resume)

    @admin.action(description="Reset the rate count")
    def reset_rate(self, request: HttpRequest, queryset: QuerySet[FlowControlKey]) -> None:
        self._each(request, queryset, flow_key_reset_rate)

    @admin.action(description="Unpin parallelism and rate")
    def unpin(self, request: HttpRequest, queryset: QuerySet[FlowControlKey]) -> None:
        self._each(
            request,
            queryset,
            lambda key, now: flow_key_unpin(key=key, parallelism=True, rate=True, now=now),
        )


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Schedules: cron in words, next trigger in the schedule's own zone, last states."""

    list_display = ("schedule_id", "destination", "in_words", "next_trigger", "paused", "error")
    search_fields = ("schedule_id", "destination")
    ordering = ("schedule_id",)
    actions = ["pause", "resume", "remove"]
    fields = (
        "schedule_id",
        "destination",
        "cron",
        "in_words",
        "next_trigger",
        "last_states",
        "paused",
        "error",
        "created_at",
        "updated_at",
        "produced",
    )
    readonly_fields = fields

    @admin.display(description="when")
    def in_words(self, obj: Schedule) -> str:
        return describe(parse_cron(obj.cron))

    @admin.display(description="next trigger")
    def next_trigger(self, obj: Schedule) -> str:
        following = schedule_triggers(obj, timezone.now())[1]
        if following is None or obj.paused:
            return "-"
        zone = ZoneInfo(parse_cron(obj.cron).zone)
        return following.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")

    @admin.display(description="last trigger's messages")
    def last_states(self, obj: Schedule) -> str:
        states = schedule_get(schedule_id=obj.schedule_id, now=timezone.now())
        shown = states.get("lastScheduleStates") or {}
        return ", ".join(f"{m}: {s}" for m, s in shown.items()) or "-"

    @admin.display(description="messages it made (latest 20)")
    def produced(self, obj: Schedule) -> SafeString:
        rows = Message.objects.filter(schedule_id=obj.schedule_id).order_by("-pk")[:20]
        links = [
            format_html(
                '<a href="{}">{}</a> {} {}',
                reverse("admin:broker_message_change", args=[m.pk]),
                m.message_id,
                m.state,
                m.scheduled_for,
            )
            for m in rows
        ]
        return mark_safe("<br>".join(links) or "-")  # noqa: S308 (each part escaped)

    def _each(self, request: HttpRequest, queryset: QuerySet[Schedule], act: Any) -> None:
        ids = list(queryset.values_list("schedule_id", flat=True))
        for schedule_id in ids:
            act(schedule_id=schedule_id, now=timezone.now())
        self.message_user(request, f"Done for {len(ids)} schedule(s).")

    @admin.action(description="Pause: skip triggers until resumed")
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, schedule_pause)

    @admin.action(description="Resume")
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, schedule_resume)

    @admin.action(description="Delete the schedule")
    def remove(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, schedule_delete)
