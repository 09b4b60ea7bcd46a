"""Liveness: each worker process's delivery engine and each clock report in every few seconds.

One row per process (``kind@host:pid``), upserted in one statement by a thread of
its own (the engine's beat thread, the clock's loop), never by a sender or the
recorder, so a slow database delays a heartbeat and no delivery. A process that
stops reporting is shown stale on the dashboard after ``STALE_AFTER``; its row is
deleted by a clock after ``FORGET_AFTER``.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from broker.models import Heartbeat

BEAT_SECONDS = 5.0
# Three missed beats: a process this quiet is dead or stuck (a GC pause is not that long).
STALE_AFTER = timedelta(seconds=3 * BEAT_SECONDS)
FORGET_AFTER = timedelta(days=1)


def process_identity(kind: str) -> str:
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"


def heartbeat_beat(
    *, kind: str, started_at: datetime, now: datetime, detail: dict[str, Any] | None = None
) -> None:
    """Record that this process (of ``kind``) is alive at ``now``: one upsert."""
    Heartbeat.objects.bulk_create(
        [
            Heartbeat(
                identity=process_identity(kind),
                kind=kind,
                hostname=socket.gethostname()[:200],
                pid=os.getpid(),
                started_at=started_at,
                seen_at=now,
                detail=detail or {},
            )
        ],
        update_conflicts=True,
        unique_fields=["identity"],
        update_fields=["seen_at", "detail", "started_at"],
    )


def heartbeats_forget(*, now: datetime) -> int:
    """Delete the rows of processes silent for ``FORGET_AFTER`` (through the seen_at index)."""
    return Heartbeat.objects.filter(seen_at__lt=now - FORGET_AFTER).delete()[0]
