"""Settings, all from the environment, with defaults that serve a laptop.

With no environment at all the project runs on an embedded store (a SQLite file
under ``var/``) and a Celery transport that needs no server (kombu's filesystem
transport). Production sets ``DATABASE_URL`` (PostgreSQL) and ``CELERY_BROKER_URL``
(Redis or RabbitMQ). Unsafe production values are refused by the system checks in
``broker/checks.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("QSTASH_VAR_DIR", BASE_DIR / "var"))


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value is None or value == "" else int(value)


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# The value shipped here is public; checks.py refuses it unless DEBUG is on.
INSECURE_SECRET_KEY = "django-insecure-qstash-selfhosted-development-only"  # noqa: S105
SECRET_KEY = os.environ.get("SECRET_KEY", INSECURE_SECRET_KEY)
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")

# --- HTTPS and cookies ---------------------------------------------------------
# Secure by default in production, off with DEBUG so `make run` works over http.
# A console reached over plain http needs both cookie settings off (browsers
# drop Secure cookies set over http).
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
# SecurityMiddleware sends HSTS only on https responses and browsers ignore it
# over http, so the default cannot lock out a plain-http deployment or an SDK.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# The header a TLS-terminating proxy sets to "https", e.g. X-Forwarded-Proto.
# Set it only behind a proxy that overwrites it: a client could send it too.
_proxy_ssl_header = os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
# Full origins (https://qstash.example.com) allowed to POST to the console.
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
SILENCED_SYSTEM_CHECKS = []
if not SECURE_SSL_REDIRECT:
    # W008 (no http->https redirect): SDK clients on internal plain-http networks
    # must reach the API as they are; a redirect would break them. Redirect at the
    # proxy, or set SECURE_SSL_REDIRECT=1 when every client speaks https.
    SILENCED_SYSTEM_CHECKS.append("security.W008")
if not SECURE_HSTS_INCLUDE_SUBDOMAINS:
    # W005: other hosts under this domain may still serve http; the operator opts in.
    SILENCED_SYSTEM_CHECKS.append("security.W005")
if not SECURE_HSTS_PRELOAD:
    # W021: preload lists are hard to leave and bind the whole domain; opt in.
    SILENCED_SYSTEM_CHECKS.append("security.W021")

INSTALLED_APPS = [
    "broker.console.apps.ConsoleAdminConfig",  # django.contrib.admin, dashboard as index
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "broker",
    "groups",
]

# The console's stack. The API (/v2/ and /healthz) runs the same list less
# CONSOLE_ONLY_MIDDLEWARE: qstash_site/stacks.py says why and how.
MIDDLEWARE = [
    "qstash_site.stacks.ApiStackMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "broker.api.edge.ApiEdgeMiddleware",
    "broker.api.outage.DatabaseOutageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# A token authenticates each API request: no cookie, session, CSRF token, page or
# static file to serve there.
CONSOLE_ONLY_MIDDLEWARE = [
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "qstash_site.urls"
# Destinations arrive raw in the path (/v2/publish/https://x?y): never redirect them.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "qstash_site.wsgi.application"

DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'qstash.sqlite3'}")
# Health checks: a kept connection that died with a PostgreSQL restart is replaced
# before its first query, instead of failing one request in every process.
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so two processes
    # cannot both claim the same due rows on the embedded store.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with a health check that makes no round trip (its module says why).
    DATABASES["default"]["ENGINE"] = "qstash_site.db_backend"
    # The publish statement is prepared on its second run in each connection
    # (broker/services/message_insert.py). "off" for a pooler that cannot keep
    # prepared statements (PgBouncer before 1.21 in transaction mode).
    _prepare = os.environ.get("DATABASE_PREPARE_THRESHOLD", "1").strip().lower()
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        None if _prepare in ("off", "none") else int(_prepare)
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
# The console's CSS and JS are served by the web process itself (WhiteNoise), straight
# from the installed apps: nothing to collect first (no STATIC_ROOT), in `make run` or
# in production.
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["broker.api.auth.QStashTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["broker.api.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "broker.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}

# --- Celery: broker messages are only hints ("these ids are due") -------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _celery_dir = VAR_DIR / "celery"
    for _sub in ("queue", "processed"):
        (_celery_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        "store_processed": False,
    }
    # kombu's own filesystem channel lets a consumer read a file still being written.
    CELERY_BROKER_TRANSPORT = "qstash_site.atomic_filesystem:Transport"
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A hint needs no acknowledgement: one lost costs a sweep, its row is still due.
    # kombu's ack emulation (5.7.0, the latest) also kills the worker when Redis
    # restarts while hints are unacked: closing the dead connection restores them
    # through a transport already detached ("'NoneType' object has no attribute
    # 'hostname'"). Without it there is nothing to restore.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"ack_emulation": False}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("QSTASH_CELERY_QUEUE", "qstash")
# Celery's Django fix-up closes the database connection around every task; a
# new PostgreSQL connection costs ~10 ms, more than delivering the message.
# Keep connections and let Django's own age/health rule retire them instead
# (qstash_site/celery.py runs close_old_connections before each task).
CELERY_DB_REUSE_MAX = 1_000_000

# --- The product ---------------------------------------------------------------
# Credentials: from the environment, or generated once and stored in the database.
QSTASH_TOKEN = os.environ.get("QSTASH_TOKEN", "")
QSTASH_READONLY_TOKEN = os.environ.get("QSTASH_READONLY_TOKEN", "")
QSTASH_CURRENT_SIGNING_KEY = os.environ.get("QSTASH_CURRENT_SIGNING_KEY", "")
QSTASH_NEXT_SIGNING_KEY = os.environ.get("QSTASH_NEXT_SIGNING_KEY", "")

QSTASH_MAX_BODY_BYTES = envint("QSTASH_MAX_BODY_BYTES", 1024 * 1024)
QSTASH_MAX_RETRIES = envint("QSTASH_MAX_RETRIES", 20)
QSTASH_DEFAULT_RETRIES = envint("QSTASH_DEFAULT_RETRIES", 3)
QSTASH_MAX_DELAY_SECONDS = envint("QSTASH_MAX_DELAY_SECONDS", 365 * 86400)
QSTASH_MAX_TIMEOUT_SECONDS = envint("QSTASH_MAX_TIMEOUT_SECONDS", 900)
QSTASH_DEFAULT_TIMEOUT_SECONDS = envint("QSTASH_DEFAULT_TIMEOUT_SECONDS", 30)
QSTASH_DEDUP_WINDOW_SECONDS = envint("QSTASH_DEDUP_WINDOW_SECONDS", 600)
QSTASH_RESPONSE_BODY_CAP = envint("QSTASH_RESPONSE_BODY_CAP", 64 * 1024)

# Delivery engine (broker/delivery_engine.py), per worker process: messages held at
# once (claimed and not yet recorded; one sending thread each), rows claimed per
# statement, and the lease a claim holds between renewals (renewed every third of it,
# so a dead worker's messages are claimable again within one lease).
QSTASH_DELIVERY_CONCURRENCY = envint("QSTASH_DELIVERY_CONCURRENCY", 100)
QSTASH_DELIVERY_BATCH = envint("QSTASH_DELIVERY_BATCH", 100)
QSTASH_LEASE_SECONDS = envint("QSTASH_LEASE_SECONDS", 6)
# The most attempts in flight across all workers (GET /v2/globalParallelism); 0: only
# the engines' own slots bound it.
QSTASH_GLOBAL_PARALLELISM = envint("QSTASH_GLOBAL_PARALLELISM", 0)
# Schedules: triggers are made into messages (due at their minute) this far ahead, so
# a hundred thousand schedules of one minute are all on time.
QSTASH_SCHEDULE_LOOKAHEAD_SECONDS = envint("QSTASH_SCHEDULE_LOOKAHEAD_SECONDS", 120)
# GET /v2/flowControl lists at most this many keys (search narrows it).
QSTASH_MAX_FLOW_KEYS_LISTED = envint("QSTASH_MAX_FLOW_KEYS_LISTED", 1000)
# The largest parallelism a queue may be given (POST /v2/queues answers 412 above it).
QSTASH_MAX_QUEUE_PARALLELISM = envint("QSTASH_MAX_QUEUE_PARALLELISM", 1000)
# A warm shutdown waits this long for held deliveries to finish and be recorded.
QSTASH_SHUTDOWN_DRAIN_SECONDS = envint("QSTASH_SHUTDOWN_DRAIN_SECONDS", 30)

# The store at scale (README "Retention and large stores"). Retention is applied by
# the clock's prune thread, in batches of QSTASH_PRUNE_BATCH rows that each commit,
# with a pause of QSTASH_PRUNE_PAUSE_MS between them, every QSTASH_PRUNE_EVERY_SECONDS.
QSTASH_LOG_RETENTION_DAYS = envint("QSTASH_LOG_RETENTION_DAYS", 14)
QSTASH_DLQ_RETENTION_DAYS = envint("QSTASH_DLQ_RETENTION_DAYS", 7)
QSTASH_DELIVERED_RETENTION_HOURS = envint("QSTASH_DELIVERED_RETENTION_HOURS", 24)
QSTASH_PRUNE_BATCH = envint("QSTASH_PRUNE_BATCH", 1000)
QSTASH_PRUNE_PAUSE_MS = envint("QSTASH_PRUNE_PAUSE_MS", 20)
QSTASH_PRUNE_EVERY_SECONDS = envint("QSTASH_PRUNE_EVERY_SECONDS", 60)
# The longest an API read (logs, DLQ, bulk-cancel batch) may run before it is stopped
# and answered 503 naming its filters (broker/statement_timeout.py); 0 for none.
QSTASH_API_STATEMENT_TIMEOUT_MS = envint("QSTASH_API_STATEMENT_TIMEOUT_MS", 5000)

# Destination policy, applied where each outbound socket is opened (broker/http.py,
# broker/destination_policy.py). Hosts: exact names or "*.suffix"; when set, any
# other host is refused before DNS. Denied networks: CIDRs no address may be in.
# Allowed networks: exceptions carved out of the denied ones (they refuse nothing).
QSTASH_ALLOWED_HOSTS = envlist("QSTASH_ALLOWED_HOSTS")
QSTASH_ALLOWED_NETWORKS = envlist("QSTASH_ALLOWED_NETWORKS")
# Every range that is not the public internet (IANA special-purpose registries):
# this host, private, shared (CGNAT), loopback, link-local, protocol assignments,
# documentation, 6to4 relay, benchmarking, multicast, reserved and broadcast;
# IPv6 unspecified/loopback/IPv4-compatible, NAT64, discard, Teredo and protocol
# assignments, documentation, 6to4, unique-local, link-local, site-local and
# multicast. IPv4-mapped and 6to4 IPv6 addresses are also judged as the IPv4
# address they carry.
DEFAULT_DENIED_NETWORKS = (
    "0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,127.0.0.0/8,169.254.0.0/16,172.16.0.0/12,"
    "192.0.0.0/24,192.0.2.0/24,192.88.99.0/24,192.168.0.0/16,198.18.0.0/15,"
    "198.51.100.0/24,203.0.113.0/24,224.0.0.0/4,240.0.0.0/4,"
    "::/96,64:ff9b::/96,64:ff9b:1::/48,100::/64,2001::/23,2001:db8::/32,2002::/16,"
    "fc00::/7,fe80::/10,fec0::/10,ff00::/8"
)
# A laptop delivers to localhost; a production server must not reach its own network.
QSTASH_DENIED_NETWORKS = envlist("QSTASH_DENIED_NETWORKS", "" if DEBUG else DEFAULT_DENIED_NETWORKS)

# --- Caps on what one request may ask for (a 413 or 400 names the limit) ---------
# Any API request body; a message body is capped by QSTASH_MAX_BODY_BYTES.
QSTASH_MAX_REQUEST_BYTES = envint("QSTASH_MAX_REQUEST_BYTES", 16 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = QSTASH_MAX_REQUEST_BYTES
QSTASH_MAX_BATCH_ITEMS = envint("QSTASH_MAX_BATCH_ITEMS", 1000)
# Messages one request may create, a URL group's fan-out counted.
QSTASH_MAX_MESSAGES_PER_REQUEST = envint("QSTASH_MAX_MESSAGES_PER_REQUEST", 10_000)
# Publishes of one web process's threads (gunicorn gthread) committed together by one
# writer thread (broker/services/group_commit.py). Off: measured no faster here (README).
QSTASH_PUBLISH_GROUP_COMMIT = envbool("QSTASH_PUBLISH_GROUP_COMMIT", False)
QSTASH_MAX_GROUP_ENDPOINTS = envint("QSTASH_MAX_GROUP_ENDPOINTS", 1000)
QSTASH_MAX_LABELS = envint("QSTASH_MAX_LABELS", 50)
# Headers of one publish (or batch item), and their names and values together.
QSTASH_MAX_HEADERS = envint("QSTASH_MAX_HEADERS", 100)
QSTASH_MAX_HEADER_BYTES = envint("QSTASH_MAX_HEADER_BYTES", 64 * 1024)
# Nesting of any JSON request body.
QSTASH_MAX_JSON_DEPTH = envint("QSTASH_MAX_JSON_DEPTH", 32)
