"""The API token and the signing keys: from the environment, or generated once and stored."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from broker.errors import ApplicationError
from broker.models import Credentials
from broker.signing import generate_signing_key, generate_token

# Other processes see a rotation within this many seconds; reading the row on
# every request and every signature would cost a query each.
CACHE_SECONDS = 5.0

# The QStash dev server's public credentials (reference 2.11). `make run` uses
# them so the SDKs' dev mode finds this server; production refuses them (checks.py).
DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="  # noqa: S105  (public by design)
DEV_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"


@dataclass(frozen=True)
class Keys:
    token: str
    current: str
    next: str


_cache: tuple[float, Keys] | None = None


def _stored() -> Credentials:
    row = Credentials.objects.order_by("pk").first()
    if row is None:
        with transaction.atomic():
            row = Credentials.objects.select_for_update().order_by("pk").first()
            if row is None:
                row = Credentials.objects.create(
                    token=generate_token(),
                    current_signing_key=generate_signing_key(),
                    next_signing_key=generate_signing_key(),
                )
    return row


def credentials_get() -> Keys:
    """The token and keys in force; the environment wins over the stored row."""
    global _cache
    now = time.monotonic()
    if _cache is not None and now - _cache[0] < CACHE_SECONDS:
        return _cache[1]
    env_token = settings.QSTASH_TOKEN
    env_current = settings.QSTASH_CURRENT_SIGNING_KEY
    env_next = settings.QSTASH_NEXT_SIGNING_KEY
    if env_token and env_current and env_next:
        keys = Keys(token=env_token, current=env_current, next=env_next)
    else:
        row = _stored()
        keys = Keys(
            token=env_token or row.token,
            current=env_current or row.current_signing_key,
            next=env_next or row.next_signing_key,
        )
    _cache = (now, keys)
    return keys


def credentials_forget() -> None:
    """Drop this process's cached copy (after a rotation, and in tests)."""
    global _cache
    _cache = None


def token_matches(candidate: str) -> bool:
    return hmac.compare_digest(candidate.encode(), credentials_get().token.encode())


@transaction.atomic
def signing_keys_rotate() -> Keys:
    """Make ``next`` the current key and generate a new ``next``.

    Raises ApplicationError (400) when the keys come from the environment: the
    environment is then the place to rotate them.
    """
    if settings.QSTASH_CURRENT_SIGNING_KEY or settings.QSTASH_NEXT_SIGNING_KEY:
        raise ApplicationError(
            "signing keys are set by QSTASH_CURRENT_SIGNING_KEY/QSTASH_NEXT_SIGNING_KEY; "
            "rotate them there"
        )
    _stored()
    row = Credentials.objects.select_for_update().order_by("pk").first()
    assert row is not None
    row.current_signing_key = row.next_signing_key
    row.next_signing_key = generate_signing_key()
    row.save(update_fields=["current_signing_key", "next_signing_key", "updated_at"])
    credentials_forget()
    return credentials_get()
