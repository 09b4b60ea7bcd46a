"""Which hosts and addresses the broker may call: pure logic, no DNS, no sockets.

``broker/http.py`` applies it where the connection is made: the host name before
any lookup, then every address the name resolves to, and it connects only to an
address that was checked here (so a second, different DNS answer cannot slip by).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DENIED = "is denied by the destination policy"


def _judged_as(ip: Address) -> list[Address]:
    """The addresses a connection to ``ip`` reaches, each of which must be allowed."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
            return [ip.ipv4_mapped]
        if ip.sixtofour is not None:  # 2002:AABB:CCDD:: is relayed to A.B.C.D
            return [ip, ip.sixtofour]
    return [ip]


class DestinationPolicy:
    """Allowed host names, denied networks, and allowed networks as exceptions.

    - ``allowed_hosts``: exact names or ``*.suffix``. When set, any other host is
      refused before DNS (an IP literal is compared as written).
    - ``denied_networks``: an address inside one is refused...
    - ``allowed_networks``: ...unless it is also inside one of these. They carve
      exceptions out of the denied networks; they never refuse anything by
      themselves. To allow only some networks, deny ``0.0.0.0/0`` and ``::/0``
      and allow those.
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

    @property
    def checks_addresses(self) -> bool:
        return bool(self.denied_networks)

    def host_error(self, host: str) -> str | None:
        """None when the host name may be called, judged before any DNS lookup."""
        host = host.lower().strip("[]")
        if not host:
            return "destination url has no host"
        if not self.allowed_hosts:
            return None
        for pattern in self.allowed_hosts:
            if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return None
        return f"destination host {host} is not allowed by the destination policy"

    def address_allowed(self, address: str) -> bool:
        """Whether a resolved (or literal) address may be connected to."""
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
        for candidate in _judged_as(ip):
            denied = any(candidate in net for net in self.denied_networks if _same(candidate, net))
            if denied and not any(
                candidate in net for net in self.allowed_networks if _same(candidate, net)
            ):
                return False
        return True


def _same(ip: Address, net: Network) -> bool:
    return ip.version == net.version
