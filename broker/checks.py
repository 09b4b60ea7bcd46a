"""System checks that refuse unsafe production settings (stable ids broker.E00x)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

# A generated signing key is "sig_" + 28 base58 characters: exactly this long.
MIN_SECRET_LENGTH = 32
# What people paste from examples and templates. Six x's, not four: four occur by
# chance in about one random 43-character token in 30,000, six in one in 30 million.
PLACEHOLDER_MARKERS = (
    "change-me",
    "change_me",
    "changeme",
    "placeholder",
    "example",
    "your-",
    "your_",
    "xxxxxx",
)
CREDENTIAL_SETTINGS = (
    "QSTASH_TOKEN",
    "QSTASH_CURRENT_SIGNING_KEY",
    "QSTASH_NEXT_SIGNING_KEY",
)


def weakness(value: str) -> str | None:
    """Why ``value`` is no secret ("a placeholder", "shorter than 32 characters"), or None.

    The answer never contains the value: check output ends up in deploy logs.
    """
    lowered = value.lower()
    if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return "a placeholder"
    if len(value) < MIN_SECRET_LENGTH:
        return f"shorter than {MIN_SECRET_LENGTH} characters"
    return None


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
    secret_key_weakness = (
        "the public default"
        if settings.SECRET_KEY == settings.INSECURE_SECRET_KEY
        else weakness(settings.SECRET_KEY)
    )
    if secret_key_weakness:
        errors.append(
            Error(
                f"SECRET_KEY is {secret_key_weakness}.",
                hint="Set SECRET_KEY to a long random value (or DEBUG=1 on a laptop).",
                id="broker.E001",
            )
        )
    dev_values = {DEV_TOKEN, DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY}
    if {getattr(settings, name) for name in CREDENTIAL_SETTINGS} & dev_values:
        errors.append(
            Error(
                "QSTASH_TOKEN or a signing key is the public QStash dev-server credential.",
                hint="Unset them to have keys generated, or set your own secret values.",
                id="broker.E002",
            )
        )
    for name in CREDENTIAL_SETTINGS:
        value = getattr(settings, name)
        # Empty means "generate one and store it" (broker/services/credentials.py).
        reason = weakness(value) if value else None
        if reason:
            errors.append(
                Error(
                    f"{name} is {reason}.",
                    hint=(
                        f"Leave {name} empty to have it generated and stored, or set a "
                        "random value of at least 32 characters (deploy/env.example "
                        "shows how to generate one)."
                    ),
                    id="broker.E004",
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
