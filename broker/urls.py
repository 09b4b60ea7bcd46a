from __future__ import annotations

from django.urls import path, re_path

from broker.api.dlq import DlqEntryView, DlqListView, DlqRetryManyView, DlqRetryView
from broker.api.flow_control import (
    FlowKeyActionView,
    FlowKeysView,
    FlowKeyView,
    GlobalParallelismView,
)
from broker.api.health import healthz
from broker.api.keys import KeysRotateView, KeysView
from broker.api.logs import LogsView
from broker.api.messages import MessagesView, MessageView
from broker.api.publish import BatchView, PublishView
from broker.api.queues import EnqueueView, QueuePauseView, QueueResumeView, QueuesView, QueueView
from broker.api.schedules import SchedulesView, ScheduleView
from groups.api import UrlGroupEndpointsView, UrlGroupsView, UrlGroupView

urlpatterns = [
    path("healthz", healthz),
    re_path(r"^v2/publish/(?P<destination>.+)$", PublishView.as_view()),
    re_path(r"^v2/enqueue/(?P<queue>[^/]+)/(?P<destination>.+)$", EnqueueView.as_view()),
    path("v2/batch", BatchView.as_view()),
    path("v2/queues", QueuesView.as_view()),
    path("v2/queues/<str:name>", QueueView.as_view()),
    path("v2/queues/<str:name>/pause", QueuePauseView.as_view()),
    path("v2/queues/<str:name>/resume", QueueResumeView.as_view()),
    path("v2/schedules", SchedulesView.as_view()),
    re_path(r"^v2/schedules/(?P<rest>.+)$", ScheduleView.as_view()),
    path("v2/flowControl", FlowKeysView.as_view()),
    path("v2/flowControl/<str:key>", FlowKeyView.as_view()),
    path("v2/flowControl/<str:key>/<str:action>", FlowKeyActionView.as_view()),
    path("v2/globalParallelism", GlobalParallelismView.as_view()),
    path("v2/messages", MessagesView.as_view()),
    path("v2/messages/<str:message_id>", MessageView.as_view()),
    path("v2/events", LogsView.as_view()),
    path("v2/logs", LogsView.as_view()),
    path("v2/keys", KeysView.as_view()),
    path("v2/keys/rotate", KeysRotateView.as_view()),
    path("v2/topics", UrlGroupsView.as_view()),
    path("v2/topics/<str:name>", UrlGroupView.as_view()),
    path("v2/topics/<str:name>/endpoints", UrlGroupEndpointsView.as_view()),
    path("v2/dlq", DlqListView.as_view()),
    path("v2/dlq/retry", DlqRetryManyView.as_view()),
    path("v2/dlq/retry/<str:dlq_id>", DlqRetryView.as_view()),
    path("v2/dlq/<str:dlq_id>", DlqEntryView.as_view()),
]
