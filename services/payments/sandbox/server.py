"""The sandbox's composition root: settings -> store, webhook sender -> app -> uvicorn."""

from __future__ import annotations

import logging

import httpx
import structlog
import uvicorn
from fastapi import FastAPI

from services.payments.sandbox.app import create_app
from services.payments.sandbox.service import PaymentSandbox
from services.payments.sandbox.settings import SandboxSettings
from services.payments.sandbox.store import PaymentStore
from services.payments.sandbox.webhooks import HttpWebhookSender, WebhookDispatcher
from shared.logs import configure_logging

log = structlog.get_logger("sandbox")


def build(settings: SandboxSettings) -> FastAPI:
    store = PaymentStore(settings.database_path)
    store.open()
    client = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
    dispatcher = WebhookDispatcher(
        store,
        HttpWebhookSender(client),
        settings.webhook_target,
        settings.webhook_secret.get_secret_value(),
        delivered_retention=settings.psp_delivered_webhook_retention_hours * 3600,
    )
    sandbox = PaymentSandbox(
        store,
        dispatcher,
        public_url=settings.public_url,
        failure_rate=settings.psp_failure_rate,
        latency_ms=settings.psp_latency_ms,
        autopay=settings.psp_autopay,
        autopay_delay_ms=settings.psp_autopay_delay_ms,
    )

    async def close() -> None:
        await client.aclose()
        store.close()

    return create_app(sandbox, on_shutdown=close)


def main() -> None:
    settings = SandboxSettings()
    configure_logging("payments-sandbox", settings.log_level)
    # httpx logs every request as plain text at INFO; our own JSON lines say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log.info(
        "starting",
        url=settings.public_url,
        data=str(settings.database_path),
        webhook_url=settings.webhook_target,
        autopay=settings.psp_autopay,
        failure_rate=settings.psp_failure_rate,
        latency_ms=settings.psp_latency_ms,
    )
    # uvicorn stops on SIGTERM/SIGINT, and the app's lifespan then stops the background tasks.
    uvicorn.run(
        build(settings),
        host=settings.psp_host,
        port=settings.psp_port,
        log_config=None,
        access_log=False,
    )
