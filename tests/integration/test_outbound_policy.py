"""The destination policy as an attacker meets it: every spelling, every path in, the real worker.

A loopback receiver stands in for an internal service. Spellings that two URL
parsers read differently are refused at publish; the production default policy
(DEBUG off, no allow-lists) makes a real worker fail loopback, mapped, named and
link-local destinations without a byte reaching the receiver; and a name that
resolves differently the second time is connected to at the address checked.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from broker import http as outbound
from broker.models import LogEntry, Message
from tests.conftest import Process, Receiver, Services, _subprocess_env, wait_until
from tests.helpers import api

pytestmark = pytest.mark.django_db(transaction=True)


def _ambiguous_spellings(port: int) -> list[str]:
    return [
        # urlsplit reads host 203.0.113.5; urllib3 connects to 127.0.0.1 and sends POST /x.
        f"http://127.0.0.1:{port}\\@203.0.113.5/../x",
        f"http://127.0.0.1:{port}\\x",
        f"http://user:pass@127.0.0.1:{port}/x",
        f"http://203.0.113.5@127.0.0.1:{port}/x",
        f"http://127.1:{port}/x",
        f"http://2130706433:{port}/x",
        f"http://0x7f.0.0.1:{port}/x",
        f"http://0177.0.0.1:{port}/x",
        f"http://127.0.0.1%2e:{port}/x",
        f"http://127.0.0.1 :{port}/x",
        f"http://127.0.0.1\t:{port}/x",
    ]


def test_ambiguous_destination_spellings_are_refused_on_every_path_in(
    live: str, receiver: Receiver
) -> None:
    for url in _ambiguous_spellings(receiver.port):
        response = api(live, "POST", "/v2/batch", json=[{"destination": url, "body": "x"}])
        assert response.status_code == 200, url
        assert "destination url" in response.json()[0]["error"], url
        for header in ("Upstash-Callback", "Upstash-Failure-Callback"):
            response = api(
                live, "POST", f"/v2/publish/{receiver.url('/ok')}", headers={header: url}
            )
            assert response.status_code == 400, (header, url)
            assert header in response.json()["error"]
        response = api(
            live, "POST", "/v2/topics/internal/endpoints", json={"endpoints": [{"url": url}]}
        )
        assert response.status_code == 400, url
        assert "endpoints[0].url" in response.json()["error"]
    assert Message.objects.count() == 0
    assert api(live, "GET", "/v2/topics/internal").status_code == 404
    assert receiver.received() == []


def test_ambiguous_destination_in_the_publish_path_is_refused(
    live: str, receiver: Receiver
) -> None:
    response = api(live, "POST", f"/v2/publish/http://a@127.0.0.1:{receiver.port}/x")
    assert response.status_code == 400
    assert "user information" in response.json()["error"]
    assert Message.objects.count() == 0


@pytest.fixture
def production_policy_worker(services: Services) -> Any:
    """The session's worker swapped for one with the production default policy."""
    services.worker.stop()
    env = _subprocess_env()
    env.update(QSTASH_ALLOWED_HOSTS="", QSTASH_ALLOWED_NETWORKS="", DEBUG="0")
    env.pop("QSTASH_DENIED_NETWORKS")
    bin_dir = Path(sys.executable).parent
    worker = Process(
        "worker-production-policy",
        [str(bin_dir / "celery"), "-A", "qstash_site", "worker", "--concurrency", "1"]
        + ["--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        env,
    )
    worker.start()
    yield worker
    worker.stop()
    services.worker.start()


def test_production_default_policy_fails_internal_destinations_in_a_real_worker(
    live: str, receiver: Receiver, production_policy_worker: Process
) -> None:
    port = receiver.port
    destinations = [
        f"http://127.0.0.1:{port}/loopback",
        f"http://[::ffff:127.0.0.1]:{port}/mapped",
        f"http://localhost:{port}/named",
        "http://169.254.169.254/latest/meta-data/",
        f"http://[::1]:{port}/v6",
    ]
    ids = []
    for url in destinations:
        response = api(live, "POST", f"/v2/publish/{url}", headers={"Upstash-Retries": "0"})
        assert response.status_code == 200, response.text
        ids.append(response.json()["messageId"])

    def all_failed() -> bool:
        return Message.objects.filter(message_id__in=ids, state="FAILED").count() == len(ids)

    wait_until(all_failed, timeout=30, what="every internal destination to fail")
    for message in Message.objects.filter(message_id__in=ids):
        assert message.last_error.endswith("is denied by the destination policy"), message.url
    # A name is refused by name: the error does not reveal what it resolved to.
    named = Message.objects.get(message_id=ids[2])
    assert named.last_error == "destination host localhost is denied by the destination policy"
    errors = LogEntry.objects.filter(message__message_id__in=ids, state="ERROR")
    assert errors.count() == len(ids)
    assert all("denied by the destination policy" in e.error for e in errors)
    assert receiver.received() == []


def _policy(*, denied: list[str]) -> None:
    """Any host name, no allowed networks, these denied ones (the test settings are
    restored after each test by the autouse fixture in conftest)."""
    settings.QSTASH_ALLOWED_HOSTS = []
    settings.QSTASH_ALLOWED_NETWORKS = []
    settings.QSTASH_DENIED_NETWORKS = denied
    outbound.reset()


class _RebindingDns:
    """A resolver whose first answer for ``name`` differs from every later one."""

    def __init__(self, name: str, first: str, later: str) -> None:
        self.name, self.first, self.later = name, first, later
        self.calls = 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != self.name:
            return self.real(host, port, *args, **kwargs)
        self.calls += 1
        address = self.first if self.calls == 1 else self.later
        return self.real(address, port, *args, **kwargs)


def test_a_name_is_resolved_once_and_connected_to_at_the_checked_address(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 127.0.0.1 (the receiver) is denied; 127.0.0.3 is allowed and nothing listens there.
    _policy(denied=["127.0.0.1/32", "::/0"])
    dns = _RebindingDns("rebind.test", first="127.0.0.3", later="127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    result = outbound.send(
        method="POST",
        url=f"http://rebind.test:{receiver.port}/internal",
        headers=[],
        body=b"x",
        timeout=5,
    )
    assert result.status is None
    assert result.error.startswith("connection failed"), result.error
    assert dns.calls == 1
    assert receiver.received() == []


def test_a_denied_answer_refuses_the_name_and_names_no_address(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _policy(denied=settings.DEFAULT_DENIED_NETWORKS.split(","))
    dns = _RebindingDns("internal.test", first="127.0.0.1", later="127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    result = outbound.send(
        method="GET",
        url=f"http://internal.test:{receiver.port}/",
        headers=[],
        body=b"",
        timeout=5,
    )
    assert result.error == "destination host internal.test is denied by the destination policy"
    assert receiver.received() == []


def test_slow_name_resolution_counts_against_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    _policy(denied=list(settings.QSTASH_DENIED_NETWORKS))
    real = socket.getaddrinfo

    def slow(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow-dns.test":
            time.sleep(3)
            raise socket.gaierror("no such name")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    result = outbound.send(
        method="GET", url="http://slow-dns.test/", headers=[], body=b"", timeout=1
    )
    # Waited out, the lookup would have ended in "could not resolve host".
    assert result.status is None
    assert result.error.startswith("timeout"), result.error
