"""A file whose bytes are not what its declared type says, through the whole system.

Where it is refused: not at upload. The API stores what it is given and answers 202 without
parsing untrusted content on its fast path (it only checks the declared type is one it
accepts); the verifier compares the declared type with the magic bytes and rejects the
application, which ends in ``verification_failed`` with the reason for the applicant.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from services.api.statuses import TERMINAL
from tests.e2e.conftest import Applicant, pdf_bytes
from tests.unit.verifier.documents import png_bytes

pytestmark = pytest.mark.e2e


async def wait_for_terminal(
    who: Applicant, application_id: str, timeout: float = 60
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        status = await who.status(application_id)
        if status["status"] in TERMINAL:
            return status
        assert time.monotonic() < deadline, f"still {status['status']} after {timeout} s"
        await asyncio.sleep(0.3)


async def test_a_png_declared_as_a_pdf_is_accepted_then_fails_verification(
    applicant: Applicant,
) -> None:
    # Given a real PDF and a PNG that claims to be a PDF
    files = [
        ("statement.pdf", pdf_bytes(), "application/pdf"),
        ("transcript.pdf", png_bytes(), "application/pdf"),
    ]
    # When they are submitted
    accepted = await applicant.submit(files)
    # Then the API accepts the submission
    assert accepted.status_code == 202, accepted.text
    # And the verifier rejects it, naming the file and what its content really is
    status = await wait_for_terminal(applicant, str(accepted.json()["applicationId"]))
    assert status["status"] == "verification_failed"
    assert "declared as a PDF but the content is a PNG image" in str(status)
