"""The destination of the fault suite: answers as scripted and keeps a ledger of every delivery.

A small asyncio HTTP/1.1 server in its own process (``python -m tests.chaos.receiver``),
so the orchestrator's publish threads never slow it down. It prints ``PORT <n>`` once
it listens. Every request that carries ``Upstash-Message-Id`` is written to the
ledger when it arrives (before the answer), so an attempt whose answer is lost
still counts as a delivery.

What it answers depends on the first path segment:

- ``/ok/...``, ``/probe/...``: 200;
- ``/slow/<seconds>/...``: 200 after sleeping that long (past the message's timeout);
- ``/fail/...``: 500;
- ``/limit/...``: 429 with ``Retry-After: 1`` to the first attempt of each message id,
  200 afterwards.

Control paths (not recorded): ``GET /__ledger`` -> ``{"ids": {id: [path, [arrival, ...]]},
"anonymous": n}`` (arrival times are ``time.time()`` here), ``POST /__reset``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

MAX_HEAD = 64 * 1024
REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class Ledger:
    ids: dict[str, tuple[str, list[float]]] = field(default_factory=dict)
    anonymous: int = 0

    def record(self, message_id: str | None, path: str, now: float) -> int:
        """Record one arrival; return how many times this id has arrived so far."""
        if not message_id:
            self.anonymous += 1
            return 1
        entry = self.ids.setdefault(message_id, (path, []))
        entry[1].append(now)
        return len(entry[1])

    def reset(self) -> None:
        self.ids.clear()
        self.anonymous = 0


LEDGER = Ledger()


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    extra = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    extra.update(headers or {})
    lines += [f"{name}: {value}" for name, value in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _control(method: str, path: str) -> bytes:
    if path.startswith("/__ledger"):
        data = {"ids": LEDGER.ids, "anonymous": LEDGER.anonymous}
        return _response(200, json.dumps(data).encode())
    if path.startswith("/__reset") and method == "POST":
        LEDGER.reset()
        return _response(200, b'{"reset":true}')
    return _response(404, b'{"error":"unknown control path"}')


async def _answer(path: str, attempt: int) -> bytes:
    kind = path.split("/", 2)[1] if path.count("/") >= 1 else ""
    if kind == "slow":
        with contextlib.suppress(ValueError, IndexError):
            await asyncio.sleep(float(path.split("/")[2]))
        return _response(200, b'{"slow":true}')
    if kind == "fail":
        return _response(500, b'{"error":"scripted failure"}')
    if kind == "limit" and attempt == 1:
        return _response(429, b'{"error":"slow down"}', {"Retry-After": "1"})
    return _response(200, b'{"ok":true}')


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return
            await reader.readexactly(size + 2)
    length = int(headers.get("content-length", "0") or "0")
    if length:
        await reader.readexactly(length)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            request_line = lines[0].split(" ")
            if len(request_line) < 3:
                return
            method, path, version = request_line[0], request_line[1], request_line[-1]
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            await _read_body(reader, headers)
            if path.startswith("/__"):
                reply = _control(method, path)
            else:
                attempt = LEDGER.record(headers.get("upstash-message-id"), path, time.time())
                reply = await _answer(path, attempt)
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            writer.write(reply)
            await writer.drain()
            if close:
                return
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(
        handle, "127.0.0.1", port, backlog=1024, reuse_address=True, limit=MAX_HEAD
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"PORT {server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    async with server:
        await stop.wait()


class ReceiverClient:
    """The orchestrator's view of a running receiver."""

    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _call(self, method: str, path: str) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=b"" if method == "POST" else None)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def ledger(self) -> dict[str, tuple[str, list[float]]]:
        """Message id -> (path of its first arrival, arrival times)."""
        data = self._call("GET", "/__ledger")
        return {key: (value[0], value[1]) for key, value in data["ids"].items()}

    def reset(self) -> None:
        self._call("POST", "/__reset")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
