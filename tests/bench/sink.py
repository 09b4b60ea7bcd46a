"""The destination every benchmark delivers to: counts requests, answers 200, keeps alive.

A small asyncio HTTP/1.1 server in its own process (``python -m tests.bench.sink``);
it prints ``PORT <n>`` once it listens. It is used unchanged for the product and for
the baselines, so its own cost cancels out of the ratios.

Control paths (not counted): ``GET /__stats`` -> ``{"count", "first", "last"}``
(arrival times are ``time.time()`` in this process), ``GET /__times`` -> arrival time
of every request whose path starts with ``/lat/``, ``POST /__reset``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import signal
import sys
import time
from typing import Any

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
MAX_HEAD = 64 * 1024


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.times: dict[str, float] = {}

    def hit(self, path: str, now: float) -> None:
        self.count += 1
        if not self.first:
            self.first = now
        self.last = now
        if path.startswith("/lat/"):
            self.times[path] = now


STATS = Stats()


def _json(data: Any) -> bytes:
    body = json.dumps(data).encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class SinkProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.transport.close()
                return
            head = bytes(self.buf[:end]).lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            del self.buf[:total]
            now = time.time()
            request_line = head.split(b"\r\n", 1)[0].split(b" ")
            path = request_line[1].decode("latin-1") if len(request_line) > 1 else "/"
            close = b"\r\nconnection: close" in head or request_line[-1] == b"http/1.0"
            if path.startswith("/__"):
                reply = self._control(path)
            else:
                STATS.hit(path, now)
                reply = OK_CLOSE if close else OK
            self.transport.write(reply)
            if close:
                self.transport.close()
                return

    @staticmethod
    def _control(path: str) -> bytes:
        if path.startswith("/__stats"):
            return _json({"count": STATS.count, "first": STATS.first, "last": STATS.last})
        if path.startswith("/__times"):
            return _json(STATS.times)
        if path.startswith("/__reset"):
            STATS.reset()
            return _json({"reset": True})
        return _json({"unknown": path})


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        SinkProtocol, "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sock_port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {sock_port}\n")
    sys.stdout.flush()
    async with server:
        await stop.wait()


class SinkClient:
    """The orchestrator's view of a running sink."""

    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _call(self, method: str, path: str) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=b"" if method == "POST" else None)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stats(self) -> dict[str, float]:
        return self._call("GET", "/__stats")

    def times(self) -> dict[str, float]:
        return self._call("GET", "/__times")

    def reset(self) -> None:
        self._call("POST", "/__reset")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
