"""What one application costs the broker: confirmed publishes and deliveries, counted by
RabbitMQ itself (the management API's statistics of the system's own virtual host).

The system runs in a vhost of its own for this module only, so the figures hold this batch's
traffic and nothing that other end-to-end tests left behind (a batch-lane backlog, retries).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.conftest import mails_to, pdf_bytes, register
from tests.e2e.test_admission_flow import wait_for_terminal
from tests.support.infra import Infra
from tests.support.system import RunningSystem
from tests.support.waiting import eventually

APPLICATIONS = 10
# The mails one completed application sends, and the steps its status history shows.
EXPECTED_MAILS = Counter(
    {"confirmation": 1, "pay_link": 1, "receipt": 1, "application_complete": 1}
)
EXPECTED_HISTORY = [
    ("submitted", 25),
    ("verifying", 30),
    ("verified", 50),
    ("processing_payment", 55),
    ("awaiting_payment", 75),
    ("completed", 100),
]
EXPECTED_MAIL_NOTES = {f"e-mail sent: {template}" for template in EXPECTED_MAILS}
# Targets of the lean pipeline (issue 12): from 10 publishes and 15 deliveries.
MAX_PUBLISHES_PER_APPLICATION = 6
MAX_DELIVERIES_PER_APPLICATION = 9


@dataclass(frozen=True)
class BrokerCounts:
    """Cumulative message statistics of one vhost, as the broker counts them."""

    publishes: int  # messages published into the vhost (any exchange)
    confirms: int  # publisher confirms the broker sent back
    deliveries: int  # messages handed to consumers (deliver + get)
    acks: int

    def __sub__(self, other: BrokerCounts) -> BrokerCounts:
        return BrokerCounts(
            self.publishes - other.publishes,
            self.confirms - other.confirms,
            self.deliveries - other.deliveries,
            self.acks - other.acks,
        )


async def vhost_counts(system: RunningSystem) -> BrokerCounts:
    base = (system.infra.management_url or "http://127.0.0.1:15672/").rstrip("/")
    auth = (system.infra.management_user, system.infra.management_password)
    async with httpx.AsyncClient(auth=auth, timeout=10) as client:
        response = await client.get(f"{base}/api/vhosts/{quote(system.name, safe='')}")
        response.raise_for_status()
    stats: dict[str, Any] = response.json().get("message_stats") or {}
    return BrokerCounts(
        int(stats.get("publish", 0)),
        int(stats.get("confirm", 0)),
        int(stats.get("deliver_get", 0)),
        int(stats.get("ack", 0)),
    )


async def settled_counts(system: RunningSystem, quiet_for: float = 12.0) -> BrokerCounts:
    """The counts once they stopped moving: the broker emits statistics every few seconds
    (``collect_statistics_interval``, 5 s by default), so wait for two unchanged readings."""
    latest = await vhost_counts(system)
    deadline = time.monotonic() + 120
    while True:
        await asyncio.sleep(quiet_for / 2)
        again = await vhost_counts(system)
        if again == latest:
            await asyncio.sleep(quiet_for / 2)
            if await vhost_counts(system) == again:
                return again
        latest = again
        assert time.monotonic() < deadline, "the broker's statistics never settled"


@pytest.fixture(scope="module")
async def quiet_system(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    running = RunningSystem(infra, tmp_path_factory.mktemp("quiet-system"), {}, prefix="cost")
    await running.start()
    yield running
    await running.stop()


@pytest.mark.timeout(420)
async def test_an_application_costs_few_publishes_and_deliveries(
    quiet_system: RunningSystem,
) -> None:
    system = quiet_system
    # Given applicants registered on an idle system
    clients = [httpx.AsyncClient(base_url=system.api, timeout=30) for _ in range(APPLICATIONS)]
    try:
        applicants = [await register(client) for client in clients]
        before = await settled_counts(system)

        # When each submits one application and it runs to completion
        files = [("transcript.pdf", pdf_bytes(1), "application/pdf")]
        answers = await asyncio.gather(*(a.submit(files) for a in applicants))
        assert all(answer.status_code == 202 for answer in answers), answers
        ids = [answer.json()["applicationId"] for answer in answers]
        statuses = await asyncio.gather(
            *(wait_for_terminal(a, i, timeout=180) for a, i in zip(applicants, ids, strict=True))
        )
        assert [s["status"] for s in statuses] == ["completed"] * APPLICATIONS
        for applicant in applicants:
            await eventually(
                lambda a=applicant: mails_of(system.mail_dir, a.email) == EXPECTED_MAILS,
                timeout=60,
                what=f"the four mails to {applicant.email}",
            )
        spent = await settled_counts(system) - before

        # Then the status history keeps every step, the mails included
        for applicant, application_id in zip(applicants, ids, strict=True):
            history = (await applicant.status(application_id))["history"]
            assert isinstance(history, list)
            mails = [e for e in history if e["eventType"] == "email.sent"]
            steps = [(e["status"], e["progress"]) for e in history if e not in mails]
            notes = {e["note"] for e in mails}
            assert steps == EXPECTED_HISTORY, history
            assert notes == EXPECTED_MAIL_NOTES, history
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))

    # And the broker counted few messages per application
    per_application = {
        "publishes": spent.publishes / APPLICATIONS,
        "confirms": spent.confirms / APPLICATIONS,
        "deliveries": spent.deliveries / APPLICATIONS,
        "acks": spent.acks / APPLICATIONS,
    }
    print(f"\nper application over {APPLICATIONS} applications: {per_application}")
    assert spent.confirms == spent.publishes  # every publish was a confirmed one
    assert per_application["publishes"] <= MAX_PUBLISHES_PER_APPLICATION, per_application
    assert per_application["deliveries"] <= MAX_DELIVERIES_PER_APPLICATION, per_application


def mails_of(mail_dir: Path, recipient: str) -> Counter[str]:
    return Counter(str(m["X-Email-Template"]) for m in mails_to(mail_dir, recipient))  # type: ignore[index]
