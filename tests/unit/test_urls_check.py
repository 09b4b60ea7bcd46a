"""validate_http_url: an accepted URL names one host, whichever parser reads it.

The destination policy judges the host ``urllib.parse`` finds; the connection
goes to the host urllib3's ``parse_url`` finds (``broker/http.py``). The property
ties the two together over URLs built from the pieces parser-confusion attacks
are made of.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from broker import http as outbound
from broker.errors import ApplicationError
from broker.urls_check import validate_http_url

SCHEMES = ["http://", "https://", "HTTP://", "hTTps://", "ftp://", "http:/", "http:\\\\", "//", ""]
USERINFO = ["", "user@", "user:pass@", "@", "a%40b@", "127.0.0.1@", "x:@"]
HOSTS = [
    "127.0.0.1",
    "203.0.113.5",
    "localhost",
    "LocalHost",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[fe80::1%25eth0]",
    "example.test",
    "sub.example.test.",
    "2130706433",
    "0x7f.0.0.1",
    "0177.0.0.1",
    "127.1",
    "127.0.0.1.",
    "xn--caf-dma.test",
    "a_b.invalid",
]
# Printable ASCII that moves where one parser or another thinks the host ends.
PRINTABLE_INSERTIONS = ["@", "#", "?", "%2e", "%40", ".", ":", "/", "[", "]", "%", "-", "_"]
INSERTIONS = [*PRINTABLE_INSERTIONS, "\\", " ", "\t", "\x00", "\r\n", "\u3002", "\uff0e", "é"]
PORTS = ["", ":80", ":8792", ":0", ":65535", ":65536", ":", ":-1", ": 80", ":0x50", ":\uff18\uff10"]
CLEAN_PATH_PIECES = ["/", "..", ".", "a", "%2e", "%2f", "?", "#", "=", "&", "@", ":"]
PATH_PIECES = [*CLEAN_PATH_PIECES, "\\", " ", "\t", "\x00", "é", "%00", "\r\n"]


@st.composite
def hosts(draw: st.DrawFn, insertions: list[str]) -> str:
    host = draw(st.sampled_from(HOSTS))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(host)))
        host = host[:at] + draw(st.sampled_from(insertions)) + host[at:]
    return host


def _url(scheme: str, userinfo: str, host: str, port: str, path: str) -> str:
    return scheme + userinfo + host + port + path


# Plausible: an http(s) scheme, printable pieces; many are accepted, so the
# property is exercised on what passes, not only on what is refused.
plausible_urls = st.builds(
    _url,
    st.sampled_from(["http://", "https://"]),
    st.sampled_from(["", "", "", "", "", "user@", "a@b@"]),
    hosts(PRINTABLE_INSERTIONS),
    st.sampled_from(["", "", "", ":80", ":8792", ":65535", ":0", ":65536", ":"]),
    st.lists(st.sampled_from(CLEAN_PATH_PIECES), max_size=8).map(lambda p: "/" + "".join(p)),
)
wild_urls = st.builds(
    _url,
    st.sampled_from(SCHEMES),
    st.sampled_from(USERINFO),
    hosts(INSERTIONS),
    st.sampled_from(PORTS),
    st.lists(st.sampled_from(PATH_PIECES), max_size=8).map("".join),
)
urls = st.one_of(plausible_urls, wild_urls)

WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def accepted(url: str) -> bool:
    try:
        assert validate_http_url(url, field="destination url") == url
    except ApplicationError as exc:
        assert exc.status == 400
        assert "destination url" in exc.message
        return False
    return True


@settings(max_examples=600)
@given(urls)
@example("http://127.0.0.1:8792\\@203.0.113.5/../x")
@example("http://127.0.0.1:8792#@203.0.113.5/")
@example("http://127.0.0.1:8792?@203.0.113.5/")
@example("http://[::ffff:127.0.0.1]/")
@example("http://LocalHost:80/a?b=c")
def test_an_accepted_url_names_the_same_host_for_every_parser(url: str) -> None:
    if not accepted(url):
        return
    split = urlsplit(url)
    expected = split.hostname
    assert expected
    assert (parse_url(url).host or "").lower().strip("[]") == expected
    assert outbound._target(url).host.lower() == expected
    assert "\\" not in url
    assert "@" not in split.netloc
    assert not WHITESPACE_OR_CONTROL.search(url)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:8792\\@203.0.113.5/../x", id="backslash-before-at"),
        pytest.param("http://user@host/", id="userinfo"),
        pytest.param("http://user:pass@127.0.0.1/", id="userinfo-with-password"),
        pytest.param("http://127.1/", id="short-ipv4"),
        pytest.param("http://2130706433/", id="integer-ipv4"),
        pytest.param("http://0x7f.0.0.1/", id="hex-ipv4"),
        pytest.param("http://0177.0.0.1/", id="octal-ipv4"),
        pytest.param("http://[fe80::1%25eth0]/", id="ipv6-zone"),
        pytest.param("http://[::1/", id="unclosed-ipv6"),
        pytest.param("http://127.0.0.1:0/", id="port-zero"),
        pytest.param("http://127.0.0.1:65536/", id="port-too-large"),
        pytest.param("http://127.0.0.1:/", id="empty-port"),
        pytest.param("http:///path", id="no-host"),
        pytest.param("http://exa mple.test/", id="space-in-host"),
        pytest.param("http://example.test/a b", id="space-in-path"),
        pytest.param("http://example.test/\x00", id="nul-in-path"),
        pytest.param("http://caf\xe9.test/", id="non-ascii-host"),
        pytest.param("http://example\u3002test/", id="ideographic-full-stop"),
        pytest.param("ftp://127.0.0.1/", id="ftp"),
        pytest.param("127.0.0.1/hook", id="no-scheme"),
        pytest.param("http://" + "a" * 4100 + ".test/", id="too-long"),
    ],
)
def test_url_is_refused(url: str) -> None:
    assert not accepted(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook?a=1&b=2",
        "https://example.test/a/b?x=1&y=%20z",
        "http://localhost/?url=http://203.0.113.5/&next=%2F",
        "http://[::1]:3000/path?q=1",
        "https://sub.example.test./x?y=z#fragment",
        "http://a_b.invalid/",
    ],
)
def test_url_is_accepted(url: str) -> None:
    assert accepted(url)


def test_a_rejected_url_is_rejected_every_time_and_an_accepted_one_is_remembered():
    """Accepted URLs are remembered per process (issue 10); a rejected one never is."""
    from broker import urls_check

    bad = "http://user@127.0.0.1/remembered"
    for _ in range(3):
        with pytest.raises(ApplicationError, match="user information"):
            validate_http_url(bad, field="destination url")
    assert bad not in urls_check._ACCEPTED
    good = "http://127.0.0.1:9/remembered"
    assert validate_http_url(good, field="destination url") == good
    assert good in urls_check._ACCEPTED
    # The memory is bounded: past its size it starts again.
    for n in range(urls_check._ACCEPTED_MAX + 1):
        validate_http_url(f"http://127.0.0.1:9/fill/{n}", field="destination url")
    assert len(urls_check._ACCEPTED) <= urls_check._ACCEPTED_MAX
