"""The system under docker compose, from outside, as a developer meets it: through nginx on the
published port, the mail catcher's API, the RabbitMQ management UI; scaled, a worker killed,
and stopped.

The tests share one stack (``stack``) and run in this order; the last one stops it.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from shared.manifest import service_names
from tests.browser.checkout_page import CheckoutPage
from tests.browser.chromium import save_screenshot
from tests.browser.management_ui import ManagementUI, queues_an_operator_expects
from tests.compose.mail_api import templates_to
from tests.compose.stack import ComposeStack, docker
from tests.e2e.conftest import (
    Applicant,
    checkout_url_of,
    pdf_bytes,
    provider_payments,
    register,
    status_once,
)
from tests.support.waiting import eventually

# The first test waits for make compose-up, which builds the images on a fresh machine.
pytestmark = pytest.mark.timeout(1800)

EVERY_MAIL = Counter({"confirmation": 1, "pay_link": 1, "receipt": 1, "application_complete": 1})
VERIFIED = "documents.verified"  # the verifier's log event for an application it checked


@pytest.fixture
async def applicant(stack: ComposeStack) -> AsyncIterator[Applicant]:
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        yield await register(client)


async def submit_two_pdfs(applicant: Applicant) -> str:
    files = [
        ("transcript.pdf", pdf_bytes(2), "application/pdf"),
        ("id.pdf", pdf_bytes(1), "application/pdf"),
    ]
    accepted = await applicant.submit(files)
    assert accepted.status_code == 202, accepted.text
    application_id: str = accepted.json()["applicationId"]
    return application_id


async def pay(applicant: Applicant, application_id: str) -> None:
    """Follow the pay link to the sandbox's checkout and post its Pay form."""
    checkout = await checkout_url_of(applicant, application_id)
    paid = await applicant.client.post(f"{checkout}/pay")
    assert paid.status_code == 200, paid.text


async def mails_arrive(stack: ComposeStack, recipient: str, expected: Counter[str]) -> None:
    mail = stack.url("MAIL_WEB_PORT")
    await eventually(
        lambda: templates_to(mail, recipient) == expected,
        timeout=60,
        interval=1,
        what=f"the mails to {recipient} in the catcher's API: {expected}",
    )


async def test_an_applicant_is_admitted_through_nginx_with_every_mail(
    stack: ComposeStack, applicant: Applicant, browser: WebDriver, screenshots: Path
) -> None:
    # Given the stack of make compose-up, reached through nginx on its published port
    health = await applicant.client.get("/nginx-health")
    assert health.status_code == 200

    # When an applicant submits two PDFs, follows the pay link and clicks Pay on the
    # sandbox's checkout page (headless Chromium)
    application_id = await submit_two_pdfs(applicant)
    await status_once(applicant, application_id, "awaiting_payment")
    page = CheckoutPage(browser)
    await asyncio.to_thread(page.open, await checkout_url_of(applicant, application_id))
    result = await asyncio.to_thread(page.pay)
    await asyncio.to_thread(save_screenshot, browser, screenshots / "compose-checkout-paid.png")
    assert result.heading == "Payment received", result.text

    # Then the application completes, and the four mails are in the catcher
    status = await status_once(applicant, application_id, "completed")
    assert status["progress"] == 100
    payments = await provider_payments(stack.url("PSP_HOST_PORT"), application_id)
    assert [p["status"] for p in payments] == ["paid"]
    await mails_arrive(stack, applicant.email, EVERY_MAIL)


def test_every_service_logs_in_as_its_own_user_and_role(stack: ComposeStack) -> None:
    # Given the running stack (the flow above made every service connect)
    # When the broker and the database list who is connected
    broker_users = {
        c["user"]
        for c in json.loads(
            stack.compose(
                *("exec", "-T", "rabbitmq", "rabbitmqctl", "-q", "--formatter", "json"),
                *("list_connections", "user"),
            )
        )
    }
    database_roles = set(
        stack.compose(
            *("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "admissions", "-Atc"),
            "SELECT DISTINCT usename FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        ).split()
    )

    # Then each service is there as itself: no administrator, no guest
    assert broker_users == set(service_names()), broker_users
    assert database_roles <= {*service_names(), "ops"}
    assert set(service_names()) <= database_roles, database_roles


def scale_verifiers(stack: ComposeStack, count: int) -> list[str]:
    stack.compose(
        "up", "--detach", "--wait", "--no-deps", "--scale", f"verifier={count}", "verifier"
    )
    return stack.containers("verifier")


def verified_by(stack: ComposeStack, container: str) -> set[str]:
    """The applications the verifier container checked, from its JSON log lines."""
    applications = set()
    for line in stack.logs(container).splitlines():
        if VERIFIED in line and line.startswith("{"):
            applications.add(json.loads(line)["application_id"])
    return applications


def management(stack: ComposeStack, path: str) -> object:
    response = httpx.get(
        f"{stack.url('INFRA_MGMT_PORT')}/api/{path}",
        auth=("operator", "operator-dev-password"),
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


async def test_three_verifiers_share_the_queue(stack: ComposeStack) -> None:
    # Given the verifier scaled to three containers
    verifiers = scale_verifiers(stack, 3)
    assert len(verifiers) == 3

    # Then the broker sees three consumers on the verifier's queue
    def consumers() -> object:
        return management(stack, "queues/admissions/verifier.documents")["consumers"]  # type: ignore[index]

    await eventually(lambda: consumers() == 3, timeout=30, interval=1, what="three consumers")

    # When nine applications arrive within seconds (each takes the verifier seconds)
    submitted: set[str] = set()
    for _ in range(9):
        async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
            submitted.add(await submit_two_pdfs(await register(client)))

    # Then every verifier checks some of them, and together all of them, each once
    checked: dict[str, set[str]] = {}

    def all_checked() -> bool:
        checked.update(
            {container: verified_by(stack, container) & submitted for container in verifiers}
        )
        return set().union(*checked.values()) == submitted

    await eventually(all_checked, timeout=120, interval=2, what="all nine applications checked")
    assert all(checked[container] for container in verifiers), checked
    assert sum(len(ids) for ids in checked.values()) == len(submitted), checked


def addresses_of(containers: list[str]) -> dict[str, str]:
    """Each container's address on the project's network -> the container."""
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return {docker("inspect", "--format", template, c).strip(): c for c in containers}


def holder_of_unacked_message(stack: ComposeStack, addresses: dict[str, str]) -> str | None:
    """The verifier container whose channel holds an unacknowledged message now. rabbitmqctl
    answers at once (the management API's statistics lag by seconds); a channel's name starts
    with its client's address ("172.18.0.9:41234 -> 172.18.0.3:5672 (1)")."""
    channels = json.loads(
        stack.compose(
            *("exec", "-T", "rabbitmq", "rabbitmqctl", "-q", "--formatter", "json"),
            *("list_channels", "name", "user", "messages_unacknowledged"),
        )
    )
    for channel in channels:
        if channel["user"] == "verifier" and channel["messages_unacknowledged"] > 0:
            client = channel["name"].split(" -> ")[0].rsplit(":", 1)[0]
            if client in addresses:
                return addresses[client]
    return None


async def test_a_verifier_killed_mid_flow_and_the_application_completes_once(
    stack: ComposeStack, applicant: Applicant
) -> None:
    # Given three verifiers that take 20 s per application (re-created with that setting:
    # a probe of the broker takes seconds on a busy machine)
    stack.settings["VERIFY_SIMULATED_MS"] = "20000"
    verifiers = scale_verifiers(stack, 3)
    addresses = addresses_of(verifiers)

    # When an application is submitted and the verifier holding it is killed (SIGKILL)
    application_id = await submit_two_pdfs(applicant)
    holder: str | None = None

    async def held() -> bool:
        nonlocal holder
        holder = await asyncio.to_thread(holder_of_unacked_message, stack, addresses)
        return holder is not None

    await eventually(held, timeout=60, interval=0.2, what="a verifier holding the application")
    assert holder is not None
    docker("kill", holder)
    assert application_id not in verified_by(stack, holder)

    # Then another verifier checks it, and the application completes once: one payment,
    # one of each mail
    await status_once(applicant, application_id, "awaiting_payment")
    await pay(applicant, application_id)
    await status_once(applicant, application_id, "completed")
    survivors = [c for c in verifiers if c != holder]
    assert sum(application_id in verified_by(stack, c) for c in survivors) == 1
    payments = await provider_payments(stack.url("PSP_HOST_PORT"), application_id)
    assert [p["status"] for p in payments] == ["paid"]
    await mails_arrive(stack, applicant.email, EVERY_MAIL)


async def test_the_management_ui_lists_the_system_queues(
    stack: ComposeStack, browser: WebDriver, screenshots: Path
) -> None:
    # Given the RabbitMQ of the stack, and the queues the system's topology declares
    expected = queues_an_operator_expects()
    ui = ManagementUI(browser, stack.url("INFRA_MGMT_PORT"))

    # When the operator logs in and opens the Queues tab of the "admissions" virtual host
    await asyncio.to_thread(ui.log_in, "operator", "operator-dev-password")
    await asyncio.to_thread(ui.open_queues, "admissions")

    # Then every work queue, retry tier and dead-letter queue is listed, running
    async def all_listed() -> bool:
        listed = await asyncio.to_thread(ui.listed_queues)
        running = {q.name for q in listed if q.vhost == "admissions" and q.state == "running"}
        return expected <= running

    try:
        await eventually(all_listed, timeout=45, interval=1, what="the system's queues in the UI")
    finally:
        await asyncio.to_thread(
            save_screenshot, browser, screenshots / "compose-management-queues.png"
        )


def test_compose_down_leaves_no_container(stack: ComposeStack) -> None:
    # Given the running stack
    assert stack.all_containers()

    # When the developer stops it
    stack.make("compose-down")

    # Then no container of the project is left, running or not
    assert stack.all_containers() == []
