"""The console's URL groups: each with its endpoints inline, to add and remove."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from broker.errors import ApplicationError
from broker.urls_check import validate_http_url
from groups.models import Endpoint, UrlGroup
from groups.services import validate_default_headers, validate_name


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
        return str(_checked(validate_http_url, self.cleaned_data["url"], field="url"))

    def clean_name(self) -> str:
        name = self.cleaned_data.get("name") or ""
        return str(_checked(validate_name, name, field="endpoint name")) if name else ""


class EndpointInline(admin.TabularInline):
    model = Endpoint
    form = EndpointForm
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
