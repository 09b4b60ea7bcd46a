"""Schedules: cron triggers, each made into ordinary messages exactly once.

A schedule stores the publish options of its request once (validated like a
publish). The clock's trigger thread (``schedules_fire``) claims the schedules
whose next trigger falls within ``QSTASH_SCHEDULE_LOOKAHEAD_SECONDS`` with
``FOR UPDATE SKIP LOCKED``, makes each trigger into messages through
``messages_publish`` (the publish path: signed, retried, logged, cancellable,
through queues and flow control), due at the trigger's minute plus the
schedule's delay, and moves the schedule to its next trigger, all in one
transaction: two clocks can never make one trigger twice.

Making triggers ahead of their minute is what keeps a hundred thousand
schedules of the same minute on time: the messages exist, due at the minute,
before it comes, and the delivery engine's own due-time wake-up sends them.
Pausing, changing or deleting a schedule withdraws (deletes) the messages of a
trigger whose minute has not come yet, so they never happened.

After downtime, a trigger whose minute passed while no clock ran fires once, on
return; the triggers missed before it are skipped.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from broker.cron import parse_cron
from broker.destinations import PublishRequest, group_named, is_url, with_defaults
from broker.errors import ApplicationError, NotFound
from broker.ids import random_base58
from broker.models import Message, Payload, Schedule
from broker.publish_options import (
    RequestHeaders,
    options_from_json,
    options_to_json,
    parse_publish_options,
)
from broker.services.publish import Draft, messages_publish, publish_limits
from broker.services.queues import queue_name_check
from broker.urls_check import validate_http_url
from groups.models import UrlGroup
from groups.selectors import url_groups_by_name

SCHEDULE_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
# Publish headers a schedule refuses: a trigger has its own time, and every trigger
# of a deduplicated schedule after the first would be dropped.
NOT_FOR_SCHEDULES = (
    "Upstash-Not-Before",
    "Upstash-Deduplication-Id",
    "Upstash-Content-Based-Deduplication",
)
FIRE_CHUNK = 1000  # schedules per transaction


def schedule_id_check(value: str) -> str:
    if not SCHEDULE_ID.match(value):
        raise ApplicationError(
            f"invalid Upstash-Schedule-Id: {value!r}, use 1-200 of A-Z a-z 0-9 - _ ."
        )
    return value


def _group(destination: str) -> UrlGroup:
    return group_named(url_groups_by_name([destination]), destination)


def _withdraw(schedule: Schedule, now: datetime) -> None:
    """Delete the messages of a trigger whose minute has not come: they never happened."""
    if schedule.last_fire_at is None or schedule.last_fire_at <= now:
        return
    Message.objects.filter(
        schedule_id=schedule.schedule_id, scheduled_for__gt=now, state=Message.State.CREATED
    ).delete()
    _set_next(schedule, schedule.last_fire_at)
    schedule.last_fire_at, schedule.prior_fire_at = schedule.prior_fire_at, None


def _lookahead() -> timedelta:
    return timedelta(seconds=settings.QSTASH_SCHEDULE_LOOKAHEAD_SECONDS)


def _set_next(
    schedule: Schedule, following: datetime | None, *, made: datetime | None = None
) -> None:
    """Point the schedule at its next trigger, made a lookahead before its minute but not
    before ``made`` (the minute of the trigger just made): one trigger ahead at most."""
    schedule.next_fire_at = following
    if following is None:
        schedule.fire_after = None
        return
    schedule.fire_after = following - _lookahead()
    if made is not None and made > schedule.fire_after:
        schedule.fire_after = made


@transaction.atomic
def schedule_upsert(*, request: PublishRequest, now: datetime) -> Schedule:
    """Create the schedule, or overwrite the one with the same id. Raises ApplicationError
    (400) for bad input; nothing is written then. (No cap on their number: QStash's 412
    is a plan limit, and a trigger costs one indexed row.)"""
    h = RequestHeaders(request.headers, request.query)
    cron_text = h.get("Upstash-Cron")
    if not cron_text:
        raise ApplicationError("invalid Upstash-Cron: it is required")
    cron = parse_cron(cron_text)
    next_fire = cron.next_after(now)
    for name in NOT_FOR_SCHEDULES:
        if h.get(name):
            raise ApplicationError(f"invalid {name}: not supported on a schedule")
    schedule_id = h.get("Upstash-Schedule-Id") or "scd_" + random_base58(22)
    schedule_id_check(schedule_id)
    queue = h.get("Upstash-Queue-Name") or ""
    if queue:
        queue_name_check(queue, field="Upstash-Queue-Name")
    headers: Mapping[str, str] = request.headers
    if is_url(request.destination):
        validate_http_url(request.destination, field="destination url")
    else:
        # The group's default headers as they are now, under the request's own.
        headers = with_defaults(_group(request.destination).default_headers, headers)
    options = parse_publish_options(headers, request.query, now=now, limits=publish_limits())
    delay = 0
    if options.not_before is not None:
        delay = max(0, round((options.not_before - now).total_seconds()))

    schedule = Schedule.objects.select_for_update().filter(schedule_id=schedule_id).first()
    if schedule is None:
        schedule = Schedule(schedule_id=schedule_id, created_at=now)
    else:
        _withdraw(schedule, now)
    previous_payload = schedule.payload_id
    schedule.destination = request.destination
    schedule.cron = cron.expression
    schedule.payload = Payload.objects.create(body=request.body)
    schedule.options = options_to_json(options)
    schedule.delay_seconds = delay
    schedule.queue_name = queue
    schedule.caller_ip = request.caller_ip
    _set_next(schedule, next_fire)
    schedule.last_fire_at = schedule.prior_fire_at = None
    schedule.error = ""
    schedule.updated_at = now
    schedule.save()
    if previous_payload is not None:
        # The old body, unless messages of earlier triggers still carry it (the prune
        # takes it with the last of them).
        Payload.objects.filter(
            pk=previous_payload, messages__isnull=True, schedules__isnull=True
        ).delete()
    return schedule


def _get_for_update(schedule_id: str) -> Schedule:
    schedule = Schedule.objects.select_for_update().filter(schedule_id=schedule_id).first()
    if schedule is None:
        raise NotFound(f"schedule {schedule_id!r} not found")
    return schedule


@transaction.atomic
def schedule_pause(*, schedule_id: str, now: datetime) -> None:
    """Skip triggers until resumed (idempotent). A trigger already made for a minute
    still to come is withdrawn."""
    schedule = _get_for_update(schedule_id)
    _withdraw(schedule, now)
    schedule.paused, schedule.updated_at = True, now
    schedule.save()


@transaction.atomic
def schedule_resume(*, schedule_id: str, now: datetime) -> None:
    """Fire again from the next trigger after now (idempotent)."""
    schedule = _get_for_update(schedule_id)
    if schedule.next_fire_at is None or schedule.next_fire_at <= now:
        _set_next(schedule, parse_cron(schedule.cron).next_after(now))
    schedule.paused, schedule.updated_at = False, now
    schedule.save()


@transaction.atomic
def schedule_delete(*, schedule_id: str, now: datetime) -> None:
    schedule = _get_for_update(schedule_id)
    _withdraw(schedule, now)
    schedule.delete()
    Payload.objects.filter(
        pk=schedule.payload_id, messages__isnull=True, schedules__isnull=True
    ).delete()


def schedule_drafts(schedule: Schedule, *, fire_at: datetime, due_at: datetime) -> list[Draft]:
    """The drafts one trigger makes: one, or one per endpoint of the group as it is now.

    Raises ApplicationError when the group is gone.
    """
    options = options_from_json(schedule.options)
    options.not_before = due_at
    if is_url(schedule.destination):
        targets = [(schedule.destination, "", "")]
    else:
        group = _group(schedule.destination)
        endpoints = sorted(group.endpoints.all(), key=lambda e: e.pk)
        targets = [(e.url, group.name, e.name) for e in endpoints]
    return [
        Draft(
            url,
            schedule.payload,
            options,
            caller_ip=schedule.caller_ip,
            topic_name=topic,
            endpoint_name=endpoint,
            queue_name=schedule.queue_name,
            schedule_id=schedule.schedule_id,
            scheduled_for=fire_at,
        )
        for url, topic, endpoint in targets
    ]


def schedules_fire(*, now: datetime) -> int:
    """Make the triggers due within the lookahead into messages (one chunk); return how
    many schedules fired. Call again while it returns ``FIRE_CHUNK``."""
    with transaction.atomic():
        due = list(
            Schedule.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("payload")
            .filter(paused=False, fire_after__lte=now)
            .order_by("fire_after")[:FIRE_CHUNK]
        )
        if not due:
            return 0
        drafts: list[Draft] = []
        next_times: dict[tuple[str, datetime], datetime] = {}
        for schedule in due:
            fire = schedule.next_fire_at
            assert fire is not None
            # Ahead of its minute, or (the clock was down) once, now.
            at = max(fire, now)
            try:
                drafts += schedule_drafts(
                    schedule,
                    fire_at=fire,
                    due_at=at + timedelta(seconds=schedule.delay_seconds),
                )
                schedule.error = ""
            except ApplicationError as exc:
                schedule.error = exc.message
            key = (schedule.cron, at)
            if key not in next_times:
                next_times[key] = parse_cron(schedule.cron).next_after(at)
            schedule.prior_fire_at, schedule.last_fire_at = schedule.last_fire_at, fire
            _set_next(schedule, next_times[key], made=fire)
        if drafts:
            messages_publish(drafts=drafts, now=now)
        # Schedules of one minute move alike: one UPDATE per distinct outcome (bulk_update's
        # CASE per row cost more than the triggers themselves).
        moves: dict[tuple[object, ...], list[int]] = defaultdict(list)
        for s in due:
            moves[(s.next_fire_at, s.fire_after, s.last_fire_at, s.prior_fire_at, s.error)].append(
                s.pk
            )
        for (following, after, last, prior, error), pks in moves.items():
            Schedule.objects.filter(pk__in=pks).update(
                next_fire_at=following,
                fire_after=after,
                last_fire_at=last,
                prior_fire_at=prior,
                error=error,
            )
    return len(due)


def schedules_next_fire(*, now: datetime) -> datetime | None:
    """When the next trigger is to be made (for the trigger thread's sleep)."""
    return (
        Schedule.objects.filter(paused=False, fire_after__isnull=False)
        .order_by("fire_after")
        .values_list("fire_after", flat=True)
        .first()
    )
