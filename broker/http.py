"""All outbound HTTP: deliveries and callbacks go through ``send`` and nothing else.

One pooled urllib3 manager per process (keep-alive, thread-safe), the message's
own timeout, a cap on the response body kept, no redirects followed, and the
destination policy checked before any connection. ``send`` returns a result and
never raises into a task: an error is a readable string on the result.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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


class DestinationPolicy:
    """Which hosts and networks may be called. Checked before DNS where it can be.

    - ``allowed_hosts``: exact names or ``*.suffix``; when set, any other host is
      refused without a DNS lookup (an IP literal is compared as written).
    - ``denied_networks`` and ``allowed_networks``: every address the host
      resolves to must be outside the first and, when set, inside the second.
    """

    def __init__(
        self,
        *,
        allowed_hosts: Iterable[str] = (),
        allowed_networks: Iterable[str] = (),
        denied_networks: Iterable[str] = (),
    ) -> None:
        self.allowed_hosts = [h.lower().strip("[]") for h in allowed_hosts]
        self.allowed_networks: list[Network] = [
            ipaddress.ip_network(n, strict=False) for n in allowed_networks
        ]
        self.denied_networks: list[Network] = [
            ipaddress.ip_network(n, strict=False) for n in denied_networks
        ]

    @classmethod
    def from_settings(cls) -> DestinationPolicy:
        return cls(
            allowed_hosts=settings.QSTASH_ALLOWED_HOSTS,
            allowed_networks=settings.QSTASH_ALLOWED_NETWORKS,
            denied_networks=settings.QSTASH_DENIED_NETWORKS,
        )

    def _host_allowed(self, host: str) -> bool:
        if not self.allowed_hosts:
            return True
        for pattern in self.allowed_hosts:
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return True
            if host == pattern:
                return True
        return False

    def _address_error(self, address: str) -> str | None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            # ::ffff:10.0.0.1 reaches 10.0.0.1: judge it as the IPv4 address it is.
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.denied_networks):
            return f"destination address {ip} is denied by the destination policy"
        if self.allowed_networks and not any(ip in net for net in self.allowed_networks):
            return f"destination address {ip} is not allowed by the destination policy"
        return None

    def check(self, url: str) -> str | None:
        """None when ``url`` may be called, else the reason it may not."""
        host = (urlsplit(url).hostname or "").lower()
        if not host:
            return "destination url has no host"
        if not self._host_allowed(host):
            return f"destination host {host} is not allowed by the destination policy"
        if not (self.denied_networks or self.allowed_networks):
            return None
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            except OSError as exc:
                return f"could not resolve host {host}: {exc}"
            addresses = sorted({str(info[4][0]) for info in infos})
        for address in addresses:
            if error := self._address_error(address):
                return error
        return None


_pool: tuple[int, urllib3.PoolManager, DestinationPolicy] | None = None


def _resources() -> tuple[urllib3.PoolManager, DestinationPolicy]:
    # Built lazily and again after a fork: sockets must not be shared between
    # Celery's prefork children.
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        manager = urllib3.PoolManager(
            num_pools=256, maxsize=max(4, settings.QSTASH_DELIVERY_THREADS), block=False
        )
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
    manager, policy = _resources()
    result = HttpResult()
    if refusal := policy.check(url):
        result.error = refusal
        return result
    request_headers = urllib3.HTTPHeaderDict()
    for name, value in headers:
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
    # urllib3 derives both connection errors from its TimeoutError: test them first.
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
