"""The console's edit forms: each calls the service the API calls, with the API's checks,
and shows the API's refusal on the form (a 4xx there, never a 500 here).

- a queue's parallelism (``POST /v2/queues``): permission ``broker.change_queue``;
- pinning a flow-control key's limits (``POST /v2/flowControl/{key}/pin``):
  ``broker.manage_flowcontrolkey``;
- retrying DLQ entries with ``Upstash-*`` overrides (``POST /v2/dlq/retry``):
  ``broker.retry_dlqentry``.

Each view is wrapped by ``AdminSite.admin_view`` (staff login, CSRF) and checks its
permission on GET and POST alike, so a viewer can neither see nor forge it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from broker.console.publish import METHODS, header_lines
from broker.errors import ApplicationError
from broker.models import DlqEntry, FlowControlKey, Message, Queue
from broker.services.dlq import dlq_retry, original_headers
from broker.services.flow_control import flow_key_pin, flow_pin_values
from broker.services.queues import queue_parallelism_check, queue_upsert

# At most this many entries are retried with one set of overrides (the API's bulk page).
RETRY_MAX = 100


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def _page(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    *,
    form: forms.Form,
    title: str,
    intro: str,
    submit: str,
    original: Any = None,
    shown: list[tuple[str, str]] | None = None,
) -> TemplateResponse:
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "submit": submit,
        "form": form,
        "opts": model_admin.model._meta,
        "original": original,
        "shown": shown or [],
    }
    return TemplateResponse(request, "admin/console/form.html", context)


# --- queues ------------------------------------------------------------------------


class ParallelismForm(forms.Form):
    parallelism = forms.CharField(
        help_text="How many of the queue's messages may be in flight at once (1: FIFO)."
    )

    def clean_parallelism(self) -> int:
        raw = self.cleaned_data["parallelism"].strip()
        try:
            value: object = int(raw)
        except ValueError:
            value = raw
        try:
            return queue_parallelism_check(value)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None


def queue_parallelism_view(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, pk: str
) -> HttpResponse:
    _require(request, "broker.change_queue")
    queue = get_object_or_404(Queue, pk=pk)
    form = ParallelismForm(
        request.POST if request.method == "POST" else None,
        initial={"parallelism": queue.parallelism},
    )
    if request.method == "POST" and form.is_valid():
        try:
            # paused=None: the form changes the parallelism only, as the API's upsert
            # without "paused".
            queue_upsert(
                name=queue.name,
                parallelism=form.cleaned_data["parallelism"],
                paused=None,
                now=timezone.now(),
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request, f"Queue {queue.name}: parallelism {form.cleaned_data['parallelism']}."
            )
            return HttpResponseRedirect(reverse("admin:broker_queue_changelist"))
    return _page(
        model_admin,
        request,
        form=form,
        title=f"Parallelism of queue {queue.name}",
        intro="Takes effect at once, as POST /v2/queues does: more parallelism admits "
        "waiting messages now; less lets those in flight finish.",
        submit="Save",
        original=queue,
    )


# --- flow-control keys -------------------------------------------------------------


class PinForm(forms.Form):
    parallelism = forms.CharField(required=False, help_text="Attempts in flight at once.")
    rate = forms.CharField(required=False, help_text="Attempts started per period.")
    period = forms.CharField(
        required=False, help_text='The rate\'s period: seconds, or a duration such as "1m".'
    )


def flow_key_pin_view(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, pk: str
) -> HttpResponse:
    _require(request, "broker.manage_flowcontrolkey")
    key = get_object_or_404(FlowControlKey, pk=pk)
    form = PinForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        given = {name: value.strip() for name, value in form.cleaned_data.items() if value.strip()}
        try:
            parallelism, rate, period = flow_pin_values(given)
            flow_key_pin(
                key=key.key, parallelism=parallelism, rate=rate, period=period, now=timezone.now()
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Key {key.key}: pinned {', '.join(sorted(given))}.")
            return HttpResponseRedirect(reverse("admin:broker_flowcontrolkey_changelist"))
    limits = [
        (
            "parallelism",
            f"{key.parallelism or 'none'}{' (pinned)' if key.pinned_parallelism else ''}",
        ),
        (
            "rate",
            f"{f'{key.rate}/{key.period}s' if key.rate else 'none'}"
            f"{' (pinned)' if key.pinned_rate else ''}",
        ),
    ]
    return _page(
        model_admin,
        request,
        form=form,
        title=f"Pin the limits of key {key.key}",
        intro="A pinned limit holds until unpinned: messages carrying other "
        "Upstash-Flow-Control-Value limits do not change it. Pinning resets the rate "
        "count. POST /v2/flowControl/{key}/pin does the same.",
        submit="Pin",
        original=key,
        shown=limits,
    )


# --- DLQ retry with overrides ------------------------------------------------------

# Form field -> the override header it sets (as the API reads them).
OVERRIDES = {
    "method": "Upstash-Method",
    "retries": "Upstash-Retries",
    "retry_delay": "Upstash-Retry-Delay",
    "delay": "Upstash-Delay",
    "timeout": "Upstash-Timeout",
    "callback": "Upstash-Callback",
    "failure_callback": "Upstash-Failure-Callback",
}


class RetryOverridesForm(forms.Form):
    method = forms.ChoiceField(
        choices=[("", "(as before)")] + [(m, m) for m in METHODS], required=False
    )
    retries = forms.CharField(required=False, help_text="Upstash-Retries")
    retry_delay = forms.CharField(
        required=False, help_text='Upstash-Retry-Delay, e.g. "1000 * (1 + retried)"'
    )
    delay = forms.CharField(required=False, help_text='Upstash-Delay: "10s", "5m", "1h"')
    timeout = forms.CharField(required=False, help_text='Upstash-Timeout: "30s"')
    callback = forms.CharField(
        required=False, help_text="Upstash-Callback", widget=forms.TextInput(attrs={"size": 80})
    )
    failure_callback = forms.CharField(
        required=False,
        help_text="Upstash-Failure-Callback",
        widget=forms.TextInput(attrs={"size": 80}),
    )
    headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text=(
            'Any other override, one per line, "Name: value": Upstash-Forward-Name: value '
            "(a header sent to the destination), Upstash-Flow-Control-Key, "
            "Upstash-Label, ..."
        ),
    )

    def clean_headers(self) -> dict[str, str]:
        headers = header_lines(self.cleaned_data["headers"])
        for name in headers:
            if not name.lower().startswith("upstash-"):
                raise forms.ValidationError(
                    f"{name}: only Upstash-* headers override a retry "
                    f"(Upstash-Forward-{name} sends {name} to the destination)"
                )
        return headers

    def overrides(self) -> dict[str, str]:
        data = self.cleaned_data
        given = dict(data["headers"])
        for field, header in OVERRIDES.items():
            if (value := (data.get(field) or "").strip()) != "":
                given[header] = value
        return given


def _entry_ids(request: HttpRequest) -> list[int]:
    raw = request.GET.get("ids", "")
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        return []
    return ids[:RETRY_MAX]


def dlq_retry_overrides_view(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest
) -> HttpResponse:
    _require(request, "broker.retry_dlqentry")
    entries = list(
        DlqEntry.objects.filter(pk__in=_entry_ids(request))
        .select_related("message", "message__payload")
        .order_by("pk")
    )
    if not entries:
        messages.warning(request, "No DLQ entry selected (they may have been retried already).")
        return HttpResponseRedirect(reverse("admin:broker_dlqentry_changelist"))
    form = RetryOverridesForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            published = dlq_retry(entries=entries, overrides=form.overrides(), now=timezone.now())
        except ApplicationError as exc:
            form.add_error(None, exc.message)  # the API's 400, word for word
        else:
            ids = [p.message_id for p in published]
            messages.success(
                request, f"Published {len(ids)} message(s) with overrides: {', '.join(ids)}"
            )
            if len(ids) == 1:
                pk = Message.objects.filter(message_id=ids[0]).values_list("pk", flat=True)[0]
                return HttpResponseRedirect(reverse("admin:broker_message_change", args=[pk]))
            return HttpResponseRedirect(reverse("admin:broker_dlqentry_changelist"))
    first = entries[0].message
    shown = [("entries", ", ".join(e.dlq_id for e in entries)), ("destination", first.url)]
    shown += [(name, value) for name, value in original_headers(first).items()]
    return _page(
        model_admin,
        request,
        form=form,
        title=f"Retry {len(entries)} DLQ entr{'y' if len(entries) == 1 else 'ies'} with overrides",
        intro="Each message is published again with the same body and settings, except "
        "the overrides filled in below, and leaves the dead-letter queue: "
        "POST /v2/dlq/retry with these Upstash-* headers. The settings of the first "
        "entry, as headers:",
        submit="Retry with these overrides",
        shown=shown,
    )
