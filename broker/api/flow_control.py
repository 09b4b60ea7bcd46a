"""Flow-control keys (``/v2/flowControl``) and ``GET /v2/globalParallelism``."""

from __future__ import annotations

from django.http import QueryDict
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.errors import ApplicationError
from broker.gate_selectors import flow_key_get, flow_keys_list, global_parallelism
from broker.services.flow_control import (
    flow_key_pause,
    flow_key_pin,
    flow_key_reset_rate,
    flow_key_resume,
    flow_key_unpin,
    flow_pin_values,
)


class FlowKeysView(APIView):
    def get(self, request: Request) -> Response:
        search = request.query_params.get("search", "")
        return Response(flow_keys_list(search=search[:200], now=timezone.now()))


class FlowKeyView(APIView):
    def get(self, request: Request, key: str) -> Response:
        return Response(flow_key_get(key=key, now=timezone.now()))


def _flag(query: QueryDict, name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise ApplicationError(f"invalid {name}: {value!r}, use true or false")
    return value == "true"


class FlowKeyActionView(APIView):
    """``POST /v2/flowControl/{key}/{pause,resume,pin,unpin,resetRate,reset}``."""

    def post(self, request: Request, key: str, action: str) -> Response:
        now = timezone.now()
        query = request.query_params
        if action == "pause":
            flow_key_pause(key=key, now=now)
        elif action == "resume":
            flow_key_resume(key=key, now=now)
        elif action == "pin":
            parallelism, rate, period = flow_pin_values(query)
            flow_key_pin(key=key, parallelism=parallelism, rate=rate, period=period, now=now)
        elif action == "unpin":
            flow_key_unpin(
                key=key, parallelism=_flag(query, "parallelism"), rate=_flag(query, "rate"), now=now
            )
        elif action in ("resetRate", "reset"):
            flow_key_reset_rate(key=key, now=now)
        else:
            raise ApplicationError(
                f"invalid action {action!r}: use pause, resume, pin, unpin, resetRate or reset",
                status=404,
            )
        return Response(flow_key_get(key=key, now=now))


class GlobalParallelismView(APIView):
    def get(self, request: Request) -> Response:
        return Response(global_parallelism())
