"""The verifier's handler through a fake unit of work and a fake checker: no Postgres, no
worker processes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.verifier.document_rules import Verdict
from services.verifier.handler import make_handler
from shared.consumer.memory import InMemoryTransactions, MemoryTransaction
from shared.consumer.runtime import MessageContext
from shared.events.catalog import (
    ApplicationSubmitted,
    DocumentRef,
    DocumentsRejected,
    DocumentsVerified,
)
from shared.events.envelope import new_envelope
from shared.system_topology import SYSTEM_TOPOLOGY


@dataclass
class FakeVerifications:
    decided: dict[str, DocumentsVerified | DocumentsRejected] = field(default_factory=dict)

    async def already_decided(self, application_id: str) -> bool:
        return application_id in self.decided

    async def record_outcome(
        self, event: DocumentsVerified | DocumentsRejected, message_id: str, duration_ms: int
    ) -> bool:
        if event.application_id in self.decided:
            return False
        self.decided[event.application_id] = event
        return True


class FakeVerifierWork(MemoryTransaction):
    def __init__(self) -> None:
        super().__init__(InMemoryTransactions())
        self.verifications = FakeVerifications()


class Checker:
    """Refuses the files named in ``bad``, with a reason."""

    def __init__(self, bad: set[str]) -> None:
        self.bad = bad

    async def verify(self, document: DocumentRef) -> Verdict:
        return (
            Verdict(ok=False, reason="corrupt") if document.filename in self.bad else Verdict(True)
        )


def submitted(*filenames: str) -> ApplicationSubmitted:
    return ApplicationSubmitted(
        application_id="app-1",
        applicant_id="u-1",
        applicant_email="ada@example.org",
        program="Law",
        documents=[
            DocumentRef(
                document_id=f"d{n}",
                filename=name,
                content_type="application/pdf",
                size=10,
                sha256="0" * 64,
            )
            for n, name in enumerate(filenames)
        ],
    )


def context(
    work: FakeVerifierWork, payload: ApplicationSubmitted
) -> MessageContext[FakeVerifierWork]:
    queue = SYSTEM_TOPOLOGY.queue("verifier.documents")
    return MessageContext(new_envelope(payload), payload, 1, queue, work)


@pytest.fixture
def work() -> FakeVerifierWork:
    return FakeVerifierWork()


@pytest.mark.parametrize(
    ("bad", "expected"), [(set(), "documents.verified"), ({"b.pdf"}, "documents.rejected")]
)
async def test_the_decision_is_recorded_and_emitted_once(
    work: FakeVerifierWork, bad: set[str], expected: str
) -> None:
    handle = make_handler(Checker(bad))
    # When the same submission is handled twice (a resent event under a new id)
    first, second = (
        context(work, submitted("a.pdf", "b.pdf")),
        context(work, submitted("a.pdf", "b.pdf")),
    )
    await handle(first)
    await handle(second)
    # Then one decision was recorded, and only the first emitted it
    assert [e.type for e in first.outgoing] == [expected]
    assert second.outgoing == []
    decision = work.verifications.decided["app-1"]
    assert decision.event_type == expected
    assert [d.reason for d in decision.documents] == [None, "corrupt" if bad else None]
