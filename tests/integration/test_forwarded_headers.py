"""Forwarded headers cannot reframe the request: a raw socket shows the bytes that arrive."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from broker import http as outbound
from broker.models import Message
from tests.conftest import wait_until
from tests.helpers import api, state

pytestmark = pytest.mark.django_db(transaction=True)


class RawSink:
    """A TCP server on 127.0.0.1 that keeps every byte it is sent.

    It answers one 200 per connection (and closes it for reuse), then reads on
    until the client goes quiet, so bytes smuggled behind the first request are
    seen too.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.data = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)
        answered = False
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                with self._lock:
                    self.data += chunk
                if not answered:
                    answered = True
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )

    def bytes(self) -> bytes:
        with self._lock:
            return bytes(self.data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sink() -> Iterator[RawSink]:
    server = RawSink()
    yield server
    server.close()


@pytest.mark.parametrize(
    "name",
    [
        "Upstash-Forward-Content-Length",
        "Upstash-Forward-Transfer-Encoding",
        "Upstash-Forward-Host",
        "Upstash-Forward-Connection",
        "Upstash-Forward-Keep-Alive",
        "Upstash-Forward-TE",
        "Upstash-Forward-Trailer",
        "Upstash-Forward-Upgrade",
        "Upstash-Forward-Proxy-Authorization",
        "upstash-forward-content-length",
        "Upstash-Forward-Upstash-Signature",
        "Upstash-Forward-Upstash-Message-Id",
        "Upstash-Forward-Upstash-Retried",
        "Upstash-Callback-Forward-Content-Length",
        "Upstash-Failure-Callback-Forward-Transfer-Encoding",
    ],
)
def test_forwarding_a_header_the_broker_or_connection_owns_is_a_400_naming_it(
    live: str, sink: RawSink, name: str
) -> None:
    response = api(
        live,
        "POST",
        f"/v2/publish/http://127.0.0.1:{sink.port}/hook",
        headers={name: "1", "Upstash-Callback": f"http://127.0.0.1:{sink.port}/cb"},
        content=b"abc",
    )
    assert response.status_code == 400
    assert name.lower() in response.json()["error"].lower()
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"Upstash-Forward-X": "a\r\nGET /smuggled HTTP/1.1"}, "Upstash-Forward-X"),
        ({"Upstash-Forward-X": "a\nb"}, "Upstash-Forward-X"),
        ({"Upstash-Forward-X\r\nY": "1"}, "header name"),
        ({"Upstash-Forward-X Y": "1"}, "header name"),
        ({"Upstash-Forward-Content-Length": "1"}, "Content-Length"),
        ({"Upstash-Forward-X": "\u20ac"}, "Upstash-Forward-X"),
    ],
)
def test_batch_headers_that_could_split_a_request_are_refused_in_place(
    live: str, sink: RawSink, headers: dict[str, str], field: str
) -> None:
    url = f"http://127.0.0.1:{sink.port}/hook"
    response = api(live, "POST", "/v2/batch", json=[{"destination": url, "headers": headers}])
    assert response.status_code == 200
    assert field.lower() in response.json()[0]["error"].lower()
    assert Message.objects.count() == 0


def test_destination_receives_one_request_with_the_brokers_own_framing(
    live: str, sink: RawSink
) -> None:
    body = b"x" * 10
    response = api(
        live,
        "POST",
        f"/v2/publish/http://127.0.0.1:{sink.port}/hook",
        headers={"Upstash-Forward-X-Custom": "kept", "Content-Type": "text/plain"},
        content=body,
    )
    assert response.status_code == 200, response.text
    message_id = response.json()["messageId"]
    wait_until(lambda: state(message_id) == "DELIVERED", what="delivery")
    raw = wait_until(lambda: (got := sink.bytes()).endswith(body) and got, what="the body")
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook HTTP/1.1"
    names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
    for owned in (b"content-length", b"host", b"upstash-message-id", b"upstash-signature"):
        assert names.count(owned) == 1, owned
    assert f"Host: 127.0.0.1:{sink.port}".encode() in lines
    assert b"Content-Length: 10" in lines
    assert b"X-Custom: kept" in lines
    assert rest == body


def test_a_stored_framing_header_is_never_put_on_the_wire(sink: RawSink) -> None:
    # Rows written before framing headers were refused at publish still cannot reframe.
    result = outbound.send(
        method="POST",
        url=f"http://127.0.0.1:{sink.port}/first",
        headers=[
            ("Content-Length", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Host", "internal.example"),
            ("Connection", "close"),
            ("Proxy-Authorization", "x"),
            ("X-Kept", "yes"),
        ],
        body=b"0123456789GET /smuggled HTTP/1.1\r\n\r\n",
        timeout=5,
    )
    assert result.status == 200, result.error
    raw = wait_until(lambda: (got := sink.bytes()).count(b"\r\n\r\n") == 2 and got, what="body")
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert b"Content-Length: 36" in lines
    assert f"Host: 127.0.0.1:{sink.port}".encode() in lines
    assert b"X-Kept: yes" in lines
    lowered = head.lower()
    assert b"transfer-encoding" not in lowered
    assert b"internal.example" not in lowered
    assert b"proxy-authorization" not in lowered
    # The whole body is one request's body: nothing after it was read as a request.
    assert rest == b"0123456789GET /smuggled HTTP/1.1\r\n\r\n"
    assert raw.count(b"HTTP/1.1\r\n") == 2  # the request line and the body's own text
