"""The `make run` server (embedded store, no broker server) and the TypeScript SDK dev mode."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from broker.services.credentials import (
    DEV_CURRENT_SIGNING_KEY,
    DEV_NEXT_SIGNING_KEY,
    DEV_TOKEN,
)
from tests.conftest import ROOT, wait_until

JS_DIR = ROOT / "tests" / "js"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dev_keys_served(port: int) -> bool:
    try:
        answer = httpx.get(
            f"http://127.0.0.1:{port}/v2/keys",
            headers={"Authorization": f"Bearer {DEV_TOKEN}"},
            timeout=2,
        )
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and answer.json() == {
        "current": DEV_CURRENT_SIGNING_KEY,
        "next": DEV_NEXT_SIGNING_KEY,
    }


@pytest.fixture
def dev_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QSTASH_", "DATABASE_URL", "CELERY_BROKER_URL"))
    }
    env.update(
        DEBUG="1",  # as `make run` sets it
        QSTASH_VAR_DIR=str(tmp_path),
        QSTASH_ALLOWED_HOSTS="127.0.0.1,localhost",
        QSTASH_ALLOWED_NETWORKS="127.0.0.0/8,::1/128",
        QSTASH_DENIED_NETWORKS="0.0.0.0/0,::/0",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qstash_dev", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: dev_keys_served(port), timeout=60, what="the dev server")
        yield port, log, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_dev_server_prints_credentials_and_stops_everything_on_ctrl_c(dev_server) -> None:  # type: ignore[no-untyped-def]
    port, log, proc = dev_server
    text = log.read_text()
    assert f"QSTASH_URL=http://127.0.0.1:{port}" in text
    assert f"QSTASH_TOKEN={DEV_TOKEN}" in text
    assert f"QSTASH_CURRENT_SIGNING_KEY={DEV_CURRENT_SIGNING_KEY}" in text
    assert f"QSTASH_NEXT_SIGNING_KEY={DEV_NEXT_SIGNING_KEY}" in text
    assert (Path(log).parent / "qstash.sqlite3").exists()

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    assert proc.wait(30) == 0
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no web, worker or clock left in the group


def test_a_killed_worker_is_restarted_and_delivers_what_is_published_after(  # type: ignore[no-untyped-def]
    dev_server, receiver
) -> None:
    port, log, proc = dev_server
    [worker] = re.findall(r"worker started \(pid (\d+)\)", log.read_text())
    os.kill(int(worker), signal.SIGKILL)

    wait_until(
        lambda: "worker was killed by SIGKILL; restarting" in log.read_text(),
        timeout=10,
        what="the dev server to notice",
    )
    workers = re.findall(r"worker started \(pid (\d+)\)", log.read_text())
    assert len(workers) == 2 and workers[1] != worker
    response = httpx.post(
        f"http://127.0.0.1:{port}/v2/publish/{receiver.url('/after-restart')}",
        headers={"Authorization": f"Bearer {DEV_TOKEN}"},
        content=b"still delivered",
    )
    assert response.status_code == 200, response.text
    [got] = receiver.wait_for(1, "/after-restart", timeout=30)
    assert got.body == b"still delivered"
    assert proc.poll() is None  # the rest kept serving


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_typescript_sdk_dev_mode_publishes_receives_and_verifies(dev_server) -> None:  # type: ignore[no-untyped-def]
    port, _, _ = dev_server
    assert (JS_DIR / "node_modules" / "@upstash" / "qstash").exists(), "run make test (npm ci)"
    # The probe above proved the SDK will find this server and never fetch its own binary.
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSTASH_")}
    env.update(QSTASH_DEV="true", QSTASH_DEV_PORT=str(port), UPSTASH_DISABLE_TELEMETRY="")
    run = subprocess.run(
        ["node", "sdk_dev_mode.mjs"], cwd=JS_DIR, env=env, capture_output=True, timeout=120
    )
    assert run.returncode == 0, run.stderr.decode() + run.stdout.decode()
    out = json.loads(run.stdout.decode().strip().splitlines()[-1])

    assert out["messageId"].startswith("msg_")
    assert out["delivery"]["method"] == "POST"
    assert json.loads(out["delivery"]["body"]) == {"hello": "js"}
    assert out["delivery"]["forwarded"] == "yes"
    assert out["delivery"]["telemetry"] == []
    assert out["delivery"]["messageIdHeader"] == out["messageId"]
    assert out["verified"] is True
    assert out["delayed"]["method"] == "POST"
    assert out["delayed"]["url"].endswith("/later")
    assert out["delayed"]["notBefore"] > time.time() * 1000 + 3000 * 1000
    assert out["cancel"] == {"cancelled": 1}
    assert [e["url"].rsplit("/", 1)[1] for e in out["group"]["endpoints"]] == ["g1", "g2"]
    assert len(out["fanout"]) == 2
    assert out["logStates"][0] == "DELIVERED"
    assert set(out["logStates"]) == {"CREATED", "ACTIVE", "DELIVERED"}
    assert out["logCursor"] is None
    assert out["queuePaused"]["paused"] is True and out["queuePaused"]["lag"] == 3
    assert out["queueOrder"] == ["/q/0", "/q/1", "/q/2"]
    assert out["queueList"] == [["js-queue", True]]
    key = out["flowKey"]
    assert (key["flowControlKey"], key["isPaused"], key["parallelismMax"]) == ("js-key", True, 1)
    assert (key["isPinnedParallelism"], key["rateMax"], key["ratePeriod"]) == (True, 10, 1)
    after = out["flowKeyAfter"]
    assert (after["isPaused"], after["isPinnedParallelism"], after["rateCount"]) == (
        False,
        False,
        0,
    )
    assert set(out["globalParallelism"]) == {"parallelismMax", "parallelismCount"}
    assert out["scheduleId"] == "js-schedule"
    paused = out["schedulePaused"]
    assert (paused["isPaused"], paused["cron"], paused["retries"]) == (
        True,
        "CRON_TZ=Europe/Berlin 0 9 * * 1-5",
        2,
    )
    assert "nextScheduleTime" not in paused and json.loads(paused["body"]) == {"s": 1}
    assert out["scheduleList"] == [["js-schedule", False]]
    assert out["schedulesAfterDelete"] == 0


def test_chunked_publish_is_delivered_byte_exact_and_capped(dev_server, receiver) -> None:  # type: ignore[no-untyped-def]
    port, _, _ = dev_server
    body = bytes(range(256)) * 1200  # 300 KiB, every byte value
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    auth = {"Authorization": f"Bearer {DEV_TOKEN}", "Content-Type": "application/octet-stream"}
    base = f"http://127.0.0.1:{port}/v2/publish/"
    response = httpx.post(base + receiver.url("/chunked"), headers=auth, content=iter(chunks))
    assert response.status_code == 200, response.text
    [got] = receiver.wait_for(1, "/chunked", timeout=30)
    assert got.body == body

    too_big = iter([b"x" * 65536] * 33)  # 2 MiB against the 1 MiB message cap
    response = httpx.post(base + receiver.url("/too-big"), headers=auth, content=too_big)
    assert response.status_code == 413
    assert "maximum" in response.json()["error"]


def test_make_run_serves_the_console_styled(dev_server) -> None:  # type: ignore[no-untyped-def]
    port, _, _ = dev_server
    css = httpx.get(f"http://127.0.0.1:{port}/static/admin/css/base.css", timeout=10)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
