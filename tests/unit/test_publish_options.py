from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from broker.errors import ApplicationError
from broker.models import Deduplication, Message
from broker.publish_options import (
    MAX_DEDUPLICATION_ID,
    Limits,
    PublishOptions,
    parse_flow_control_value,
    parse_publish_options,
)

NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
NOW_SECONDS = int(NOW.timestamp())
CALLBACK = "https://callback.example.com/done"
FAILURE_CALLBACK = "https://callback.example.com/failed"


def _parse(
    headers: Mapping[str, str],
    query: Mapping[str, str] | None = None,
    *,
    limits: Limits | None = None,
) -> PublishOptions:
    return parse_publish_options(headers, query or {}, now=NOW, limits=limits or Limits())


def _rejected(
    headers: Mapping[str, str],
    query: Mapping[str, str] | None = None,
    *,
    limits: Limits | None = None,
) -> str:
    with pytest.raises(ApplicationError) as excinfo:
        _parse(headers, query, limits=limits)
    assert excinfo.value.status == 400
    return excinfo.value.message


def test_no_headers_give_the_defaults_of_the_limits() -> None:
    opts = _parse({}, limits=Limits(default_retries=7, default_timeout_seconds=45))
    assert opts.method == "POST"
    assert opts.header == {}
    assert opts.not_before is None
    assert opts.retries == 7
    assert opts.retry_delay_expression == ""
    assert opts.timeout_seconds == 45
    assert opts.callback == opts.failure_callback == ""
    assert opts.callback_header == opts.failure_callback_header == {}
    assert opts.callback_settings == opts.failure_callback_settings == {}
    assert opts.labels == []
    assert opts.redact_fields == []
    assert opts.deduplication_id == ""
    assert opts.content_based_deduplication is False
    assert opts.flow_control.key == ""


# --- forwarded headers -------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Upstash-Forward-X-Trace": "abc"}, {"X-Trace": ["abc"]}),
        ({"upstash-forward-x-trace": "abc"}, {"x-trace": ["abc"]}),
        ({"UPSTASH-FORWARD-My-Header": "v"}, {"My-Header": ["v"]}),
        ({"Upstash-Forward-Authorization": "Bearer t"}, {"Authorization": ["Bearer t"]}),
        ({"Upstash-Forward-Upstash-Custom": "1"}, {"Upstash-Custom": ["1"]}),
        ({"Upstash-Forward-": "no name"}, {}),
        ({"Content-Type": "application/json"}, {"Content-Type": ["application/json"]}),
        ({"content-type": "text/plain"}, {"Content-Type": ["text/plain"]}),
        (
            {"Upstash-Forward-Content-Type": "text/plain", "Content-Type": "application/json"},
            {"Content-Type": ["application/json"]},
        ),
        (
            {"Upstash-Forward-A": "1", "Upstash-Forward-B": "2", "Content-Type": "text/csv"},
            {"A": ["1"], "B": ["2"], "Content-Type": ["text/csv"]},
        ),
        ({"X-Plain": "not forwarded without Upstash-Header-Forward"}, {}),
        ({"Upstash-Telemetry-Sdk": "upstash-qstash-js@2.12.0"}, {}),
        ({"Upstash-Telemetry-Platform": "vercel", "Upstash-Telemetry-Runtime": "node"}, {}),
        ({"Upstash-Callback-Forward-X": "1", "Upstash-Failure-Callback-Forward-Y": "2"}, {}),
        ({"Upstash-Retries": "2", "Upstash-Method": "PUT"}, {}),
    ],
)
def test_forward_headers_strip_the_prefix_and_keep_the_rest_of_the_name(
    headers: dict[str, str], expected: dict[str, list[str]]
) -> None:
    assert _parse(headers).header == expected


WEBHOOK_REQUEST = {
    "X-Github-Event": "push",
    "X-Hub-Signature-256": "sha256=abc",
    "Content-Type": "application/json",
    "Authorization": "Bearer caller-token",
    "Host": "qstash.local",
    "Content-Length": "12",
    "Upstash-Retries": "1",
    "Upstash-Telemetry-Sdk": "upstash-qstash-js@2.12.0",
}


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1"])
def test_header_forward_true_forwards_plain_headers_but_not_credentials_or_upstash_ones(
    value: str,
) -> None:
    opts = _parse({**WEBHOOK_REQUEST, "Upstash-Header-Forward": value})
    assert opts.header == {
        "X-Github-Event": ["push"],
        "X-Hub-Signature-256": ["sha256=abc"],
        "Content-Type": ["application/json"],
    }


@pytest.mark.parametrize("value", ["false", "0", ""])
def test_header_forward_false_forwards_only_content_type(value: str) -> None:
    opts = _parse({**WEBHOOK_REQUEST, "Upstash-Header-Forward": value})
    assert opts.header == {"Content-Type": ["application/json"]}


def test_header_forward_is_accepted_as_query_parameter() -> None:
    opts = _parse({"X-Event": "ping", "Host": "h"}, {"upstash-header-forward": "true"})
    assert opts.header == {"X-Event": ["ping"]}


def test_header_forward_keeps_explicit_forward_headers() -> None:
    opts = _parse(
        {"Upstash-Header-Forward": "true", "X-Event": "ping", "Upstash-Forward-X-Extra": "1"}
    )
    assert opts.header == {"X-Event": ["ping"], "X-Extra": ["1"]}


def test_header_forward_with_a_bad_value_is_rejected() -> None:
    assert "Upstash-Header-Forward" in _rejected({"Upstash-Header-Forward": "yes please"})


# --- method --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("GET", "GET"),
        ("get", "GET"),
        ("Post", "POST"),
        ("PUT", "PUT"),
        ("patch", "PATCH"),
        ("DELETE", "DELETE"),
        (" put ", "PUT"),
    ],
)
def test_method_is_case_insensitive(value: str, expected: str) -> None:
    assert _parse({"Upstash-Method": value}).method == expected


@pytest.mark.parametrize("value", ["HEAD", "OPTIONS", "CONNECT", "FETCH", "P OST"])
def test_unknown_method_is_rejected_naming_the_header(value: str) -> None:
    message = _rejected({"Upstash-Method": value})
    assert message.startswith("invalid Upstash-Method")
    assert value in message


# --- delay and not-before -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0),
        ("30", 30),
        ("10s", 10),
        ("5m", 300),
        ("2h", 7200),
        ("1d10h30m", 86400 + 10 * 3600 + 30 * 60),
        ("365d", 365 * 86400),
    ],
)
def test_delay_sets_not_before_relative_to_now(value: str, seconds: int) -> None:
    assert _parse({"Upstash-Delay": value}).not_before == NOW + timedelta(seconds=seconds)


def test_empty_delay_means_no_delay() -> None:
    assert _parse({"Upstash-Delay": ""}).not_before is None


@pytest.mark.parametrize(
    ("value", "limits"),
    [
        ("soon", Limits()),
        ("-5s", Limits()),
        ("10w", Limits()),
        ("366d", Limits()),
        ("1h1s", Limits(max_delay_seconds=3600)),
    ],
)
def test_bad_or_too_long_delay_is_rejected_naming_the_header(value: str, limits: Limits) -> None:
    assert _rejected({"Upstash-Delay": value}, limits=limits).startswith("invalid Upstash-Delay")


def test_delay_at_the_limit_is_accepted() -> None:
    opts = _parse({"Upstash-Delay": "1h"}, limits=Limits(max_delay_seconds=3600))
    assert opts.not_before == NOW + timedelta(hours=1)


@pytest.mark.parametrize(
    "offset", [0, 1, 3600, 365 * 86400, -3600], ids=["now", "1s", "1h", "max", "past"]
)
def test_not_before_is_absolute_unix_seconds(offset: int) -> None:
    opts = _parse({"Upstash-Not-Before": str(NOW_SECONDS + offset)})
    assert opts.not_before == NOW + timedelta(seconds=offset)
    assert opts.not_before is not None and opts.not_before.utcoffset() == timedelta(0)


@pytest.mark.parametrize("delay", ["10s", "1d", "not a duration"])
def test_not_before_takes_precedence_over_delay(delay: str) -> None:
    opts = _parse({"Upstash-Not-Before": str(NOW_SECONDS + 60), "Upstash-Delay": delay})
    assert opts.not_before == NOW + timedelta(seconds=60)


@pytest.mark.parametrize(
    ("value", "limits"),
    [
        ("tomorrow", Limits()),
        ("-1", Limits()),
        ("1.5", Limits()),
        (str(NOW_SECONDS + 365 * 86400 + 1), Limits()),
        (str(NOW_SECONDS + 3601), Limits(max_delay_seconds=3600)),
    ],
)
def test_bad_or_too_far_not_before_is_rejected_naming_the_header(
    value: str, limits: Limits
) -> None:
    message = _rejected({"Upstash-Not-Before": value}, limits=limits)
    assert message.startswith("invalid Upstash-Not-Before")


# --- retries, retry delay, timeout ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "limits", "expected"),
    [
        ("0", Limits(), 0),
        ("3", Limits(), 3),
        ("20", Limits(), 20),
        (" 7 ", Limits(), 7),
        ("5", Limits(max_retries=5), 5),
    ],
)
def test_retries_within_bounds_are_accepted(value: str, limits: Limits, expected: int) -> None:
    assert _parse({"Upstash-Retries": value}, limits=limits).retries == expected


@pytest.mark.parametrize(
    ("value", "limits", "reason"),
    [
        ("21", Limits(), "must be between 0 and 20"),
        ("6", Limits(max_retries=5), "must be between 0 and 5"),
        ("-1", Limits(), "must be between 0 and 20"),
        ("three", Limits(), "is not an integer"),
        ("1.5", Limits(), "is not an integer"),
    ],
)
def test_retries_out_of_bounds_are_rejected(value: str, limits: Limits, reason: str) -> None:
    message = _rejected({"Upstash-Retries": value}, limits=limits)
    assert message.startswith("invalid Upstash-Retries")
    assert reason in message


@pytest.mark.parametrize(
    "expression",
    ["1000", "1000 * (1 + retried)", "pow(2, retried) * 1000", "max(1000, pow(2, retried) * 100)"],
)
def test_valid_retry_delay_expression_is_kept_as_written(expression: str) -> None:
    assert _parse({"Upstash-Retry-Delay": expression}).retry_delay_expression == expression


def test_empty_retry_delay_means_the_default_backoff() -> None:
    assert _parse({"Upstash-Retry-Delay": ""}).retry_delay_expression == ""


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("foo", "unknown name 'foo'"),
        ("2 ** retried", "use pow(a, b)"),
        ("__import__('os')", "unknown function"),
        ("retried +", "syntax error"),
    ],
)
def test_invalid_retry_delay_is_rejected_naming_the_header(expression: str, reason: str) -> None:
    message = _rejected({"Upstash-Retry-Delay": expression})
    assert message.startswith("invalid Upstash-Retry-Delay")
    assert reason in message


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1", 1), ("10s", 10), ("90", 90), ("1m30s", 90), ("15m", 900)],
)
def test_timeout_is_a_duration_in_seconds(value: str, seconds: int) -> None:
    assert _parse({"Upstash-Timeout": value}).timeout_seconds == seconds


@pytest.mark.parametrize(
    ("value", "limits", "reason"),
    [
        ("0", Limits(), "must be at least 1s"),
        ("0s", Limits(), "must be at least 1s"),
        ("901", Limits(), "longer than the maximum 900s"),
        ("1h", Limits(), "longer than the maximum 900s"),
        ("11s", Limits(max_timeout_seconds=10), "longer than the maximum 10s"),
        ("fast", Limits(), "invalid duration"),
    ],
)
def test_zero_bad_or_too_long_timeout_is_rejected(value: str, limits: Limits, reason: str) -> None:
    message = _rejected({"Upstash-Timeout": value}, limits=limits)
    assert message.startswith("invalid Upstash-Timeout")
    assert reason in message


# --- callbacks -------------------------------------------------------------------


def test_callbacks_and_their_forward_headers_are_read() -> None:
    opts = _parse(
        {
            "Upstash-Callback": CALLBACK,
            "Upstash-Failure-Callback": FAILURE_CALLBACK,
            "Upstash-Callback-Forward-X-Cb": "1",
            "upstash-callback-forward-authorization": "Bearer cb",
            "Upstash-Failure-Callback-Forward-X-Fail": "2",
        }
    )
    assert opts.callback == CALLBACK
    assert opts.failure_callback == FAILURE_CALLBACK
    assert opts.callback_header == {"X-Cb": ["1"], "authorization": ["Bearer cb"]}
    assert opts.failure_callback_header == {"X-Fail": ["2"]}
    assert opts.header == {}


@pytest.mark.parametrize("prefix", ["Upstash-Callback", "Upstash-Failure-Callback"])
@pytest.mark.parametrize(
    "url", ["ftp://callback.example.com/", "callback.example.com/done", "http://", "https://a b/"]
)
def test_callback_that_is_not_an_http_url_is_rejected(prefix: str, url: str) -> None:
    assert _rejected({prefix: url}).startswith(f"invalid {prefix}:")


@pytest.mark.parametrize(
    ("suffix", "value", "expected"),
    [
        ("Method", "put", {"method": "PUT"}),
        ("Method", "GET", {"method": "GET"}),
        ("Timeout", "1m", {"timeout": 60}),
        ("Timeout", "15", {"timeout": 15}),
        ("Retries", "0", {"retries": 0}),
        ("Retries", "20", {"retries": 20}),
        ("Retry-Delay", "1000 * retried", {"retryDelay": "1000 * retried"}),
    ],
)
@pytest.mark.parametrize(
    ("prefix", "attribute", "other"),
    [
        ("Upstash-Callback", "callback_settings", "failure_callback_settings"),
        ("Upstash-Failure-Callback", "failure_callback_settings", "callback_settings"),
    ],
)
def test_callback_settings_are_read_per_callback(
    prefix: str, attribute: str, other: str, suffix: str, value: str, expected: dict[str, object]
) -> None:
    opts = _parse({prefix: CALLBACK, f"{prefix}-{suffix}": value})
    assert getattr(opts, attribute) == expected
    assert getattr(opts, other) == {}
    assert opts.callback_header == opts.failure_callback_header == {}


def test_all_callback_settings_together() -> None:
    opts = _parse(
        {
            "Upstash-Callback": CALLBACK,
            "Upstash-Callback-Method": "patch",
            "Upstash-Callback-Timeout": "30s",
            "Upstash-Callback-Retries": "2",
            "Upstash-Callback-Retry-Delay": "500",
        }
    )
    assert opts.callback_settings == {
        "method": "PATCH",
        "timeout": 30,
        "retries": 2,
        "retryDelay": "500",
    }


@pytest.mark.parametrize(
    ("suffix", "value"),
    [
        ("Method", "HEAD"),
        ("Timeout", "soon"),
        ("Timeout", "16m"),
        ("Retries", "21"),
        ("Retries", "many"),
        ("Retry-Delay", "foo"),
        ("Delay", "10s"),
    ],
)
@pytest.mark.parametrize("prefix", ["Upstash-Callback", "Upstash-Failure-Callback"])
def test_bad_callback_setting_is_rejected_naming_the_header(
    prefix: str, suffix: str, value: str
) -> None:
    assert _rejected({prefix: CALLBACK, f"{prefix}-{suffix}": value}).startswith(
        f"invalid {prefix}-{suffix}"
    )


@pytest.mark.parametrize("prefix", ["Upstash-Callback", "Upstash-Failure-Callback"])
def test_delayed_callback_is_rejected(prefix: str) -> None:
    message = _rejected({prefix: CALLBACK, f"{prefix}-Delay": "10s"})
    assert "delayed callbacks are not supported" in message


@pytest.mark.parametrize("prefix", ["Upstash-Callback", "Upstash-Failure-Callback"])
@pytest.mark.parametrize("value", ["0", "0s"])
def test_zero_callback_timeout_is_rejected_like_the_message_timeout(
    prefix: str, value: str
) -> None:
    # A callback is delivered as a message with this timeout; 0 can never succeed,
    # and Upstash-Timeout: 0 is rejected for the same reason.
    assert _rejected({prefix: CALLBACK, f"{prefix}-Timeout": value}).startswith(
        f"invalid {prefix}-Timeout"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Upstash-Callback-X-Trace": "1"},
        {"Upstash-Callback-Authorization": "Bearer t"},
        {"Upstash-Failure-Callback-X-Trace": "1"},
    ],
)
def test_python_sdk_callback_header_quirk_is_not_a_forward_header(
    headers: dict[str, str],
) -> None:
    # The PY SDK sends callback_headers={"X-Trace": ...} as Upstash-Callback-X-Trace.
    opts = _parse({"Upstash-Callback": CALLBACK, "Upstash-Failure-Callback": CALLBACK, **headers})
    assert opts.header == {}
    assert opts.callback_header == {}
    assert opts.failure_callback_header == {}
    assert opts.callback_settings == opts.failure_callback_settings == {}


# --- labels and redaction --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("billing", ["billing"]),
        ("a,b", ["a", "b"]),
        (" a , b ,, c ", ["a", "b", "c"]),
        (",", []),
        ("", []),
    ],
)
def test_label_is_a_comma_list(value: str, expected: list[str]) -> None:
    assert _parse({"Upstash-Label": value}).labels == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("body", ["body"]),
        ("header", ["header"]),
        ("headers", ["header"]),
        ("body,header", ["body", "header"]),
        (" body , headers ", ["body", "header"]),
        ("header[Authorization]", ["header[Authorization]"]),
        ("headers[X-Api-Key]", ["header[X-Api-Key]"]),
        ("body,header[A],headers[B]", ["body", "header[A]", "header[B]"]),
        ("body,,", ["body"]),
    ],
)
def test_redact_fields_are_normalised(value: str, expected: list[str]) -> None:
    assert _parse({"Upstash-Redact-Fields": value}).redact_fields == expected


@pytest.mark.parametrize(
    "value", ["url", "cookies", "body,secret", "header[Authorization", "headerAuthorization]"]
)
def test_unknown_redact_field_is_rejected_naming_the_header(value: str) -> None:
    assert _rejected({"Upstash-Redact-Fields": value}).startswith("invalid Upstash-Redact-Fields")


# --- deduplication ---------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 64, MAX_DEDUPLICATION_ID])
def test_deduplication_id_up_to_the_maximum_is_accepted(length: int) -> None:
    assert _parse({"Upstash-Deduplication-Id": "d" * length}).deduplication_id == "d" * length


def test_deduplication_id_over_the_maximum_is_rejected() -> None:
    message = _rejected({"Upstash-Deduplication-Id": "d" * (MAX_DEDUPLICATION_ID + 1)})
    assert message.startswith("invalid Upstash-Deduplication-Id")


def test_longest_accepted_deduplication_id_fits_the_message_column() -> None:
    # The message stores the id as the client sent it.
    opts = _parse({"Upstash-Deduplication-Id": "d" * MAX_DEDUPLICATION_ID})
    column = Message._meta.get_field("deduplication_id")
    assert column.max_length is not None
    assert len(opts.deduplication_id) <= column.max_length


def test_deduplication_key_of_a_group_publish_fits_the_key_column() -> None:
    opts = _parse({"Upstash-Deduplication-Id": "d" * MAX_DEDUPLICATION_ID})
    destination = "https://endpoint.example.com/" + "p" * 170
    key = opts.deduplication_key(destination=destination, body=b"", per_url=True)
    column = Deduplication._meta.get_field("key")
    assert column.max_length is not None
    assert len(key) <= column.max_length


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("false", False), ("0", False), ("", False)],
)
def test_content_based_deduplication_values(value: str, expected: bool) -> None:
    opts = _parse({"Upstash-Content-Based-Deduplication": value})
    assert opts.content_based_deduplication is expected


@pytest.mark.parametrize("value", ["yes", "on", "2"])
def test_bad_content_based_deduplication_value_is_rejected(value: str) -> None:
    message = _rejected({"Upstash-Content-Based-Deduplication": value})
    assert message.startswith("invalid Upstash-Content-Based-Deduplication")


URL = "https://example.com/hook"


def _content_key(
    headers: Mapping[str, str], *, destination: str = URL, body: bytes = b"hello"
) -> str:
    opts = _parse({"Upstash-Content-Based-Deduplication": "true", **headers})
    return opts.deduplication_key(destination=destination, body=body)


def test_deduplication_key_is_empty_without_deduplication() -> None:
    assert _parse({}).deduplication_key(destination=URL, body=b"x") == ""


def test_same_content_gives_the_same_key() -> None:
    headers = {"Content-Type": "application/json", "Upstash-Forward-X-A": "1"}
    assert _content_key(headers) == _content_key(dict(headers))
    assert _content_key(headers).startswith("content:")


FORWARD_A = {"Upstash-Forward-X-A": "1"}


@pytest.mark.parametrize(
    ("headers", "destination", "body"),
    [
        pytest.param(FORWARD_A, URL, b"hello!", id="body"),
        pytest.param(FORWARD_A, URL + "?x=1", b"hello", id="url"),
        pytest.param({"Upstash-Forward-X-A": "2"}, URL, b"hello", id="forward-value"),
        pytest.param({"Upstash-Forward-X-B": "1"}, URL, b"hello", id="forward-name"),
        pytest.param({}, URL, b"hello", id="forward-removed"),
        pytest.param({**FORWARD_A, "Upstash-Forward-X-C": "3"}, URL, b"hello", id="extra"),
        pytest.param({**FORWARD_A, "Content-Type": "text/plain"}, URL, b"hello", id="type"),
    ],
)
def test_content_change_gives_a_different_key(
    headers: dict[str, str], destination: str, body: bytes
) -> None:
    base = _content_key(FORWARD_A)
    assert _content_key(headers, destination=destination, body=body) != base


def test_content_key_ignores_headers_that_are_not_forwarded() -> None:
    assert _content_key({"Authorization": "Bearer a"}) == _content_key({"Authorization": "b"})


def test_deduplication_id_key_is_shared_across_destinations_unless_per_url() -> None:
    opts = _parse({"Upstash-Deduplication-Id": "order-42"})
    first = opts.deduplication_key(destination="https://a.example.com/", body=b"1")
    second = opts.deduplication_key(destination="https://b.example.com/", body=b"2")
    assert first == second
    per_a = opts.deduplication_key(destination="https://a.example.com/", body=b"", per_url=True)
    per_b = opts.deduplication_key(destination="https://b.example.com/", body=b"", per_url=True)
    assert per_a != per_b
    assert per_a == opts.deduplication_key(
        destination="https://a.example.com/", body=b"other", per_url=True
    )
    assert first != per_a


def test_deduplication_id_wins_over_content_based_deduplication() -> None:
    opts = _parse(
        {"Upstash-Deduplication-Id": "order-42", "Upstash-Content-Based-Deduplication": "true"}
    )
    a = opts.deduplication_key(destination=URL, body=b"one")
    b = opts.deduplication_key(destination=URL, body=b"two")
    assert a == b
    by_id_only = _parse({"Upstash-Deduplication-Id": "order-42"})
    assert a == by_id_only.deduplication_key(destination=URL, body=b"three")


def test_different_deduplication_ids_give_different_keys() -> None:
    a = _parse({"Upstash-Deduplication-Id": "a"}).deduplication_key(destination=URL, body=b"")
    b = _parse({"Upstash-Deduplication-Id": "b"}).deduplication_key(destination=URL, body=b"")
    assert a != b


# --- flow control ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("parallelism=2, rate=10, period=1m", (2, 10, 60)),
        ("parallelism=2,rate=10,period=60", (2, 10, 60)),
        ("parallelism=5", (5, None, None)),
        ("rate=100", (None, 100, None)),
        ("period=30s", (None, None, 30)),
        ("rate=100, period=1h", (None, 100, 3600)),
        ("period=2, parallelism=1", (1, None, 2)),
        (" parallelism = 3 , rate = 4 ", (3, 4, None)),
        ("PARALLELISM=2, Rate=3", (2, 3, None)),
        ("parallelism=2,", (2, None, None)),
        ("period=7d", (None, None, 7 * 86400)),
        ("", (None, None, None)),
    ],
)
def test_flow_control_value_accepts_any_subset_of_parts(
    value: str, expected: tuple[int | None, int | None, int | None]
) -> None:
    assert parse_flow_control_value(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("parallelism", "use parallelism=<n>, rate=<n>, period=<duration>"),
        ("burst=2", "use parallelism=<n>, rate=<n>, period=<duration>"),
        ("parallelism:2", "use parallelism=<n>, rate=<n>, period=<duration>"),
        ("parallelism=two", "is not an integer"),
        ("parallelism=0", "must be between 1 and"),
        ("rate=0", "must be between 1 and"),
        ("rate=-1", "must be between 1 and"),
        ("period=0", "period must be at least 1s"),
        ("period=8d", "longer than the maximum"),
        ("period=soon", "invalid duration"),
        ("parallelism=2; rate=3", "is not an integer"),
    ],
)
def test_flow_control_value_rejects_bad_parts_naming_the_header(value: str, reason: str) -> None:
    with pytest.raises(ApplicationError) as excinfo:
        parse_flow_control_value(value)
    assert excinfo.value.message.startswith("invalid Upstash-Flow-Control-Value")
    assert reason in excinfo.value.message


def test_flow_control_key_and_value_are_read() -> None:
    opts = _parse(
        {"Upstash-Flow-Control-Key": "tenant-1", "Upstash-Flow-Control-Value": "parallelism=2"}
    )
    assert opts.flow_control.key == "tenant-1"
    assert (opts.flow_control.parallelism, opts.flow_control.rate) == (2, None)
    assert opts.flow_control.period is None


def test_flow_control_key_without_value_has_no_limits() -> None:
    opts = _parse({"Upstash-Flow-Control-Key": "tenant-1"})
    assert opts.flow_control.key == "tenant-1"
    assert opts.flow_control.parallelism is opts.flow_control.rate is None


def test_flow_control_value_without_key_is_rejected() -> None:
    message = _rejected({"Upstash-Flow-Control-Value": "parallelism=2"})
    assert message.startswith("invalid Upstash-Flow-Control-Value")
    assert "Upstash-Flow-Control-Key" in message


def test_bad_flow_control_value_is_rejected_by_publish() -> None:
    message = _rejected(
        {"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "parallelism=0"}
    )
    assert message.startswith("invalid Upstash-Flow-Control-Value")


# --- query-parameter form ----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "attribute", "expected"),
    [
        ({"upstash-retries": "2"}, "retries", 2),
        ({"upstash-method": "put"}, "method", "PUT"),
        ({"upstash-timeout": "10s"}, "timeout_seconds", 10),
        ({"upstash-delay": "1m"}, "not_before", NOW + timedelta(minutes=1)),
        ({"upstash-retry-delay": "1000"}, "retry_delay_expression", "1000"),
        ({"upstash-label": "a,b"}, "labels", ["a", "b"]),
        ({"upstash-forward-x-a": "1"}, "header", {"x-a": ["1"]}),
        ({"upstash-callback": CALLBACK}, "callback", CALLBACK),
        ({"Upstash-Retries": "4"}, "retries", 4),
        ({"retries": "2"}, "retries", 3),
        ({"x-a": "1"}, "header", {}),
    ],
)
def test_lower_case_query_parameters_work_like_headers(
    query: dict[str, str], attribute: str, expected: object
) -> None:
    assert getattr(_parse({}, query), attribute) == expected


@pytest.mark.parametrize(
    ("name", "header", "query", "attribute", "expected"),
    [
        ("Upstash-Retries", "1", "2", "retries", 1),
        ("Upstash-Method", "GET", "PUT", "method", "GET"),
        ("Upstash-Timeout", "5s", "50s", "timeout_seconds", 5),
    ],
)
def test_header_wins_over_query_parameter(
    name: str, header: str, query: str, attribute: str, expected: object
) -> None:
    opts = _parse({name: header}, {name.lower(): query})
    assert getattr(opts, attribute) == expected


def test_bad_query_parameter_is_rejected_naming_the_header() -> None:
    assert _rejected({}, {"upstash-retries": "lots"}).startswith("invalid Upstash-Retries")


def test_unknown_upstash_headers_are_ignored() -> None:
    opts = _parse(
        {
            "Upstash-Telemetry-Sdk": "upstash-qstash-py@3.4.0",
            "Upstash-Telemetry-Platform": "unknown",
            "Upstash-Something-New": "x",
        }
    )
    assert opts == PublishOptions()
