"""``Upstash-*`` request headers (or their query-parameter form) to delivery options.

Pure: no database, no Django settings. The caller passes the limits in force.
Every error is an ``ApplicationError`` whose message names the header at fault.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from broker.durations import DurationError, format_duration, parse_duration
from broker.errors import ApplicationError
from broker.header_check import check_headers, forwardable
from broker.retry_delay import RetryDelay, RetryDelayError
from broker.urls_check import validate_http_url

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# Headers never forwarded by Upstash-Header-Forward, beyond what no forward may
# carry (header_check.forwardable): the caller's credentials and what the
# delivery sets itself.
NOT_FORWARDED = {"authorization", "accept-encoding", "user-agent"}

# The columns' sizes: Message.deduplication_id and Message.flow_control_key.
MAX_DEDUPLICATION_ID = 400
MAX_FLOW_CONTROL_KEY = 200
MAX_LABEL_LENGTH = 200


@dataclass(frozen=True)
class Limits:
    max_retries: int = 20
    default_retries: int = 3
    max_delay_seconds: int = 365 * 86400
    max_timeout_seconds: int = 900
    default_timeout_seconds: int = 30
    max_headers: int = 100
    max_header_bytes: int = 64 * 1024
    max_labels: int = 50


@dataclass
class FlowControl:
    key: str = ""
    parallelism: int | None = None
    rate: int | None = None
    period: int | None = None


@dataclass
class PublishOptions:
    method: str = "POST"
    header: dict[str, list[str]] = field(default_factory=dict)
    not_before: datetime | None = None
    retries: int = 3
    retry_delay_expression: str = ""
    timeout_seconds: int = 30
    callback: str = ""
    callback_header: dict[str, list[str]] = field(default_factory=dict)
    callback_settings: dict[str, str | int] = field(default_factory=dict)
    failure_callback: str = ""
    failure_callback_header: dict[str, list[str]] = field(default_factory=dict)
    failure_callback_settings: dict[str, str | int] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    redact_fields: list[str] = field(default_factory=list)
    deduplication_id: str = ""
    content_based_deduplication: bool = False
    flow_control: FlowControl = field(default_factory=FlowControl)

    def deduplication_key(self, *, destination: str, body: bytes, per_url: bool = False) -> str:
        """The key two publishes share when they are duplicates, or "" when not deduplicated.

        ``per_url``: the messages of one group publish share the client's id but
        are not duplicates of each other.
        """
        if self.deduplication_id:
            # Hashed: a URL has no length limit, the key column has.
            scope = destination if per_url else ""
            return "id:" + hashlib.sha256(f"{scope}\0{self.deduplication_id}".encode()).hexdigest()
        if not self.content_based_deduplication:
            return ""
        digest = hashlib.sha256()
        digest.update(destination.encode())
        digest.update(b"\0")
        digest.update(body)
        for name in sorted(self.header):
            for value in self.header[name]:
                digest.update(f"\0{name.lower()}:{value}".encode())
        return "content:" + digest.hexdigest()


def options_to_headers(opts: PublishOptions) -> dict[str, str]:
    """The inverse of ``parse_publish_options``: headers that read back as ``opts``
    (without ``not_before`` and deduplication, which belong to one publish)."""
    headers: dict[str, str] = {}
    for name, values in opts.header.items():
        key = "Content-Type" if name.lower() == "content-type" else f"Upstash-Forward-{name}"
        headers[key] = ", ".join(values)
    headers["Upstash-Method"] = opts.method
    headers["Upstash-Retries"] = str(opts.retries)
    headers["Upstash-Timeout"] = format_duration(opts.timeout_seconds)
    if opts.retry_delay_expression:
        headers["Upstash-Retry-Delay"] = opts.retry_delay_expression
    for prefix, url, forward, settings in (
        ("Upstash-Callback", opts.callback, opts.callback_header, opts.callback_settings),
        (
            "Upstash-Failure-Callback",
            opts.failure_callback,
            opts.failure_callback_header,
            opts.failure_callback_settings,
        ),
    ):
        if not url:
            continue
        headers[prefix] = url
        for name, values in forward.items():
            headers[f"{prefix}-Forward-{name}"] = ", ".join(values)
        for key, header in (
            ("method", "Method"),
            ("retries", "Retries"),
            ("retryDelay", "Retry-Delay"),
        ):
            if key in settings:
                headers[f"{prefix}-{header}"] = str(settings[key])
        if "timeout" in settings:
            headers[f"{prefix}-Timeout"] = format_duration(int(settings["timeout"]))
    if opts.labels:
        headers["Upstash-Label"] = ",".join(opts.labels)
    if opts.redact_fields:
        headers["Upstash-Redact-Fields"] = ",".join(opts.redact_fields)
    if opts.flow_control.key:
        headers["Upstash-Flow-Control-Key"] = opts.flow_control.key
        parts = [
            f"{name}={value}"
            for name, value in (
                ("parallelism", opts.flow_control.parallelism),
                ("rate", opts.flow_control.rate),
                ("period", opts.flow_control.period),
            )
            if value
        ]
        if parts:
            headers["Upstash-Flow-Control-Value"] = ", ".join(parts)
    return headers


def options_to_json(opts: PublishOptions) -> dict[str, Any]:
    """Stored options (a schedule's): everything but ``not_before``, which each use sets."""
    data = asdict(opts)
    data["not_before"] = None
    return data


def options_from_json(data: Mapping[str, Any]) -> PublishOptions:
    fields = dict(data)
    flow_control = FlowControl(**fields.pop("flow_control", {}))
    return PublishOptions(**fields, flow_control=flow_control)


class RequestHeaders:
    """Case-insensitive view over request headers plus ``upstash-*`` query parameters."""

    def __init__(self, headers: Mapping[str, str], query: Mapping[str, str]) -> None:
        self.items: list[tuple[str, str]] = [(k, v) for k, v in headers.items()]
        self.lower: dict[str, str] = {k.lower(): v for k, v in headers.items()}
        for name, value in query.items():
            # A setting given as a header wins over its query-parameter form.
            if name.lower().startswith("upstash-") and name.lower() not in self.lower:
                self.lower[name.lower()] = value
                self.items.append((name, value))

    def get(self, name: str) -> str | None:
        value = self.lower.get(name.lower())
        return None if value is None else value.strip()


def _prefixed(items: Iterable[tuple[str, str]], prefix: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    plen = len(prefix)
    for name, value in items:
        if name.lower().startswith(prefix) and len(name) > plen:
            out.setdefault(name[plen:], []).append(value)
    return out


def _int(value: str, *, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ApplicationError(f"invalid {name}: {value!r} is not an integer") from None
    if not low <= number <= high:
        raise ApplicationError(f"invalid {name}: {number} must be between {low} and {high}")
    return number


def _duration(value: str, *, name: str, high: int) -> int:
    try:
        seconds = parse_duration(value)
    except DurationError as exc:
        raise ApplicationError(f"invalid {name}: {exc}") from None
    if seconds > high:
        raise ApplicationError(f"invalid {name}: {value!r} is longer than the maximum {high}s")
    return seconds


def _retry_delay(value: str, *, name: str) -> str:
    try:
        return RetryDelay.parse(value).source
    except RetryDelayError as exc:
        raise ApplicationError(f"invalid {name}: {exc}") from None


def _method(value: str, *, name: str) -> str:
    method = value.upper()
    if method not in METHODS:
        raise ApplicationError(f"invalid {name}: {value!r}, use one of {', '.join(METHODS)}")
    return method


def _bool(value: str, *, name: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0", ""):
        return False
    raise ApplicationError(f"invalid {name}: {value!r}, use true or false")


def parse_flow_control_value(value: str) -> tuple[int | None, int | None, int | None]:
    """``parallelism=2, rate=10, period=1m`` to (parallelism, rate, period seconds)."""
    parts: dict[str, str] = {}
    for chunk in value.split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        key, sep, raw = chunk.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("parallelism", "rate", "period"):
            raise ApplicationError(
                f"invalid Upstash-Flow-Control-Value: {chunk!r}, "
                "use parallelism=<n>, rate=<n>, period=<duration>"
            )
        parts[key] = raw.strip()
    name = "Upstash-Flow-Control-Value"
    parallelism = (
        _int(parts["parallelism"], name=name, low=1, high=10_000)
        if "parallelism" in parts
        else None
    )
    rate = _int(parts["rate"], name=name, low=1, high=1_000_000) if "rate" in parts else None
    period = _duration(parts["period"], name=name, high=7 * 86400) if "period" in parts else None
    if period == 0:
        raise ApplicationError(f"invalid {name}: period must be at least 1s")
    return parallelism, rate, period


def _redact_fields(value: str) -> list[str]:
    fields = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        if item in ("body", "header", "headers"):
            fields.append("header" if item == "headers" else item)
        elif item.startswith(("header[", "headers[")) and item.endswith("]") and "[]" not in item:
            fields.append("header[" + item[item.index("[") + 1 : -1] + "]")
        else:
            raise ApplicationError(
                f"invalid Upstash-Redact-Fields: {item!r}, use body, header or header[Name]"
            )
    return fields


def _labels(value: str, limits: Limits) -> list[str]:
    labels = list(dict.fromkeys(label.strip() for label in value.split(",") if label.strip()))
    if len(labels) > limits.max_labels:
        raise ApplicationError(
            f"invalid Upstash-Label: {len(labels)} labels; the maximum is {limits.max_labels}"
        )
    if too_long := [label for label in labels if len(label) > MAX_LABEL_LENGTH]:
        raise ApplicationError(
            f"invalid Upstash-Label: {too_long[0][:40]!r}... is longer than "
            f"{MAX_LABEL_LENGTH} characters"
        )
    return labels


def _callback_settings(h: RequestHeaders, prefix: str, limits: Limits) -> dict[str, str | int]:
    settings: dict[str, str | int] = {}
    if h.get(f"{prefix}-Delay"):
        raise ApplicationError(f"invalid {prefix}-Delay: delayed callbacks are not supported")
    if (value := h.get(f"{prefix}-Method")) is not None:
        settings["method"] = _method(value, name=f"{prefix}-Method")
    if (value := h.get(f"{prefix}-Timeout")) is not None:
        settings["timeout"] = _duration(
            value, name=f"{prefix}-Timeout", high=limits.max_timeout_seconds
        )
        if settings["timeout"] == 0:
            raise ApplicationError(f"invalid {prefix}-Timeout: must be at least 1s")
    if (value := h.get(f"{prefix}-Retries")) is not None:
        settings["retries"] = _int(value, name=f"{prefix}-Retries", low=0, high=limits.max_retries)
    if (value := h.get(f"{prefix}-Retry-Delay")) is not None:
        settings["retryDelay"] = _retry_delay(value, name=f"{prefix}-Retry-Delay")
    return settings


def parse_publish_options(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    *,
    now: datetime,
    limits: Limits,
) -> PublishOptions:
    """Read every per-message setting of a publish request; raise ApplicationError on bad input."""
    h = RequestHeaders(headers, query)
    check_headers(h.items, max_count=limits.max_headers, max_bytes=limits.max_header_bytes)
    opts = PublishOptions(
        retries=limits.default_retries, timeout_seconds=limits.default_timeout_seconds
    )

    if h.get("Upstash-Header-Forward") and _bool(
        h.get("Upstash-Header-Forward") or "", name="Upstash-Header-Forward"
    ):
        for name, header_value in headers.items():
            lname = name.lower()
            if lname.startswith("upstash-") or lname in NOT_FORWARDED or not forwardable(lname):
                continue
            opts.header.setdefault(name, []).append(header_value)
    for name, values in _prefixed(h.items, "upstash-forward-").items():
        opts.header[name] = values
    content_type = h.get("Content-Type")
    if content_type:
        opts.header = {k: v for k, v in opts.header.items() if k.lower() != "content-type"}
        opts.header["Content-Type"] = [content_type]

    if (value := h.get("Upstash-Method")) is not None:
        opts.method = _method(value, name="Upstash-Method")

    if (value := h.get("Upstash-Not-Before")) is not None and value != "":
        seconds = _int(value, name="Upstash-Not-Before", low=0, high=253402300799)
        opts.not_before = datetime.fromtimestamp(seconds, tz=now.tzinfo)
        if (opts.not_before - now).total_seconds() > limits.max_delay_seconds:
            raise ApplicationError(
                f"invalid Upstash-Not-Before: more than {limits.max_delay_seconds}s ahead"
            )
    elif (value := h.get("Upstash-Delay")) is not None and value != "":
        delay = _duration(value, name="Upstash-Delay", high=limits.max_delay_seconds)
        opts.not_before = now + timedelta(seconds=delay)

    if (value := h.get("Upstash-Retries")) is not None:
        opts.retries = _int(value, name="Upstash-Retries", low=0, high=limits.max_retries)
    if (value := h.get("Upstash-Retry-Delay")) is not None and value != "":
        opts.retry_delay_expression = _retry_delay(value, name="Upstash-Retry-Delay")
    if (value := h.get("Upstash-Timeout")) is not None and value != "":
        opts.timeout_seconds = _duration(
            value, name="Upstash-Timeout", high=limits.max_timeout_seconds
        )
        if opts.timeout_seconds == 0:
            raise ApplicationError("invalid Upstash-Timeout: must be at least 1s")

    if value := h.get("Upstash-Callback"):
        opts.callback = validate_http_url(value, field="Upstash-Callback")
    if value := h.get("Upstash-Failure-Callback"):
        opts.failure_callback = validate_http_url(value, field="Upstash-Failure-Callback")
    opts.callback_header = _prefixed(h.items, "upstash-callback-forward-")
    opts.failure_callback_header = _prefixed(h.items, "upstash-failure-callback-forward-")
    opts.callback_settings = _callback_settings(h, "Upstash-Callback", limits)
    opts.failure_callback_settings = _callback_settings(h, "Upstash-Failure-Callback", limits)

    if value := h.get("Upstash-Label"):
        opts.labels = _labels(value, limits)
    if value := h.get("Upstash-Redact-Fields"):
        opts.redact_fields = _redact_fields(value)

    if value := h.get("Upstash-Deduplication-Id"):
        if len(value) > MAX_DEDUPLICATION_ID:
            raise ApplicationError(
                f"invalid Upstash-Deduplication-Id: longer than {MAX_DEDUPLICATION_ID} characters"
            )
        opts.deduplication_id = value
    if (value := h.get("Upstash-Content-Based-Deduplication")) is not None:
        opts.content_based_deduplication = _bool(value, name="Upstash-Content-Based-Deduplication")

    if value := h.get("Upstash-Flow-Control-Key"):
        if len(value) > MAX_FLOW_CONTROL_KEY:
            raise ApplicationError(
                f"invalid Upstash-Flow-Control-Key: longer than {MAX_FLOW_CONTROL_KEY} characters"
            )
        opts.flow_control.key = value
        if fc_value := h.get("Upstash-Flow-Control-Value"):
            (
                opts.flow_control.parallelism,
                opts.flow_control.rate,
                opts.flow_control.period,
            ) = parse_flow_control_value(fc_value)
    elif h.get("Upstash-Flow-Control-Value"):
        raise ApplicationError(
            "invalid Upstash-Flow-Control-Value: it needs an Upstash-Flow-Control-Key"
        )
    return opts
