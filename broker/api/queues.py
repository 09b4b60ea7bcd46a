"""Queues (``/v2/queues``) and enqueueing (``POST /v2/enqueue/{queue}/{destination}``)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.api.publish import publish_answer
from broker.errors import ApplicationError
from broker.gate_selectors import queue_get, queues_list
from broker.services.queues import (
    queue_delete,
    queue_name_check,
    queue_parallelism_check,
    queue_pause,
    queue_resume,
    queue_upsert,
)


def _upsert_input(request: Request) -> tuple[str, int, bool | None]:
    data: Any = request.data if request.body else {}
    if not isinstance(data, dict):
        raise ApplicationError('invalid body: expected {"queueName", "parallelism", "paused"}')
    name = queue_name_check(data.get("queueName"))
    parallelism = data.get("parallelism", 1)
    if parallelism is None:
        parallelism = 1
    parallelism = queue_parallelism_check(parallelism)
    paused = data.get("paused")
    if paused is not None and not isinstance(paused, bool):
        raise ApplicationError(f"invalid paused: {paused!r}, use true or false")
    return name, parallelism, paused


class QueuesView(APIView):
    def get(self, request: Request) -> Response:
        return Response(queues_list())

    def post(self, request: Request) -> Response:
        name, parallelism, paused = _upsert_input(request)
        queue_upsert(name=name, parallelism=parallelism, paused=paused, now=timezone.now())
        return Response(queue_get(name=name))


class QueueView(APIView):
    def get(self, request: Request, name: str) -> Response:
        return Response(queue_get(name=queue_name_check(name, field="queue name")))

    def delete(self, request: Request, name: str) -> Response:
        cancelled = queue_delete(
            name=queue_name_check(name, field="queue name"), now=timezone.now()
        )
        return Response({"deleted": True, "cancelled": cancelled})


class QueuePauseView(APIView):
    def post(self, request: Request, name: str) -> Response:
        queue_pause(name=queue_name_check(name, field="queue name"), now=timezone.now())
        return Response(queue_get(name=name))


class QueueResumeView(APIView):
    def post(self, request: Request, name: str) -> Response:
        queue_resume(name=queue_name_check(name, field="queue name"), now=timezone.now())
        return Response(queue_get(name=name))


class EnqueueView(APIView):
    """Publish through a queue: same headers and answers as publish, without delays."""

    def post(self, request: Request, queue: str, destination: str) -> Response:
        queue = queue_name_check(queue, field="queue name")
        return publish_answer(request, f"/v2/enqueue/{queue}/", queue=queue)
