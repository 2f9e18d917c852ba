"""Delivering the sandbox's signed webhooks, at least once, until the receiver says 2xx.

Pending webhooks live in the store, so a restart resumes them. Each attempt is signed afresh
(the signature carries a timestamp the receiver checks against a tolerance); the body and the
event id stay the same, so the receiver can recognise a redelivery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import httpx
import structlog

from services.payments.sandbox.store import PaymentStore, PendingWebhook
from shared.signing import SIGNATURE_HEADER, signature_header

log = structlog.get_logger("sandbox.webhooks")


class WebhookSender(Protocol):
    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body``; the HTTP status, or an exception if there was no answer."""
        ...


class HttpWebhookSender:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        response = await self.client.post(url, content=body, headers=headers)
        return response.status_code


def retry_delay(attempts: int, base: float = 0.5, cap: float = 60.0) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 0.5, 1, 2, ... 60."""
    return float(min(base * 2 ** max(attempts - 1, 0), cap))


class WebhookDispatcher:
    def __init__(
        self,
        store: PaymentStore,
        sender: WebhookSender,
        url: str,
        secret: str,
        *,
        concurrency: int = 16,
        retry_base: float = 0.5,
        delivered_retention: float = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sender = sender
        self.url = url
        self.secret = secret
        self.retry_base = retry_base
        # Seconds a delivered webhook stays for GET /webhooks/{event_id} (tests look there).
        self.delivered_retention = delivered_retention
        self._forgotten_at = 0.0
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A webhook was queued: deliver now rather than at the next scheduled time."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            await self.deliver_due()
            self.forget_delivered()
            due = self.store.next_webhook_due()
            wait = None if due is None else max(due - self.clock(), 0.0)
            if wait == 0.0:
                continue
            stopping = asyncio.ensure_future(stop.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({stopping, woken}, timeout=wait, return_when="FIRST_COMPLETED")
            stopping.cancel()
            woken.cancel()

    def forget_delivered(self, every: float = 60.0) -> int:
        """Remove webhooks delivered longer than the retention ago, at most once per ``every``
        seconds: the store would otherwise keep every webhook ever sent."""
        now = self.clock()
        if now - self._forgotten_at < every:
            return 0
        self._forgotten_at = now
        removed = self.store.forget_delivered(now - self.delivered_retention)
        if removed:
            log.info("delivered webhooks forgotten", count=removed)
        return removed

    async def deliver_due(self) -> int:
        """Attempt every webhook that is due now; the number delivered."""
        due = self.store.due_webhooks(self.clock())
        results = await asyncio.gather(*(self._deliver(webhook) for webhook in due))
        return sum(results)

    async def _deliver(self, webhook: PendingWebhook) -> bool:
        body = webhook.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(self.secret, body, int(self.clock())),
        }
        async with self._slots:
            try:
                status = await self.sender.send(self.url, body, headers)
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except Exception as failure:  # no answer: connection refused, timeout...
                error = f"{failure.__class__.__name__}: {failure}"
        if error is None:
            self.store.mark_delivered(webhook.event_id, self.clock())
            log.info("webhook delivered", event_id=webhook.event_id, attempt=webhook.attempts + 1)
            return True
        delay = retry_delay(webhook.attempts + 1, self.retry_base)
        self.store.mark_attempt_failed(webhook.event_id, self.clock() + delay, error)
        log.warning(
            "webhook not delivered, will retry",
            event_id=webhook.event_id,
            attempt=webhook.attempts + 1,
            retry_in=delay,
            error=error,
        )
        return False
