"""The verifier's decision: per-file verdicts in, the event announcing the outcome out."""

from __future__ import annotations

from collections.abc import Sequence

from services.verifier.document_rules import Verdict
from shared.events.catalog import (
    ApplicationSubmitted,
    DocumentRef,
    DocumentsRejected,
    DocumentsVerified,
    DocumentVerdict,
)


def document_verdict(document: DocumentRef, verdict: Verdict) -> DocumentVerdict:
    return DocumentVerdict(
        document_id=document.document_id,
        filename=document.filename,
        ok=verdict.ok,
        reason=verdict.reason,
    )


def outcome(
    submitted: ApplicationSubmitted, verdicts: Sequence[Verdict]
) -> DocumentsVerified | DocumentsRejected:
    """Verified only if every file passed; the rejection lists every file with its reason, so
    the applicant learns everything to fix at once."""
    if len(verdicts) != len(submitted.documents):
        raise ValueError("one verdict per document is required")
    documents = [
        document_verdict(document, verdict)
        for document, verdict in zip(submitted.documents, verdicts, strict=True)
    ]
    if all(verdict.ok for verdict in verdicts):
        return DocumentsVerified(
            application_id=submitted.application_id,
            applicant_email=submitted.applicant_email,
            documents=documents,
        )
    return DocumentsRejected(
        application_id=submitted.application_id,
        applicant_email=submitted.applicant_email,
        documents=documents,
    )
