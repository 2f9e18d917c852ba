"""The worker pool: slow files time out, stuck workers are replaced, the service goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from services.verifier.checker import BlobMissing, PooledChecker
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
from tests.unit.verifier import workers
from tests.unit.verifier.documents import pdf_bytes, png_bytes, sha256

T = TypeVar("T")


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


async def test_a_job_beside_a_wedged_one_completes(check_pool: CheckPool) -> None:
    # Given a healthy job running beside a wedged one
    healthy = asyncio.create_task(
        check_pool.run(workers.sleep_then_return, 1.5, "done", deadline=10.0)
    )
    wedged = asyncio.create_task(check_pool.run(workers.wedge, 60.0, deadline=0.2))
    # When the wedged job's worker is killed
    with pytest.raises(WorkerWedged):
        await wedged
    # Then the healthy job still completes
    assert await healthy == "done"


async def test_a_job_whose_worker_dies_twice_is_a_crash_not_a_retry(check_pool: CheckPool) -> None:
    # A worker may be killed from outside once; dying again under the same job is the job's
    # doing, and retrying the message later would only crash again.
    with pytest.raises(WorkerCrashed):
        await check_pool.run(workers.die, deadline=5.0)
    assert check_pool.replacements == 2
    assert await check_pool.run(workers.sleep_then_return, 0.0, "ok", deadline=5.0) == "ok"


class CrashingPool(CheckPool):
    """A pool whose every job kills its worker twice, as a file that crashes the parser."""

    async def run(self, function: Callable[..., T], *args: object, deadline: float) -> T:
        raise WorkerCrashed("the worker process died twice under this job")


async def test_the_checker_rejects_a_file_that_crashes_its_worker(tmp_path: Path) -> None:
    # Given a stored file whose check crashes the worker every time
    store = BlobStore(tmp_path, fsync=False)
    data = pdf_bytes()
    store.put_bytes(data)
    checker = PooledChecker(store, CrashingPool(processes=1), Limits(), timeout=1.0)
    # When it is checked / Then that document is rejected with the reason
    verdict = await checker.verify(document_ref(data, "application/pdf"))
    assert verdict == Verdict.reject(CRASHED)


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


async def test_wedged_and_crashing_jobs_fail_alone_while_the_others_get_their_answers() -> None:
    # issue 14, item 12: one stuck or crashing check used to take the whole pool down with it,
    # and the jobs beside it gave up (transient error) once it had broken twice.
    # Given five workers: two healthy jobs, two that wedge their worker, one that crashes it
    pool = CheckPool(processes=5, grace=0.3)
    await pool.warm_up()
    try:
        # When they all run at the same time
        results = await asyncio.gather(
            pool.run(workers.sleep_then_return, 1.5, "first", deadline=10.0),
            pool.run(workers.sleep_then_return, 1.0, "second", deadline=10.0),
            pool.run(workers.wedge, 60.0, deadline=0.2),
            pool.run(workers.wedge, 60.0, deadline=0.6),
            pool.run(workers.die, deadline=5.0),
            return_exceptions=True,
        )
        # Then the healthy jobs get their answers; the wedged ones fail as wedged, and the
        # crashing one fails for good (a file that kills its checker is not retried for ever)
        first, second, wedged, wedged_later, crashed = results
        assert (first, second) == ("first", "second")
        assert isinstance(wedged, WorkerWedged)
        assert isinstance(wedged_later, WorkerWedged)
        assert isinstance(crashed, Exception) and not isinstance(crashed, TransientError)
        # And the pool still works
        assert await pool.run(workers.sleep_then_return, 0.0, "after", deadline=5.0) == "after"
    finally:
        await pool.close()
