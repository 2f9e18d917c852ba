"""The payments service's composition root: settings -> provider client -> consumer."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from services.payments.domain import Fee
from services.payments.handler import PaymentHandler, PaymentsTransaction
from services.payments.provider import (
    FaultyProvider,
    PaymentProvider,
    SandboxProvider,
    sandbox_client,
)
from services.payments.retention import payments_retention
from services.payments.settings import PaymentsSettings
from shared.faults import Faults
from shared.lifecycle import run_service
from shared.logs import configure_logging
from shared.worker import run_worker

SERVICE = "payments"
QUEUE = "payments.applications"


async def run(settings: PaymentsSettings, stop: asyncio.Event) -> None:
    fee = Fee(settings.application_fee_cents, settings.application_fee_currency)
    async with sandbox_client(settings.psp_url, settings.psp_timeout_seconds) as client:
        provider: PaymentProvider = SandboxProvider(client)
        faults = Faults.from_settings(settings).provider
        if faults.enabled:  # chaos runs only
            provider = FaultyProvider(provider, faults)
        handler = PaymentHandler(provider, fee, settings.payment_simulated_ms)
        await run_worker(
            service=SERVICE,
            settings=settings,
            handlers={QUEUE: handler},
            on_exhausted={QUEUE: handler.on_exhausted},
            stop=stop,
            transaction_type=PaymentsTransaction,
            retention=payments_retention(settings),
        )


def main() -> None:
    settings = PaymentsSettings()
    configure_logging(SERVICE, settings.log_level)
    # httpx logs every request as plain text at INFO; our own JSON lines say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    run_service(partial(run, settings))
