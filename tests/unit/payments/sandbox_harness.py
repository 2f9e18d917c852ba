"""The sandbox PSP in-process, with its webhooks captured instead of sent."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.payments.sandbox.app import create_app
from services.payments.sandbox.service import PaymentSandbox
from services.payments.sandbox.store import PaymentStore
from services.payments.sandbox.webhooks import WebhookDispatcher

PUBLIC_URL = "http://psp.test"
WEBHOOK_URL = "http://api.test/webhooks/payments"
SECRET = "test-webhook-secret"


@dataclass(frozen=True)
class SentWebhook:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class CapturingSender:
    """Answers with the next status of ``statuses`` (then 200), recording every request."""

    statuses: list[int] = field(default_factory=list)
    sent: list[SentWebhook] = field(default_factory=list)

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.sent.append(SentWebhook(url, body, headers))
        return self.statuses.pop(0) if self.statuses else 200


@dataclass
class Psp:
    sandbox: PaymentSandbox
    sender: CapturingSender
    client: httpx.AsyncClient

    async def create(self, key: str, application_id: str = "app-1") -> httpx.Response:
        return await self.client.post(
            "/v1/checkouts",
            json={"application_id": application_id, "amount_cents": 5000, "currency": "EUR"},
            headers={"Idempotency-Key": key},
        )


@asynccontextmanager
async def running_sandbox(
    data_dir: Path,
    *,
    failure_rate: float = 0.0,
    autopay: bool = False,
    autopay_delay_ms: int = 0,
    statuses: list[int] | None = None,
    start: bool = False,
) -> AsyncIterator[Psp]:
    """``start``: run the background tasks (webhook delivery, auto-pay resumption) as the
    server's lifespan would; otherwise the test drives delivery itself."""
    store = PaymentStore(data_dir / "payments.sqlite3")
    store.open()
    sender = CapturingSender(statuses=list(statuses or []))
    dispatcher = WebhookDispatcher(store, sender, WEBHOOK_URL, SECRET, retry_base=0.05)
    sandbox = PaymentSandbox(
        store,
        dispatcher,
        public_url=PUBLIC_URL,
        failure_rate=failure_rate,
        autopay=autopay,
        autopay_delay_ms=autopay_delay_ms,
        rng=random.Random(7),
    )
    app = create_app(sandbox)
    if start:
        await sandbox.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL
        ) as client:
            yield Psp(sandbox, sender, client)
    finally:
        await sandbox.stop()
        store.close()
