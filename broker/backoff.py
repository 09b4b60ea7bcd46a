"""When to retry: QStash's default backoff, the destination's retry-after headers, and the
decision that combines them with the message's own settings (``decide``)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from broker.durations import parse_go_duration
from broker.http import HttpResult
from broker.models import Message
from broker.retry_delay import RetryDelay, RetryDelayError

__all__ = [
    "MAX_BACKOFF_SECONDS",
    "RETRY_AFTER_HEADERS",
    "Outcome",
    "decide",
    "default_backoff_seconds",
    "retry_after_seconds",
]

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 86400

# Checked in this order; the first one present with a usable value wins.
RETRY_AFTER_HEADERS = (
    "retry-after",
    "x-ratelimit-reset",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)

_BACKOFF_RATE = 2.5
# Beyond this exponent e^x exceeds the cap, so math.exp is never asked for a
# value that would overflow (it raises at n ~ 284).
_CAP_EXPONENT = math.log(MAX_BACKOFF_SECONDS)

_DECIMAL_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def default_backoff_seconds(retry_number: int) -> float:
    """QStash's default delay before retry `retry_number` (1-based): min(86400, e^(2.5n)).

    Values below 1 are treated as 0, giving a 1 second delay, rather than raising
    inside a delivery task.
    """
    exponent = _BACKOFF_RATE * max(retry_number, 0)
    if exponent >= _CAP_EXPONENT:
        return float(MAX_BACKOFF_SECONDS)
    return min(float(MAX_BACKOFF_SECONDS), math.exp(exponent))


def retry_after_seconds(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds to wait as requested by a failed response's retry-after headers.

    Returns None when no header is usable or the requested wait exceeds one
    day; the caller then falls back to its normal backoff.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in RETRY_AFTER_HEADERS:
        raw = lowered.get(name)
        if raw is None:
            continue
        seconds = _parse_retry_after(raw.strip(), now)
        if seconds is None:
            continue
        # QStash ignores over-long waits instead of honouring or capping them;
        # X-RateLimit-Reset as a unix timestamp lands here too.
        if seconds > MAX_BACKOFF_SECONDS:
            return None
        return seconds
    return None


def _parse_retry_after(value: str, now: datetime) -> float | None:
    if _DECIMAL_SECONDS.fullmatch(value):
        return float(value)

    duration = parse_go_duration(value)
    if duration is not None:
        return duration if duration >= 0 else None

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    # "-0000" dates come back naive; HTTP dates are always UTC.
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


@dataclass
class Outcome:
    """What one attempt decided for its message."""

    state: str  # DELIVERED, RETRY or FAILED
    delay_seconds: float = 0.0


def decide(message: Message, result: HttpResult, now: datetime) -> Outcome:
    """Pure: the message's next state after ``result``.

    2xx delivers. 489 with ``Upstash-NonRetryable-Error: true`` fails at once.
    Anything else retries while retries remain, after the destination's
    Retry-After (if under a day), else the message's retry-delay expression,
    else the default exponential backoff.
    """
    if result.ok:
        return Outcome(Message.State.DELIVERED)
    non_retryable = (
        result.status == 489
        and (result.header("Upstash-NonRetryable-Error") or "").lower() == "true"
    )
    if non_retryable or message.retried >= message.max_retries:
        return Outcome(Message.State.FAILED)
    delay: float | None = None
    if result.status is not None:
        delay = retry_after_seconds({k: v[0] for k, v in result.headers.items() if v}, now)
    if delay is None and message.retry_delay_expression:
        try:
            expression = RetryDelay.parse(message.retry_delay_expression)
            delay = expression.evaluate(message.retried) / 1000.0
        except RetryDelayError:
            logger.warning("retry delay of %s failed; using the default", message.message_id)
    if delay is None:
        delay = default_backoff_seconds(message.retried + 1)
    return Outcome(Message.State.RETRY, delay_seconds=min(delay, 86400.0 * 365))
