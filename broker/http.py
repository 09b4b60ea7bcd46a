"""All outbound HTTP: deliveries and callbacks go through ``send_async`` (or ``send``,
its form for a caller without an event loop) and nothing else.

- The delivery engine sends every message of a worker process from one event
  loop, so a hundred requests in flight cost no thread each (a thread per
  request spent more time handing the GIL around than sending).
- Kept-alive connections are pooled per loop and per destination; the message's
  own timeout bounds the whole attempt; the response body kept is capped; no
  redirect is followed.
- The destination policy applies where the socket is opened: the host name is
  judged before DNS, the name is resolved once (inside the message's timeout),
  every address is judged, and the socket connects to a judged address.
  urllib3's ``parse_url`` is the only URL parser on this path, so what is
  checked is what is connected to.
- The bytes on the wire are ``broker/http_wire.py``'s.

Neither function raises into its caller: an error is a readable string on the result.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import ssl
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from urllib3.util import parse_url

from broker import http_wire
from broker.destination_policy import DENIED, DestinationPolicy
from broker.header_check import owned_by_connection

logger = logging.getLogger(__name__)


@dataclass
class HttpResult:
    status: int | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, values in self.headers.items():
            if key.lower() == lname and values:
                return values[0]
        return None


class DestinationRefused(Exception):
    """The policy refused the host or one of its addresses; no socket was opened."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ConnectFailed(Exception):
    """No connection could be made (name not found, refused, unreachable)."""


# Name lookups run here, not in the event loop's default executor: a lookup that
# outlives its message's timeout is abandoned, and nothing waits for it to end.
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="qstash-dns")


async def _open_checked(host: str, port: int) -> socket.socket:
    """A socket connected to ``host`` at an address the destination policy allows."""
    policy = _resources()[0]
    if reason := policy.host_error(host):
        raise DestinationRefused(reason)
    lookup = functools.partial(
        socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.run_in_executor(_resolver, lookup)
    except socket.gaierror as exc:
        raise _ConnectFailed(f"could not resolve host: {exc}") from exc
    targets = list(dict.fromkeys((info[0], info[4]) for info in infos))
    if not targets:
        raise _ConnectFailed(f"could not resolve host: {host}")
    if policy.checks_addresses and not all(policy.address_allowed(str(a[0])) for _, a in targets):
        raise DestinationRefused(f"destination host {host} {DENIED}")
    error: OSError | None = None
    for family, address in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    raise _ConnectFailed(f"connection failed: {error}")


@dataclass(frozen=True)
class _Target:
    """Where a URL sends a request: the pool key, the request line's target and ``Host``."""

    scheme: str
    host: str  # as connected to (no brackets)
    port: int
    path: str
    host_header: str

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@functools.lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    parsed = parse_url(url)
    scheme = (parsed.scheme or "http").lower()
    if scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"cannot send to {url!r}")
    default = 443 if scheme == "https" else 80
    port = parsed.port or default
    host = parsed.host.strip("[]")
    shown = f"[{host}]" if ":" in host else host
    return _Target(
        scheme=scheme,
        host=host,
        port=port,
        path=parsed.request_uri,
        host_header=shown if port == default else f"{shown}:{port}",
    )


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def dropped(self) -> bool:
        """Closed by the destination while idle, or holding bytes nobody asked for
        (which would be read as the next request's answer)."""
        unasked = len(getattr(self.reader, "_buffer", b""))  # StreamReader has no public size
        return self.writer.is_closing() or self.reader.at_eof() or unasked > 0

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """Idle connections of one event loop per (scheme, host, port), at most ``per_host`` each."""

    def __init__(self, per_host: int) -> None:
        self.per_host = per_host
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}

    def take(self, target: _Target) -> _Connection | None:
        idle = self._idle.get(target.key)
        while idle:
            conn = idle.pop()
            if not conn.dropped():
                return conn
            conn.close()
        return None

    def give_back(self, target: _Target, conn: _Connection) -> None:
        idle = self._idle.setdefault(target.key, [])
        if len(idle) < self.per_host:
            idle.append(conn)
        else:
            conn.close()

    def clear(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


_resources_of: tuple[int, DestinationPolicy, ssl.SSLContext] | None = None
# Connections belong to the loop they were opened on.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()


def _resources() -> tuple[DestinationPolicy, ssl.SSLContext]:
    global _resources_of
    if _resources_of is None or _resources_of[0] != os.getpid():
        _resources_of = (os.getpid(), DestinationPolicy.from_settings(), _tls_context())
    return _resources_of[1], _resources_of[2]


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = _Pool(max(4, settings.QSTASH_DELIVERY_CONCURRENCY))
    return pool


def reset() -> None:
    """Forget the pools and the policy (tests change settings between cases)."""
    global _resources_of
    _resources_of = None
    _pools.clear()


async def _connect(target: _Target) -> _Connection:
    sock = await _open_checked(target.host, target.port)
    tls = _resources()[1] if target.scheme == "https" else None
    try:
        reader, writer = await asyncio.open_connection(
            sock=sock,
            ssl=tls,
            server_hostname=target.host if tls else None,
            limit=http_wire.MAX_HEAD_BYTES,
        )
    except BaseException:
        sock.close()
        raise
    return _Connection(reader, writer)


async def _readline(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    except asyncio.LimitOverrunError:
        raise http_wire.ProtocolError("a line of the answer's head is too long") from None


async def _read_upto(reader: asyncio.StreamReader, size: int) -> bytes:
    parts: list[bytes] = []
    while size > 0 and (chunk := await reader.read(size)):
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


async def _read_response(
    reader: asyncio.StreamReader, *, method: str, cap: int
) -> http_wire.Response:
    """``http_wire.parse_response`` over an asyncio stream."""
    parser = http_wire.parse_response(method=method, cap=cap)
    try:
        op, size = next(parser)
        while True:
            if op == http_wire.LINE:
                data = await _readline(reader)
            elif op == http_wire.EXACT:
                try:
                    data = await reader.readexactly(size)
                except asyncio.IncompleteReadError as exc:
                    data = exc.partial
            else:
                data = await _read_upto(reader, size)
            op, size = parser.send(data)
    except StopIteration as done:
        return done.value


async def _exchange(target: _Target, request: bytes, method: str) -> http_wire.Response:
    pool = _pool()
    conn = pool.take(target) or await _connect(target)
    try:
        conn.writer.write(request)
        await conn.writer.drain()
        response = await _read_response(
            conn.reader, method=method, cap=settings.QSTASH_RESPONSE_BODY_CAP
        )
    except BaseException:
        conn.close()
        raise
    if response.reusable:
        pool.give_back(target, conn)
    else:
        conn.close()
    return response


async def send_async(
    *,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    timeout: float,
) -> HttpResult:
    """Send one request on the running loop. Never raises: failures come back as
    ``HttpResult.error``. ``timeout`` bounds all of it: lookup, connect, send and answer."""
    started = time.monotonic()
    result = HttpResult()
    try:
        target = _target(url)
        # Whatever row or code path a header list came from, it cannot reframe the request.
        kept = [(name, value) for name, value in headers if not owned_by_connection(name)]
        request = http_wire.request_bytes(
            method=method, target=target.path, host=target.host_header, headers=kept, body=body
        )
        async with asyncio.timeout(timeout):
            response = await _exchange(target, request, method)
        result.status, result.headers, result.body = (
            response.status,
            response.headers,
            response.body,
        )
    except DestinationRefused as exc:
        result.error = exc.reason
    except _ConnectFailed as exc:
        result.error = str(exc)
    except TimeoutError:
        result.error = f"timeout: no response within {timeout:g}s"
    except (http_wire.ProtocolError, OSError, ValueError) as exc:
        result.error = f"request failed: {exc.__class__.__name__}: {exc}"
    except Exception as exc:  # a task must get a result, whatever went wrong
        logger.exception("unexpected error sending to %s", url)
        result.error = f"request failed: {exc.__class__.__name__}: {exc}"
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def send(
    *,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    timeout: float,
) -> HttpResult:
    """``send_async`` for a caller without a loop (scripts, tests): one request on a
    loop of its own, its connection closed after."""

    async def once() -> HttpResult:
        try:
            return await send_async(
                method=method, url=url, headers=headers, body=body, timeout=timeout
            )
        finally:
            _pool().clear()

    return asyncio.run(once())
