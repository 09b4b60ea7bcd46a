"""A bounded fuzz pass over every ``/v2`` route: no 5xx, and every 4xx is ``{"error": "..."}``.

Requests go through Django's test client in this process, so an exception in a
view fails the example instead of turning into a 500 page. Each request runs in
a savepoint that is rolled back, inside pytest-django's test transaction: the
seeded rows look the same to every example, nothing is ever committed, so no
wake-up hint is sent and no worker could deliver anything. Destinations are
loopback or under ``.invalid`` anyway, and a generated request whose strings
hold any other URL the API would accept is discarded before it is sent.

Each family of routes has its own test so a failure names it; the file takes
about 30 s on a quiet two-core machine (FUZZ_EXAMPLES raises the examples per
test from 120 for a longer hunt).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, quote_from_bytes, unquote_to_bytes, urlsplit

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from django.utils.encoding import escape_uri_path
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from broker.errors import ApplicationError
from broker.filters import MESSAGE_FILTERS
from broker.models import DlqEntry, Message
from broker.services.credentials import credentials_forget
from broker.urls_check import validate_http_url
from tests.conftest import TEST_TOKEN

if TYPE_CHECKING:
    # What the stubs call the test client's response (an HttpResponse with .json()).
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

AUTH = f"Bearer {TEST_TOKEN}"
FUZZ = settings(
    # FUZZ_EXAMPLES=2000 for a longer hunt; the default keeps the file near 30 s.
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

# Rows every example sees (see the ``seeded`` fixture).
GROUP = "fuzz-group"
PENDING_ID = "msg_fuzz_pending"
DEAD_ID = "msg_fuzz_dead"
DLQ_ID = "1700000000000-1"

# Incompressible, so PostgreSQL cannot shrink it below an index's row limit.
NOISE = "".join(random.Random(0).choices(string.ascii_letters + string.digits, k=3000))

# --- values ------------------------------------------------------------------------

INTEGERS = [
    "0",
    "1",
    "-1",
    "3",
    "20",
    "21",
    "100",
    "500",
    "999",
    "1000",
    "65536",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1" + "0" * 40,
    "9" * 5000,
    "1e3",
    "1e999",
    "1.5",
    "+5",
    " 7",
    "0x10",
    "1_000",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: int() reads it
    "NaN",
    "inf",
    "1-2",
    "1700000000000-1",
    "",
]
DURATIONS = ["10s", "1m", "1h", "1d", "1d10h30m", "-5s", "0s", "5x", "400d", "9" * 30 + "d", "s"]
URLS = [
    "http://127.0.0.1:9/hook",
    "http://127.0.0.1:9/hook?a=1&b=%20",
    "http://[::1]:9/x",
    "http://localhost:9/",
    "https://fuzz.invalid/cb",
    "http://127.0.0.1:9\\@fuzz.invalid/",
    "http://user@127.0.0.1:9/",
    "http://127.1/",
    "http://2130706433/",
    "http://[::ffff:127.0.0.1]:9/",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:99999/",
    "ftp://127.0.0.1/",
    "http:/127.0.0.1:9/collapsed",
    "not a url",
]
WORDS = [
    "true",
    "false",
    "TRUE",
    "GET",
    "POST",
    "FETCH",
    "get",
    "body",
    "header",
    "header[X-A]",
    "headers[X-A]",
    "parallelism=1",
    "rate=5, period=1m",
    "parallelism=abc",
    "speed=3",
    "pow(2, retried) * 1000",
    "max(1000, pow(2, retried) * 100)",
    "__import__('os')",
    "1000 *",
    "pow(1)",
    "a,b,c",
    ",,,",
    "fuzz",
    GROUP,
    PENDING_ID,
    DEAD_ID,
    DLQ_ID,
    "ACTIVE",
    "IN_PROGRESS",
    "cancelled",
    "earliestFirst",
    "latestFirst",
    "application/json",
    "%",
    "%zz",
    "%ff%fe",
    "+",
    "..",
    "\\",
]
SIMPLE = INTEGERS + DURATIONS + URLS + WORDS

# Header values reach Django as latin-1 text; a server drops CR and LF itself.
latin1_text = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=40)
long_text = st.builds(
    lambda piece, times: piece * times,
    st.sampled_from(["a", "9", "\xe9", "%", ",", "-", "a,"]),
    st.sampled_from([300, 5000, 70_000]),
)


def as_sent(text: str) -> str:
    """A header value as a WSGI server hands it over: the UTF-8 bytes read as latin-1."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


header_values = st.one_of(st.sampled_from(SIMPLE), latin1_text, long_text).map(as_sent)
# JSON strings may hold anything, a NUL or a lone surrogate included.
odd_unicode = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from(["\x00", "\udfff", "\ud800", "\u2028", "\ufeff", "\U0001f600", "\r", "\n"]),
    ),
    max_size=30,
)
json_strings = st.one_of(st.sampled_from(SIMPLE), odd_unicode, long_text)
huge_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**63) + 2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([10**300, -(10**300), 1e308]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), huge_numbers, json_strings),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(json_strings, children, max_size=4)
    ),
    max_leaves=12,
)

# --- headers -----------------------------------------------------------------------

UPSTASH_HEADERS = [
    "Upstash-Method",
    "Upstash-Delay",
    "Upstash-Not-Before",
    "Upstash-Retries",
    "Upstash-Retry-Delay",
    "Upstash-Timeout",
    "Upstash-Callback",
    "Upstash-Failure-Callback",
    "Upstash-Callback-Method",
    "Upstash-Callback-Timeout",
    "Upstash-Callback-Retries",
    "Upstash-Callback-Retry-Delay",
    "Upstash-Callback-Delay",
    "Upstash-Failure-Callback-Method",
    "Upstash-Failure-Callback-Timeout",
    "Upstash-Failure-Callback-Retries",
    "Upstash-Failure-Callback-Retry-Delay",
    "Upstash-Failure-Callback-Delay",
    "Upstash-Deduplication-Id",
    "Upstash-Content-Based-Deduplication",
    "Upstash-Flow-Control-Key",
    "Upstash-Flow-Control-Value",
    "Upstash-Label",
    "Upstash-Redact-Fields",
    "Upstash-Cron",
    "Upstash-Schedule-Id",
    "Upstash-Queue-Name",
    "Upstash-Header-Forward",
    "Upstash-Telemetry-Sdk",
    "Upstash-Telemetry-Platform",
    "Upstash-Telemetry-Runtime",
]
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
FORWARDED_NAMES = [
    "X-A",
    "Content-Length",
    "Transfer-Encoding",
    "Host",
    "Connection",
    "Proxy-Authorization",
    "Upstash-Signature",
    "Authorization",
]
header_names = st.one_of(
    st.sampled_from(UPSTASH_HEADERS),
    st.builds(
        lambda prefix, name: prefix + name,
        st.sampled_from(
            ["Upstash-Forward-", "Upstash-Callback-Forward-", "Upstash-Failure-Callback-Forward-"]
        ),
        st.one_of(
            st.sampled_from(FORWARDED_NAMES),
            st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=20),
        ),
    ),
    st.builds(
        lambda name: "Upstash-" + name,
        st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=20),
    ),
)
# What each header usually holds, so that most examples get past the parsing.
PLAUSIBLE_HEADERS: dict[str, list[str]] = {
    "Upstash-Method": ["GET", "POST", "PUT", "PATCH", "DELETE"],
    "Upstash-Delay": ["10s", "1h", "1d10h30m", "0s"],
    "Upstash-Not-Before": ["1700000000", "4102444800", "0"],
    "Upstash-Retries": ["0", "3", "20"],
    "Upstash-Retry-Delay": ["1000", "pow(2, retried) * 1000", "max(1000, retried * 10)"],
    "Upstash-Timeout": ["10s", "1m"],
    "Upstash-Callback": ["http://127.0.0.1:9/cb", "https://fuzz.invalid/cb"],
    "Upstash-Failure-Callback": ["http://[::1]:9/failed", "http://localhost:9/f"],
    "Upstash-Callback-Method": ["PUT"],
    "Upstash-Callback-Timeout": ["5s"],
    "Upstash-Callback-Retries": ["1"],
    "Upstash-Callback-Retry-Delay": ["100"],
    "Upstash-Failure-Callback-Method": ["GET"],
    "Upstash-Failure-Callback-Timeout": ["5s"],
    "Upstash-Failure-Callback-Retries": ["2"],
    "Upstash-Failure-Callback-Retry-Delay": ["100 * retried"],
    "Upstash-Deduplication-Id": ["dedup-1", "dedup-2"],
    "Upstash-Content-Based-Deduplication": ["true", "false"],
    "Upstash-Flow-Control-Key": ["k"],
    "Upstash-Flow-Control-Value": ["parallelism=1", "rate=5, period=1m"],
    "Upstash-Label": ["fuzz", "a,b"],
    "Upstash-Redact-Fields": ["body", "header", "header[X-A]", "body,header[X-A]"],
    "Upstash-Header-Forward": ["true", "false"],
    "Upstash-Cron": ["* * * * *"],
    "Upstash-Schedule-Id": ["scd_1"],
    "Upstash-Queue-Name": ["q1"],
    "Upstash-Telemetry-Sdk": ["upstash-qstash-js@2.12.0"],
}


@st.composite
def header_pairs(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(header_names)
    if draw(st.integers(0, 3)):
        return name, draw(st.sampled_from(PLAUSIBLE_HEADERS.get(name, ["v", "1", ""])))
    return name, draw(header_values)


headers = st.lists(header_pairs(), max_size=5).map(dict)

# --- query strings -----------------------------------------------------------------

QUERY_NAMES = [
    "responseStatus",
    "count",
    "cursor",
    "order",
    "fromDate",
    "toDate",
    "label",
    "url",
    "host",
    "path",
    "state",
    "messageId",
    "messageIds",
    "dlqIds",
    "topicName",
    "endpointName",
    "queueName",
    "scheduleId",
    "flowControlKey",
    "callerIp",
    "callerIP",
    "trimBody",
    "groupBy",
    "upstash-retries",
    "upstash-delay",
    "upstash-callback",
    "upstash-method",
    "upstash-label",
    "upstash-header-forward",
    "unknown",
    "",
]


def _encode(text: str) -> str:
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


query_values = st.one_of(
    st.sampled_from(SIMPLE).map(_encode),
    # As typed: "%zz", "+" and "&" reach the parser undecoded.
    st.sampled_from(["%zz", "%", "%ff", "%C3%A9", "%ED%A0%80", "+", "a&b=c", "a;b", "%00"]),
    odd_unicode.map(_encode),
    st.binary(max_size=20).map(lambda b: quote_from_bytes(b, safe="")),
    long_text.map(_encode),
)
PLAUSIBLE_QUERY: dict[str, list[str]] = {
    "responseStatus": ["500", "200"],
    "count": ["1", "10", "100"],
    "cursor": ["1", "0", "1700000000000-1"],
    "order": ["earliestFirst", "latestFirst"],
    "fromDate": ["0", "1700000000000"],
    "toDate": ["0", "4102444800000"],
    "label": ["fuzz", "a,b"],
    "url": ["http://127.0.0.1:9/hook?x=1", "http://[::1]:9/dead"],
    "host": ["127.0.0.1", "[::1]"],
    "path": ["/hook", "/dead"],
    "state": ["CREATED", "DELIVERED", "IN_PROGRESS", "CANCELLED"],
    "messageId": [PENDING_ID, DEAD_ID],
    "messageIds": [PENDING_ID, f"{PENDING_ID},{DEAD_ID}"],
    "dlqIds": [DLQ_ID],
    "topicName": [GROUP],
    "endpointName": ["a"],
    "callerIp": ["127.0.0.1"],
    "callerIP": ["127.0.0.1"],
    "trimBody": ["100"],
    "groupBy": ["messageId"],
    "upstash-retries": ["3"],
    "upstash-delay": ["10s"],
    "upstash-callback": ["http://127.0.0.1:9/cb"],
    "upstash-method": ["PUT"],
    "upstash-label": ["fuzz"],
    "upstash-header-forward": ["true"],
}


# Every filter the API reads (the one list in broker/filters.py), plus paging.
MESSAGE_QUERY_NAMES = [*sorted(MESSAGE_FILTERS), "count", "cursor"]
LOG_QUERY_NAMES = [*MESSAGE_QUERY_NAMES, "state", "order", "groupBy", "trimBody", "unknown"]
DLQ_QUERY_NAMES = [*MESSAGE_QUERY_NAMES, "responseStatus", "dlqIds", "order", "unknown"]
PUBLISH_QUERY_NAMES = [n for n in QUERY_NAMES if n.startswith("upstash-")] + ["x", "unknown"]


def query_strings(names: list[str]) -> st.SearchStrategy[str]:
    @st.composite
    def pair(draw: st.DrawFn) -> str:
        name = draw(st.sampled_from(names))
        if draw(st.integers(0, 2)):
            value = _encode(draw(st.sampled_from(PLAUSIBLE_QUERY.get(name, ["1"]))))
        else:
            value = draw(query_values)
        return f"{quote(name)}={value}"

    return st.lists(pair(), max_size=4).map("&".join)


# --- path segments -----------------------------------------------------------------

segments = st.one_of(
    st.sampled_from(
        [
            PENDING_ID,
            DEAD_ID,
            DLQ_ID,
            GROUP,
            "msg_unknown",
            "0",
            "-1",
            "..",
            ".",
            "%2e%2e",
            "%00",
            "%ff",
            "%C3%A9",
            "%ED%A0%80",
            "%5c",
            "\\",
            "..\\..",
            "%2f",
            "a" * 5000,
            NOISE,
            "%E2%80%A8",
        ]
    ),
    odd_unicode.filter(bool).map(_encode),
    st.text(st.sampled_from(TOKEN_CHARS + "-_."), min_size=1, max_size=250),
)

# --- bodies ------------------------------------------------------------------------


def _dump(value: Any, ascii_only: bool) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=ascii_only)
    except ValueError:  # an integer beyond str()'s digit limit
        return b"0"
    # A lone surrogate escapes as "\udfff" with ensure_ascii; raw, it is invalid UTF-8.
    return text.encode("utf-8", "surrogatepass")


RAW_BODIES = [
    b"",
    b"[" * 5000,
    b'{"a":' * 5000,
    b"[" * 5000 + b"]" * 5000,
    b"1" * 5000,
    b"1e999999",
    b"-0",
    b"NaN",
    b"Infinity",
    b'"\\u0000"',
    b'"\\udfff"',
    b'{"\\ud800": 1}',
    b"\xff\xfe\xfd",
    b'{"endpoints": "\xff"}',
    b"\xef\xbb\xbf{}",
    b"{}",
    b"[]",
    b"null",
    b'{"messageIds": ' + b"[" * 40 + b"]" * 40 + b"}",
]


@st.composite
def bodies(draw: st.DrawFn, shaped: st.SearchStrategy[Any] | None = None) -> bytes:
    """Mostly JSON of the route's shape (when given), else any JSON, odd or raw bytes."""
    kind = draw(st.integers(0, 9))
    if kind == 8:
        return draw(st.sampled_from(RAW_BODIES))
    if kind == 9:
        return draw(st.binary(max_size=40))
    document = draw(shaped if shaped is not None and kind < 6 else json_values)
    return _dump(document, draw(st.integers(0, 3)) > 0)


CONTENT_TYPES = [
    *["application/json"] * 6,
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "",
]

# --- requests ----------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str  # as the client sends it: percent-encoded where needed, no query
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "application/json"

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


ODD_METHODS = [
    "GET",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "HEAD",
    "OPTIONS",
    "TRACE",
    "PROPFIND",
    "FOO",
]


def calls(routes: list[tuple[str, tuple[str, ...]]]) -> st.SearchStrategy[tuple[str, str]]:
    """(method, path template): the route's own methods three times out of four."""

    def method_for(route: tuple[str, tuple[str, ...]]) -> st.SearchStrategy[tuple[str, str]]:
        template, usual = route
        weighted = [*usual] * (3 * len(ODD_METHODS) // len(usual)) + ODD_METHODS
        return st.tuples(st.sampled_from(weighted), st.just(template))

    return st.sampled_from(routes).flatmap(method_for)


# --- the only-loopback guard -------------------------------------------------------

SAFE_HOSTS = {"127.0.0.1", "::1", "localhost"}
COLLAPSED_SCHEME = re.compile(r"^(https?):/+", re.IGNORECASE)


def _json_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _json_strings(item)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_json_strings(v)]]
    return []


def _strings_of(request: Request) -> list[str]:
    texts = list(request.headers.values())
    texts += [v for _, v in parse_qsl(request.query, keep_blank_values=True)]
    with contextlib.suppress(ValueError, RecursionError):
        texts += _json_strings(json.loads(request.body))
    if request.path.startswith("/v2/publish/"):
        # The destination as the view rebuilds it: the decoded path, escaped again.
        path = unquote_to_bytes(request.path).decode("latin-1")
        for form in (path, escape_uri_path(path)):
            destination = form[len("/v2/publish/") :]
            texts += [destination, f"{destination}?{request.query}"]
    return texts


def only_loopback(request: Request) -> None:
    """Discard the example if the API could accept a URL in it that is not loopback."""
    for text in _strings_of(request):
        for url in {text, COLLAPSED_SCHEME.sub(lambda m: m.group(1).lower() + "://", text)}:
            try:
                validate_http_url(url, field="url")
            except ApplicationError:
                continue
            host = (urlsplit(url).hostname or "").lower()
            if host not in SAFE_HOSTS and not host.endswith(".invalid"):
                reject()


# --- sending and the property ------------------------------------------------------


def _send(request: Request, auth: str | None) -> TestResponse:
    only_loopback(request)
    client = Client(raise_request_exception=True)
    request_headers = dict(request.headers)
    if auth is not None:
        request_headers["Authorization"] = auth
    return client.generic(
        request.method,
        request.target,
        data=request.body,
        content_type=request.content_type,
        headers=request_headers,
    )


def send(request: Request, *, auth: str | None = AUTH) -> TestResponse:
    with transaction.atomic():
        response = _send(request, auth)
        # Every example starts from the seeded rows; nothing is ever committed.
        transaction.set_rollback(True)
    credentials_forget()
    return response


def check(request: Request, response: TestResponse) -> None:
    shown = f"{request.method} {request.target[:300]!r}"
    assert response.status_code < 500, f"{shown} answered {response.status_code}"
    if 400 <= response.status_code < 500 and request.method != "HEAD":
        try:
            data = json.loads(response.content)
        except ValueError:
            pytest.fail(f"{shown} answered {response.status_code} {response.content[:200]!r}")
        assert isinstance(data, dict), f"{shown}: {data!r}"
        assert isinstance(data.get("error"), str), f"{shown}: {data!r}"


def exchange(request: Request, *, auth: str | None = AUTH) -> TestResponse:
    return exchange_in_turn(request, auth=auth)[0]


def exchange_in_turn(*requests: Request, auth: str | None = AUTH) -> list[TestResponse]:
    """Send each request after the one before has changed the rows, then roll back."""
    responses = []
    with transaction.atomic():
        for request in requests:
            response = _send(request, auth)
            if currently_in_test_context():
                # --hypothesis-show-statistics shows how deep the examples got.
                event(f"{request.method} {response.status_code}")
            check(request, response)
            responses.append(response)
        transaction.set_rollback(True)
    credentials_forget()
    return responses


# --- seeded rows -------------------------------------------------------------------


@pytest.fixture
def seeded(db: Any) -> None:
    """A group with two endpoints, a pending message and a dead-lettered one."""
    client = Client(headers={"Authorization": AUTH})
    endpoints = {
        "endpoints": [{"url": "http://127.0.0.1:9/a", "name": "a"}, {"url": "http://[::1]:9/b"}]
    }
    created = client.post(
        f"/v2/topics/{GROUP}/endpoints", endpoints, content_type="application/json"
    )
    assert created.status_code == 200, created.content
    ids = []
    for destination, extra in (
        ("http://127.0.0.1:9/hook?x=1", {"Upstash-Label": "fuzz", "Upstash-Delay": "1h"}),
        (
            "http://[::1]:9/dead",
            {"Upstash-Callback": "http://127.0.0.1:9/cb", "Upstash-Forward-X-A": "b"},
        ),
        (GROUP, {"Upstash-Redact-Fields": "body", "Upstash-Flow-Control-Key": "k"}),
    ):
        published = client.post(
            f"/v2/publish/{destination}", b'{"hello": "world"}', "application/json", headers=extra
        )
        assert published.status_code == 200, published.content
        answer = published.json()
        ids += [item["messageId"] for item in (answer if isinstance(answer, list) else [answer])]
    Message.objects.filter(message_id=ids[0]).update(message_id=PENDING_ID)
    now = timezone.now()
    Message.objects.filter(message_id=ids[1]).update(
        message_id=DEAD_ID,
        state=Message.State.FAILED,
        due_at=None,
        finished_at=now,
        last_response_status=500,
        last_response_header={"X-A": ["b"]},
        last_response_body=b"\xff\xfe not utf-8",
        last_error="HTTP 500",
    )
    DlqEntry.objects.create(
        dlq_id=DLQ_ID, message=Message.objects.get(message_id=DEAD_ID), created_at=now
    )


# --- the route families ------------------------------------------------------------

loopback_destinations = st.builds(
    lambda scheme, host, port, path: scheme + host + port + path,
    st.sampled_from(["http://", "https://", "http:/", "https:///"]),
    st.sampled_from(["127.0.0.1", "[::1]", "localhost", "fuzz.invalid", "a_b.fuzz.invalid"]),
    st.sampled_from(["", ":9", ":65535"]),
    st.lists(
        st.one_of(st.sampled_from(["hook", "..", ".", "%2e", "a b", "é", "?x=1", "#f"]), segments),
        max_size=3,
    ).map(lambda parts: "/" + "/".join(parts)),
)
odd_destinations = st.one_of(
    st.builds(
        lambda scheme, host, port, path: scheme + host + port + path,
        st.sampled_from(["HTTP://", "http:\\\\", "ftp://", "//", "", "http://user@"]),
        st.sampled_from(["127.0.0.1", "[::1]", "127.1", "[::1", "@", "2130706433", "0x7f.0.0.1"]),
        st.sampled_from(["", ":0", ":65536", ":x", ":"]),
        st.lists(segments, max_size=2).map(lambda parts: "/" + "/".join(parts)),
    ),
    st.sampled_from([*URLS, GROUP, "missing-group", "a" * 300]),
    segments,
)
destinations = st.one_of(loopback_destinations, loopback_destinations, odd_destinations)


def publish_path(destination: str) -> str:
    # Raw, as the SDKs append it; only what cannot be on a request line is escaped.
    return "/v2/publish/" + destination.replace(" ", "%20")


@FUZZ
@given(
    call=calls([("/v2/publish/{}", ("POST",))]),
    destination=destinations,
    query=query_strings(PUBLISH_QUERY_NAMES),
    headers=headers,
    body=bodies(),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_fuzz_publish(
    seeded: None,
    call: tuple[str, str],
    destination: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    content_type: str,
) -> None:
    method, _ = call
    exchange(Request(method, publish_path(destination), query, headers, body, content_type))


batch_items = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"destination": destinations},
            optional={
                "headers": st.one_of(
                    headers, headers, st.dictionaries(json_strings, json_values, max_size=3)
                ),
                "body": st.one_of(json_strings, json_strings, json_values),
                "queue": st.one_of(st.none(), json_strings),
            },
        ),
        json_values,
    ),
    max_size=5,
)


@FUZZ
@given(
    call=calls([("/v2/batch", ("POST",))]),
    body=bodies(batch_items),
    query=query_strings(PUBLISH_QUERY_NAMES),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_fuzz_batch(
    seeded: None, call: tuple[str, str], body: bytes, query: str, content_type: str
) -> None:
    method, path = call
    exchange(Request(method, path, query, {}, body, content_type))


message_filters = st.dictionaries(
    st.sampled_from([*MESSAGE_QUERY_NAMES, "messageIds", "messageIds", "count", "unknown"]),
    st.one_of(
        st.lists(st.sampled_from([PENDING_ID, DEAD_ID, "x", "", "a,b"]), max_size=3),
        st.sampled_from(["1", "10", "fuzz", PENDING_ID, "1700000000000"]),
        st.integers(),
        json_values,
    ),
    max_size=3,
)
message_ids = st.one_of(st.sampled_from([PENDING_ID, DEAD_ID]), segments)


@FUZZ
@given(
    call=calls([("/v2/messages", ("DELETE",)), ("/v2/messages/{}", ("GET", "DELETE"))]),
    message_id=message_ids,
    query=query_strings(MESSAGE_QUERY_NAMES),
    body=bodies(message_filters),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_fuzz_messages(
    seeded: None,
    call: tuple[str, str],
    message_id: str,
    query: str,
    body: bytes,
    content_type: str,
) -> None:
    method, template = call
    exchange(Request(method, template.format(message_id), query, {}, body, content_type))


@FUZZ
@given(
    call=calls([("/v2/events", ("GET",)), ("/v2/logs", ("GET",))]),
    query=query_strings(LOG_QUERY_NAMES),
    body=bodies(),
)
def test_fuzz_logs(seeded: None, call: tuple[str, str], query: str, body: bytes) -> None:
    method, path = call
    exchange(Request(method, path, query, {}, body))


@settings(FUZZ, max_examples=max(1, FUZZ.max_examples // 2))
@given(
    call=calls([("/v2/keys", ("GET",)), ("/v2/keys/rotate", ("POST",))]),
    query=query_strings(QUERY_NAMES),
    headers=headers,
    body=bodies(),
)
def test_fuzz_keys(
    seeded: None, call: tuple[str, str], query: str, headers: dict[str, str], body: bytes
) -> None:
    # The test settings put the signing keys in the environment, so a rotation is
    # refused (400); were it not, the rolled-back savepoint would restore the keys.
    method, path = call
    exchange(Request(method, path, query, headers, body))


endpoint_specs = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "url": st.one_of(destinations, destinations, json_values),
                "name": st.one_of(st.sampled_from(["a", "b", "c", "", "x" * 201]), json_strings),
            },
        ),
        json_values,
    ),
    max_size=4,
)
default_headers = st.one_of(
    headers,
    st.dictionaries(
        st.one_of(header_names, json_strings),
        st.one_of(json_strings, st.lists(json_strings, max_size=3), json_values),
        max_size=4,
    ),
)
topic_bodies = st.one_of(
    st.fixed_dictionaries({"endpoints": st.one_of(endpoint_specs, endpoint_specs, json_values)}),
    st.fixed_dictionaries({"headers": st.one_of(default_headers, default_headers, json_values)}),
)
group_names = st.one_of(st.sampled_from([GROUP, "new-group"]), segments)


@FUZZ
@given(
    call=calls(
        [
            ("/v2/topics", ("GET",)),
            ("/v2/topics/{}", ("GET", "DELETE", "PATCH")),
            ("/v2/topics/{}/endpoints", ("POST", "DELETE")),
        ]
    ),
    name=group_names,
    query=query_strings(QUERY_NAMES),
    body=bodies(topic_bodies),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_fuzz_topics(
    seeded: None,
    call: tuple[str, str],
    name: str,
    query: str,
    body: bytes,
    content_type: str,
) -> None:
    method, template = call
    exchange(Request(method, template.format(name), query, {}, body, content_type))


@FUZZ
@given(
    headers=default_headers,
    publish_headers=headers,
    via_batch=st.booleans(),
    body=bodies(),
)
def test_fuzz_publish_to_a_group_with_default_headers(
    seeded: None,
    headers: dict[str, Any],
    publish_headers: dict[str, str],
    via_batch: bool,
    body: bytes,
) -> None:
    # Default headers are checked when stored and merged into every publish to
    # the group: two requests in one example, the second seeing the first's row.
    patch = Request("PATCH", f"/v2/topics/{GROUP}", body=_dump({"headers": headers}, True))
    if via_batch:
        item = {"destination": GROUP, "headers": publish_headers, "body": body.decode("latin-1")}
        publish = Request("POST", "/v2/batch", body=_dump([item], True))
    else:
        publish = Request("POST", f"/v2/publish/{GROUP}", "", publish_headers, body)
    exchange_in_turn(patch, publish)


dlq_bodies = st.dictionaries(
    st.sampled_from([*DLQ_QUERY_NAMES, "dlqIds", "dlqIds", "dlqIds", "unknown"]),
    st.one_of(
        st.lists(st.sampled_from([DLQ_ID, "1-1", "", "x", "a,b"]), max_size=3),
        st.sampled_from([DLQ_ID, "500", "fuzz", "1", "http://[::1]:9/dead"]),
        st.integers(),
        json_values,
    ),
    max_size=3,
)
dlq_ids = st.one_of(st.just(DLQ_ID), segments)


@FUZZ
@given(
    call=calls(
        [
            ("/v2/dlq", ("GET", "DELETE")),
            ("/v2/dlq/retry", ("POST",)),
            ("/v2/dlq/retry/{}", ("POST",)),
            ("/v2/dlq/{}", ("GET", "DELETE")),
        ]
    ),
    dlq_id=dlq_ids,
    query=query_strings(DLQ_QUERY_NAMES),
    headers=headers,
    body=bodies(dlq_bodies),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_fuzz_dlq(
    seeded: None,
    call: tuple[str, str],
    dlq_id: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    content_type: str,
) -> None:
    method, template = call
    exchange(Request(method, template.format(dlq_id), query, headers, body, content_type))


ANY_ROUTE = [
    ("/v2/publish/{}", ("POST",)),
    ("/v2/batch", ("POST",)),
    ("/v2/messages", ("DELETE",)),
    ("/v2/messages/{}", ("GET", "DELETE")),
    ("/v2/events", ("GET",)),
    ("/v2/logs", ("GET",)),
    ("/v2/keys", ("GET",)),
    ("/v2/keys/rotate", ("POST",)),
    ("/v2/topics", ("GET",)),
    ("/v2/topics/{}", ("GET", "DELETE", "PATCH")),
    ("/v2/topics/{}/endpoints", ("POST", "DELETE")),
    ("/v2/dlq", ("GET", "DELETE")),
    ("/v2/dlq/retry", ("POST",)),
    ("/v2/dlq/retry/{}", ("POST",)),
    ("/v2/dlq/{}", ("GET", "DELETE")),
    ("/v2/{}", ("GET",)),
    ("/v2/{}/{}", ("GET",)),
]
AUTHS = [
    AUTH,
    AUTH,
    None,
    "Bearer wrong",
    "Bearer ",
    "Basic " + TEST_TOKEN,
    "bearer " + TEST_TOKEN,
    "Bearer  " + TEST_TOKEN + " ",
    "Bearer " + TEST_TOKEN + "\xe9",
    "Bearer \xff\x00",
    "Bearer",
]
browser_headers = st.dictionaries(
    st.sampled_from(["Origin", "Sec-Fetch-Site", "Accept", "Content-Encoding", "Expect"]),
    st.one_of(
        st.sampled_from(
            [
                "null",
                "http://testserver",
                "http://evil.invalid",
                "http://[",
                "http://[::1",
                "http://a:b",
                "http://a:99999",
                "cross-site",
                "same-site",
                "same-origin",
                "none",
                "*/*",
                "application/json",
                "text/html",
                "gzip",
                "100-continue",
            ]
        ),
        latin1_text,
    ),
    max_size=3,
)


@FUZZ
@given(
    call=calls(ANY_ROUTE),
    parts=st.lists(segments, min_size=2, max_size=2),
    token_in_query=st.booleans(),
    auth=st.sampled_from(AUTHS),
    query=query_strings(QUERY_NAMES),
    headers=st.builds(lambda a, b: {**a, **b}, headers, browser_headers),
    body=bodies(),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_fuzz_any_route_with_any_credentials(
    seeded: None,
    call: tuple[str, str],
    parts: list[str],
    token_in_query: bool,
    auth: str | None,
    query: str,
    headers: dict[str, str],
    body: bytes,
    content_type: str,
) -> None:
    method, template = call
    if token_in_query:
        query = "&".join(filter(None, [query, f"qstash_token={quote(TEST_TOKEN)}"]))
        auth = None if auth == AUTH else auth
    request = Request(method, template.format(*parts), query, headers, body, content_type)
    exchange(request, auth=auth)


# --- explicit cases ----------------------------------------------------------------


def test_query_token_with_an_unparsable_origin_is_refused(seeded: None) -> None:
    request = Request("GET", "/v2/keys", "qstash_token=wrong", {"Origin": "http://["})

    response = send(request, auth=None)

    check(request, response)
    assert response.status_code in (401, 403)


EXPLICIT_ROUTES = [
    ("POST", "/v2/publish/http://127.0.0.1:9/hook"),
    ("POST", "/v2/batch"),
    ("DELETE", "/v2/messages"),
    ("DELETE", f"/v2/messages/{PENDING_ID}"),
    ("GET", "/v2/events"),
    ("POST", "/v2/keys/rotate"),
    ("PATCH", f"/v2/topics/{GROUP}"),
    ("POST", f"/v2/topics/{GROUP}/endpoints"),
    ("DELETE", f"/v2/topics/{GROUP}/endpoints"),
    ("DELETE", "/v2/dlq"),
    ("POST", "/v2/dlq/retry"),
    ("POST", f"/v2/dlq/retry/{DLQ_ID}"),
]


@pytest.mark.parametrize("body", RAW_BODIES, ids=lambda body: repr(body[:12]))
def test_odd_bodies_on_every_route_are_answered_without_a_5xx(seeded: None, body: bytes) -> None:
    for method, path in EXPLICIT_ROUTES:
        exchange(Request(method, path, body=body))


def test_an_endpoint_url_beyond_the_index_limit_is_a_400_naming_it(seeded: None) -> None:
    # Regression: an incompressible 3,000-character URL broke the (group, url)
    # unique index's row limit, a database error and a 500.
    body = {"endpoints": [{"url": "http://127.0.0.1:9/ok"}, {"url": f"http://127.0.0.1:9/{NOISE}"}]}
    request = Request("POST", f"/v2/topics/{GROUP}/endpoints", body=json.dumps(body).encode())

    response = exchange(request)

    assert response.status_code == 400
    assert response.json()["error"].startswith("invalid endpoints[1].url: longer than 2048")


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "field"),
    [
        # The fuzz's find: str() of an object with a 70,000-character key, a
        # regex PostgreSQL refuses as too complex (DataError, a 500).
        pytest.param(
            "DELETE",
            "/v2/messages",
            "",
            {"path": {"a" * 70_000: None}},
            "path",
            id="cancel-path-too-complex-for-the-database",
        ),
        pytest.param("GET", "/v2/logs", "path=/" + "a" * 4096, None, "path", id="logs-long-path"),
        # A 30,000-character host filter held the database for seconds (a
        # case-insensitive regex compiles in quadratic time), a megabyte for minutes.
        pytest.param(
            "DELETE", "/v2/messages", "", {"host": "a" * 30_000}, "host", id="cancel-long-host"
        ),
        pytest.param("GET", "/v2/logs", "host=" + "a" * 261, None, "host", id="logs-long-host"),
        # Each value is one more OR'd condition: 70,000 labels took 18 s.
        pytest.param(
            "DELETE",
            "/v2/messages",
            "",
            {"label": [str(i) for i in range(101)]},
            "label",
            id="cancel-many-labels",
        ),
        pytest.param(
            "GET",
            "/v2/dlq",
            "label=" + ",".join(map(str, range(101))),
            None,
            "label",
            id="dlq-many-comma-separated-labels",
        ),
        pytest.param(
            "GET",
            "/v2/events",
            "path=" + ",".join(["/x"] * 101),
            None,
            "path",
            id="logs-many-paths",
        ),
    ],
)
def test_a_filter_too_costly_to_run_is_a_400_naming_it(
    seeded: None, method: str, path: str, query: str, body: Any, field: str
) -> None:
    raw = b"" if body is None else json.dumps(body).encode()

    response = exchange(Request(method, path, query, body=raw))

    assert response.status_code == 400
    assert response.json()["error"].startswith(f"invalid {field}:")


def test_filters_at_their_limits_still_run(seeded: None) -> None:
    host = ".".join(["a" * 63] * 3) + ".a" * 31 + ":65535"  # 253 characters and a port
    labels = ",".join(["fuzz", *map(str, range(99))])
    query = f"host={host}&path=/{'a' * 4095}&label={labels}"

    response = exchange(Request("GET", "/v2/logs", query))

    assert response.status_code == 200


def test_more_than_1000_query_parameters_is_a_json_400(seeded: None) -> None:
    query = "&".join(f"label={i}" for i in range(1001))

    exchange(Request("GET", "/v2/logs", query))


def test_a_host_header_outside_allowed_hosts_is_a_json_400(seeded: None) -> None:
    exchange(Request("GET", "/v2/keys", headers={"Host": "qstash.invalid"}))


def test_a_default_header_ending_in_a_newline_is_refused(seeded: None) -> None:
    body = json.dumps({"headers": {"Upstash-Forward-X-A": "v\n"}}).encode()

    response = exchange(Request("PATCH", f"/v2/topics/{GROUP}", body=body))

    assert response.status_code == 400
