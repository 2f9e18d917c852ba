"""The verifier's handler against the real Postgres, with real files and worker processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from services.verifier.checker import BlobMissing, PooledChecker
from services.verifier.document_rules import Limits
from services.verifier.handler import VerifierTransaction, make_handler
from services.verifier.isolation import CheckPool
from shared.blobs import BlobStore
from shared.consumer.runtime import MessageContext
from shared.db.transactions import PostgresTransactions
from shared.events.catalog import ApplicationSubmitted, DocumentRef
from shared.events.envelope import Envelope, new_envelope
from shared.system_topology import SYSTEM_TOPOLOGY
from tests.unit.verifier.documents import encrypted_pdf_bytes, jpeg_bytes, pdf_bytes, png_bytes

QUEUE = SYSTEM_TOPOLOGY.queue("verifier.documents")


@pytest.fixture
async def check_pool() -> AsyncIterator[CheckPool]:
    pool = CheckPool(processes=2)
    await pool.warm_up()
    yield pool
    await pool.close()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", fsync=False)


class Verifier:
    """Runs the handler the way the consumer runtime does: one transaction per message."""

    def __init__(self, pool: AsyncConnectionPool, schema: str, checker: PooledChecker) -> None:
        self.transactions = PostgresTransactions(pool, schema, VerifierTransaction)
        self.pool = pool
        self.handler = make_handler(checker)

    async def deliver(self, envelope: Envelope) -> list[Envelope]:
        async with self.transactions.begin() as tx:
            payload = ApplicationSubmitted.model_validate(envelope.payload)
            ctx = MessageContext(envelope, payload, 1, QUEUE, tx)
            await self.handler(ctx)
            await tx.add_outbox(ctx.outgoing)
        return ctx.outgoing

    async def rows(self, query: str) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            return await (await conn.execute(query)).fetchall()


@pytest.fixture
def verifier(
    verifier_pool: AsyncConnectionPool,
    verifier_schema: str,
    check_pool: CheckPool,
    store: BlobStore,
) -> Verifier:
    checker = PooledChecker(store, check_pool, Limits(), timeout=5.0)
    return Verifier(verifier_pool, verifier_schema, checker)


def upload(store: BlobStore, data: bytes, content_type: str, name: str) -> DocumentRef:
    ref = store.put_bytes(data)
    return DocumentRef(
        document_id=name,
        filename=f"{name}.bin",
        content_type=content_type,
        size=ref.size,
        sha256=ref.sha256,
    )


def submitted(*documents: DocumentRef) -> Envelope:
    return new_envelope(
        ApplicationSubmitted(
            application_id=str(uuid.uuid4()),
            applicant_id="applicant-1",
            applicant_email="ada@example.org",
            program="physics",
            documents=list(documents),
        )
    )


async def test_valid_documents_are_verified_and_recorded(
    verifier: Verifier, store: BlobStore
) -> None:
    # Given an application with a PDF, a PNG and a JPEG in the blob store
    envelope = submitted(
        upload(store, pdf_bytes(2), "application/pdf", "transcript"),
        upload(store, png_bytes(), "image/png", "photo"),
        upload(store, jpeg_bytes(), "image/jpeg", "passport"),
    )
    # When the verifier handles it
    await verifier.deliver(envelope)
    # Then documents.verified is in the outbox, with every file ok
    outbox = await verifier.rows("SELECT type, body FROM outbox")
    assert [row[0] for row in outbox] == ["documents.verified"]
    event = json.loads(outbox[0][1])
    assert event["causation_id"] == str(envelope.message_id)
    assert [(d["document_id"], d["ok"]) for d in event["payload"]["documents"]] == [
        ("transcript", True),
        ("photo", True),
        ("passport", True),
    ]
    # And the outcome is stored
    stored = await verifier.rows("SELECT application_id, outcome, message_id FROM verifications")
    assert stored == [(envelope.payload["application_id"], "verified", envelope.message_id)]


async def test_one_bad_document_rejects_the_application_with_reasons(
    verifier: Verifier, store: BlobStore
) -> None:
    # Given a valid PDF, an encrypted PDF, and a PNG declared as a JPEG
    envelope = submitted(
        upload(store, pdf_bytes(), "application/pdf", "good"),
        upload(store, encrypted_pdf_bytes(), "application/pdf", "locked"),
        upload(store, png_bytes(), "image/jpeg", "mislabelled"),
    )
    # When the verifier handles it
    await verifier.deliver(envelope)
    # Then documents.rejected names each file's verdict
    outbox = await verifier.rows("SELECT type, body FROM outbox")
    assert [row[0] for row in outbox] == ["documents.rejected"]
    documents = json.loads(outbox[0][1])["payload"]["documents"]
    assert [(d["document_id"], d["ok"], d["reason"]) for d in documents] == [
        ("good", True, None),
        ("locked", False, "PDF is encrypted (password-protected)"),
        ("mislabelled", False, "declared as a JPEG image but the content is a PNG image"),
    ]
    stored = await verifier.rows("SELECT outcome, documents FROM verifications")
    assert stored[0][0] == "rejected"
    assert stored[0][1] == documents


async def test_a_missing_blob_rolls_back_and_is_retried(
    verifier: Verifier, store: BlobStore
) -> None:
    # Given an application whose second file is not in this replica's store
    present = upload(store, pdf_bytes(), "application/pdf", "present")
    absent = DocumentRef(
        document_id="absent",
        filename="absent.pdf",
        content_type="application/pdf",
        size=10,
        sha256="ab" * 32,
    )
    envelope = submitted(present, absent)
    # When the verifier handles it / Then a transient error leaves nothing behind
    with pytest.raises(BlobMissing):
        await verifier.deliver(envelope)
    assert await verifier.rows("SELECT * FROM outbox") == []
    assert await verifier.rows("SELECT * FROM verifications") == []


async def test_a_second_message_for_a_decided_application_emits_nothing(
    verifier: Verifier, store: BlobStore
) -> None:
    # Given an application already verified
    first = submitted(upload(store, png_bytes(), "image/png", "photo"))
    await verifier.deliver(first)
    # When another message about the same application arrives (new message id)
    again = new_envelope(ApplicationSubmitted.model_validate(first.payload))
    emitted = await verifier.deliver(again)
    # Then it is decided once: no second event, one stored outcome
    assert emitted == []
    assert len(await verifier.rows("SELECT * FROM outbox")) == 1
    assert len(await verifier.rows("SELECT * FROM verifications")) == 1
