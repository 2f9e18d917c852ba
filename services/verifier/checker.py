"""The handler's view of the checks: a document reference in, a verdict out (the rules
themselves: ``document_rules``; where they run: ``isolation``)."""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from services.verifier.document_rules import Limits, Verdict
from services.verifier.isolation import (
    CRASHED,
    TIMED_OUT,
    CheckPool,
    WorkerCrashed,
    WorkerWedged,
    verify_blob_file,
)
from shared.blobs import BlobStore
from shared.errors import TransientError
from shared.events.catalog import DocumentRef

log = structlog.get_logger("verifier.checker")


class BlobMissing(TransientError):
    """The API wrote the blob before it committed the submission, so a missing blob means this
    replica does not see the store (not mounted, wrong BLOB_DIR): retry, do not reject."""


class DocumentChecker(Protocol):
    async def verify(self, document: DocumentRef) -> Verdict: ...


class PooledChecker:
    """Reads blobs from the store and checks them in the worker processes."""

    def __init__(self, store: BlobStore, pool: CheckPool, limits: Limits, timeout: float) -> None:
        self.store = store
        self.pool = pool
        self.limits = limits
        self.timeout = timeout

    async def verify(self, document: DocumentRef) -> Verdict:
        path = await asyncio.to_thread(self.store.locate, document.sha256)
        if not await asyncio.to_thread(path.is_file):
            raise self._missing(document)
        try:
            return await self.pool.run(
                verify_blob_file,
                str(path),
                document.content_type,
                document.sha256,
                document.size,
                self.limits,
                self.timeout,
                deadline=self.timeout,
            )
        except WorkerWedged:
            return Verdict.reject(TIMED_OUT)
        except WorkerCrashed:
            log.warning("a file crashed its checker twice", document_id=document.document_id)
            return Verdict.reject(CRASHED)
        except FileNotFoundError:
            raise self._missing(document) from None

    def _missing(self, document: DocumentRef) -> BlobMissing:
        log.error(
            "blob missing from the store: is BLOB_DIR mounted? retrying later",
            blob_dir=str(self.store.root.resolve()),
            sha256=document.sha256,
            document_id=document.document_id,
        )
        return BlobMissing(f"blob {document.sha256} not found under {self.store.root}")
