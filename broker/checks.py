"""System checks that refuse unsafe production settings (stable ids broker.E00x)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security)
def check_production_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from broker.services.credentials import (
        DEV_CURRENT_SIGNING_KEY,
        DEV_NEXT_SIGNING_KEY,
        DEV_TOKEN,
    )

    if settings.DEBUG:
        return []
    errors = []
    if settings.SECRET_KEY == settings.INSECURE_SECRET_KEY or len(settings.SECRET_KEY) < 32:
        errors.append(
            Error(
                "SECRET_KEY is the public default or too short.",
                hint="Set SECRET_KEY to a long random value (or DEBUG=1 on a laptop).",
                id="broker.E001",
            )
        )
    dev_values = {DEV_TOKEN, DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY}
    if {
        settings.QSTASH_TOKEN,
        settings.QSTASH_CURRENT_SIGNING_KEY,
        settings.QSTASH_NEXT_SIGNING_KEY,
    } & dev_values:
        errors.append(
            Error(
                "QSTASH_TOKEN or a signing key is the public QStash dev-server credential.",
                hint="Unset them to have keys generated, or set your own secret values.",
                id="broker.E002",
            )
        )
    return errors


@register(Tags.security, deploy=True)
def check_debug_off(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """``manage.py check --deploy`` (run before every production process) refuses DEBUG."""
    if not settings.DEBUG:
        return []
    return [
        Error(
            "DEBUG is on.",
            hint="Unset DEBUG in production: it leaks settings and disables these checks.",
            id="broker.E003",
        )
    ]
