"""One delivery attempt: the headers the destination receives, signed fresh, and the send.

The engine that decides what to send and records what happened is
``broker/delivery_engine.py``; claims and outcomes are ``claims.py`` and
``outcomes.py`` beside this module.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from broker import http
from broker.http import HttpResult
from broker.models import Message
from broker.signing import sign_request

USER_AGENT = "Upstash-QStash"


def delivery_headers(message: Message, *, signing_key: str, now: float) -> list[tuple[str, str]]:
    """The headers the destination receives for this attempt."""
    headers = [(name, value) for name, values in message.header.items() for value in values]
    headers += [
        ("User-Agent", USER_AGENT),
        ("Upstash-Message-Id", message.message_id),
        ("Upstash-Retried", str(message.retried)),
        (
            "Upstash-Signature",
            sign_request(signing_key=signing_key, url=message.url, body=message.body, now=now),
        ),
    ]
    if message.topic_name:
        headers.append(("Upstash-Topic-Name", message.topic_name))
    if message.schedule_id:
        headers.append(("Upstash-Schedule-Id", message.schedule_id))
    if message.caller_ip:
        headers.append(("Upstash-Caller-Ip", message.caller_ip))
    return headers


async def message_send(message: Message, *, signing_key: str) -> HttpResult:
    """Sign and send one attempt of ``message`` (on the engine's event loop).

    Never raises: errors are on the result.
    """
    headers = delivery_headers(message, signing_key=signing_key, now=timezone.now().timestamp())
    return await http.send_async(
        method=message.method,
        url=message.url,
        headers=headers,
        body=message.body,
        timeout=float(message.timeout_seconds),
    )


def messages_due_count(*, limit: int, now: datetime) -> int:
    """How many messages are due at ``now``, counting at most ``limit``."""
    due = Message.objects.filter(state__in=Message.PENDING_STATES, due_at__lte=now, waiting_for="")
    return due.values("pk")[:limit].count()
