""" "Publish a test message": the console's request builder, through the API's own path."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from broker.destinations import PublishRequest, drafts_for, is_url
from broker.errors import ApplicationError
from broker.models import Message
from broker.services.publish import messages_publish, publish_limits
from groups.selectors import url_groups_by_name

PERMISSION = "broker.publish_message"
METHODS = ["POST", "GET", "PUT", "PATCH", "DELETE"]


def header_lines(text: str) -> dict[str, str]:
    """``Name: value`` lines, as typed in a form; a blank line is skipped."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise forms.ValidationError(f'line {number}: expected "Name: value"')
        headers[name.strip()] = value.strip()
    return headers


class PublishForm(forms.Form):
    destination = forms.CharField(
        help_text="A URL, or the name of a URL group",
        widget=forms.TextInput(attrs={"size": 80}),
    )
    method = forms.ChoiceField(choices=[(m, m) for m in METHODS], initial="POST")
    headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text=(
            'One per line, "Name: value", as to the API: Upstash-Forward-Name reaches the '
            "destination as Name, other Upstash-* headers set options."
        ),
    )
    body = forms.CharField(
        required=False, strip=False, widget=forms.Textarea(attrs={"rows": 6, "cols": 80})
    )
    delay = forms.CharField(required=False, help_text='Like Upstash-Delay: "10s", "5m", "1h"')
    retries = forms.IntegerField(required=False, min_value=0)

    def clean_headers(self) -> dict[str, str]:
        return header_lines(self.cleaned_data["headers"])

    def publish_request(self, caller_ip: str) -> PublishRequest:
        data = self.cleaned_data
        headers = dict(data["headers"])
        headers["Upstash-Method"] = data["method"]
        if data["delay"]:
            headers["Upstash-Delay"] = data["delay"].strip()
        if data["retries"] is not None:
            headers["Upstash-Retries"] = str(data["retries"])
        return PublishRequest(
            data["destination"].strip(), headers, data["body"].encode(), {}, caller_ip
        )


def publish_view(site: Any, request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: publish as POST /v2/publish would, then go to the new message."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    form = PublishForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        publish = form.publish_request(request.META.get("REMOTE_ADDR", ""))
        now = timezone.now()
        try:
            groups = (
                {} if is_url(publish.destination) else url_groups_by_name([publish.destination])
            )
            drafts, _ = drafts_for(publish, groups=groups, now=now, limits=publish_limits())
            published = messages_publish(drafts=drafts, now=now)
        except ApplicationError as exc:
            # The API's own refusal, shown on the form (a 400 there, never a 500 here).
            form.add_error(None, exc.message)
        else:
            made = list(
                Message.objects.filter(message_id__in=[p.message_id for p in published])
                .order_by("pk")
                .values_list("pk", "message_id")
            )
            messages.success(
                request, f"Published {len(made)} message(s): {', '.join(m for _, m in made)}"
            )
            if len(made) == 1:
                return HttpResponseRedirect(
                    reverse("admin:broker_message_change", args=[made[0][0]])
                )
            return HttpResponseRedirect(reverse("admin:broker_message_changelist"))
    context = {
        **site.each_context(request),
        "title": "Publish a test message",
        "form": form,
    }
    return TemplateResponse(request, "admin/console/publish.html", context)
