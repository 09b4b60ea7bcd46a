"""The publish load of a scenario: single publishes and batches, paced, from threads.

Every message names its destination class in its path (``/ok/<n>``, ``/fail/<n>``,
...), so the ledger and the database can be read against what was published.
Only a 2xx answer with a message id makes a message *accepted*; an error answer or
a connection failure does not (its message may still exist and be delivered, and
is then counted as "delivered, not accepted").
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.receiver import ReceiverClient

# A slow destination sleeps this long; its messages time out after SLOW_TIMEOUT.
SLOW_SLEEP = 3.0
SLOW_TIMEOUT = "1s"
FAULTY_RETRIES = 2
SLOW_RETRIES = 1
RETRY_DELAY_MS = "500"
DELAYS = ("1s", "2s", "3s")
FAULTY_KINDS = ("slow", "refuse", "fail", "limit")


@dataclass(frozen=True)
class Expect:
    """How a message of one destination class must end."""

    state: str
    arrivals: int  # exactly this many deliveries in the ledger
    dlq: bool


EXPECT = {
    "ok": Expect("DELIVERED", 1, False),
    "slow": Expect("FAILED", SLOW_RETRIES + 1, True),
    "refuse": Expect("FAILED", 0, True),
    "fail": Expect("FAILED", FAULTY_RETRIES + 1, True),
    # 429 with Retry-After: 1 to the first attempt, then 200.
    "limit": Expect("DELIVERED", 2, False),
}


@dataclass
class Mix:
    """What a scenario publishes, for how long."""

    seconds: float
    single_rate: float  # single publishes per second, over all single threads
    batch_rate: float  # batch requests per second
    batch_size: int
    delayed_share: float = 0.2
    faulty: int = 0  # faulty-destination messages, spread over the single publishes
    single_threads: int = 2


@dataclass
class Spec:
    kind: str
    url: str
    headers: dict[str, str]


@dataclass
class Accepted:
    kind: str
    seq: int
    at: float  # time.time() of the answer
    delayed: bool


@dataclass
class LoadStats:
    accepted: dict[str, Accepted] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)  # "publish"/"batch" -> count
    accepted_by: Counter[str] = field(default_factory=Counter)  # "publish"/"batch" -> messages
    errors: Counter[str] = field(default_factory=Counter)  # reason -> requests
    delayed: int = 0

    @property
    def failed_requests(self) -> int:
        return sum(self.errors.values())


class Load:
    def __init__(
        self, port: int, token: str, receiver: ReceiverClient, closed_port: int, mix: Mix
    ) -> None:
        self.port, self.token, self.receiver, self.closed_port = port, token, receiver, closed_port
        self.mix = mix
        self.stats = LoadStats()
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._random = random.Random(20261128)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        expected_singles = max(1, int(mix.seconds * mix.single_rate))
        self._faulty_every = max(1, expected_singles // mix.faulty) if mix.faulty else 0
        self._faulty_left = mix.faulty
        self._singles = 0
        self.started = 0.0
        self.end = 0.0  # monotonic; extend_to() moves it later
        self.stopped = 0.0

    # --- what to publish -----------------------------------------------------------

    def _spec(self, *, single: bool) -> Spec:
        with self._lock:
            seq = next(self._seq)
            kind = "ok"
            if single:
                self._singles += 1
                if self._faulty_left and self._singles % self._faulty_every == 0:
                    kind = FAULTY_KINDS[(self.mix.faulty - self._faulty_left) % len(FAULTY_KINDS)]
                    self._faulty_left -= 1
            delayed = kind == "ok" and self._random.random() < self.mix.delayed_share
            delay = self._random.choice(DELAYS) if delayed else ""
            if delayed:
                self.stats.delayed += 1
        headers: dict[str, str] = {"Upstash-Delay": delay} if delay else {}
        if kind == "ok":
            url = self.receiver.url(f"/ok/{seq}")
        elif kind == "slow":
            url = self.receiver.url(f"/slow/{SLOW_SLEEP}/{seq}")
            headers |= {"Upstash-Timeout": SLOW_TIMEOUT, "Upstash-Retries": str(SLOW_RETRIES)}
        elif kind == "refuse":
            url = f"http://127.0.0.1:{self.closed_port}/refuse/{seq}"
        else:
            url = self.receiver.url(f"/{kind}/{seq}")
        if kind != "ok":
            headers.setdefault("Upstash-Retries", str(FAULTY_RETRIES))
            headers["Upstash-Retry-Delay"] = RETRY_DELAY_MS
        return Spec(kind, url, headers)

    # --- sending -------------------------------------------------------------------

    def _post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def call(self, what: str, path: str, headers: dict[str, str], body: bytes) -> object:
        """The decoded 2xx answer, or None (the failure counted by reason)."""
        auth = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        with self._lock:
            self.stats.requests[what] += 1
        try:
            status, data = self._post(path, auth | headers, body)
        except (OSError, http.client.HTTPException) as exc:
            with self._lock:
                self.stats.errors[f"{what}: {exc.__class__.__name__}"] += 1
            return None
        if not 200 <= status < 300:
            with self._lock:
                self.stats.errors[f"{what}: HTTP {status}"] += 1
            return None
        try:
            return json.loads(data)
        except ValueError:
            with self._lock:
                self.stats.errors[f"{what}: unreadable 2xx"] += 1
            return None

    def _accept(self, what: str, message_id: object, spec: Spec, seq: int) -> None:
        if isinstance(message_id, str) and message_id:
            with self._lock:
                self.stats.accepted[message_id] = Accepted(
                    spec.kind, seq, time.time(), "Upstash-Delay" in spec.headers
                )
                self.stats.accepted_by[what] += 1

    def _publish_one(self) -> bool:
        spec = self._spec(single=True)
        seq = int(spec.url.rsplit("/", 1)[1])
        body = json.dumps({"seq": seq}).encode()
        answer = self.call("publish", "/v2/publish/" + spec.url, spec.headers, body)
        if not isinstance(answer, dict):
            return False
        self._accept("publish", answer.get("messageId"), spec, seq)
        return True

    def _publish_batch(self) -> bool:
        specs = [self._spec(single=False) for _ in range(self.mix.batch_size)]
        items = [
            {"destination": s.url, "headers": s.headers, "body": json.dumps({"n": i})}
            for i, s in enumerate(specs)
        ]
        answer = self.call("batch", "/v2/batch", {}, json.dumps(items).encode())
        if not isinstance(answer, list) or len(answer) != len(specs):
            return False
        for spec, item in zip(specs, answer, strict=True):
            if isinstance(item, dict):
                self._accept("batch", item.get("messageId"), spec, int(spec.url.rsplit("/", 1)[1]))
        return True

    def _run(self, rate: float, send: Callable[[], bool]) -> None:
        interval = 1.0 / rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= self.end:
                return
            if next_at > now:
                self._stop.wait(next_at - now)
                continue
            ok = send()
            # Paced, never catching up more than one beat after a stall.
            next_at = max(next_at + interval, time.monotonic() - interval)
            if not ok:
                self._stop.wait(0.05)  # the server is down: do not spin

    def extend_to(self, end: float) -> None:
        """Keep publishing until at least ``end`` (monotonic): past a fault's recovery."""
        self.end = max(self.end, end)

    def start(self) -> None:
        self.started = time.monotonic()
        self.end = self.started + self.mix.seconds
        plan: list[tuple[float, Callable[[], bool]]] = []
        if self.mix.single_rate > 0:
            plan += [(self.mix.single_rate / self.mix.single_threads, self._publish_one)] * (
                self.mix.single_threads
            )
        if self.mix.batch_rate > 0:
            plan.append((self.mix.batch_rate, self._publish_batch))
        for n, (rate, send) in enumerate(plan):
            thread = threading.Thread(target=self._run, args=(rate, send), name=f"load-{n}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def wait(self) -> None:
        """Until the load's time is up (bounded: a request times out after 10 s)."""
        for thread in self._threads:
            thread.join(timeout=max(0.0, self.end - time.monotonic()) + 30)
        self.stopped = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self.wait()
