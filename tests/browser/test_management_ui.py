"""An operator logs into the RabbitMQ management UI and finds the system's queues."""

from __future__ import annotations

import asyncio
from pathlib import Path

from selenium.webdriver.chrome.webdriver import WebDriver

from tests.browser.chromium import save_screenshot
from tests.browser.management_ui import ListedQueue, ManagementUI, queues_an_operator_expects
from tests.support.infra import Infra
from tests.support.system import RunningSystem
from tests.support.waiting import eventually

WORK_QUEUES = {
    "verifier.documents",
    "payments.applications",
    "mailer.critical",
    "mailer.high",
    "mailer.medium",
    "mailer.low",
    "mailer.batch",
    "api.projector",
}


def vhost_of(system: RunningSystem) -> str:
    return system.rabbitmq_url.rsplit("/", 1)[1]


async def test_the_management_ui_lists_work_queues_with_their_retry_tiers_and_dlqs(
    system: RunningSystem, infra: Infra, browser: WebDriver, screenshots: Path
) -> None:
    # Given the running system in its own virtual host, and the queues its topology declares
    vhost = vhost_of(system)
    expected = queues_an_operator_expects()
    assert WORK_QUEUES | {"verifier.documents.retry.2s", "mailer.critical.dlq"} <= expected
    ui = ManagementUI(browser, infra.management_url or "http://127.0.0.1:15672/")

    # When an operator logs in and opens the Queues tab for that virtual host
    await asyncio.to_thread(ui.log_in, infra.management_user, infra.management_password)
    await asyncio.to_thread(ui.open_queues, vhost)

    # Then the page lists every work queue, retry tier and DLQ of the system, running, and
    # nothing from another virtual host
    listed: list[ListedQueue] = []

    def running_names() -> set[str]:
        return {q.name for q in listed if q.vhost == vhost and q.state == "running"}

    def other_vhosts() -> set[str]:
        return {q.vhost for q in listed} - {vhost}

    async def only_ours_all_running() -> bool:
        nonlocal listed
        listed = await asyncio.to_thread(ui.listed_queues)
        # "/" holds queues of the same names: until the page has re-rendered for the selected
        # virtual host, its rows would pass for ours
        return bool(listed) and not other_vhosts() and expected <= running_names()

    try:
        # the UI re-reads the broker every 5 s; services may still be declaring their queues
        await eventually(
            only_ours_all_running, timeout=45, interval=1, what="the system's queues in the UI"
        )
    except AssertionError as timed_out:
        missing = sorted(expected - running_names())
        raise AssertionError(
            f"not listed as running: {missing}; other virtual hosts shown: {other_vhosts()}"
        ) from timed_out
    finally:
        await asyncio.to_thread(save_screenshot, browser, screenshots / "management-queues.png")
