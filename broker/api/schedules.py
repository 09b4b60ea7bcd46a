"""Schedules (``/v2/schedules``): create or overwrite, list, get, delete, pause, resume."""

from __future__ import annotations

import re

from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.api.publish import read_body, split_destination
from broker.destinations import PublishRequest
from broker.errors import ApplicationError
from broker.schedule_selectors import schedule_get, schedules_list
from broker.services.schedules import (
    schedule_delete,
    schedule_id_check,
    schedule_pause,
    schedule_resume,
    schedule_upsert,
)

# "<id>/pause" or "<id>/resume": an id has no ":" so a URL destination never matches.
_ACTION = re.compile(r"^(?P<id>[A-Za-z0-9_.\-]{1,200})/(?P<action>pause|resume)$")


class SchedulesView(APIView):
    def get(self, request: Request) -> Response:
        return Response(schedules_list(now=timezone.now()))


class ScheduleView(APIView):
    """``/v2/schedules/{rest}``: ``rest`` is an id (GET, DELETE), ``<id>/pause`` or
    ``<id>/resume`` (POST as the docs say, PATCH as the SDKs send), or the destination
    of a new schedule (POST)."""

    def get(self, request: Request, rest: str) -> Response:
        return Response(schedule_get(schedule_id=schedule_id_check(rest), now=timezone.now()))

    def delete(self, request: Request, rest: str) -> Response:
        schedule_delete(schedule_id=schedule_id_check(rest), now=timezone.now())
        return Response({"deleted": True})

    def patch(self, request: Request, rest: str) -> Response:
        match = _ACTION.match(rest)
        if match is None:
            raise ApplicationError("invalid path: use /v2/schedules/<id>/pause or /resume")
        return self._act(match["id"], match["action"])

    def post(self, request: Request, rest: str) -> Response:
        if match := _ACTION.match(rest):
            return self._act(match["id"], match["action"])
        destination, config = split_destination(request, "/v2/schedules/")
        if not destination:
            raise ApplicationError("invalid destination: use /v2/schedules/<url or url group>")
        schedule = schedule_upsert(
            request=PublishRequest(
                destination,
                request.headers,
                read_body(request),
                config,
                request.META.get("REMOTE_ADDR", ""),
            ),
            now=timezone.now(),
        )
        return Response({"scheduleId": schedule.schedule_id})

    @staticmethod
    def _act(schedule_id: str, action: str) -> Response:
        act = schedule_pause if action == "pause" else schedule_resume
        act(schedule_id=schedule_id, now=timezone.now())
        return Response(schedule_get(schedule_id=schedule_id, now=timezone.now()))
