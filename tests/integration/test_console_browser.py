"""The console in a real browser: headless Chromium (Debian's) through Selenium.

Against the live server with the real worker and clock: a viewer and an operator
log in; every main page renders styled; the viewer has no action controls and a
POST it forges from the page is refused; the operator retries a DLQ entry (it
reaches the loopback destination) and pauses a queue (nothing is delivered until
resumed) and publishes a test message from the form (it reaches the destination).
Screenshots of the main pages go to var/screenshots/ (SCREENSHOTS_DIR=docs/screenshots
refreshes the README's).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User

from broker.console.roles import OPERATOR, VIEWER, roles_ensure
from broker.models import DlqEntry, Message, Queue
from tests.conftest import ROOT, Reply, wait_until
from tests.conftest import Receiver as Destination

# A test run writes its screenshots under var/ (ignored); the README's copies in
# docs/screenshots/ are refreshed on purpose: SCREENSHOTS_DIR=docs/screenshots make test.
SHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or ROOT / "var" / "screenshots")
PASSWORD = "console-pw-0123456789"
APT_HINT = (
    "the console's browser tests need Debian's headless Chromium and its driver: "
    "apt-get install -y chromium chromium-driver (.ci/run installs them)"
)
# Chromium phones home on its own (updates, metrics, safe browsing): not from a test.
QUIET = [
    "--headless=new",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--no-pings",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail(APT_HINT)  # not a skip: a console nobody tested is not done
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not download anything
    options = Options()
    options.binary_location = chromium
    for argument in QUIET:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def user(role: str) -> str:
    roles_ensure(apps)  # the test database was flushed since the migration made them
    account = User.objects.create_user(f"{role}-1", password=PASSWORD, is_staff=True)
    account.groups.add(Group.objects.get(name=role))
    return account.username


def log_in(browser: Any, live: str, username: str) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{live}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_until(lambda: browser.find_elements(By.ID, "user-tools"), what="logged in")


def assert_styled(browser: Any, page: str) -> None:
    loaded = browser.execute_script(
        "return [...document.styleSheets].some(s => s.href && "
        "s.href.endsWith('/static/admin/css/base.css') && s.cssRules.length > 0)"
    )
    header = browser.execute_script(
        "return getComputedStyle(document.getElementById('header')).backgroundColor"
    )
    assert loaded and header not in ("", "rgba(0, 0, 0, 0)"), f"{page} is not styled"


def shoot(browser: Any, name: str) -> None:
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(max(int(height) + 120, 900), 2400))
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))
    browser.set_window_size(1400, 1000)


def run_action(browser: Any, pk: int, action: str, confirm: bool = False) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.find_element(By.CSS_SELECTOR, f"input.action-select[value='{pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value(action)
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    if confirm:
        wait_until(lambda: browser.find_elements(By.ID, "confirm-action"), what="confirmation")
        shoot(browser, f"confirm-{action}")
        browser.find_element(By.ID, "confirm-action").click()
    shown = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "ul.messagelist li"))
    return " ".join(li.text for li in shown)


def dead_letter(client_sdk: Any, receiver: Destination, path: str) -> DlqEntry:
    receiver.script(path, Reply(status=500, body=b"upstream exploded"))
    res = client_sdk.message.publish(url=receiver.url(path), body="to retry", retries=1)
    entry: DlqEntry = wait_until(
        lambda: DlqEntry.objects.filter(message__message_id=res.message_id).first(),
        timeout=40,
        what="the message in the DLQ",
    )
    return entry


def test_a_viewer_sees_every_page_styled_and_cannot_act(
    browser: Any, live: str, client_sdk: Any, receiver: Destination
) -> None:
    from selenium.webdriver.common.by import By

    entry = dead_letter(client_sdk, receiver, "/viewer-dlq")
    client_sdk.queue.upsert("viewer-q", parallelism=1)
    log_in(browser, live, user(VIEWER))
    for page in (
        "/admin/",
        "/admin/broker/message/",
        f"/admin/broker/message/{entry.message_id}/change/",
        "/admin/broker/logentry/",
        f"/admin/broker/logentry/?state=ERROR&messageId={entry.message.message_id}",
        "/admin/broker/dlqentry/",
        "/admin/broker/queue/",
        "/admin/broker/flowcontrolkey/",
        "/admin/broker/schedule/",
        "/admin/groups/urlgroup/",
    ):
        browser.get(live + page)
        assert_styled(browser, page)
        assert not browser.find_elements(By.NAME, "action"), f"{page} offers actions"
        assert not browser.find_elements(By.CSS_SELECTOR, "input.action-select"), page

    # A POST forged from the page itself, with a valid session and CSRF token.
    browser.get(f"{live}/admin/broker/dlqentry/")
    status = browser.execute_script(
        """
        const token = document.querySelector('[name=csrfmiddlewaretoken]')?.value
            || document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).slice(10);
        const body = new URLSearchParams({action: 'retry', _selected_action: arguments[0],
                                          confirm: 'yes', csrfmiddlewaretoken: token});
        const res = await fetch('/admin/broker/dlqentry/', {method: 'POST', body});
        return res.status;
        """,
        str(entry.pk),
    )
    assert status in (200, 302)
    # The same with overrides, and a parallelism change, posted to the forms directly.
    queue_pk = Queue.objects.get(name="viewer-q").pk
    statuses = browser.execute_script(
        """
        const token = document.querySelector('[name=csrfmiddlewaretoken]')?.value
            || document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).slice(10);
        const post = async (url, fields) => (await fetch(url, {method: 'POST',
            body: new URLSearchParams({...fields, csrfmiddlewaretoken: token})})).status;
        return [
            await post('/admin/broker/dlqentry/retry-with-overrides/?ids=' + arguments[0],
                       {retries: '0'}),
            await post('/admin/broker/queue/' + arguments[1] + '/parallelism/',
                       {parallelism: '7'}),
        ];
        """,
        str(entry.pk),
        str(queue_pk),
    )
    assert statuses == [403, 403]
    time.sleep(0.5)
    assert DlqEntry.objects.filter(pk=entry.pk).exists(), "a viewer retried a DLQ entry"
    assert Queue.objects.get(name="viewer-q").paused is False
    assert Queue.objects.get(name="viewer-q").parallelism == 1
    browser.get(f"{live}/admin/broker/dlqentry/{entry.pk}/change/")
    assert not browser.find_elements(By.CSS_SELECTOR, "a.console-tool")


def test_an_operator_retries_a_dlq_entry_and_pauses_a_queue(
    browser: Any, live: str, client_sdk: Any, receiver: Destination
) -> None:
    from selenium.webdriver.common.by import By

    entry = dead_letter(client_sdk, receiver, "/operator-dlq")
    receiver.script("/operator-dlq", Reply(status=200))
    log_in(browser, live, user(OPERATOR))

    browser.get(f"{live}/admin/broker/message/{entry.message_id}/change/")
    assert_styled(browser, "message detail")
    timeline = browser.find_element(By.CSS_SELECTOR, "table.console-timeline").text
    assert "ERROR" in timeline and "500" in timeline and "FAILED" in timeline
    assert " ms" in timeline  # each attempt's duration
    shoot(browser, "message-timeline")

    browser.get(f"{live}/admin/broker/dlqentry/")
    shoot(browser, "dlq")
    shown = run_action(browser, entry.pk, "retry", confirm=True)
    assert "Published 1 message(s)" in shown, shown
    assert not DlqEntry.objects.filter(pk=entry.pk).exists()
    retried = Message.objects.exclude(pk=entry.message_id).get(url=receiver.url("/operator-dlq"))
    wait_until(
        lambda: any(
            r.headers.get("Upstash-Message-Id") == retried.message_id and r.body == b"to retry"
            for r in receiver.received("/operator-dlq")
        ),
        what="the retried message at the destination",
    )

    client_sdk.queue.upsert("operator-q", parallelism=1)
    queue = Queue.objects.get(name="operator-q")
    browser.get(f"{live}/admin/broker/queue/")
    assert "Paused 1 queue(s)" in run_action(browser, queue.pk, "pause")
    assert Queue.objects.get(pk=queue.pk).paused is True
    client_sdk.message.enqueue(queue="operator-q", url=receiver.url("/held"), body="held")
    time.sleep(2)
    assert receiver.received("/held") == [], "a paused queue delivered"
    browser.get(f"{live}/admin/broker/queue/")
    assert "Resumed 1 queue(s)" in run_action(browser, queue.pk, "resume")
    receiver.wait_for(1, "/held")

    browser.get(f"{live}/admin/")
    browser.find_element(By.ID, "publish-link").click()
    assert_styled(browser, "publish form")
    browser.find_element(By.ID, "id_destination").send_keys(receiver.url("/from-console"))
    browser.find_element(By.ID, "id_headers").send_keys("Upstash-Forward-X-Trace: browser")
    browser.find_element(By.ID, "id_body").send_keys("published in the browser")
    shoot(browser, "publish")
    browser.find_element(By.ID, "publish-submit").click()
    wait_until(lambda: "Published 1 message(s)" in browser.page_source, what="published")
    made = receiver.wait_for(1, "/from-console")[0]
    assert made.body == b"published in the browser" and made.headers["X-Trace"] == "browser"
    pk = Message.objects.get(message_id=made.headers["Upstash-Message-Id"]).pk
    assert browser.current_url.endswith(f"/admin/broker/message/{pk}/change/")  # it links there

    browser.get(f"{live}/admin/")
    assert_styled(browser, "dashboard")
    assert browser.find_elements(By.CSS_SELECTOR, "#dash-chart-hour polyline.series")
    assert "/operator-dlq" in browser.find_element(By.ID, "dash-failing").text
    shoot(browser, "dashboard")


def test_an_operator_retries_with_overrides_and_sets_a_queues_parallelism(
    browser: Any, live: str, client_sdk: Any, receiver: Destination
) -> None:
    from selenium.webdriver.common.by import By

    entry = dead_letter(client_sdk, receiver, "/override-dlq")
    receiver.script("/override-dlq", Reply(status=200))
    log_in(browser, live, user(OPERATOR))

    browser.get(f"{live}/admin/broker/logentry/?state=ERROR")
    assert_styled(browser, "log page")
    assert entry.message.message_id in browser.page_source
    shoot(browser, "logs")

    browser.get(f"{live}/admin/broker/dlqentry/{entry.pk}/change/")
    browser.find_element(By.CSS_SELECTOR, "a.console-tool[href*='retry-with-overrides']").click()
    assert_styled(browser, "retry with overrides")
    # A bad override first: the API's refusal on the form, and nothing retried.
    browser.find_element(By.ID, "id_delay").send_keys("soon")
    browser.find_element(By.ID, "console-submit").click()
    error = wait_until(
        lambda: browser.find_elements(By.ID, "console-form-error"), what="the API's refusal"
    )
    assert "delay" in error[0].text.lower(), error[0].text
    assert DlqEntry.objects.filter(pk=entry.pk).exists()
    browser.find_element(By.ID, "id_delay").clear()
    browser.find_element(By.ID, "id_retries").send_keys("0")
    browser.find_element(By.ID, "id_headers").send_keys("Upstash-Forward-X-Override: yes")
    shoot(browser, "dlq-retry-overrides")
    browser.find_element(By.ID, "console-submit").click()
    wait_until(lambda: "with overrides" in browser.page_source, what="retried")
    made = Message.objects.exclude(pk=entry.message_id).get(url=receiver.url("/override-dlq"))
    assert made.max_retries == 0
    assert browser.current_url.endswith(f"/admin/broker/message/{made.pk}/change/")
    got = wait_until(
        lambda: [
            r
            for r in receiver.received("/override-dlq")
            if r.headers.get("Upstash-Message-Id") == made.message_id
        ],
        what="the retried message at the destination",
    )
    assert got[0].headers["X-Override"] == "yes" and got[0].body == b"to retry"
    assert not DlqEntry.objects.filter(pk=entry.pk).exists()

    client_sdk.queue.upsert("wide-q", parallelism=1)
    queue = Queue.objects.get(name="wide-q")
    browser.get(f"{live}/admin/broker/queue/")
    browser.find_element(
        By.CSS_SELECTOR, f"a.console-tool[href$='/queue/{queue.pk}/parallelism/']"
    ).click()
    field = browser.find_element(By.ID, "id_parallelism")
    field.clear()
    field.send_keys("3")
    shoot(browser, "queue-parallelism")
    browser.find_element(By.ID, "console-submit").click()
    wait_until(lambda: "parallelism 3" in browser.page_source, what="saved")
    assert Queue.objects.get(pk=queue.pk).parallelism == 3
    assert client_sdk.queue.get("wide-q").parallelism == 3

    browser.get(f"{live}/admin/")
    wait_until(
        lambda: "alive" in browser.find_element(By.ID, "dash-liveness").text or browser.refresh(),
        what="a process shown alive",
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#dash-chart-day polyline.series")
    shoot(browser, "dashboard")


def test_an_operator_rotates_the_signing_keys_after_reading_what_it_does(
    browser: Any, live: str, settings: Any
) -> None:
    from broker.models import Credentials
    from broker.services.credentials import credentials_forget, credentials_get

    # Stored keys (the environment's cannot be rotated from here, as from the API).
    settings.QSTASH_CURRENT_SIGNING_KEY = settings.QSTASH_NEXT_SIGNING_KEY = ""
    credentials_forget()
    before = credentials_get()
    log_in(browser, live, user(OPERATOR))
    browser.get(f"{live}/admin/broker/credentials/")
    assert_styled(browser, "signing keys")
    assert before.current not in browser.page_source  # masked
    shown = run_action(browser, Credentials.objects.get().pk, "rotate", confirm=True)
    assert "Rotated" in shown, shown
    assert Credentials.objects.get().current_signing_key == before.next
    credentials_forget()
