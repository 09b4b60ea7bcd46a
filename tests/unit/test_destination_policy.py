"""DestinationPolicy: host names judged before DNS, addresses judged one by one.

The default deny list is read from the settings, so these cases test the list
production runs with. ``broker/http.py`` applies the policy where it connects
(see tests/integration/test_outbound_policy.py).
"""

from __future__ import annotations

import ipaddress

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import strategies as st

from broker.destination_policy import DestinationPolicy

DEFAULT = DestinationPolicy(denied_networks=settings.DEFAULT_DENIED_NETWORKS.split(","))


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",
        "10.1.2.3",
        "100.64.0.1",
        "127.0.0.1",
        "127.255.0.9",
        "169.254.169.254",
        "172.16.0.1",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.51.100.7",
        "203.0.113.5",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::7f00:1",  # [::127.0.0.1], IPv4-compatible
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:a00:1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64
        "64:ff9b:1::1",
        "100::1",
        "2001::1",  # Teredo
        "2001:db8::1",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:808:808::1",  # 6to4 of a public address: the prefix is denied whole
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fe80::1%eth0",
        "fec0::1",
        "ff02::1",
    ],
)
def test_default_policy_denies_every_special_purpose_address(address: str) -> None:
    assert not DEFAULT.address_allowed(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "::ffff:8.8.8.8", "2606:4700::1111"]
)
def test_default_policy_allows_public_addresses(address: str) -> None:
    assert DEFAULT.address_allowed(address)


def test_allowed_networks_carve_exceptions_out_of_denied_ones() -> None:
    policy = DestinationPolicy(
        allowed_networks=["10.20.0.0/16"],
        denied_networks=settings.DEFAULT_DENIED_NETWORKS.split(","),
    )
    assert policy.address_allowed("10.20.0.5")
    assert policy.address_allowed("::ffff:10.20.0.5")
    assert not policy.address_allowed("10.21.0.5")
    # An exception never refuses what is not denied: public destinations still pass.
    assert policy.address_allowed("8.8.8.8")


def test_allow_list_only_by_denying_everything_else() -> None:
    policy = DestinationPolicy(
        allowed_networks=["127.0.0.0/8", "::1/128"], denied_networks=["0.0.0.0/0", "::/0"]
    )
    assert policy.address_allowed("127.0.0.1")
    assert policy.address_allowed("::1")
    assert policy.address_allowed("::ffff:127.0.0.1")
    assert not policy.address_allowed("8.8.8.8")
    assert not policy.address_allowed("2606:4700::1111")


def test_empty_policy_allows_any_host_and_address() -> None:
    policy = DestinationPolicy()
    assert policy.host_error("example.test") is None
    assert policy.address_allowed("127.0.0.1")
    assert not policy.checks_addresses


def test_missing_host_is_refused() -> None:
    assert DestinationPolicy().host_error("") == "destination url has no host"


@pytest.mark.parametrize(
    ("allowed", "host", "ok"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "127.0.0.2", False),
        (["::1"], "[::1]", True),
        (["[::1]"], "::1", True),
        (["example.test"], "example.test", True),
        (["Example.Test"], "EXAMPLE.test", True),
        (["example.test"], "sub.example.test", False),
        (["example.test"], "example.test.evil.test", False),
        (["*.example.test"], "sub.example.test", True),
        (["*.example.test"], "a.b.example.test", True),
        (["*.EXAMPLE.test"], "Sub.Example.Test", True),
        (["*.example.test"], "example.test", False),
        (["*.example.test"], "evilexample.test", False),
        (["*.example.test"], "sub.example.test.evil.test", False),
        (["other.test", "*.example.test"], "other.test", True),
        (["other.test", "*.example.test"], "another.test", False),
        (["127.0.0.1"], "localhost", False),
    ],
)
def test_allowed_hosts_match_exact_names_and_wildcard_subdomains(
    allowed: list[str], host: str, ok: bool
) -> None:
    refusal = DestinationPolicy(allowed_hosts=allowed).host_error(host)
    if ok:
        assert refusal is None
    else:
        assert refusal == (
            f"destination host {host.lower().strip('[]')} is not allowed by the destination policy"
        )


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_and_6to4_forms_are_judged_like_the_ipv4_address(
    ip: ipaddress.IPv4Address,
) -> None:
    policy = DestinationPolicy(denied_networks=["10.0.0.0/8", "127.0.0.0/8"])
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert policy.address_allowed(str(mapped)) == policy.address_allowed(str(ip))
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(ip) << 80))
    assert policy.address_allowed(str(sixtofour)) == policy.address_allowed(str(ip))
