"""What the sandbox PSP does, apart from HTTP: create, pay and decline payments, auto-pay
them when asked, and hand settled payments to the webhook dispatcher."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any

import structlog

from services.payments.sandbox.store import PaymentStore, SandboxPayment, Status
from services.payments.sandbox.webhooks import WebhookDispatcher

log = structlog.get_logger("sandbox")

DECLINED = "declined by the payer"


class PaymentSandbox:
    def __init__(
        self,
        store: PaymentStore,
        dispatcher: WebhookDispatcher,
        *,
        public_url: str,
        failure_rate: float = 0.0,
        latency_ms: int = 0,
        autopay: bool = False,
        autopay_delay_ms: int = 200,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.public_url = public_url.rstrip("/")
        self.failure_rate = failure_rate
        self.latency_ms = latency_ms
        self.autopay = autopay
        self.autopay_delay_ms = autopay_delay_ms
        self.rng = rng or random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    def checkout_url(self, payment_id: str) -> str:
        return f"{self.public_url}/checkout/{payment_id}"

    def should_fail(self) -> bool:
        return self.failure_rate > 0 and self.rng.random() < self.failure_rate

    async def start(self) -> None:
        self._stop.clear()
        self._spawn(self.dispatcher.run(self._stop))
        if self.autopay:
            # Payments created before a restart still get paid.
            for payment in self.store.pending():
                self.schedule_autopay(payment)

    async def stop(self) -> None:
        self._stop.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def create(
        self, idempotency_key: str, application_id: str, amount_cents: int, currency: str
    ) -> tuple[SandboxPayment, bool]:
        payment, created = self.store.create(
            idempotency_key, application_id, amount_cents, currency
        )
        if created:
            log.info(
                "payment created",
                payment_id=payment.payment_id,
                application_id=application_id,
                amount_cents=amount_cents,
            )
            if self.autopay:
                self.schedule_autopay(payment)
        return payment, created

    def pay(self, payment_id: str) -> SandboxPayment | None:
        return self._settle(payment_id, "paid", None)

    def decline(self, payment_id: str) -> SandboxPayment | None:
        return self._settle(payment_id, "failed", DECLINED)

    def _settle(self, payment_id: str, status: Status, reason: str | None) -> SandboxPayment | None:
        payment, changed = self.store.settle(payment_id, status, reason)
        if changed and payment is not None:
            log.info("payment settled", payment_id=payment_id, status=payment.status)
            self.dispatcher.wake()
        return payment

    def schedule_autopay(self, payment: SandboxPayment) -> None:
        self._spawn(self._autopay(payment.payment_id))

    async def _autopay(self, payment_id: str) -> None:
        await asyncio.sleep(self.autopay_delay_ms / 1000)
        self.pay(payment_id)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
