"""HTTP load for the publish benchmark: ``wrk`` when installed, else Python processes.

Both the product and the baseline get exactly the same client, request and body;
only the ratio between them is meant to be read.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LoadResult:
    requests: int
    errors: int  # non-2xx answers and socket errors
    seconds: float
    tool: str

    @property
    def rate(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds > 0 else 0.0


def _lua(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_available() -> bool:
    """wrk when installed, unless BENCH_CLIENT=python asks for the fallback client."""
    if os.environ.get("BENCH_CLIENT", "").lower() == "python":
        return False
    return shutil.which("wrk") is not None


def run_wrk(
    *,
    port: int,
    path: str,
    headers: dict[str, str],
    body: bytes,
    seconds: float,
    connections: int,
    threads: int,
    workdir: Path,
) -> LoadResult:
    script = workdir / "publish.lua"
    lines = ['wrk.method = "POST"', f"wrk.path = {_lua(path)}", f"wrk.body = {_lua(body.decode())}"]
    lines += [f"wrk.headers[{_lua(k)}] = {_lua(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    text = out.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", text)
    if not total:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    elapsed = float(total.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[total.group(3)]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(m.group(1))
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        # A read error is how wrk counts a server closing after its response (sync
        # gunicorn sends Connection: close); it is not a failed request.
        errors += int(m.group(1)) + int(m.group(3)) + int(m.group(4))
    return LoadResult(int(total.group(1)), errors, elapsed, "wrk")


def _one_process(
    port: int,
    path: str,
    headers: dict[str, str],
    body: bytes,
    count: int,
    threads: int,
    start_at: float,
    stop_at: float,
    queue: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    done = [0, 0]  # ok, errors
    lock = threading.Lock()
    share = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def loop(n: int) -> None:
        ok = err = 0
        conn: http.client.HTTPConnection | None = None
        for _ in range(n):
            if time.time() > stop_at:
                break
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if 200 <= resp.status < 300:
                    ok += 1
                else:
                    err += 1
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                err += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with lock:
            done[0] += ok
            done[1] += err

    time.sleep(max(0.0, start_at - time.time()))
    workers = [threading.Thread(target=loop, args=(n,)) for n in share]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    queue.put((done[0], done[1], time.time()))


def run_python(
    *,
    port: int,
    path: str,
    headers: dict[str, str],
    body: bytes,
    total: int,
    seconds: float,
    processes: int,
    threads: int,
) -> LoadResult:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.3
    stop_at = start_at + seconds
    share = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    procs = [
        ctx.Process(
            target=_one_process,
            args=(port, path, headers, body, n, threads, start_at, stop_at, queue),
            daemon=True,
        )
        for n in share
    ]
    for p in procs:
        p.start()
    results = []
    try:
        for _ in procs:
            results.append(queue.get(timeout=seconds + 30))
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    return LoadResult(ok + errors, errors, max(r[2] for r in results) - start_at, "python")
