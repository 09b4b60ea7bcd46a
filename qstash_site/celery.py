"""The Celery app. Broker messages are hints; PostgreSQL holds every message."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qstash_site.settings")

app = Celery("qstash_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
