"""All outbound HTTP: deliveries and callbacks go through ``send`` and nothing else.

One pooled urllib3 manager per process (keep-alive, thread-safe), the message's
own timeout, a cap on the response body kept, no redirects followed, and the
destination policy applied where the socket is opened: the host name is judged
before DNS, the name is resolved once (inside the message's timeout), every
address is judged, and the socket connects to a judged address. urllib3 is the
only URL parser on this path, so what is checked is what is connected to.
``send`` returns a result and never raises into a task: an error is a readable
string on the result.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import connection as urllib3_connection

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


class DestinationRefused(urllib3.exceptions.NewConnectionError):
    """The policy refused the host or one of its addresses; no socket was opened."""

    def __init__(self, conn: Any, reason: str) -> None:
        super().__init__(conn, reason)
        self.reason = reason


# getaddrinfo cannot be given a timeout; a small pool lets the caller stop waiting.
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="qstash-dns")


def _resolve(host: str, port: int, timeout: float | None) -> list[tuple[Any, ...]]:
    future = _resolver.submit(
        socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return future.result(timeout=timeout)  # TimeoutError when DNS is slower than that


def _open_checked(conn: HTTPConnection) -> socket.socket:
    """What ``HTTPConnection._new_conn`` does, connecting only to judged addresses."""
    policy = _resources()[1]
    host = conn._dns_host
    if reason := policy.host_error(host):
        raise DestinationRefused(conn, reason)
    timeout = conn.timeout if isinstance(conn.timeout, float | int) else None
    try:
        infos = _resolve(host, conn.port or 80, timeout)
    except socket.gaierror as exc:
        raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise urllib3.exceptions.ConnectTimeoutError(conn, f"timed out resolving {host}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise urllib3.exceptions.NameResolutionError(conn.host, conn, socket.gaierror(host))
    if policy.checks_addresses and not all(policy.address_allowed(a) for a in addresses):
        # The address is not named: a token holder must not learn internal IPs.
        raise DestinationRefused(conn, f"destination host {host} {DENIED}")
    error: OSError | None = None
    for address in addresses:
        try:
            return urllib3_connection.create_connection(
                (address, conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as exc:
            raise urllib3.exceptions.ConnectTimeoutError(
                conn, f"connection to {host} timed out"
            ) from exc
        except OSError as exc:
            error = exc
    raise urllib3.exceptions.NewConnectionError(
        conn, f"Failed to establish a new connection: {error}"
    )


class _CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _open_checked(self)


class _CheckedHTTPSConnection(HTTPSConnection):
    # The socket goes to the checked address; TLS still verifies and sends SNI
    # for the host name (urllib3 wraps this socket using self.host).
    def _new_conn(self) -> socket.socket:
        return _open_checked(self)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


_pool: tuple[int, urllib3.PoolManager, DestinationPolicy] | None = None


def _resources() -> tuple[urllib3.PoolManager, DestinationPolicy]:
    # Built lazily and again after a fork: sockets must not be shared between
    # Celery's prefork children.
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        manager = urllib3.PoolManager(
            num_pools=256, maxsize=max(4, settings.QSTASH_DELIVERY_CONCURRENCY), block=False
        )
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        _pool = (os.getpid(), manager, DestinationPolicy.from_settings())
    return _pool[1], _pool[2]


def reset() -> None:
    """Forget the pool and policy (tests change settings between cases)."""
    global _pool
    _pool = None


def send(
    *,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    timeout: float,
) -> HttpResult:
    """Send one request. Never raises: failures come back as ``HttpResult.error``."""
    started = time.monotonic()
    manager, _ = _resources()
    result = HttpResult()
    request_headers = urllib3.HTTPHeaderDict()
    for name, value in headers:
        # Whatever row or code path a header list came from, it cannot reframe the request.
        if not owned_by_connection(name):
            request_headers.add(name, value)
    cap = settings.QSTASH_RESPONSE_BODY_CAP
    try:
        response = manager.request(
            method,
            url,
            body=body if body or method not in ("GET", "HEAD", "DELETE") else None,
            headers=request_headers,
            timeout=urllib3.Timeout(total=timeout),
            retries=False,
            redirect=False,
            preload_content=False,
        )
        try:
            result.status = response.status
            for name, value in response.headers.iteritems():
                result.headers.setdefault(name, []).append(value)
            result.body = response.read(cap)
            if len(result.body) == cap and response.read(1):
                # Do not drain an unbounded body to save the connection.
                response.close()
        finally:
            response.release_conn()
    # urllib3 derives these connection errors from its TimeoutError: test them first.
    except DestinationRefused as exc:
        result.error = exc.reason
    except urllib3.exceptions.NameResolutionError as exc:
        result.error = f"could not resolve host: {_reason(exc)}"
    except urllib3.exceptions.NewConnectionError as exc:
        result.error = f"connection failed: {_reason(exc)}"
    except urllib3.exceptions.TimeoutError:
        result.status = None
        result.error = f"timeout: no response within {timeout:g}s"
    except urllib3.exceptions.HTTPError as exc:
        result.status = None
        result.error = f"request failed: {_reason(exc)}"
    except Exception as exc:  # a task must get a result, whatever went wrong
        logger.exception("unexpected error sending to %s", url)
        result.status = None
        result.error = f"request failed: {exc.__class__.__name__}: {exc}"
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def _reason(exc: BaseException) -> str:
    text = str(exc)
    # urllib3 prefixes the connection object's repr; keep what a person can read.
    if "): " in text:
        text = text.split("): ", 1)[1]
    return text
