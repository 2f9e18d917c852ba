"""Collecting the evidence after a chaos run: from the system's own database (as admin), the
sandbox provider, the SMTP catcher's mailbox and RabbitMQ's management API. Never from logs."""

from __future__ import annotations

import json
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
from psycopg import sql

from devtools.chaos.audit import DeadLetter, Mail
from devtools.smtp_catcher import read_mailbox
from devtools.system import RunningSystem
from services.api.statuses import TERMINAL
from shared.manifest import service_names


class Collector:
    def __init__(self, system: RunningSystem) -> None:
        self.system = system
        _, auth = system._management()
        self.management = httpx.AsyncClient(auth=auth, timeout=15)
        self.vhost = quote(system.name, safe="")

    def _api(self, path: str) -> str:
        """On the management API of a node that answers now (a cluster run breaks nodes)."""
        return f"{self.system._management()[0]}{path}"

    async def close(self) -> None:
        await self.management.aclose()

    async def statuses(self) -> dict[str, str]:
        async with await psycopg.AsyncConnection.connect(self.system.database_url) as conn:
            rows = await (
                await conn.execute("SELECT id::text, status FROM api.applications")
            ).fetchall()
        return {str(row[0]): str(row[1]) for row in rows}

    async def completion_times(self) -> list[float]:
        """When each application reached its outcome (epoch seconds, from its history)."""
        query = (
            "SELECT min(extract(epoch FROM at)) FROM api.application_history"
            " WHERE status = ANY(%s) GROUP BY application_id"
        )
        async with await psycopg.AsyncConnection.connect(self.system.database_url) as conn:
            terminal = sorted(str(status.value) for status in TERMINAL)
            rows = await (await conn.execute(query, [terminal])).fetchall()
        return [float(row[0]) for row in rows]

    async def unpublished_outbox(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        async with await psycopg.AsyncConnection.connect(self.system.database_url) as conn:
            for schema in service_names():
                query = sql.SQL("SELECT count(*) FROM {}.outbox WHERE published_at IS NULL")
                row = await (await conn.execute(query.format(sql.Identifier(schema)))).fetchone()
                counts[schema] = int(row[0]) if row else 0
        return counts

    async def provider_payments(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"{self.system.psp}/v1/payments")
            response.raise_for_status()
            payments: list[dict[str, Any]] = response.json()
            return payments

    def mails(self) -> list[Mail]:
        return [
            Mail(
                application_id=message.get("X-Application-Id"),
                template=str(message.get("X-Email-Template", "")),
                message_id=str(message.get("Message-ID", "")).strip(),
                recipient=parseaddr(str(message.get("To", "")))[1].lower(),
                subject=str(message.get("Subject", "")),
            )
            for message in read_mailbox(self.system.mail_dir)
        ]

    async def queues(self) -> list[dict[str, Any]]:
        response = await self.management.get(self._api(f"/api/queues/{self.vhost}"))
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found

    async def busy_work(self) -> int:
        """Messages still in any queue but the DLQs (ready or being processed)."""
        return sum(
            int(queue.get("messages", 0) or 0)
            for queue in await self.queues()
            if not str(queue["name"]).endswith(".dlq")
        )

    async def dead_letters(self) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        for queue in await self.queues():
            name = str(queue["name"])
            count = int(queue.get("messages", 0) or 0)
            if not name.endswith(".dlq") or count == 0:
                continue
            response = await self.management.post(
                self._api(f"/api/queues/{self.vhost}/{quote(name, safe='')}/get"),
                json={"count": count, "ackmode": "ack_requeue_true", "encoding": "auto"},
            )
            response.raise_for_status()
            for message in response.json():
                letters.append(_dead_letter(name, message))
        return letters


def _dead_letter(queue: str, message: dict[str, Any]) -> DeadLetter:
    properties = message.get("properties") or {}
    headers = properties.get("headers") or {}
    message_id = properties.get("message_id")
    if not message_id:
        try:
            message_id = json.loads(message.get("payload", "")).get("message_id")
        except (ValueError, AttributeError):
            message_id = None
    reason = ", ".join(f"{key}={value}" for key, value in headers.items() if key != "x-death")
    return DeadLetter(queue, str(message_id) if message_id else None, reason[:300])
