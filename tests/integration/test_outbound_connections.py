"""Kept-alive connections: reused while they hold, never trusted once the destination
closed them or sent bytes nobody asked for (those would be read as the next answer).

A raw-socket server on loopback scripts each connection's answers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from broker import http as outbound

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class ScriptedServer:
    """Answers each request of a connection with the next bytes of ``replies``;
    closes a connection after ``per_connection`` requests (without saying so)."""

    def __init__(self, replies: list[bytes], per_connection: int) -> None:
        self.replies, self.per_connection = replies, per_connection
        self.connections = 0
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                for _ in range(self.per_connection):
                    if not conn.recv(65536):
                        break
                    conn.sendall(self.replies[self.requests % len(self.replies)])
                    self.requests += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server_factory() -> Iterator[list[ScriptedServer]]:
    servers: list[ScriptedServer] = []
    yield servers
    for server in servers:
        server.close()


def _send_twice(port: int) -> list[outbound.HttpResult]:
    """Two requests on one event loop (one pool), the second after the first's connection
    had time to be closed by the destination."""

    async def twice() -> list[outbound.HttpResult]:
        results = []
        for _ in range(2):
            results.append(
                await outbound.send_async(
                    method="POST",
                    url=f"http://127.0.0.1:{port}/x",
                    headers=[],
                    body=b"b",
                    timeout=5,
                )
            )
            await asyncio.sleep(0.2)
        return results

    return asyncio.run(twice())


def test_a_kept_alive_connection_carries_the_next_request(
    server_factory: list[ScriptedServer],
) -> None:
    server = ScriptedServer([OK], per_connection=2)
    server_factory.append(server)
    results = _send_twice(server.port)
    assert [(r.status, r.body, r.error) for r in results] == [(200, b"ok", "")] * 2
    assert (server.connections, server.requests) == (1, 2)


def test_a_connection_the_destination_closed_is_not_reused(
    server_factory: list[ScriptedServer],
) -> None:
    server = ScriptedServer([OK], per_connection=1)
    server_factory.append(server)
    results = _send_twice(server.port)
    assert [(r.status, r.error) for r in results] == [(200, "")] * 2
    assert (server.connections, server.requests) == (2, 2)


def test_bytes_nobody_asked_for_are_never_read_as_the_next_answer(
    server_factory: list[ScriptedServer],
) -> None:
    # The first answer is followed by a stray second one on the same connection.
    stray = OK + b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
    server = ScriptedServer([stray, OK], per_connection=2)
    server_factory.append(server)
    results = _send_twice(server.port)
    assert [r.status for r in results] == [200, 200]
    assert server.connections == 2
