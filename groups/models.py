"""URL groups ("topics" on the wire): a name that fans a publish out to endpoints."""

from __future__ import annotations

from django.db import models


class UrlGroup(models.Model):
    name = models.CharField(max_length=200, unique=True)
    # Headers applied to every publish to the group, the request's own winning:
    # {"Upstash-Retries": "3", "Upstash-Header-Forward": ["true"]}.
    default_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "URL group"

    def __str__(self) -> str:
        return self.name


class Endpoint(models.Model):
    group = models.ForeignKey(UrlGroup, on_delete=models.CASCADE, related_name="endpoints")
    url = models.TextField()
    name = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "url"], name="endpoint_unique_url"),
        ]

    def __str__(self) -> str:
        return self.name or self.url
