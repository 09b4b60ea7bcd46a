"""Fallback settings for creating the bench schema when an app ships no migration files.

Used only for the ``migrate --run-syncdb`` step of the benchmark, and only when
``manage.py migrate`` left ``broker_message`` missing: the project's own apps
without migration files are created straight from their models (what pytest-django's
``--nomigrations`` does). Every benchmarked process runs on ``qstash_site.settings``.
"""

from __future__ import annotations

from pathlib import Path

from qstash_site.settings import *  # noqa: F403
from qstash_site.settings import BASE_DIR


def _without_migrations(label: str) -> bool:
    folder = Path(BASE_DIR) / label / "migrations"
    return not any(p.name[0].isdigit() for p in folder.glob("*.py")) if folder.is_dir() else True


MIGRATION_MODULES = {label: None for label in ("broker", "groups") if _without_migrations(label)}
