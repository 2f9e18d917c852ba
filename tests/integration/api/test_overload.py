"""Overload: past the admission limit a submission is answered at once with 503 and
Retry-After, nothing is stored, and its retry with the same Idempotency-Key makes exactly one
application. Reads are not shed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from services.api.settings import ApiSettings
from tests.integration.api.conftest import Applicant, scalar
from tests.integration.api.slow_client import SlowUpload
from tests.support.waiting import eventually
from tests.unit.api.multipart import CONTENT_TYPE, PDF, FilePart, multipart, valid_fields

BODY = multipart(valid_fields(), [FilePart("cv.pdf", PDF)])


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    """One submission at a time: the limit under test, forced."""
    return api_settings.model_copy(update={"api_max_submissions_in_flight": 1})


@pytest.fixture
async def slot_taken(served: str, app: FastAPI, alice: Applicant) -> AsyncIterator[SlowUpload]:
    """A slow client holding the only submission slot (half its body sent)."""
    headers = {**alice.headers, "Content-Type": CONTENT_TYPE, "Idempotency-Key": "slow"}
    slow = await SlowUpload.start(served, "/applications", headers, BODY, sent=len(BODY) // 2)
    await eventually(
        lambda: app.state.resources.intake.admission.in_flight == 1, what="the slot taken"
    )
    yield slow
    await slow.close()


async def test_past_the_limit_a_submission_gets_503_and_its_retry_makes_one_application(
    served: str, slot_taken: SlowUpload, alice: Applicant, db: AsyncConnectionPool
) -> None:
    headers = {**alice.headers, "Content-Type": CONTENT_TYPE, "Idempotency-Key": "deadline-day"}
    async with httpx.AsyncClient(base_url=served, timeout=10) as http:
        busy = await http.post("/applications", content=BODY, headers=headers)

        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "1"
        assert "same Idempotency-Key" in busy.json()["detail"]
        assert await scalar(db, "SELECT count(*) FROM applications") == 0

        status, _, _ = await slot_taken.finish()  # the slow client gets through
        assert status == 202
        retried = await http.post("/applications", content=BODY, headers=headers)
        again = await http.post("/applications", content=BODY, headers=headers)

    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["applicationId"] == retried.json()["applicationId"]
    assert await scalar(db, "SELECT count(*) FROM applications") == 2  # the slow one + this
    assert await scalar(db, "SELECT count(*) FROM outbox") == 2


async def test_reads_are_not_shed_while_submissions_are(
    served: str, slot_taken: SlowUpload, alice: Applicant
) -> None:
    async with httpx.AsyncClient(base_url=served, timeout=10, headers=alice.headers) as http:
        health = await http.get("/healthz")
        mine = await http.get("/applications")
        refused = await http.post(
            "/applications", content=BODY, headers={"Content-Type": CONTENT_TYPE}
        )

    assert health.status_code == 200
    assert mine.status_code == 200
    assert refused.status_code == 503
