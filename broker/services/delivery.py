"""Delivering due messages: claim a batch, send it concurrently, record outcomes in bulk.

The pipeline keeps the invariants of DESIGN.md:
- a claim is a lease (``SELECT ... FOR UPDATE SKIP LOCKED``, then ``due_at`` set
  to the lease expiry), so a worker that dies only delays its messages;
- an outcome is written only while the claim is still held (same claim token,
  still ACTIVE), so a cancel or a re-claim after an expired lease wins;
- every attempt is signed fresh; outcomes and log rows are written in bulk.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from broker import http
from broker.backoff import default_backoff_seconds, retry_after_seconds
from broker.http import HttpResult
from broker.models import DlqEntry, LogEntry, Message
from broker.retry_delay import RetryDelay, RetryDelayError
from broker.services.callbacks import callback_drafts
from broker.services.credentials import credentials_get
from broker.services.json_rows import log_entries_insert
from broker.services.publish import Draft, messages_publish
from broker.signing import sign_request

logger = logging.getLogger(__name__)

USER_AGENT = "Upstash-QStash"


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


def _attempt(message: Message, signing_key: str) -> HttpResult:
    headers = delivery_headers(message, signing_key=signing_key, now=timezone.now().timestamp())
    return http.send(
        method=message.method,
        url=message.url,
        headers=headers,
        body=message.body,
        timeout=float(message.timeout_seconds),
    )


_executor: tuple[int, ThreadPoolExecutor] | None = None


def _threads() -> ThreadPoolExecutor:
    global _executor
    if _executor is None or _executor[0] != os.getpid():
        _executor = (
            os.getpid(),
            ThreadPoolExecutor(settings.QSTASH_DELIVERY_THREADS, thread_name_prefix="deliver"),
        )
    return _executor[1]


def messages_claim(
    *, ids: list[int] | None, limit: int, now: datetime
) -> tuple[uuid.UUID, list[Message]]:
    """Lease up to ``limit`` due messages (only among ``ids`` when given) to this caller.

    Rows locked by another claimer are skipped, not waited for. Writes an ACTIVE
    log row per claimed message.
    """
    token = uuid.uuid4()
    with transaction.atomic():
        # "OF self": messages of one group publish share a payload row, which
        # must not be locked (and so skipped) by a claimer of a sibling.
        due = (
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("payload")
            .filter(state__in=Message.PENDING_STATES, due_at__lte=now)
        )
        if ids is not None:
            due = due.filter(pk__in=ids)
        rows = list(due.order_by("due_at")[:limit])
        if not rows:
            return token, []
        longest = max(row.timeout_seconds for row in rows)
        lease = now + timedelta(seconds=longest + settings.QSTASH_LEASE_MARGIN_SECONDS)
        Message.objects.filter(pk__in=[row.pk for row in rows]).update(
            state=Message.State.ACTIVE, claim_token=token, due_at=lease, updated_at=now
        )
        log_entries_insert(
            [LogEntry(message=row, state=LogEntry.State.ACTIVE, time=now) for row in rows]
        )
    return token, rows


def messages_record_outcomes(
    *, token: uuid.UUID, attempts: list[tuple[Message, HttpResult]], now: datetime
) -> dict[str, int]:
    """Write each attempt's outcome if the claim is still held; return counts per state.

    Delivered rows are updated grouped by status (usually one statement); retried
    and failed rows with ``bulk_update``; log rows with one insert. A failed
    message gets its DLQ entry, and callback messages are published, in the same
    transaction, so an outcome and its consequences commit together.
    """
    counts: dict[str, int] = defaultdict(int)
    with transaction.atomic():
        held = set(
            Message.objects.select_for_update()
            .filter(
                pk__in=[m.pk for m, _ in attempts],
                claim_token=token,
                state=Message.State.ACTIVE,
            )
            .values_list("pk", flat=True)
        )
        delivered: dict[int, list[int]] = defaultdict(list)
        changed: list[Message] = []
        logs: list[LogEntry] = []
        dead: list[DlqEntry] = []
        callbacks: list[Draft] = []
        for message, result in attempts:
            if message.pk not in held:
                counts["lost"] += 1
                continue
            outcome = decide(message, result, now)
            counts[outcome.state] += 1
            dlq_id = None
            if outcome.state == Message.State.FAILED:
                dlq_id = DlqEntry.make_id(message, now)
                dead.append(DlqEntry(dlq_id=dlq_id, message=message, created_at=now))
            if message.callback or message.failure_callback:
                callbacks += callback_drafts(
                    message, result, failed=outcome.state == Message.State.FAILED, dlq_id=dlq_id
                )
            if outcome.state == Message.State.DELIVERED:
                assert result.status is not None
                delivered[result.status].append(message.pk)
                logs.append(
                    LogEntry(
                        message=message,
                        state=LogEntry.State.DELIVERED,
                        time=now,
                        response_status=result.status,
                    )
                )
                continue
            error = result.error or f"destination answered {result.status}"
            message.last_response_status = result.status
            message.last_response_header = result.headers or None
            message.last_response_body = result.body if result.status is not None else None
            message.last_error = error
            message.claim_token = None
            error_log = LogEntry(
                message=message,
                state=LogEntry.State.ERROR,
                time=now,
                error=error,
                response_status=result.status,
                response_header=result.headers or None,
                response_body=result.body if result.status is not None else None,
            )
            if outcome.state == Message.State.RETRY:
                message.state = Message.State.RETRY
                message.retried += 1
                message.due_at = now + timedelta(seconds=outcome.delay_seconds)
                error_log.next_delivery_time = message.due_at
                logs += [
                    error_log,
                    LogEntry(
                        message=message,
                        state=LogEntry.State.RETRY,
                        time=now,
                        next_delivery_time=message.due_at,
                    ),
                ]
            else:
                message.state = Message.State.FAILED
                message.due_at = None
                message.finished_at = now
                logs += [
                    error_log,
                    LogEntry(message=message, state=LogEntry.State.FAILED, time=now, error=error),
                ]
            changed.append(message)

        for status, pks in delivered.items():
            Message.objects.filter(pk__in=pks).update(
                state=Message.State.DELIVERED,
                due_at=None,
                claim_token=None,
                finished_at=now,
                updated_at=now,
                last_response_status=status,
            )
        if changed:
            Message.objects.bulk_update(
                changed,
                [
                    "state",
                    "retried",
                    "due_at",
                    "claim_token",
                    "finished_at",
                    "last_response_status",
                    "last_response_header",
                    "last_response_body",
                    "last_error",
                ],
            )
        log_entries_insert(logs)
        DlqEntry.objects.bulk_create(dead)
        if callbacks:
            messages_publish(drafts=callbacks, now=now)
    return dict(counts)


def messages_deliver(*, ids: list[int] | None = None) -> int:
    """Claim a batch of due messages, send them concurrently, record the outcomes.

    Returns how many messages were claimed. Never raises for a destination's
    failure: those are outcomes.
    """
    token, claimed = messages_claim(
        ids=ids, limit=settings.QSTASH_DELIVERY_BATCH, now=timezone.now()
    )
    if not claimed:
        return 0
    signing_key = credentials_get().current
    results = list(_threads().map(lambda m: _attempt(m, signing_key), claimed))
    counts = messages_record_outcomes(
        token=token, attempts=list(zip(claimed, results, strict=True)), now=timezone.now()
    )
    logger.debug("delivered batch: %s", counts)
    return len(claimed)


def messages_due_count(*, limit: int) -> int:
    """How many messages are due now, counting at most ``limit``."""
    due = Message.objects.filter(state__in=Message.PENDING_STATES, due_at__lte=timezone.now())
    return due.values("pk")[:limit].count()
