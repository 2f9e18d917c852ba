"""Hostile uploads against the API in-process (real Postgres, a throw-away schema).

What the API decides at upload: size (streamed, cut off at the limit), count, emptiness and
the declared type; file names are labels, never paths. What it leaves to the verifier: whether
the bytes are what the declared type says (see test_hostile_documents.py and
test_wrong_magic_bytes.py): the upload path stays fast and never parses untrusted content.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from services.api.settings import ApiSettings
from tests.integration.api.conftest import Applicant, scalar
from tests.unit.api.multipart import BOUNDARY, CONTENT_TYPE, PDF, PNG, FilePart, multipart

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def fields() -> dict[str, str]:
    return {"program": "MSc Security", "personal_statement": "Hostile input is my hobby."}


async def submit(
    client: httpx.AsyncClient, who: Applicant, files: list[FilePart]
) -> httpx.Response:
    return await client.post(
        "/applications",
        content=multipart(fields(), files),
        headers={**who.headers, "content-type": CONTENT_TYPE},
    )


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


class EndlessFile:
    """A multipart body whose one file never ends, streamed without a Content-Length; counts
    how many bytes the server pulled from it."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total = total
        self.chunk = chunk
        self.pulled = 0

    async def stream(self) -> AsyncIterator[bytes]:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="program"\r\n\r\nMSc\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="huge.pdf"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.7\n'
        ).encode()
        self.pulled += len(head)
        yield head
        block = b"0" * self.chunk
        while self.pulled < self.total:
            self.pulled += len(block)
            yield block


async def test_an_oversized_streamed_upload_is_413_and_read_only_up_to_the_limit(
    client: httpx.AsyncClient, alice: Applicant, api_settings: ApiSettings
) -> None:
    # Given a 200 MiB file sent chunked (no Content-Length announces it)
    endless = EndlessFile(total=200 * MIB)
    # When it is uploaded
    response = await client.post(
        "/applications",
        content=endless.stream(),
        headers={**alice.headers, "content-type": CONTENT_TYPE},
    )
    # Then it is refused as too large
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    # And the server stopped reading right after the per-file limit, so neither memory nor
    # disk ever held more than that of it
    assert endless.pulled <= api_settings.max_file_bytes + MIB
    # And no part of it is left in the blob store
    assert files_under(api_settings.blob_dir) == []


async def test_file_names_are_stored_sanitised_and_never_used_as_paths(
    client: httpx.AsyncClient,
    alice: Applicant,
    api_settings: ApiSettings,
    db: AsyncConnectionPool,
    tmp_path: Path,
) -> None:
    # Given files named to escape the blob folder, or to cut the name short with a NUL byte
    hostile = {
        "../../../../etc/passwd.pdf": "passwd.pdf",
        "..\\..\\windows\\evil.pdf": "evil.pdf",
        "/absolute/path.pdf": "path.pdf",
        "cv\x00.sh.pdf": "cv.sh.pdf",
        "..": "document",
    }
    files = [FilePart(name, PDF + name.encode()) for name in hostile]
    # When they are uploaded
    response = await submit(client, alice, files)
    # Then the submission is accepted with each name reduced to a harmless label
    assert response.status_code == 202, response.text
    async with db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT filename, sha256 FROM application_documents ORDER BY position"
            )
        ).fetchall()
    assert [name for name, _ in rows] == list(hostile.values())
    assert all("\x00" not in name and "/" not in name and "\\" not in name for name, _ in rows)
    # And the bytes are stored under their SHA-256 inside BLOB_DIR, and nowhere else
    blob_dir = api_settings.blob_dir.resolve()
    written = [path.resolve() for path in files_under(tmp_path)]
    assert written and all(path.is_relative_to(blob_dir) for path in written)
    assert sorted(path.name for path in written) == sorted(
        hashlib.sha256(part.content).hexdigest() for part in files
    )
    assert {sha for _, sha in rows} == {path.name for path in written}


async def test_a_file_arriving_in_one_chunk_larger_than_the_spool_is_stored_whole(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool, api_settings: ApiSettings
) -> None:
    # Given a 1 MiB file the server reads in one chunk (the in-process client sends it so):
    # an empty first write to the streaming writer used to read as the end of the file, and
    # the document was stored empty (a 500 from the size check, or an empty blob)
    content = PDF + b"x" * (MIB - len(PDF))
    response = await submit(client, alice, [FilePart("one-chunk.pdf", content)])
    assert response.status_code == 202
    sha256 = hashlib.sha256(content).hexdigest()
    assert await scalar(db, "SELECT size FROM application_documents") == MIB
    (stored,) = files_under(api_settings.blob_dir)
    assert stored.name == sha256 and stored.stat().st_size == MIB


async def test_six_files_are_422_and_nothing_is_written(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    files = [FilePart(f"doc{n}.pdf", PDF + bytes([n])) for n in range(6)]
    response = await submit(client, alice, files)
    assert response.status_code == 422
    assert "at most 5 files" in response.json()["detail"]
    assert await scalar(db, "SELECT count(*) FROM applications") == 0
    assert await scalar(db, "SELECT count(*) FROM outbox") == 0


async def test_five_files_are_accepted(client: httpx.AsyncClient, alice: Applicant) -> None:
    files = [FilePart(f"doc{n}.pdf", PDF + bytes([n])) for n in range(5)]
    assert (await submit(client, alice, files)).status_code == 202


@pytest.mark.parametrize(
    "files",
    [
        [FilePart("empty.pdf", b"")],
        [FilePart("cv.pdf", PDF), FilePart("empty.png", b"", "image/png")],
    ],
    ids=["only file empty", "second file empty"],
)
async def test_an_empty_file_is_422_and_nothing_is_written(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool, files: list[FilePart]
) -> None:
    response = await submit(client, alice, files)
    assert response.status_code == 422
    assert "is empty" in response.json()["detail"]
    assert await scalar(db, "SELECT count(*) FROM applications") == 0


async def test_wrong_magic_bytes_are_accepted_at_upload_for_the_verifier_to_judge(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    # Given a PNG declared as a PDF
    response = await submit(client, alice, [FilePart("cv.pdf", PNG, "application/pdf")])
    # Then the API accepts it as declared (it does not parse content on the fast path) ...
    assert response.status_code == 202
    assert await scalar(db, "SELECT content_type FROM application_documents") == "application/pdf"
    # ... and the verifier rejects it: see test_wrong_magic_bytes.py (the system) and
    # test_hostile_documents.py (the checks)
