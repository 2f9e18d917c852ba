"""The worker pool: slow files time out, stuck workers are replaced, the service goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.verifier.checker import BlobMissing, PooledChecker
from services.verifier.document_rules import Limits, Verdict
from services.verifier.isolation import TIMED_OUT, CheckPool, WorkerWedged, verify_blob_file
from shared.blobs import BlobStore
from shared.errors import TransientError
from shared.events.catalog import DocumentRef
from tests.unit.verifier import workers
from tests.unit.verifier.documents import pdf_bytes, png_bytes, sha256


@pytest.fixture
async def check_pool() -> AsyncIterator[CheckPool]:
    pool = CheckPool(processes=2, memory_limit_bytes=1024 * 1024 * 1024, grace=0.5)
    await pool.warm_up()
    yield pool
    await pool.close()


def document_ref(data: bytes, content_type: str, name: str = "file") -> DocumentRef:
    return DocumentRef(
        document_id=name,
        filename=f"{name}.bin",
        content_type=content_type,
        size=len(data),
        sha256=sha256(data),
    )


async def test_a_valid_file_is_checked_in_a_worker(check_pool: CheckPool, tmp_path: Path) -> None:
    # Given a stored PDF
    data = pdf_bytes()
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)
    # When a worker checks it
    verdict = await check_pool.run(
        verify_blob_file,
        str(path),
        "application/pdf",
        sha256(data),
        len(data),
        Limits(),
        5.0,
        deadline=5.0,
    )
    # Then it passes
    assert verdict == Verdict.accept()


async def test_a_file_that_takes_too_long_is_rejected_as_timed_out(
    check_pool: CheckPool, tmp_path: Path
) -> None:
    # Given a PDF whose page tree takes pypdf over a second to walk
    data = pdf_bytes(pages=20_000)
    path = tmp_path / "slow.pdf"
    path.write_bytes(data)
    # When it is checked with a 50 ms timeout
    verdict = await check_pool.run(
        verify_blob_file,
        str(path),
        "application/pdf",
        sha256(data),
        len(data),
        Limits(),
        0.05,
        deadline=0.05,
    )
    # Then the worker's own timer rejected it, and the pool was not replaced
    assert verdict == Verdict.reject(TIMED_OUT)
    assert check_pool.replacements == 0


async def test_a_wedged_worker_is_killed_and_the_pool_replaced(check_pool: CheckPool) -> None:
    # Given a job stuck where the worker's timer cannot interrupt it
    # When its deadline and the grace period pass
    with pytest.raises(WorkerWedged):
        await check_pool.run(workers.wedge, 60.0, deadline=0.2)
    # Then the pool was replaced, and the next job runs normally
    assert check_pool.replacements == 1
    assert await check_pool.run(workers.sleep_then_return, 0.0, "ok", deadline=5.0) == "ok"


async def test_jobs_interrupted_by_replacing_the_pool_run_again(check_pool: CheckPool) -> None:
    # Given a healthy job running beside a wedged one
    healthy = asyncio.create_task(
        check_pool.run(workers.sleep_then_return, 1.5, "done", deadline=10.0)
    )
    wedged = asyncio.create_task(check_pool.run(workers.wedge, 60.0, deadline=0.2))
    # When the wedged job's worker is killed (with the whole pool)
    with pytest.raises(WorkerWedged):
        await wedged
    # Then the healthy job still completes, on the new pool
    assert await healthy == "done"


async def test_a_pool_that_keeps_dying_is_a_transient_error(check_pool: CheckPool) -> None:
    with pytest.raises(TransientError):
        await check_pool.run(workers.die, deadline=5.0)


async def test_the_checker_rejects_a_wedged_file_as_timed_out(tmp_path: Path) -> None:
    # Given a pool whose grace is already used up and a file that takes far longer
    pool = CheckPool(processes=1, grace=0.0)
    await pool.warm_up()
    store = BlobStore(tmp_path, fsync=False)
    data = pdf_bytes(pages=20_000)
    store.put_bytes(data)
    checker = PooledChecker(store, pool, Limits(), timeout=0.001)
    try:
        # When it is checked
        verdict = await checker.verify(document_ref(data, "application/pdf"))
    finally:
        await pool.close()
    # Then it is rejected as timed out (by the timer or by the pool's deadline)
    assert verdict == Verdict.reject(TIMED_OUT)


async def test_a_missing_blob_is_transient_not_a_rejection(
    check_pool: CheckPool, tmp_path: Path
) -> None:
    # Given a store that does not hold the referenced blob (not mounted here)
    checker = PooledChecker(BlobStore(tmp_path), check_pool, Limits(), timeout=5.0)
    # When it is checked / Then the error is transient, so the message is retried
    with pytest.raises(BlobMissing) as raised:
        await checker.verify(document_ref(png_bytes(), "image/png"))
    assert isinstance(raised.value, TransientError)
