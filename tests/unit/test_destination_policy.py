"""DestinationPolicy.check for IP literals and allowed host names.

No case here resolves a name: every host is an IP literal, or the policy has no
networks configured (so an allowed name is not looked up), or allowed_hosts
refuses the name before any lookup.
"""

from __future__ import annotations

import pytest

from broker.http import DestinationPolicy

PRIVATE = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fe80::/10",
    "fc00::/7",
    "0.0.0.0/8",
    "::/128",
    "100.64.0.0/10",
]


def test_empty_policy_allows_any_host_without_lookup() -> None:
    assert DestinationPolicy().check("https://example.test/hook") is None


def test_url_without_host_is_refused() -> None:
    assert DestinationPolicy().check("http:///path") == "destination url has no host"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/hook?x=1",
        "http://127.255.0.9/",
        "http://[::1]:9000/",
    ],
)
def test_loopback_is_allowed_by_allowed_networks(url: str) -> None:
    policy = DestinationPolicy(allowed_networks=["127.0.0.0/8", "::1/128"])
    assert policy.check(url) is None


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://10.0.0.1/", "10.0.0.1"),
        ("http://192.0.2.1/", "192.0.2.1"),
        ("http://[fe80::1]/", "fe80::1"),
        ("http://[2001:db8::1]:443/", "2001:db8::1"),
    ],
)
def test_address_outside_allowed_networks_is_refused(url: str, address: str) -> None:
    policy = DestinationPolicy(allowed_networks=["127.0.0.0/8", "::1/128"])
    assert policy.check(url) == (
        f"destination address {address} is not allowed by the destination policy"
    )


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://10.1.2.3/", "10.1.2.3"),
        ("https://10.255.255.255:8443/", "10.255.255.255"),
        ("http://127.0.0.1/", "127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://192.168.1.1/", "192.168.1.1"),
        ("http://[::1]/", "::1"),
        ("http://[fd00::1]/", "fd00::1"),
        ("http://0.0.0.0/", "0.0.0.0"),
    ],
)
def test_address_in_denied_networks_is_refused(url: str, address: str) -> None:
    policy = DestinationPolicy(denied_networks=PRIVATE)
    assert policy.check(url) == (
        f"destination address {address} is denied by the destination policy"
    )


@pytest.mark.parametrize(
    "url", ["http://192.0.2.1/", "https://203.0.113.9:8443/x", "http://[2001:db8::1]/"]
)
def test_public_address_passes_denied_networks(url: str) -> None:
    assert DestinationPolicy(denied_networks=PRIVATE).check(url) is None


def test_denied_network_wins_over_allowed_network() -> None:
    policy = DestinationPolicy(allowed_networks=["10.0.0.0/8"], denied_networks=["10.0.0.0/24"])
    assert policy.check("http://10.1.0.1/") is None
    assert "is denied" in (policy.check("http://10.0.0.5/") or "")


@pytest.mark.parametrize(
    "url",
    [
        "http://[::ffff:10.0.0.1]/",
        "http://[::ffff:a00:1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_ipv4_mapped_ipv6_address_is_checked_as_its_ipv4_address(url: str) -> None:
    # Connecting to ::ffff:a.b.c.d reaches a.b.c.d on a dual-stack host.
    assert DestinationPolicy(denied_networks=PRIVATE).check(url) is not None


@pytest.mark.parametrize(
    "url", ["http://example.com/", "http://localhost/", "http://127.0.0.1.example.test/"]
)
def test_host_not_in_allowed_hosts_is_refused_before_lookup(url: str) -> None:
    policy = DestinationPolicy(allowed_hosts=["127.0.0.1"], allowed_networks=["127.0.0.0/8"])
    refusal = policy.check(url)
    assert refusal is not None
    assert refusal.startswith("destination host ")
    assert refusal.endswith(" is not allowed by the destination policy")


def test_refusal_names_the_host() -> None:
    policy = DestinationPolicy(allowed_hosts=["127.0.0.1"])
    assert policy.check("http://example.com/") == (
        "destination host example.com is not allowed by the destination policy"
    )


@pytest.mark.parametrize(
    ("allowed", "url", "ok"),
    [
        (["127.0.0.1"], "http://127.0.0.1:8080/", True),
        (["127.0.0.1"], "http://127.0.0.2/", False),
        (["::1"], "http://[::1]/", True),
        (["[::1]"], "http://[::1]:9000/", True),
        (["example.test"], "https://example.test/hook", True),
        (["Example.Test"], "https://EXAMPLE.test/", True),
        (["example.test"], "https://sub.example.test/", False),
        (["example.test"], "https://example.test.evil.test/", False),
        (["*.example.test"], "https://sub.example.test/", True),
        (["*.example.test"], "https://a.b.example.test/", True),
        (["*.EXAMPLE.test"], "https://Sub.Example.Test/", True),
        (["*.example.test"], "https://example.test/", False),
        (["*.example.test"], "https://evilexample.test/", False),
        (["*.example.test"], "https://example.test.evil.test/", False),
        (["*.example.test"], "https://sub.example.test.evil.test/", False),
        (["other.test", "*.example.test"], "https://other.test/", True),
        (["other.test", "*.example.test"], "https://x.example.test/", True),
        (["other.test", "*.example.test"], "https://another.test/", False),
    ],
)
def test_allowed_hosts_match_exact_names_and_wildcard_subdomains(
    allowed: list[str], url: str, ok: bool
) -> None:
    refusal = DestinationPolicy(allowed_hosts=allowed).check(url)
    if ok:
        assert refusal is None
    else:
        assert refusal is not None and "not allowed by the destination policy" in refusal


def test_allowed_host_literal_is_still_checked_against_networks() -> None:
    policy = DestinationPolicy(allowed_hosts=["10.0.0.1"], denied_networks=["10.0.0.0/8"])
    assert policy.check("http://10.0.0.1/") == (
        "destination address 10.0.0.1 is denied by the destination policy"
    )
