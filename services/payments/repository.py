"""The payments and parked webhooks, read and written inside the message's transaction: the
port the handler works through (``Payments``), and its Postgres adapter (a fake drives the
handler's unit tests)."""

from __future__ import annotations

from typing import Any, Protocol

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from services.payments.domain import Payment
from shared.events.catalog import PaymentWebhookReceived

COLUMNS = (
    "application_id, applicant_email, status, amount_cents, currency, payment_id, checkout_url,"
    " failure_reason, settled_by_event"
)


class Payments(Protocol):
    async def exists(self, application_id: str) -> bool: ...

    async def lock(self, application_id: str) -> Payment | None:
        """The payment, locked until the transaction ends: two webhooks for it take turns."""

    async def insert(self, payment: Payment) -> bool:
        """False if the application already has a payment (nothing is written)."""

    async def update_status(self, payment: Payment) -> None: ...

    async def serialize(self, application_id: str) -> None:
        """One transaction at a time records or settles this application's payment."""

    async def park_webhook(self, webhook: PaymentWebhookReceived) -> None: ...

    async def take_parked_webhooks(self, application_id: str) -> list[PaymentWebhookReceived]:
        """The webhooks parked for this application, oldest first, removed."""


class PostgresPayments:
    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self.connection = connection

    async def exists(self, application_id: str) -> bool:
        cursor = await self.connection.execute(
            "SELECT 1 FROM payments WHERE application_id = %s", (application_id,)
        )
        return await cursor.fetchone() is not None

    async def lock(self, application_id: str) -> Payment | None:
        """The payment, locked until the transaction ends: two webhooks for it take turns."""
        async with self.connection.cursor(row_factory=class_row(Payment)) as cursor:
            await cursor.execute(
                f"SELECT {COLUMNS} FROM payments WHERE application_id = %s FOR UPDATE",
                (application_id,),
            )
            return await cursor.fetchone()

    async def insert(self, payment: Payment) -> bool:
        """False if the application already has a payment (nothing is written)."""
        cursor = await self.connection.execute(
            f"INSERT INTO payments ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (application_id) DO NOTHING",
            (
                payment.application_id,
                payment.applicant_email,
                payment.status,
                payment.amount_cents,
                payment.currency,
                payment.payment_id,
                payment.checkout_url,
                payment.failure_reason,
                payment.settled_by_event,
            ),
        )
        return cursor.rowcount == 1

    async def update_status(self, payment: Payment) -> None:
        await self.connection.execute(
            "UPDATE payments SET status = %s, failure_reason = %s, settled_by_event = %s,"
            " updated_at = now() WHERE application_id = %s",
            (
                payment.status,
                payment.failure_reason,
                payment.settled_by_event,
                payment.application_id,
            ),
        )

    async def serialize(self, application_id: str) -> None:
        """Until the transaction ends, one transaction at a time records or settles this
        application's payment: a webhook parked by one is always seen by the other."""
        await self.connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (application_id,)
        )

    async def park_webhook(self, webhook: PaymentWebhookReceived) -> None:
        await self.connection.execute(
            "INSERT INTO early_webhooks (provider_event_id, application_id, payload)"
            " VALUES (%s, %s, %s) ON CONFLICT (provider_event_id) DO NOTHING",
            (
                webhook.provider_event_id,
                webhook.application_id,
                Jsonb(webhook.model_dump(mode="json")),
            ),
        )

    async def take_parked_webhooks(self, application_id: str) -> list[PaymentWebhookReceived]:
        """The webhooks parked for this application, oldest first, removed from the table."""
        cursor = await self.connection.execute(
            "DELETE FROM early_webhooks WHERE application_id = %s RETURNING payload, received_at",
            (application_id,),
        )
        rows = sorted(await cursor.fetchall(), key=lambda row: row[1])
        return [PaymentWebhookReceived.model_validate(row[0]) for row in rows]
