"""http_wire: the delivery's request bytes and the reading of a destination's answer.

Answers are read from bytes here; ``tests/integration`` sends real ones over loopback.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.http_wire import (
    MAX_HEADERS,
    MAX_LINE,
    Closed,
    ProtocolError,
    read_response,
    request_bytes,
)

CAP = 64


def read(raw: bytes, *, method: str = "POST", cap: int = CAP):  # type: ignore[no-untyped-def]
    reader = io.BufferedReader(io.BytesIO(raw))  # type: ignore[arg-type]
    return read_response(reader, method=method, cap=cap), reader.read()


def test_the_request_is_one_piece_with_host_and_length() -> None:
    request = request_bytes(
        method="POST",
        target="/a?b=c",
        host="127.0.0.1:8080",
        headers=[("Content-Type", "text/plain"), ("X-Two", "1"), ("X-Two", "2")],
        body=b"hello",
    )
    assert request == (
        b"POST /a?b=c HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: text/plain\r\n"
        b"X-Two: 1\r\nX-Two: 2\r\nAccept-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"
    )


@pytest.mark.parametrize(
    ("method", "length"),
    [("GET", None), ("DELETE", None), ("HEAD", None), ("POST", b"0"), ("PUT", b"0")],
)
def test_an_empty_body_has_a_length_only_where_a_body_is_expected(
    method: str, length: bytes | None
) -> None:
    request = request_bytes(method=method, target="/", host="h", headers=[], body=b"")
    expected = b"Content-Length: " + length + b"\r\n" if length else b""
    assert request.endswith(b"Accept-Encoding: identity\r\n" + expected + b"\r\n")


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-Split", "a\r\nX-Evil: 1"), ("X-Lf", "a\nb"), ("X-Nul", "a\x00b"), ("Bad Name", "v")],
)
def test_a_header_that_could_split_the_request_is_refused(name: str, value: str) -> None:
    with pytest.raises(ProtocolError):
        request_bytes(method="GET", target="/", host="h", headers=[(name, value)], body=b"")


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET /x HTTP/1.1\r\nX:", "/"),
        ("G T", "/"),
        ("GET", "/a b"),
        ("GET", "/a\r\nX: 1"),
        ("GET", ""),
    ],
)
def test_a_request_line_that_could_split_the_request_is_refused(method: str, target: str) -> None:
    with pytest.raises(ProtocolError):
        request_bytes(method=method, target=target, host="h", headers=[], body=b"")


@given(st.text(max_size=40))
def test_whatever_value_is_written_stays_on_its_own_line(value: str) -> None:
    try:
        request = request_bytes(
            method="GET", target="/", host="h", headers=[("X-V", value)], body=b""
        )
    except ProtocolError:
        return
    head = request.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert len(head) == 4
    assert b"\n" not in request[:-4].replace(b"\r\n", b"")


def test_a_content_length_answer_is_read_to_its_end_and_the_connection_kept() -> None:
    response, rest = read(
        b"HTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 2\r\n\r\nokNEXT"
    )
    assert (response.status, response.body, response.reusable) == (201, b"ok", True)
    assert response.headers == {"X-A": ["1"], "x-a": ["2"], "Content-Length": ["2"]}
    assert rest == b"NEXT"  # the next answer's bytes are left where they are


def test_a_chunked_answer_is_dechunked_with_extensions_and_trailers() -> None:
    response, rest = read(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\nNEXT"
    )
    assert (response.body, response.reusable, rest) == (b"abcde", True, b"NEXT")


def test_a_body_over_the_cap_is_cut_and_the_connection_not_reused() -> None:
    response, _ = read(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
    assert (len(response.body), response.reusable) == (CAP, False)
    chunk = b"%x\r\n" % 100 + b"y" * 100 + b"\r\n0\r\n\r\n"
    response, _ = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk)
    assert (response.body, response.reusable) == (b"y" * CAP, False)


def test_an_answer_without_length_runs_to_the_end_of_the_connection() -> None:
    response, _ = read(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    assert (response.body, response.reusable) == (b"all of it", False)
    response, _ = read(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert (response.body, response.reusable) == (b"ok", False)
    response, _ = read(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n"
    )
    assert response.reusable is False


def test_interim_answers_are_skipped_and_bodiless_ones_have_no_body() -> None:
    response, rest = read(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nNEXT"
    )
    assert (response.status, response.body, response.reusable, rest) == (204, b"", True, b"NEXT")
    response, rest = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nNEXT", method="HEAD")
    assert (response.body, rest) == (b"", b"NEXT")


def test_obsolete_folding_joins_the_value() -> None:
    response, _ = read(b"HTTP/1.1 200 OK\r\nX-F: a\r\n b\r\nContent-Length: 0\r\n\r\n")
    assert response.headers["X-F"] == ["a b"]


def test_nothing_answered_is_told_apart_from_a_broken_answer() -> None:
    with pytest.raises(Closed):
        read(b"")
    with pytest.raises(ProtocolError):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"ICY 200 OK\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/2 200\r\n\r\n", id="http2-status-line"),
        pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="four-digit-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", id="length-list"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", id="negative-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", id="two-lengths"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", id="header-name-space"),
        pytest.param(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", id="header-without-colon"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="chunk-size"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", id="negative-chunk"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\na\r\n0\r\n\r\n",
            id="prefixed-chunk",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n", id="chunk-overrun"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nX: " + b"v" * MAX_LINE + b"\r\n\r\n", id="long-line"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"X: v\r\n" * (MAX_HEADERS + 1) + b"\r\n", id="many-headers"
        ),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" * 20, id="endless-interim"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX: 1\r\n", id="head-cut-short"),
    ],
)
def test_a_malformed_answer_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        read(raw)
