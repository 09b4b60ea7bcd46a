"""check_header: what it accepts can go on the wire as is; forwarded framing never can.

A stored header is sent byte for byte on a pooled keep-alive connection, so the
property that matters is "accepted implies the delivery's request writer
(``broker/http_wire.py``) puts it on the wire without complaint, as one header
line". The table pins the edges.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from broker import http_wire
from broker.errors import ApplicationError
from broker.header_check import BROKER_SET, FORWARD_PREFIXES, NOT_FORWARDABLE, check_header

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# What tends to break header handling: separators, line breaks, NUL, DEL, NEL,
# a lone surrogate, characters beyond ISO-8859-1 and ones that lowercase to ASCII.
ODD_CHARS = [
    "\r",
    "\n",
    "\x00",
    "\t",
    " ",
    ":",
    "\x7f",
    "\x85",
    "\xa0",
    "\xff",
    "\u0130",  # İ: lowercases to "i" plus a combining dot
    "\u212a",  # Kelvin sign: lowercases to "k"
    "\u2028",
    "\udfff",
    "\U0001f600",
]

names = st.one_of(
    st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=40),
    st.text(st.one_of(st.sampled_from(TOKEN_CHARS), st.sampled_from(ODD_CHARS)), max_size=40),
    st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from(["Upstash-Forward-", "upstash-callback-forward-", "X-"]),
        st.text(st.one_of(st.sampled_from(TOKEN_CHARS), st.sampled_from(ODD_CHARS)), max_size=20),
    ),
)
values = st.one_of(
    st.text(st.characters(max_codepoint=0xFF), max_size=60),
    st.text(
        st.one_of(
            st.characters(max_codepoint=0x7E, min_codepoint=0x20), st.sampled_from(ODD_CHARS)
        ),
        max_size=60,
    ),
)


def accepted(name: str, value: str) -> bool:
    try:
        check_header(name, value)
    except ApplicationError:
        return False
    return True


def put_on_the_wire(name: str, value: str) -> None:
    """What broker/http.py sends for a header: the request writer's bytes, one line for it."""
    request = http_wire.request_bytes(
        method="GET", target="/", host="127.0.0.1", headers=[(name, value)], body=b""
    )
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert f"{name}: {value}".encode("latin-1") in head
    assert len(head) == 4  # request line, Host, this header, Accept-Encoding


@settings(max_examples=500)
@given(names, values)
@example("X-Split", "a\r\nContent-Length: 0")
@example("X-Nul", "a\x00b")
@example("X\u212aey", "v")
@example("X", " leading and trailing ")
def test_an_accepted_header_can_be_sent_as_given_and_holds_no_line_break(
    name: str, value: str
) -> None:
    if not accepted(name, value):
        return
    put_on_the_wire(name, value)
    for bad in ("\r", "\n", "\x00"):
        assert bad not in name and bad not in value
    assert name.isascii()
    value.encode("latin-1")


framing_names = st.one_of(
    st.sampled_from(sorted(NOT_FORWARDABLE | BROKER_SET)),
    st.builds(
        lambda rest: "proxy-" + rest, st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=20)
    ),
)


def _recase(text: str, upper: list[bool]) -> str:
    return "".join(c.upper() if up else c.lower() for c, up in zip(text, upper, strict=False))


@settings(max_examples=300)
@given(
    st.sampled_from(FORWARD_PREFIXES),
    framing_names,
    st.lists(st.booleans(), min_size=80, max_size=80),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
)
def test_a_forwarded_framing_header_is_refused_whatever_its_case(
    prefix: str, framing: str, upper: list[bool], value: str
) -> None:
    name = _recase(prefix + framing, upper)

    with pytest.raises(ApplicationError) as refused:
        check_header(name, value)

    assert "cannot be forwarded" in refused.value.message
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("Content-Type", "application/json", id="content-type"),
        pytest.param("Upstash-Forward-X-Custom", "v", id="forwarded-custom"),
        pytest.param("Upstash-Callback-Forward-Authorization", "Bearer x", id="callback-auth"),
        pytest.param("Upstash-Forward-Proxyish", "v", id="proxy-without-dash"),
        pytest.param("Upstash-Forward-Content-Type", "text/plain", id="forwarded-content-type"),
        pytest.param("Upstash-Forward-Hosts", "v", id="host-plural"),
        pytest.param("X", "tab\tinside", id="tab-in-value"),
        pytest.param("X", "caf\xe9 \xff", id="latin-1-value"),
        pytest.param("X", "", id="empty-value"),
        pytest.param("!#$%&'*+-.^_`|~", "v", id="every-token-symbol"),
        pytest.param("Content-Length", "1", id="unforwarded-framing-is-not-this-check"),
    ],
)
def test_header_is_accepted(name: str, value: str) -> None:
    check_header(name, value)
    put_on_the_wire(name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("Upstash-Forward-Content-Length", "1", id="content-length"),
        pytest.param("upstash-forward-TRANSFER-ENCODING", "chunked", id="transfer-encoding"),
        pytest.param("Upstash-Forward-Connection", "close", id="connection"),
        pytest.param("Upstash-Forward-Keep-Alive", "timeout=5", id="keep-alive"),
        pytest.param("Upstash-Forward-TE", "trailers", id="te"),
        pytest.param("Upstash-Forward-Trailer", "x", id="trailer"),
        pytest.param("Upstash-Forward-Upgrade", "h2c", id="upgrade"),
        pytest.param("Upstash-Callback-Forward-Host", "203.0.113.5", id="callback-host"),
        pytest.param(
            "Upstash-Failure-Callback-Forward-Proxy-Authorization", "x", id="failure-proxy-auth"
        ),
        pytest.param("Upstash-Forward-Upstash-Signature", "x", id="broker-signature"),
        pytest.param("Upstash-Forward-upstash-message-id", "msg_x", id="broker-message-id"),
        pytest.param("Upstash-Forward-Con\u212aent-Length", "1", id="kelvin-sign-name"),
        pytest.param("X Y", "v", id="space-in-name"),
        pytest.param("X:Y", "v", id="colon-in-name"),
        pytest.param("", "v", id="empty-name"),
        pytest.param("\xdcber", "v", id="non-ascii-name"),
        pytest.param("X\r\nY", "v", id="crlf-in-name"),
        pytest.param("X", "a\r\nContent-Length: 0", id="crlf-in-value"),
        pytest.param("X", "a\nb", id="lf-in-value"),
        pytest.param("X", "a\x00b", id="nul-in-value"),
        pytest.param("X", "a\x7fb", id="del-in-value"),
        pytest.param("X", "\u20ac", id="beyond-latin-1"),
        pytest.param("X", "\udfff", id="lone-surrogate"),
        pytest.param("X\n", "v", id="trailing-lf-in-name"),
        pytest.param("X", "v\n", id="trailing-lf-in-value"),
        pytest.param("Upstash-Forward-Content-Length\n", "1", id="trailing-lf-framing"),
    ],
)
def test_header_is_refused_with_a_400(name: str, value: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        check_header(name, value)

    assert refused.value.status == 400
    assert refused.value.message.startswith("invalid header")
