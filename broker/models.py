"""The store. PostgreSQL is the only source of truth for every message."""

from __future__ import annotations

from datetime import datetime

from django.db import models

from broker.ids import new_message_id


class Payload(models.Model):
    """A published body, stored once however many messages (group endpoints) carry it."""

    body = models.BinaryField(default=b"")

    def __str__(self) -> str:
        return f"payload {self.pk} ({len(self.body)} bytes)"


class Message(models.Model):
    """One message to one destination, with everything needed to deliver it.

    ``due_at`` drives the pipeline: a row whose ``due_at`` has passed and whose
    state is CREATED, RETRY or ACTIVE can be claimed. While ACTIVE it holds the
    lease expiry, so a row claimed by a worker that died becomes claimable again
    by itself. A finished row has no ``due_at``.
    """

    class State(models.TextChoices):
        CREATED = "CREATED"
        ACTIVE = "ACTIVE"
        RETRY = "RETRY"
        DELIVERED = "DELIVERED"
        FAILED = "FAILED"
        CANCELED = "CANCELED"

    PENDING_STATES = (State.CREATED, State.ACTIVE, State.RETRY)
    FINAL_STATES = (State.DELIVERED, State.FAILED, State.CANCELED)

    class Waiting(models.TextChoices):
        """Which gate holds a pending message back (``broker/services/gates.py``)."""

        NO = "", "not waiting"
        QUEUE = "queue", "its queue"
        FLOW = "flow", "its flow-control key"

    message_id = models.CharField(max_length=40, unique=True, default=new_message_id)
    url = models.TextField()
    method = models.CharField(max_length=10, default="POST")
    # Headers sent to the destination, already unprefixed: {"Name": ["value", ...]}.
    header = models.JSONField(default=dict)
    payload = models.ForeignKey(Payload, on_delete=models.PROTECT, related_name="messages")

    state = models.CharField(max_length=16, choices=State.choices, default=State.CREATED)
    due_at = models.DateTimeField(null=True, blank=True)
    # A waiting message is not claimable, whatever its due_at, until its gate admits it.
    waiting_for = models.CharField(
        max_length=8, choices=Waiting.choices, blank=True, default=Waiting.NO
    )
    # Admitted by its queue and not yet released: the message and its callbacks
    # are not all finished. Counts against the queue's parallelism.
    queue_slot = models.BooleanField(default=False)
    # Admitted by its flow-control key for one attempt whose outcome is not yet
    # written. Counts against the key's parallelism.
    flow_slot = models.BooleanField(default=False)
    claim_token = models.UUIDField(null=True, blank=True)
    retried = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(default=3)
    retry_delay_expression = models.TextField(blank=True, default="")
    timeout_seconds = models.PositiveIntegerField(default=30)

    not_before = models.DateTimeField()
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    callback = models.TextField(blank=True, default="")
    callback_header = models.JSONField(default=dict, blank=True)
    # {"method", "timeout", "retries", "retryDelay"} for the callback message.
    callback_settings = models.JSONField(default=dict, blank=True)
    failure_callback = models.TextField(blank=True, default="")
    failure_callback_header = models.JSONField(default=dict, blank=True)
    failure_callback_settings = models.JSONField(default=dict, blank=True)

    # ",a,b,": delimited so that a label filter is a portable "contains ,a,".
    labels = models.TextField(blank=True, default="")
    redact_fields = models.JSONField(default=list, blank=True)
    caller_ip = models.CharField(max_length=64, blank=True, default="")
    deduplication_id = models.CharField(max_length=400, blank=True, default="")

    topic_name = models.CharField(max_length=200, blank=True, default="")
    endpoint_name = models.CharField(max_length=200, blank=True, default="")
    queue_name = models.CharField(max_length=200, blank=True, default="")
    schedule_id = models.CharField(max_length=200, blank=True, default="")
    # The schedule's trigger time that produced this message (its minute).
    scheduled_for = models.DateTimeField(null=True, blank=True)
    # Set on a callback message: the message whose attempt it reports on.
    source_message = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="callbacks"
    )

    flow_control_key = models.CharField(max_length=200, blank=True, default="")
    flow_control_parallelism = models.PositiveIntegerField(null=True, blank=True)
    flow_control_rate = models.PositiveIntegerField(null=True, blank=True)
    flow_control_period = models.PositiveIntegerField(null=True, blank=True)

    # The last attempt's outcome, kept for the API, the console and the DLQ.
    last_response_status = models.PositiveIntegerField(null=True, blank=True)
    last_response_header = models.JSONField(null=True, blank=True)
    last_response_body = models.BinaryField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        # Console actions beyond the model's add/change/delete/view (broker/admin.py).
        permissions = [
            ("cancel_message", "Can cancel pending messages"),
            ("retry_message", "Can retry failed messages"),
            ("publish_message", "Can publish test messages from the console"),
        ]
        indexes = [
            # The claim: "state IN (pending) AND waiting_for = '' AND due_at <= now()
            # ORDER BY due_at". Waiting rows stay out, so a paused queue of a million
            # messages costs the claim nothing.
            models.Index(
                fields=["due_at"],
                name="message_claim_idx",
                condition=models.Q(due_at__isnull=False, waiting_for=""),
            ),
            # A queue's admission: its waiting messages in FIFO order.
            models.Index(
                fields=["queue_name", "id"],
                name="message_queue_wait_idx",
                condition=models.Q(waiting_for="queue"),
            ),
            # A flow-control key's admission: its waitlist by due time.
            models.Index(
                fields=["flow_control_key", "due_at", "id"],
                name="message_flow_wait_idx",
                condition=models.Q(waiting_for="flow"),
            ),
            # What a queue / a key has in flight (their parallelism counts).
            models.Index(
                fields=["queue_name"],
                name="message_queue_slot_idx",
                condition=models.Q(queue_slot=True),
            ),
            models.Index(
                fields=["flow_control_key"],
                name="message_flow_slot_idx",
                condition=models.Q(flow_slot=True),
            ),
            # A queue's lag: its undelivered messages.
            models.Index(
                fields=["queue_name"],
                name="message_queue_pending_idx",
                condition=models.Q(state__in=["CREATED", "ACTIVE", "RETRY"])
                & ~models.Q(queue_name=""),
            ),
            # A schedule's last states, and withdrawing a trigger not yet come.
            models.Index(
                fields=["schedule_id", "scheduled_for"],
                name="message_schedule_idx",
                condition=models.Q(scheduled_for__isnull=False),
            ),
            # The global parallelism count: attempts in flight.
            models.Index(
                fields=["due_at"], name="message_active_idx", condition=models.Q(state="ACTIVE")
            ),
            # Bulk cancel and the console list by creation time.
            models.Index(fields=["created_at"], name="message_created_idx"),
            # Retention prune (services/maintenance.py): "state IN (finished states) AND
            # finished_at < cutoff LIMIT n". The state comes first so that the prune of
            # delivered rows, kept for hours, reads only them, and not every failed or
            # canceled row that is kept for days: an idle prune reads no row at all.
            models.Index(
                fields=["state", "finished_at"],
                name="message_finished_state_idx",
                condition=models.Q(finished_at__isnull=False),
            ),
            # Bulk cancel by filter (services/cancel.py): "state IN (pending) AND ...
            # ORDER BY id LIMIT n". Only pending rows are in it, so a filter that
            # matches nothing reads the pending rows, not the finished millions.
            models.Index(
                fields=["id"],
                name="message_pending_idx",
                condition=models.Q(state__in=["CREATED", "ACTIVE", "RETRY"]),
            ),
            # Exact filters of logs, DLQ and bulk cancel (broker/filters.py). Most
            # messages have no topic, endpoint, queue, schedule or flow-control key:
            # partial, so that publishing such a message adds nothing to them.
            *(
                models.Index(
                    fields=[field],
                    name=f"message_{field}_idx",
                    condition=~models.Q(**{field: ""}),
                )
                for field in (
                    "topic_name",
                    "endpoint_name",
                    "queue_name",
                    "schedule_id",
                    "flow_control_key",
                )
            ),
            models.Index(fields=["caller_ip"], name="message_caller_ip_idx"),
            # /v2/dlq?responseStatus=: "state = 'FAILED' AND last_response_status IN
            # (...)" (selectors.dlq_entries). Only failed messages, the DLQ's, are in it.
            models.Index(
                fields=["last_response_status"],
                name="message_failed_status_idx",
                condition=models.Q(state="FAILED"),
            ),
            # On PostgreSQL, migration 0002 adds btree indexes over the md5 of the url,
            # its host and its path (the url, host and path filters) and a trigram GIN index on
            # ``labels`` (the label filter: "LIKE '%,a,%'"). They are not declared
            # here because the embedded SQLite store has no such index.
        ]

    def __str__(self) -> str:
        return self.message_id

    @property
    def body(self) -> bytes:
        return bytes(self.payload.body)

    @property
    def label_list(self) -> list[str]:
        return [label for label in self.labels.split(",") if label]

    @staticmethod
    def join_labels(labels: list[str]) -> str:
        return f",{','.join(labels)}," if labels else ""


class Queue(models.Model):
    """A FIFO queue: at most ``parallelism`` of its messages in flight, in order.

    ``wake_at`` is set when admission may have work (a message arrived, a slot
    was released, the queue resumed); the claimers admit from queues whose
    ``wake_at`` has come and clear it.
    """

    name = models.CharField(max_length=200, unique=True)
    parallelism = models.PositiveIntegerField(default=1)
    paused = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    wake_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("pause_queue", "Can pause and resume queues")]
        indexes = [
            # Admission: "wake_at <= now() AND NOT paused".
            models.Index(
                fields=["wake_at"], name="queue_wake_idx", condition=models.Q(wake_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return self.name


class FlowControlKey(models.Model):
    """Limits shared by the messages of one ``Upstash-Flow-Control-Key``, per attempt.

    ``parallelism``: attempts in flight at once; ``rate`` attempts start per
    ``period`` seconds (counted in ``rate_count`` since ``rate_period_start``).
    Null means no limit. Messages over a limit wait (``Message.waiting_for``).
    """

    key = models.CharField(max_length=200, unique=True)
    parallelism = models.PositiveIntegerField(null=True, blank=True)
    rate = models.PositiveIntegerField(null=True, blank=True)
    period = models.PositiveIntegerField(default=1)
    paused = models.BooleanField(default=False)
    pinned_parallelism = models.BooleanField(default=False)
    pinned_rate = models.BooleanField(default=False)
    rate_count = models.PositiveIntegerField(default=0)
    rate_period_start = models.DateTimeField(null=True, blank=True)
    # The earliest the next start may be: starts are at least period / rate apart.
    rate_next_slot = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    wake_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "flow-control key"
        permissions = [("manage_flowcontrolkey", "Can pause, resume, reset and unpin keys")]
        indexes = [
            # Admission: "wake_at <= now() AND NOT paused".
            models.Index(
                fields=["wake_at"],
                name="flowkey_wake_idx",
                condition=models.Q(wake_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.key


class Schedule(models.Model):
    """A cron schedule: publish options stored once, a message made at each trigger.

    ``next_fire_at`` is the next trigger not yet made into messages; the clock
    makes it at ``fire_after``: ``QSTASH_SCHEDULE_LOOKAHEAD_SECONDS`` before its
    minute, but never before the minute of the trigger made last, so at most one
    trigger of a schedule is ever ahead (``broker/services/schedules.py``).
    ``last_fire_at`` is the latest trigger made, ``prior_fire_at`` the one before.
    """

    schedule_id = models.CharField(max_length=200, unique=True)
    destination = models.TextField()  # a URL, or a URL group's name
    cron = models.CharField(max_length=300)
    paused = models.BooleanField(default=False)
    payload = models.ForeignKey(Payload, on_delete=models.PROTECT, related_name="schedules")
    # broker.publish_options.PublishOptions as JSON (no not_before: see delay_seconds).
    options = models.JSONField(default=dict)
    delay_seconds = models.PositiveIntegerField(default=0)
    queue_name = models.CharField(max_length=200, blank=True, default="")
    caller_ip = models.CharField(max_length=64, blank=True, default="")
    next_fire_at = models.DateTimeField(null=True, blank=True)
    fire_after = models.DateTimeField(null=True, blank=True)
    last_fire_at = models.DateTimeField(null=True, blank=True)
    prior_fire_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        permissions = [("pause_schedule", "Can pause and resume schedules")]
        indexes = [
            # The clock's trigger claim: "NOT paused AND fire_after <= now".
            models.Index(
                fields=["fire_after"],
                name="schedule_fire_idx",
                condition=models.Q(paused=False, fire_after__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.schedule_id


class LogEntry(models.Model):
    """One state change of one message. Append-only; nothing reads it to decide."""

    class State(models.TextChoices):
        CREATED = "CREATED"
        ACTIVE = "ACTIVE"
        RETRY = "RETRY"
        ERROR = "ERROR"
        DELIVERED = "DELIVERED"
        FAILED = "FAILED"
        CANCEL_REQUESTED = "CANCEL_REQUESTED"
        CANCELED = "CANCELED"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="logs")
    state = models.CharField(max_length=20, choices=State.choices)
    time = models.DateTimeField()
    error = models.TextField(blank=True, default="")
    next_delivery_time = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_header = models.JSONField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    # How long the HTTP attempt took (DELIVERED and ERROR rows; None before 0005).
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "log entry"
        verbose_name_plural = "log entries"
        indexes = [
            # /v2/logs pages by (time, id) (filters.time_page): a page, with or without
            # fromDate/toDate, is a range of this index read in order. The prune's
            # "time < cutoff" uses it too.
            models.Index(fields=["time", "id"], name="log_time_id_idx"),
            # /v2/logs?state=X: "state = X ORDER BY time DESC, id DESC LIMIT n" reads
            # one state's rows newest first, however rare that state is.
            models.Index(fields=["state", "time", "id"], name="log_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} {self.state}"


class DlqEntry(models.Model):
    """A FAILED message kept for inspection and retry; its last response is on the message."""

    dlq_id = models.CharField(max_length=64, unique=True)
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="dlq")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "DLQ entry"
        verbose_name_plural = "dead-letter queue"
        permissions = [("retry_dlqentry", "Can retry DLQ entries")]

    def __str__(self) -> str:
        return self.dlq_id

    @staticmethod
    def make_id(message: Message, when: datetime) -> str:
        # The shape QStash uses ("1725323658779-0"): time in ms, then a discriminator.
        return f"{int(when.timestamp() * 1000)}-{message.pk}"


class Deduplication(models.Model):
    """A deduplication id seen inside the window, and the message it produced."""

    key = models.CharField(max_length=600, unique=True)
    message = models.ForeignKey(Message, on_delete=models.CASCADE)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.key


class Heartbeat(models.Model):
    """When a worker's delivery engine or a clock last reported in (the dashboard's liveness).

    One row per process, upserted every few seconds off the delivery path
    (``broker/services/heartbeats.py``); rows of processes gone for a day are deleted.
    """

    class Kind(models.TextChoices):
        WORKER = "worker"
        CLOCK = "clock"

    identity = models.CharField(max_length=200, unique=True)  # kind@host:pid
    kind = models.CharField(max_length=16, choices=Kind.choices)
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)
    # What the process says of itself: a worker's slots in use, a clock's last sweep.
    detail = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.identity


class Credentials(models.Model):
    """The API token and signing keys generated on first use (singleton row)."""

    token = models.CharField(max_length=200)
    current_signing_key = models.CharField(max_length=200)
    next_signing_key = models.CharField(max_length=200)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "credentials"
        permissions = [("rotate_credentials", "Can rotate the signing keys")]

    def __str__(self) -> str:
        return "credentials"
