"""The console's URL groups: each with its endpoints inline, to add and remove."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from broker.errors import ApplicationError
from groups.models import Endpoint, UrlGroup
from groups.services import (
    endpoint_specs_check,
    too_many_endpoints_message,
    validate_default_headers,
    validate_name,
)


def _checked(check: Any, value: Any, **kwargs: Any) -> Any:
    """Run an API validator so the console refuses exactly what the API refuses."""
    try:
        return check(value, **kwargs)
    except ApplicationError as exc:
        raise ValidationError(exc.message) from None


class EndpointForm(forms.ModelForm):
    class Meta:
        model = Endpoint
        fields = ("url", "name")
        widgets = {"url": forms.TextInput(attrs={"size": 80})}

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        # The API's endpoint rules (its length cap, then the URL check), word for word.
        (checked, _), *_ = _checked(endpoint_specs_check, [{"url": url}], need_url=True)
        return str(checked).replace("endpoints[0].url", "url")

    def clean_name(self) -> str:
        name = self.cleaned_data.get("name") or ""
        return str(_checked(validate_name, name, field="endpoint name")) if name else ""


class EndpointFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        kept = [
            f
            for f in self.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE") and f.cleaned_data.get("url")
        ]
        if len(kept) > settings.QSTASH_MAX_GROUP_ENDPOINTS:
            # The API's cap on a group's endpoints (POST /v2/topics/{name}/endpoints).
            raise ValidationError(too_many_endpoints_message(len(kept)))


class EndpointInline(admin.TabularInline):
    model = Endpoint
    form = EndpointForm
    formset = EndpointFormSet
    extra = 1
    # The API deletes a group left empty; the console does not create one.
    min_num = 1
    validate_min = True


class UrlGroupForm(forms.ModelForm):
    class Meta:
        model = UrlGroup
        fields = ("name", "default_headers")

    def clean_name(self) -> str:
        return str(_checked(validate_name, self.cleaned_data["name"]))

    def clean_default_headers(self) -> Any:
        return _checked(validate_default_headers, self.cleaned_data["default_headers"])


@admin.register(UrlGroup)
class UrlGroupAdmin(admin.ModelAdmin):
    form = UrlGroupForm
    inlines = [EndpointInline]
    list_display = ("name", "endpoint_count", "created_at", "updated_at")
    search_fields = ("name", "endpoints__url")

    def get_queryset(self, request: HttpRequest) -> QuerySet[UrlGroup]:
        # Counted in the list's own query: one COUNT per listed group was an N+1.
        return super().get_queryset(request).annotate(_endpoints=Count("endpoints"))

    @admin.display(description="endpoints")
    def endpoint_count(self, obj: UrlGroup) -> int:
        return int(getattr(obj, "_endpoints", 0))

    def save_model(self, request: HttpRequest, obj: UrlGroup, form: Any, change: bool) -> None:
        now = timezone.now()
        obj.updated_at = now
        if not change:
            obj.created_at = now
        super().save_model(request, obj, form, change)
