"""The console, first cut: messages with their state, destination and log, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from broker.errors import ApplicationError
from broker.models import DlqEntry, LogEntry, Message
from broker.services.dlq import dlq_delete, dlq_retry
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
