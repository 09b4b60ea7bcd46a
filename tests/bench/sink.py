"""The destination every benchmark delivers to: counts requests, answers 200, keeps alive.

A small asyncio HTTP/1.1 server in its own process (``python -m tests.bench.sink``);
it prints ``PORT <n>`` once it listens. It is used unchanged for the product and for
the baselines, so its own cost cancels out of the ratios. Being one event loop, it
holds any number of unanswered requests without blocking the others.

Paths with a behaviour (every other path answers 200 at once):

- ``/fail1/...``: the first request for a path answers 500, later ones 200;
- ``/slow/...``: answered 200 after ``SLOW_SECONDS`` (30 s), or at once on
  ``POST /__release`` (or when the sink stops), so a benchmark never waits for them.
- ``/hold/...``: answered 200 after ``HOLD_SECONDS`` (0.2 s); the sink counts how
  many are open at once (``hold_max`` in the stats): a parallelism limit, seen from
  the destination.

Control paths (not counted): ``GET /__stats`` -> ``{"count", "first", "last", "slow",
"hold_max"}`` (arrival times are ``time.time()`` in this process; ``slow`` is how many
``/slow/`` requests are held unanswered; ``hold_max`` the most ``/hold/`` requests open
at once), ``GET /__times`` -> first arrival time of every
request whose path starts with ``/lat/``, ``GET /__hits?prefix=/x/`` -> every
arrival time of every tracked path under that prefix (``TRACKED``),
``POST /__release``, ``POST /__reset`` (held ``/slow/`` requests stay held).
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
from urllib.parse import parse_qs, quote, urlsplit

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
FAIL = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail"
FAIL_CLOSE = FAIL.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
MAX_HEAD = 64 * 1024
SLOW_SECONDS = 30.0
HOLD_SECONDS = 0.2
# Paths whose every arrival time is kept (the others are only counted).
TRACKED = ("/lat/", "/delay/", "/fail1/", "/slow/", "/fast/", "/load/", "/rate/", "/hold/")


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.hits: dict[str, list[float]] = {}
        self.hold_open = 0
        self.hold_max = 0

    def hit(self, path: str, now: float) -> int:
        """Count one arrival; return how many arrivals this path had before (tracked ones)."""
        self.count += 1
        if not self.first:
            self.first = now
        self.last = now
        if path.startswith(TRACKED):
            seen = self.hits.setdefault(path, [])
            seen.append(now)
            return len(seen) - 1
        return 0


STATS = Stats()
HELD: set[SinkProtocol] = set()  # connections whose /slow/ request is not answered yet


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
        # A held /slow/ request: its answer, and the timer that sends it.
        self.pending: tuple[bytes, bool] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.holding = False  # a /hold/ request is open on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        HELD.discard(self)
        self.pending = None
        if self.holding:
            self.holding = False
            STATS.hold_open -= 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._process()

    def _process(self) -> None:
        assert self.transport is not None
        # Requests pipelined behind a held one wait for its answer (HTTP/1.1 order).
        while self.pending is None:
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
                before = STATS.hit(path, now)
                if path.startswith("/slow/"):
                    self.pending = (OK_CLOSE if close else OK, close)
                    HELD.add(self)
                    self.timer = asyncio.get_running_loop().call_later(SLOW_SECONDS, self.release)
                    return
                if path.startswith("/hold/"):
                    self.pending = (OK_CLOSE if close else OK, close)
                    self.holding = True
                    STATS.hold_open += 1
                    STATS.hold_max = max(STATS.hold_max, STATS.hold_open)
                    self.timer = asyncio.get_running_loop().call_later(
                        HOLD_SECONDS, self.release_hold
                    )
                    return
                if path.startswith("/fail1/") and before == 0:
                    reply = FAIL_CLOSE if close else FAIL
                else:
                    reply = OK_CLOSE if close else OK
            self.transport.write(reply)
            if close:
                self.transport.close()
                return

    def release_hold(self) -> None:
        if self.holding:
            self.holding = False
            STATS.hold_open -= 1
        self.release()

    def release(self) -> None:
        """Answer the held /slow/ request now, then carry on with what followed it."""
        HELD.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending is None or self.transport is None or self.transport.is_closing():
            self.pending = None
            return
        reply, close = self.pending
        self.pending = None
        self.transport.write(reply)
        if close:
            self.transport.close()
            return
        self._process()

    @staticmethod
    def _control(path: str) -> bytes:
        if path.startswith("/__stats"):
            return _json(
                {
                    "count": STATS.count,
                    "first": STATS.first,
                    "last": STATS.last,
                    "slow": len(HELD),
                    "hold_max": STATS.hold_max,
                }
            )
        if path.startswith("/__times"):
            return _json({p: t[0] for p, t in STATS.hits.items() if p.startswith("/lat/")})
        if path.startswith("/__hits"):
            prefix = parse_qs(urlsplit(path).query).get("prefix", ["/"])[0]
            return _json({p: t for p, t in STATS.hits.items() if p.startswith(prefix)})
        if path.startswith("/__release"):
            held = list(HELD)
            for proto in held:
                proto.release()
            return _json({"released": len(held)})
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
        for proto in list(HELD):  # nobody waits 30 s for a sink that is going away
            proto.release()


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
        """First arrival time of each ``/lat/`` path."""
        return self._call("GET", "/__times")

    def hits(self, prefix: str) -> dict[str, list[float]]:
        """Every arrival time of each tracked path under ``prefix``."""
        return self._call("GET", "/__hits?prefix=" + quote(prefix))

    def release(self) -> int:
        """Answer every held ``/slow/`` request now; how many there were."""
        return int(self._call("POST", "/__release")["released"])

    def reset(self) -> None:
        self._call("POST", "/__reset")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
