from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfWriter

from tests.support.system import RunningSystem
from tests.support.waiting import eventually


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


def pdf_bytes(pages: int = 1, text: str = "") -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": text or "document"})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


class Applicant:
    """A registered applicant talking to the API over HTTP."""

    def __init__(self, client: httpx.AsyncClient, email: str) -> None:
        self.client = client
        self.email = email

    async def submit(
        self,
        files: list[tuple[str, bytes, str]],
        idempotency_key: str | None = None,
        program: str = "Computer Science",
    ) -> httpx.Response:
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return await self.client.post(
            "/applications",
            data={"personal_statement": "I love algorithms. " * 50, "program": program},
            files=[("files", f) for f in files],
            headers=headers,
        )

    async def status(self, application_id: str) -> dict[str, object]:
        response = await self.client.get(f"/applications/{application_id}/status")
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body


async def register(client: httpx.AsyncClient) -> Applicant:
    email = f"applicant-{uuid.uuid4().hex[:10]}@example.org"
    password = "correct horse battery"
    registered = await client.post("/auth/register", json={"email": email, "password": password})
    assert registered.status_code == 201, registered.text
    token = await client.post("/auth/token", data={"username": email, "password": password})
    assert token.status_code == 200, token.text
    client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return Applicant(client, email)


@pytest.fixture
async def applicant(system: RunningSystem) -> AsyncIterator[Applicant]:
    async with httpx.AsyncClient(base_url=system.api, timeout=30) as client:
        yield await register(client)


def mails_to(mail_dir: Path, recipient: str) -> list[object]:
    from devtools.smtp_catcher import read_mailbox

    return [m for m in read_mailbox(mail_dir) if recipient in str(m["To"])]


async def checkout_url_of(applicant: Applicant, application_id: str) -> str:
    """The pay link's answer, once the payment service has a checkout (202 until then)."""
    url = ""

    async def ready() -> bool:
        nonlocal url
        response = await applicant.client.get(f"/payments/checkout/{application_id}")
        assert response.status_code in (200, 202), response.text
        url = response.json().get("checkoutUrl", "")
        return bool(url)

    await eventually(ready, timeout=60, interval=0.3, what="the checkout URL")
    return url


async def status_once(applicant: Applicant, application_id: str, wanted: str) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal latest
        latest = await applicant.status(application_id)
        return latest["status"] == wanted

    await eventually(reached, timeout=60, interval=0.3, what=f"{application_id} to be {wanted}")
    return latest


async def provider_payments(psp_url: str, application_id: str) -> list[dict[str, Any]]:
    """What the payment provider (the sandbox at ``psp_url``) holds for the application."""
    async with httpx.AsyncClient(base_url=psp_url, timeout=10) as provider:
        response = await provider.get("/v1/payments", params={"application_id": application_id})
    response.raise_for_status()
    payments: list[dict[str, Any]] = response.json()
    return payments
