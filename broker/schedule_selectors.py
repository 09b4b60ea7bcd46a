"""Reads of schedules in wire shape (reference section 2.7): absent fields left out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from broker.errors import NotFound
from broker.models import Message, Schedule
from broker.publish_options import options_from_json
from broker.services.publish import Draft, message_from_draft
from broker.wire import body_fields, message_fields, ms

# Message state -> the three values of ``lastScheduleStates`` the SDKs accept.
TRIGGER_STATES: dict[str, str] = {
    Message.State.DELIVERED: "SUCCESS",
    Message.State.FAILED: "FAIL",
    Message.State.CANCELED: "FAIL",
}


def schedule_triggers(schedule: Schedule, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(last trigger whose minute has come, next trigger)."""
    if schedule.last_fire_at is not None and schedule.last_fire_at > now:
        return schedule.prior_fire_at, schedule.last_fire_at
    return schedule.last_fire_at, schedule.next_fire_at


def _states(schedules: list[Schedule], now: datetime) -> dict[str, dict[str, str]]:
    last = {s.schedule_id: schedule_triggers(s, now)[0] for s in schedules}
    wanted = [(sid, at) for sid, at in last.items() if at is not None]
    if not wanted:
        return {}
    rows = Message.objects.filter(
        schedule_id__in=[sid for sid, _ in wanted],
        scheduled_for__in={at for _, at in wanted},
    ).values_list("schedule_id", "scheduled_for", "message_id", "state")
    states: dict[str, dict[str, str]] = {}
    for sid, at, message_id, state in rows:
        if last.get(sid) == at:
            states.setdefault(sid, {})[message_id] = TRIGGER_STATES.get(state, "IN_PROGRESS")
    return states


def schedule_to_wire(
    schedule: Schedule, *, now: datetime, states: dict[str, str]
) -> dict[str, Any]:
    options = options_from_json(schedule.options)
    # The message a trigger would make, read with the same mapping as every message.
    template = message_from_draft(
        Draft(
            schedule.destination,
            schedule.payload,
            options,
            caller_ip=schedule.caller_ip,
            queue_name=schedule.queue_name,
        ),
        now,
    )
    data = message_fields(template)
    for key in ("messageId", "url", "maxRetries"):
        data.pop(key, None)
    data.update(
        {
            "scheduleId": schedule.schedule_id,
            "cron": schedule.cron,
            "destination": schedule.destination,
            "createdAt": ms(schedule.created_at),
            "isPaused": schedule.paused,
            "retries": template.max_retries,
            "timeout": template.timeout_seconds,
        }
    )
    body = bytes(schedule.payload.body)
    if body:
        data.update(
            body_fields(
                body,
                redact="body" in template.redact_fields,
                text_key="body",
                base64_key="bodyBase64",
            )
        )
    if schedule.delay_seconds:
        data["delay"] = schedule.delay_seconds
    if template.callback_header:
        data["callbackHeader"] = template.callback_header
    if template.failure_callback_header:
        data["failureCallbackHeader"] = template.failure_callback_header
    last, following = schedule_triggers(schedule, now)
    if last is not None:
        data["lastScheduleTime"] = ms(last)
    if following is not None and not schedule.paused:
        data["nextScheduleTime"] = ms(following)
    if states:
        data["lastScheduleStates"] = states
    if schedule.error:
        data["error"] = schedule.error
    return data


def schedules_list(*, now: datetime) -> list[dict[str, Any]]:
    schedules = list(Schedule.objects.select_related("payload").order_by("created_at", "pk"))
    states = _states(schedules, now)
    return [schedule_to_wire(s, now=now, states=states.get(s.schedule_id, {})) for s in schedules]


def schedule_get(*, schedule_id: str, now: datetime) -> dict[str, Any]:
    schedule = Schedule.objects.select_related("payload").filter(schedule_id=schedule_id).first()
    if schedule is None:
        raise NotFound(f"schedule {schedule_id!r} not found")
    states = _states([schedule], now)
    return schedule_to_wire(schedule, now=now, states=states.get(schedule_id, {}))
