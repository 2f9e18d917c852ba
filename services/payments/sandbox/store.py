"""The sandbox's payments and its pending webhooks, in one SQLite file (they survive restarts).

Exactly one payment per idempotency key: the key is UNIQUE and creation is one
``BEGIN IMMEDIATE`` transaction (insert-or-read), so even two sandbox processes on the same
file cannot both create one. Settling a payment and queueing its webhook happen in the same
transaction, so a crash between them cannot lose the notification.

The calls are synchronous: SQLite on local disk answers in well under a millisecond, and a
call that does not yield also cannot interleave with another request of this process.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Status = Literal["pending", "paid", "failed"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    payment_id      TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    application_id  TEXT NOT NULL,
    amount_cents    INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL,
    failure_reason  TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_application ON payments (application_id);
CREATE TABLE IF NOT EXISTS webhooks (
    event_id        TEXT PRIMARY KEY,
    payment_id      TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    delivered_at    REAL
);
CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks (next_attempt_at) WHERE delivered_at IS NULL;
"""


class IdempotencyConflict(Exception):
    """The key was used before for a different request."""


@dataclass(frozen=True)
class SandboxPayment:
    payment_id: str
    idempotency_key: str
    application_id: str
    amount_cents: int
    currency: str
    status: Status
    failure_reason: str | None
    created_at: float
    updated_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class PendingWebhook:
    event_id: str
    payment_id: str
    body: str
    attempts: int
    next_attempt_at: float


def webhook_event_id(payment_id: str, status: Status) -> str:
    """Stable per payment and outcome: a receiver can deduplicate redeliveries by it."""
    return f"evt_{payment_id}_{status}"


def webhook_body(payment: SandboxPayment) -> str:
    return json.dumps(
        {
            "event_id": webhook_event_id(payment.payment_id, payment.status),
            "payment_id": payment.payment_id,
            "application_id": payment.application_id,
            "status": payment.status,
            "failure_reason": payment.failure_reason,
        },
        separators=(",", ":"),
    )


class PaymentStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        # Durable against a crash of this process (the case the fault tests make), not of the OS.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the payment store is not open")
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")  # takes the write lock now: no lost race later
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def create(
        self, idempotency_key: str, application_id: str, amount_cents: int, currency: str
    ) -> tuple[SandboxPayment, bool]:
        """The payment for this key, and whether this call created it."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM payments WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if row is not None:
                existing = _payment(row)
                if (existing.application_id, existing.amount_cents, existing.currency) != (
                    application_id,
                    amount_cents,
                    currency,
                ):
                    raise IdempotencyConflict(
                        f"Idempotency-Key {idempotency_key!r} was used for a different request"
                    )
                return existing, False
            payment = SandboxPayment(
                payment_id=f"pay_{uuid.uuid4().hex[:24]}",
                idempotency_key=idempotency_key,
                application_id=application_id,
                amount_cents=amount_cents,
                currency=currency,
                status="pending",
                failure_reason=None,
                created_at=now,
                updated_at=now,
            )
            db.execute(
                "INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    payment.payment_id,
                    payment.idempotency_key,
                    payment.application_id,
                    payment.amount_cents,
                    payment.currency,
                    payment.status,
                    payment.failure_reason,
                    payment.created_at,
                    payment.updated_at,
                ),
            )
            return payment, True

    def get(self, payment_id: str) -> SandboxPayment | None:
        row = self.db.execute("SELECT * FROM payments WHERE payment_id = ?", (payment_id,))
        found = row.fetchone()
        return _payment(found) if found else None

    def search(self, application_id: str | None = None) -> list[SandboxPayment]:
        if application_id is None:
            rows = self.db.execute("SELECT * FROM payments ORDER BY created_at")
        else:
            rows = self.db.execute(
                "SELECT * FROM payments WHERE application_id = ? ORDER BY created_at",
                (application_id,),
            )
        return [_payment(row) for row in rows.fetchall()]

    def pending(self) -> list[SandboxPayment]:
        rows = self.db.execute("SELECT * FROM payments WHERE status = 'pending'")
        return [_payment(row) for row in rows.fetchall()]

    def settle(
        self, payment_id: str, status: Status, failure_reason: str | None = None
    ) -> tuple[SandboxPayment | None, bool]:
        """Pay or decline a pending payment and queue its webhook, atomically.

        Returns the payment as it now is and whether this call changed it (a payment is
        settled once: paying it again, or declining a paid one, changes nothing).
        """
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT * FROM payments WHERE payment_id = ?", (payment_id,))
            found = row.fetchone()
            if found is None:
                return None, False
            payment = _payment(found)
            if payment.status != "pending":
                return payment, False
            db.execute(
                "UPDATE payments SET status = ?, failure_reason = ?, updated_at = ?"
                " WHERE payment_id = ?",
                (status, failure_reason, now, payment_id),
            )
            settled = SandboxPayment(
                **{
                    **asdict(payment),
                    "status": status,
                    "failure_reason": failure_reason,
                    "updated_at": now,
                }
            )
            db.execute(
                "INSERT INTO webhooks (event_id, payment_id, body, next_attempt_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (webhook_event_id(payment_id, status), payment_id, webhook_body(settled), now),
            )
            return settled, True

    def due_webhooks(self, now: float, limit: int = 100) -> list[PendingWebhook]:
        rows = self.db.execute(
            "SELECT event_id, payment_id, body, attempts, next_attempt_at FROM webhooks"
            " WHERE delivered_at IS NULL AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at LIMIT ?",
            (now, limit),
        )
        return [PendingWebhook(**dict(row)) for row in rows.fetchall()]

    def next_webhook_due(self) -> float | None:
        row = self.db.execute(
            "SELECT min(next_attempt_at) FROM webhooks WHERE delivered_at IS NULL"
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def undelivered_webhooks(self) -> int:
        row = self.db.execute("SELECT count(*) FROM webhooks WHERE delivered_at IS NULL")
        return int(row.fetchone()[0])

    def webhook(self, event_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM webhooks WHERE event_id = ?", (event_id,))
        found = row.fetchone()
        return dict(found) if found else None

    def mark_delivered(self, event_id: str, now: float) -> None:
        self.db.execute(
            "UPDATE webhooks SET delivered_at = ?, attempts = attempts + 1, last_error = NULL"
            " WHERE event_id = ?",
            (now, event_id),
        )

    def forget_delivered(self, before: float) -> int:
        """Remove webhooks delivered before ``before``; the number removed."""
        cursor = self.db.execute(
            "DELETE FROM webhooks WHERE delivered_at IS NOT NULL AND delivered_at < ?", (before,)
        )
        return cursor.rowcount

    def mark_attempt_failed(self, event_id: str, next_attempt_at: float, error: str) -> None:
        self.db.execute(
            "UPDATE webhooks SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
            " WHERE event_id = ?",
            (next_attempt_at, error[:500], event_id),
        )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _payment(row: sqlite3.Row) -> SandboxPayment:
    return SandboxPayment(**dict(row))
