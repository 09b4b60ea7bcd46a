"""The Celery app. Broker messages are hints; PostgreSQL holds every message."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qstash_site.settings")

app = Celery("qstash_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _retire_broken_connections(**kwargs: Any) -> None:
    """What Django does at the start of a request: drop a connection that failed
    (e.g. PostgreSQL restarted) or outlived CONN_MAX_AGE, so the task reconnects."""
    from django.db import close_old_connections

    close_old_connections()
