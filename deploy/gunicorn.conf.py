"""Gunicorn settings for the web process (REST API, console, health, metrics).

Every knob comes from the environment so the same file serves systemd, Docker and
any Procfile runner. Run from the project root:

    gunicorn qstash_site.wsgi -c deploy/gunicorn.conf.py
"""

from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SystemExit(f"{name} must be a boolean (1/0), got {raw!r}")


def _cpu_count() -> int:
    # sched_getaffinity honours taskset/cpusets; os.cpu_count() reports the whole host.
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# PORT is what PaaS runners and the Dockerfile set; BIND_HOST lets a machine that sits
# behind a local reverse proxy listen on 127.0.0.1 only.
bind = [f"{os.environ.get('BIND_HOST', '0.0.0.0')}:{_env_int('PORT', 8080)}"]  # noqa: S104

# The classic 2*cores+1, capped: every worker thread holds its own PostgreSQL
# connection, and past a dozen processes per machine the database, not gunicorn, is
# the bottleneck.
# Scale out with more machines behind the load balancer instead.
workers = _env_int("WEB_CONCURRENCY", min(2 * _cpu_count() + 1, 12))

# sync, measured against gthread on the same load (make bench, 2 cores, issue 10):
# publish 984/s with sync and 935/s with gthread and 4 threads, within the noise: a
# publish waits on PostgreSQL, not on the connection. Keep-alive lifts only the
# baseline view (3,494/s to 4,844/s), and the idle answer time was worse (p50 2.5 ms
# against 2.1 ms). A kept-alive connection also stays with the worker that accepted it,
# so a client or load balancer holding a few connections loads only some workers, and
# a worker holding a connection dropped by a PostgreSQL restart may not be asked again
# (tests/integration/test_db_outage.py needs every worker to answer). With
# GUNICORN_WORKER_CLASS=gthread each thread holds its own PostgreSQL connection; add
# QSTASH_PUBLISH_GROUP_COMMIT=1 to have one writer per process commit the threads'
# publishes together (broker/services/group_commit.py): it doubled gthread's publish
# rate in the one pair of runs measured so far, on a loaded machine (README), not yet
# enough to change this default.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync").strip() or "sync"
# With more than one thread gunicorn swaps sync for gthread: threads only with gthread.
threads = _env_int("GUNICORN_THREADS", 4) if worker_class == "gthread" else 1

# A publish never takes long; a request still running after this is stuck (e.g. a
# lock wait) and the worker is better recycled than left holding a connection.
timeout = _env_int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)

# Seconds an idle kept-alive connection stays open (the sync worker closes every one
# after its response and ignores this). Keep it below the load balancer's idle
# timeout so the balancer never reuses a socket gunicorn has just closed.
keepalive = 5

# Import Django in each worker after fork: no database or broker connection, thread
# or socket is ever shared between processes, and a HUP reload picks up new code.
preload_app = False

# Recycle each worker after a few thousand requests to bound slow leaks; the jitter
# keeps all workers from restarting at the same moment.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 200)

# The load balancer usually logs requests already, and at thousands of publishes a
# second the access log costs real CPU. GUNICORN_ACCESS_LOG=1 turns it on (stdout).
accesslog = "-" if _env_bool("GUNICORN_ACCESS_LOG") else None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Worker heartbeats touch a file every second; on Docker's overlayfs /tmp that can
# stall a worker into a timeout, so prefer the in-memory /dev/shm when writable.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108

# Gunicorn >= 25 opens a control socket under $HOME by default. Under systemd
# (ProtectSystem=strict) and in the image the home directory is read-only, and two
# gunicorns of one user would fight over the path. Opt in with a writable path.
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "").strip()
if _control_socket:
    control_socket = _control_socket
else:
    control_socket_disable = True

proc_name = "qstash-web"
