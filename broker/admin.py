"""The console's model pages. Every action calls the service the API calls, and each
is gated by a permission the "operator" group holds and "viewer" does not
(broker/console/roles.py)."""

from __future__ import annotations

from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from broker.console.edits import (
    RETRY_MAX,
    dlq_retry_overrides_view,
    flow_key_pin_view,
    queue_parallelism_view,
)
from broker.console.lists import (
    EstimatedCountPaginator,
    ExactIdSearch,
    LabelFilter,
    moment_filter,
    text_filter,
)
from broker.console.log_filters import LOG_FILTERS
from broker.cron import describe, parse_cron
from broker.errors import ApplicationError
from broker.models import (
    Credentials,
    DlqEntry,
    FlowControlKey,
    LogEntry,
    Message,
    Queue,
    Schedule,
)
from broker.schedule_selectors import schedule_get, schedule_triggers
from broker.services.cancel import messages_cancel
from broker.services.credentials import signing_keys_rotate
from broker.services.dlq import dlq_delete, dlq_retry
from broker.services.flow_control import (
    flow_key_pause,
    flow_key_reset_rate,
    flow_key_resume,
    flow_key_unpin,
)
from broker.services.queues import queue_pause, queue_resume
from broker.services.schedules import schedule_delete, schedule_pause, schedule_resume
from broker.wire import body_fields, visible_header


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _allowed(codename: str) -> Any:
    """A ``has_<name>_permission`` method for ``@admin.action(permissions=[name])``.

    The admin drops an action the user lacks from the page and refuses it when
    posted anyway, so a viewer neither sees nor can forge it.
    """

    def check(self: admin.ModelAdmin[Any], request: HttpRequest) -> bool:
        return bool(request.user.has_perm(f"broker.{codename}"))

    return check


def _tool_urls(model_admin: admin.ModelAdmin[Any], views: list[tuple[str, str, Any]]) -> list[Any]:
    """URLs of the console's forms under a model's admin: ``<pk>/<slug>/`` or ``<slug>/``."""
    opts = model_admin.model._meta
    site = model_admin.admin_site
    urls = []
    for route, slug, view in views:
        urls.append(
            path(
                route,
                site.admin_view(partial(view, model_admin)),
                name=f"{opts.app_label}_{opts.model_name}_{slug}",
            )
        )
    return urls


class ToolsMixin:
    """Links to the console's forms on a row's page, for those allowed to use them.

    ``tools``: (url name suffix, label, permission). The forms check the permission
    again themselves; hiding the link only spares a viewer a 403.
    """

    tools: tuple[tuple[str, str, str], ...] = ()

    def _tools_for(self, request: HttpRequest, pk: Any) -> list[tuple[str, str]]:
        opts = self.model._meta  # type: ignore[attr-defined]
        return [
            (reverse(f"admin:{opts.app_label}_{opts.model_name}_{slug}", args=[pk]), label)
            for slug, label, permission in self.tools
            if request.user.has_perm(permission)
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        context = {**(extra_context or {}), "console_tools": self._tools_for(request, object_id)}
        return super().change_view(request, object_id, form_url, context)  # type: ignore[misc]

    def get_list_display(self, request: HttpRequest) -> Any:
        shown = super().get_list_display(request)  # type: ignore[misc]
        if any(request.user.has_perm(permission) for _, _, permission in self.tools):
            return (*shown, "tool_links")
        return shown

    @admin.display(description="")
    def tool_links(self, obj: Any) -> SafeString:
        # The list knows no request: links for every tool; the list shows this column only
        # to those allowed one (get_list_display) and each form checks its own permission.
        opts = self.model._meta  # type: ignore[attr-defined]
        return format_html_join(
            " ",
            '<a class="console-tool" href="{}">{}</a>',
            (
                (reverse(f"admin:{opts.app_label}_{opts.model_name}_{slug}", args=[obj.pk]), label)
                for slug, label, _ in self.tools
            ),
        )


def _confirmed(request: HttpRequest) -> bool:
    return request.POST.get("confirm") == "yes"


def _confirmation(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    title: str,
    explanation: str,
    button: str,
) -> TemplateResponse:
    """An intermediate page, like the admin's own delete confirmation, that posts back."""
    shown = list(queryset[:50])
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "explanation": explanation,
        "button": button,
        "objects": shown,
        "more": max(0, queryset.count() - len(shown)) if len(shown) == 50 else 0,
        "action": request.POST.get("action", ""),
        "select_across": request.POST.get("select_across", "0"),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "opts": model_admin.model._meta,
    }
    return TemplateResponse(request, "admin/console/confirm_action.html", context)


def _body_shown(body: bytes, redacted_field: bool) -> str:
    """Text when it is UTF-8, else hex; the redaction when the field is redacted."""
    fields = body_fields(body, redact=redacted_field, text_key="text", base64_key="b64")
    if "text" in fields:
        return fields["text"]
    return f"(hex) {body[:4096].hex(' ')}{' ...' if len(body) > 4096 else ''}"


MESSAGE_FILTERS: list[Any] = [
    "state",
    text_filter("destination or host", "destination", "url__icontains"),
    text_filter("URL group", "url_group", "topic_name"),
    text_filter("queue", "queue", "queue_name"),
    text_filter("schedule", "schedule", "schedule_id"),
    LabelFilter,
    text_filter("flow-control key", "flow_key", "flow_control_key"),
    moment_filter("created from", "created_from", "created_at__gte", end_of_day=False),
    moment_filter("created until", "created_until", "created_at__lte", end_of_day=True),
]


@admin.register(Message)
class MessageAdmin(ExactIdSearch, ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("message_id", "state", "method", "url", "retried", "created_at", "due_at")
    list_filter = MESSAGE_FILTERS
    # Exact match through the unique index: a substring search would read every row.
    search_fields = ("message_id",)  # shows the box; ExactIdSearch does the search
    id_lookups = ("message_id",)
    search_help_text = "Message id (exact)"
    ordering = ("-pk",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = ["cancel", "retry"]
    fields = (
        "message_id",
        "state",
        "url",
        "method",
        "shown_header",
        "shown_body",
        "timeline",
        "callbacks_shown",
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
        "topic_name",
        "queue_name",
        "schedule_id",
        "flow_control_key",
        "caller_ip",
        "last_response_status",
        "last_error",
    )
    readonly_fields = fields

    has_cancel_permission = _allowed("cancel_message")
    has_retry_permission = _allowed("retry_message")

    @admin.display(description="headers")
    def shown_header(self, obj: Message) -> dict[str, list[str]]:
        return visible_header(obj)

    @admin.display(description="body")
    def shown_body(self, obj: Message) -> str:
        return _body_shown(obj.body, "body" in obj.redact_fields)

    @admin.display(description="attempts")
    def timeline(self, obj: Message) -> str:
        rows = []
        for entry in obj.logs.order_by("pk"):
            rows.append(
                {
                    "entry": entry,
                    "headers": entry.response_header or {},
                    "body": _body_shown(bytes(entry.response_body), False)[:500]
                    if entry.response_body
                    else "",
                }
            )
        return render_to_string("admin/console/timeline.html", {"rows": rows})

    @admin.display(description="callbacks")
    def callbacks_shown(self, obj: Message) -> str:
        made = list(obj.callbacks.order_by("pk").only("pk", "message_id", "state", "url"))
        return render_to_string("admin/console/callbacks.html", {"callbacks": made})

    @admin.action(description="Cancel: deliver nothing more", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        # The API's cancel: pending ones only; the rest are left as they are.
        pks = list(queryset.values_list("pk", flat=True))
        done = messages_cancel(where=Q(pk__in=pks), now=timezone.now())
        self.message_user(request, f"Cancelled {done} of {len(pks)} message(s).")

    @admin.action(description="Retry (failed messages in the DLQ)", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        # A failed message is retried through its DLQ entry, as POST /v2/dlq/retry does.
        entries = list(
            DlqEntry.objects.filter(message__in=queryset).select_related(
                "message", "message__payload"
            )
        )
        if not entries:
            self.message_user(
                request, "None of these messages is a failed one in the DLQ.", messages.WARNING
            )
            return
        _retry_entries(self, request, entries)


def _retry_entries(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, entries: list[DlqEntry]
) -> None:
    try:
        published = dlq_retry(entries=entries, overrides={}, now=timezone.now())
    except ApplicationError as exc:
        model_admin.message_user(request, exc.message, messages.ERROR)
        return
    ids = ", ".join(p.message_id for p in published)
    model_admin.message_user(request, f"Published {len(published)} message(s): {ids}")


@admin.register(LogEntry)
class LogEntryAdmin(ExactIdSearch, ReadOnlyMixin, admin.ModelAdmin):
    """The log with the filters of ``GET /v2/logs`` (broker/console/log_filters.py)."""

    list_display = ("time", "message", "state", "response_status", "took", "error")
    list_filter = LOG_FILTERS
    list_select_related = ("message",)
    search_fields = ("message__message_id",)
    id_lookups = ("message__message_id",)
    search_help_text = "Message id (exact)"
    # Newest first by (time, id), as /v2/logs pages: log_time_id_idx, or log_state_idx
    # under a state filter, read in order and stopped at the page's end.
    ordering = ("-time", "-id")
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    @admin.display(description="took")
    def took(self, obj: LogEntry) -> str:
        return f"{obj.duration_ms} ms" if obj.duration_ms is not None else ""


@admin.register(DlqEntry)
class DlqEntryAdmin(ExactIdSearch, ReadOnlyMixin, admin.ModelAdmin):
    """The dead-letter queue; retry and delete call the same services as the API."""

    list_display = ("dlq_id", "message", "url", "response_status", "error", "created_at")
    list_filter = (
        text_filter("destination or host", "destination", "message__url__icontains"),
        text_filter("URL group", "url_group", "message__topic_name"),
        text_filter("queue", "queue", "message__queue_name"),
        text_filter("response status", "status", "message__last_response_status"),
        moment_filter("failed from", "failed_from", "created_at__gte", end_of_day=False),
        moment_filter("failed until", "failed_until", "created_at__lte", end_of_day=True),
    )
    list_select_related = ("message",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    search_fields = ("dlq_id",)
    id_lookups = ("dlq_id", "message__message_id")
    search_help_text = "DLQ id or message id (exact)"
    ordering = ("-pk",)
    actions = ["retry", "retry_with_overrides", "remove"]
    fields = ("dlq_id", "message", "created_at", "url", "response_status", "error")
    readonly_fields = fields
    change_form_template = "admin/console/change_form_tools.html"

    def get_urls(self) -> list[Any]:
        return [
            *_tool_urls(
                self, [("retry-with-overrides/", "retry_overrides", dlq_retry_overrides_view)]
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        tools = []
        if request.user.has_perm("broker.retry_dlqentry"):
            url = reverse("admin:broker_dlqentry_retry_overrides")
            tools.append((f"{url}?ids={object_id}", "Retry with overrides"))
        context = {**(extra_context or {}), "console_tools": tools}
        return super().change_view(request, object_id, form_url, context)

    @admin.display(description="url")
    def url(self, obj: DlqEntry) -> str:
        return obj.message.url

    @admin.display(description="last status")
    def response_status(self, obj: DlqEntry) -> int | None:
        return obj.message.last_response_status

    @admin.display(description="last error")
    def error(self, obj: DlqEntry) -> str:
        return obj.message.last_error

    has_retry_permission = _allowed("retry_dlqentry")
    has_remove_permission = _allowed("delete_dlqentry")

    @admin.action(description="Retry: publish again and remove from the DLQ", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[DlqEntry]) -> TemplateResponse | None:
        if not _confirmed(request):
            return _confirmation(
                self,
                request,
                queryset,
                title="Retry these DLQ entries?",
                explanation=(
                    "Each entry's message is published again as a new message, with the same "
                    "body and settings, and the entry leaves the dead-letter queue. The "
                    "destination will receive it again."
                ),
                button="Yes, retry them",
            )
        _retry_entries(self, request, list(queryset.select_related("message", "message__payload")))
        return None

    @admin.action(
        description=f"Retry with overrides (a form; at most {RETRY_MAX})", permissions=["retry"]
    )
    def retry_with_overrides(
        self, request: HttpRequest, queryset: QuerySet[DlqEntry]
    ) -> HttpResponseRedirect:
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True)[:RETRY_MAX])
        return HttpResponseRedirect(f"{reverse('admin:broker_dlqentry_retry_overrides')}?ids={ids}")

    @admin.action(description="Delete from the DLQ", permissions=["remove"])
    def remove(self, request: HttpRequest, queryset: QuerySet[DlqEntry]) -> TemplateResponse | None:
        if not _confirmed(request):
            return _confirmation(
                self,
                request,
                queryset,
                title="Delete these DLQ entries?",
                explanation=(
                    "The entries leave the dead-letter queue for good and cannot be retried "
                    "any more. Their messages and logs stay until pruned."
                ),
                button="Yes, delete them",
            )
        deleted = dlq_delete(dlq_ids=list(queryset.values_list("dlq_id", flat=True)))
        self.message_user(request, f"Deleted {deleted} DLQ entr{'y' if deleted == 1 else 'ies'}.")
        return None


@admin.register(Queue)
class QueueAdmin(ToolsMixin, ReadOnlyMixin, admin.ModelAdmin):
    """Queues with their lag; pause, resume and parallelism call the same services as the API."""

    tools = (("parallelism", "Set parallelism", "broker.change_queue"),)
    change_form_template = "admin/console/change_form_tools.html"

    def get_urls(self) -> list[Any]:
        return [
            *_tool_urls(self, [("<path:pk>/parallelism/", "parallelism", queue_parallelism_view)]),
            *super().get_urls(),
        ]

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

    has_pause_permission = _allowed("pause_queue")

    @admin.action(description="Pause: deliver nothing more until resumed", permissions=["pause"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        for name in queryset.values_list("name", flat=True):
            queue_pause(name=name, now=timezone.now())
        self.message_user(request, f"Paused {queryset.count()} queue(s).")

    @admin.action(description="Resume", permissions=["pause"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        for name in queryset.values_list("name", flat=True):
            queue_resume(name=name, now=timezone.now())
        self.message_user(request, f"Resumed {queryset.count()} queue(s).")


@admin.register(FlowControlKey)
class FlowControlKeyAdmin(ToolsMixin, ReadOnlyMixin, admin.ModelAdmin):
    """Flow-control keys with their live counts (the same reads as the API)."""

    tools = (("pin", "Pin limits", "broker.manage_flowcontrolkey"),)
    change_form_template = "admin/console/change_form_tools.html"

    def get_urls(self) -> list[Any]:
        return [
            *_tool_urls(self, [("<path:pk>/pin/", "pin", flow_key_pin_view)]),
            *super().get_urls(),
        ]

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

    has_manage_permission = _allowed("manage_flowcontrolkey")

    @admin.action(description="Pause", permissions=["manage"])
    def pause(self, request: HttpRequest, queryset: QuerySet[FlowControlKey]) -> None:
        self._each(request, queryset, flow_key_pause)

    @admin.action(permissions=["manage"], description="Resume")
    def resume(self, request: HttpRequest, queryset: QuerySet[FlowControlKey]) -> None:
        self._each(request, queryset, flow_key_resume)

    @admin.action(permissions=["manage"], description="Reset the rate count")
    def reset_rate(self, request: HttpRequest, queryset: QuerySet[FlowControlKey]) -> None:
        self._each(request, queryset, flow_key_reset_rate)

    @admin.action(permissions=["manage"], description="Unpin parallelism and rate")
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

    has_pause_permission = _allowed("pause_schedule")
    has_remove_permission = _allowed("delete_schedule")

    @admin.action(description="Pause: skip triggers until resumed", permissions=["pause"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, schedule_pause)

    @admin.action(description="Resume", permissions=["pause"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, schedule_resume)

    @admin.action(description="Delete the schedule", permissions=["remove"])
    def remove(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, schedule_delete)


def _masked(secret: str) -> str:
    return f"{secret[:8]}…{secret[-4:]}" if len(secret) > 16 else "…"


@admin.register(Credentials)
class SigningKeysAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The stored token and signing keys, masked; rotation calls the API's service."""

    list_display = ("__str__", "current_key", "next_key", "token_shown", "updated_at")
    fields = ("current_key", "next_key", "token_shown", "updated_at")
    readonly_fields = fields
    actions = ["rotate"]
    has_rotate_permission = _allowed("rotate_credentials")

    @admin.display(description="current signing key")
    def current_key(self, obj: Credentials) -> str:
        return _masked(obj.current_signing_key)

    @admin.display(description="next signing key")
    def next_key(self, obj: Credentials) -> str:
        return _masked(obj.next_signing_key)

    @admin.display(description="API token")
    def token_shown(self, obj: Credentials) -> str:
        return _masked(obj.token)

    @admin.action(description="Rotate the signing keys", permissions=["rotate"])
    def rotate(self, request: HttpRequest, queryset: QuerySet[Credentials]) -> Any:
        if not _confirmed(request):
            return _confirmation(
                self,
                request,
                queryset,
                title="Rotate the signing keys?",
                explanation=(
                    "The next key becomes the current key and a new next key is made; "
                    "messages are signed with the new current key from now on. Receivers "
                    "that verify with both keys (the SDKs' Receiver) and still hold the old "
                    "pair keep accepting them, since the new current key was their next key. "
                    "Give them the new pair before the next rotation: after two rotations the "
                    "old pair matches nothing. A receiver checking only the old current key "
                    "rejects messages from now on. "
                    "POST /v2/keys/rotate does the same."
                ),
                button="Yes, rotate",
            )
        try:
            keys = signing_keys_rotate()
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return None
        self.message_user(
            request,
            f"Rotated: current key {_masked(keys.current)}, next key {_masked(keys.next)}.",
        )
        return None
