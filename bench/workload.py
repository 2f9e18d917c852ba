"""The standard submission: a registered applicant, a 1 KiB personal statement and two valid
PDFs of about 20 KiB each, a fresh Idempotency-Key per request."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, NameObject

from bench.loadgen import Result, multipart_request, run_open_loop

STATEMENT = ("I want to study here because " * 40)[:1024]
# Written into each document and replaced per request: every request uploads documents of
# its own, as applicants do (identical bytes would land on one content-addressed blob).
DOCUMENT_MARKER = b"bench-document-id-placeholder-00"
# The two documents of the standard submission (seeds of ``pdf_of_about``).
PDF_SEEDS = (1, 2)


def pdf_of_about(size: int, seed: int) -> bytes:
    """A valid one-page PDF whose content stream pads it to about ``size`` bytes; its first
    line shows ``DOCUMENT_MARKER`` (uncompressed, so it can be replaced in place)."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=595, height=842)
    text = f"BT /F1 9 Tf 20 820 Td ({DOCUMENT_MARKER.decode()}) Tj ET\n" + "".join(
        f"BT /F1 9 Tf 20 {20 + i % 800} Td (line {seed}-{i}) Tj ET\n" for i in range(size // 40)
    )
    stream = DecodedStreamObject()
    stream.set_data(text.encode()[:size])
    page[NameObject("/Contents")] = writer._add_object(stream)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


async def register_applicant(api: str) -> str:
    """A new applicant; returns its bearer token."""
    email = f"bench-{uuid.uuid4().hex[:10]}@example.org"
    password = "benchmark password"
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        (
            await client.post("/auth/register", json={"email": email, "password": password})
        ).raise_for_status()
        token = await client.post("/auth/token", data={"username": email, "password": password})
        token.raise_for_status()
        return str(token.json()["access_token"])


def submission_factory(api: str, token: str) -> Callable[[], bytes]:
    parts = urlsplit(api)
    files = [
        ("transcript.pdf", pdf_of_about(20 * 1024, PDF_SEEDS[0]), "application/pdf"),
        ("passport.pdf", pdf_of_about(20 * 1024, PDF_SEEDS[1]), "application/pdf"),
    ]
    return multipart_request(
        parts.hostname or "127.0.0.1",
        parts.port or 80,
        "/applications",
        token,
        {"personal_statement": STATEMENT, "program": "Computer Science"},
        files,
        unique_marker=DOCUMENT_MARKER,
    )


async def offer(api: str, rate: float, count: int) -> Result:
    """``count`` standard submissions of a new applicant, offered open-loop at ``rate``."""
    build = submission_factory(api, await register_applicant(api))
    parts = urlsplit(api)
    return await run_open_loop(parts.hostname or "127.0.0.1", parts.port or 80, build, rate, count)


def machine() -> dict[str, object]:
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
