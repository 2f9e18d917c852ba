"""PDF bombs against the verifier's real checking path: the blob store, the worker pool with
its per-file timeout, and the checks. Each hostile file ends in a rejection, by a check or by
the timeout, within a bounded time; none hangs the verifier. No servers needed."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from services.verifier.checker import PooledChecker
from services.verifier.document_rules import Limits
from services.verifier.isolation import TIMED_OUT, CheckPool
from shared.blobs import BlobStore
from shared.events.catalog import DocumentRef
from tests.security import hostile_pdfs
from tests.unit.verifier.documents import pdf_bytes

TIMEOUT = 5.0
GRACE = 1.0


@pytest.fixture(scope="module")
async def check_pool() -> AsyncIterator[CheckPool]:
    pool = CheckPool(processes=2, memory_limit_bytes=1024 * 1024 * 1024, grace=GRACE)
    await pool.warm_up()
    yield pool
    await pool.close()


@pytest.fixture
def checker(check_pool: CheckPool, tmp_path: Path) -> PooledChecker:
    return PooledChecker(BlobStore(tmp_path / "blobs", fsync=False), check_pool, Limits(), TIMEOUT)


def stored(checker: PooledChecker, data: bytes) -> DocumentRef:
    blob = checker.store.put_bytes(data)
    return DocumentRef(
        document_id="doc",
        filename="bomb.pdf",
        content_type="application/pdf",
        size=blob.size,
        sha256=hashlib.sha256(data).hexdigest(),
    )


BOMBS: dict[str, Callable[[], bytes]] = {
    "arrays nested a million deep": lambda: hostile_pdfs.nested_arrays(1_000_000),
    "dictionaries nested 100k deep": lambda: hostile_pdfs.nested_dictionaries(100_000),
    "dictionaries nested 2k deep": lambda: hostile_pdfs.nested_dictionaries(2_000),
    "a million pages in a 3-level tree": lambda: hostile_pdfs.page_tree(100, 3),
    "a million pages in a 2-level tree": lambda: hostile_pdfs.page_tree(1000, 2),
    "200k kids in one node": lambda: hostile_pdfs.wide_page_list(200_000),
    "1000 pages (over the limit)": lambda: hostile_pdfs.wide_page_list(1000),
    "a page tree that contains itself": hostile_pdfs.page_tree_cycle,
}


@pytest.mark.parametrize("make", BOMBS.values(), ids=BOMBS.keys())
async def test_a_pdf_bomb_is_rejected_in_bounded_time(
    checker: PooledChecker, make: Callable[[], bytes]
) -> None:
    # Given a small hostile PDF in the blob store
    document = stored(checker, make())
    # When the verifier checks it
    started = time.monotonic()
    verdict = await asyncio.wait_for(checker.verify(document), TIMEOUT + GRACE + 10)
    # Then it is rejected, by a check or by the timeout, and the check did not hang
    assert not verdict.ok
    assert verdict.reason == TIMED_OUT or "PDF" in str(verdict.reason), verdict.reason
    assert time.monotonic() - started < TIMEOUT + GRACE + 5


async def test_the_pool_still_accepts_a_good_pdf_after_the_bombs(checker: PooledChecker) -> None:
    for make in BOMBS.values():
        await checker.verify(stored(checker, make()))
    assert (await checker.verify(stored(checker, pdf_bytes(3)))).ok


def test_a_modestly_nested_pdf_is_still_accepted() -> None:
    from services.verifier.document_rules import check_document

    data = hostile_pdfs.nested_dictionaries(20)
    verdict = check_document(
        data, "application/pdf", hashlib.sha256(data).hexdigest(), len(data), Limits()
    )
    assert verdict.ok, verdict.reason
