"""Slow clients (hardening issue, item 2): no thread, no connection and no lock is held while
a client is slow to send, so trickling uploads never stop other submissions; a body that stops
arriving is refused and leaves nothing behind."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from services.api.settings import ApiSettings
from tests.integration.api.conftest import Applicant, scalar
from tests.integration.api.slow_client import SlowUpload
from tests.support.waiting import eventually
from tests.unit.api.multipart import CONTENT_TYPE, PDF, FilePart, multipart, valid_fields

KIB = 1024
# Larger than the in-memory spool: such files are written to disk as they arrive.
BIG_BODY = multipart(valid_fields(), [FilePart("scan.pdf", PDF + b"\0" * (600 * KIB))])
SMALL_BODY = multipart(valid_fields(), [FilePart("cv.pdf", PDF)])


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    return api_settings.model_copy(update={"api_upload_idle_timeout_seconds": 2.0})


async def test_twenty_trickling_uploads_do_not_stop_a_normal_submission(
    served: str, alice: Applicant, api_settings: ApiSettings
) -> None:
    headers = {**alice.headers, "Content-Type": CONTENT_TYPE}
    slow = [
        await SlowUpload.start(served, "/applications", headers, BIG_BODY, sent=400 * KIB)
        for _ in range(20)
    ]
    try:
        # the uploads are under way: files half written (more than the 16 writer threads an
        # earlier design gave them, which is what this test once caught), and a moment more
        await eventually(
            lambda: len(_files(api_settings.blob_dir)) >= 16, what="the uploads under way"
        )
        await asyncio.sleep(1)
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=served, timeout=5) as http:
            normal = await http.post("/applications", content=SMALL_BODY, headers=headers)
        took = time.monotonic() - started

        assert normal.status_code == 202
        assert took < 1.0, f"a normal submission took {took:.2f} s behind 20 slow uploads"
    finally:
        await asyncio.gather(*(upload.close() for upload in slow))


async def test_a_body_that_stops_arriving_is_408_and_leaves_no_file(
    served: str, alice: Applicant, api_settings: ApiSettings, db: AsyncConnectionPool
) -> None:
    headers = {**alice.headers, "Content-Type": CONTENT_TYPE}
    stalled = await SlowUpload.start(served, "/applications", headers, BIG_BODY, sent=400 * KIB)
    try:
        status, _, answer = await asyncio.wait_for(stalled.answer(), timeout=10)
    finally:
        await stalled.close()

    assert status == 408
    assert "stopped arriving" in answer["detail"]
    assert await scalar(db, "SELECT count(*) FROM applications") == 0
    assert _files(api_settings.blob_dir) == []


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
