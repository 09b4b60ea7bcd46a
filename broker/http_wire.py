"""HTTP/1.1 on the wire for deliveries: the request's bytes and the response's framing.

Pure logic over bytes and a buffered reader, so it is tested without a network
(``broker/http.py`` owns the sockets). Why not http.client or urllib3: a
delivery is one small request and one small answer, and their general machinery
(the email parser for headers, two ``send`` calls per request, the wrappers)
cost about ten times the system calls themselves; this is most of a worker's
time per message. It does only what a delivery needs:

- the request goes out in one write, with the headers a caller gave checked
  again here (a token name, no control characters in the value), so no stored
  row can split one request into two;
- the answer's head is bounded (line length, count, total size); its body is
  framed by ``Content-Length``, chunked coding or the connection's end, and
  kept up to a cap; 1xx interim answers are skipped;
- the caller learns whether the connection may carry another request: only an
  HTTP/1.1 answer read to its end without ``Connection: close``.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import BinaryIO

MAX_LINE = 8 * 1024
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 200
MAX_INTERIM = 10

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_TARGET = re.compile(r"[^\x21-\x7e]")  # a request target is visible ASCII, no spaces
_BAD_VALUE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r?\n")
# Methods whose empty body is sent without a Content-Length (as http.client does).
_NO_EMPTY_LENGTH = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


class ProtocolError(Exception):
    """The destination's answer is not HTTP/1.x as we can read it, or a header cannot be sent."""


class Closed(ProtocolError):
    """The connection ended before a status line: nothing was answered."""


@dataclass
class Response:
    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    reusable: bool = False  # the connection can carry another request


def request_bytes(
    *, method: str, target: str, host: str, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    """The whole request: request line, headers, ``Host`` and framing, then the body.

    ``headers`` must hold no framing or hop-by-hop header (``header_check.owned_by_connection``
    filters them); each is checked here once more and a bad one raises ``ProtocolError``.
    """
    method_ok = _TOKEN.fullmatch(method.encode("latin-1", "replace"))
    if not method_ok or not target or _BAD_TARGET.search(target):
        raise ProtocolError("the request line cannot be sent as given")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    has_encoding = False
    for name, value in headers:
        if not _TOKEN.fullmatch(name.encode("latin-1", "replace")) or _BAD_VALUE.search(value):
            raise ProtocolError(f"header {name!r} cannot be sent as given")
        has_encoding = has_encoding or name.lower() == "accept-encoding"
        lines.append(f"{name}: {value}")
    if not has_encoding:
        lines.append("Accept-Encoding: identity")  # what we can store as the answer's body
    if body or method not in _NO_EMPTY_LENGTH:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# What the parser asks its driver for (sans-IO: the same parser serves a blocking
# socket and an asyncio stream): a line of at most N bytes (b"" at the end),
# exactly N bytes (fewer only at the end), or up to N bytes until the end.
LINE, EXACT, REST = "line", "exact", "rest"
Read = tuple[str, int]
Parser = Generator[Read, bytes, Response]


def _line(budget: list[int]) -> Generator[Read, bytes, bytes]:
    line = yield (LINE, MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError("a line of the answer's head is too long")
    budget[0] -= len(line)
    if budget[0] < 0:
        raise ProtocolError("the answer's head is too long")
    return line


def _head(budget: list[int]) -> Generator[Read, bytes, dict[str, list[str]]]:
    headers: dict[str, list[str]] = {}
    last: str | None = None
    count = 0
    while True:
        line = yield from _line(budget)
        if not line:
            raise ProtocolError("the connection ended inside the answer's head")
        if line in (b"\r\n", b"\n"):
            return headers
        if line[:1] in (b" ", b"\t") and last is not None:  # obsolete line folding
            headers[last][-1] += " " + line.strip().decode("latin-1")
            continue
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise ProtocolError("a header line of the answer is malformed")
        count += 1
        if count > MAX_HEADERS:
            raise ProtocolError("the answer has too many headers")
        last = name.decode("latin-1")
        headers.setdefault(last, []).append(value.strip().decode("latin-1"))


def _values(headers: dict[str, list[str]], name: str) -> list[str]:
    return [v for k, vs in headers.items() if k.lower() == name for v in vs]


def _tokens(headers: dict[str, list[str]], name: str) -> list[str]:
    return [t.strip().lower() for v in _values(headers, name) for t in v.split(",") if t.strip()]


def _exact(size: int) -> Generator[Read, bytes, bytes]:
    data = yield (EXACT, size)
    if len(data) < size:
        raise ProtocolError("the connection ended inside the answer's body")
    return data


def _chunked(cap: int) -> Generator[Read, bytes, tuple[bytes, bool]]:
    """The de-chunked body up to ``cap``; and whether it was read to its end."""
    parts: list[bytes] = []
    kept = 0
    budget = [MAX_HEAD_BYTES]
    while True:
        size_line = (yield from _line(budget)).split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_line):
            raise ProtocolError("a chunk size of the answer is malformed")
        size = int(size_line, 16)
        if size == 0:
            yield from _head(budget)  # trailers, discarded
            return b"".join(parts), True
        if kept + size > cap:
            parts.append((yield from _exact(cap - kept)))
            return b"".join(parts), False
        parts.append((yield from _exact(size)))
        kept += size
        if (yield from _line(budget)) not in (b"\r\n", b"\n"):
            raise ProtocolError("a chunk of the answer does not end where its size says")


def parse_response(*, method: str, cap: int) -> Parser:
    """Read one answer (driven by ``read_response`` or ``broker/http.py``'s stream);
    its body is kept up to ``cap`` bytes."""
    budget = [MAX_HEAD_BYTES]
    for _ in range(MAX_INTERIM + 1):
        line = yield from _line(budget)
        if not line:
            raise Closed("the destination closed the connection without answering")
        match = _STATUS.fullmatch(line)
        if match is None:
            raise ProtocolError("the answer's status line is not HTTP/1.x")
        minor, status = int(match[1]), int(match[2])
        headers = yield from _head(budget)
        if not 100 <= status < 200 or status == 101:
            break
    else:
        raise ProtocolError("too many interim (1xx) answers")
    response = Response(status=status, headers=headers)
    keep_alive = minor == 1 and "close" not in _tokens(headers, "connection")
    if method == "HEAD" or status in (101, 204, 304) or 100 <= status < 200:
        response.reusable = keep_alive and status != 101
        return response
    codings = _tokens(headers, "transfer-encoding")
    if codings:
        if codings[-1] != "chunked":
            # Framed by the connection's end (RFC 9112 6.3): read what fits, never reuse.
            response.body = yield (REST, cap)
            return response
        response.body, complete = yield from _chunked(cap)
        response.reusable = keep_alive and complete
        return response
    lengths = set(_values(headers, "content-length"))
    if lengths:
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            raise ProtocolError("the answer's Content-Length is malformed")
        length = int(next(iter(lengths)))
        response.body = yield from _exact(min(length, cap))
        response.reusable = keep_alive and length <= cap
        return response
    response.body = yield (REST, cap)  # until the connection ends
    return response


def read_response(reader: BinaryIO, *, method: str, cap: int) -> Response:
    """``parse_response`` over a blocking buffered reader."""
    parser = parse_response(method=method, cap=cap)
    try:
        op, size = next(parser)
        while True:
            data = reader.readline(size) if op == LINE else reader.read(size)
            op, size = parser.send(data)
    except StopIteration as done:
        return done.value
