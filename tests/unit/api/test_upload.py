"""Reading a submission as it streams: files into the blob store, limits while counting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.api.applications.upload import MAX_PART_HEADER_BYTES, read_submission
from services.api.applications.validation import SubmissionInvalid, UploadLimits
from shared.blobs import BlobStore
from tests.unit.api.multipart import (
    CONTENT_TYPE,
    PDF,
    PNG,
    ChunkFeed,
    FilePart,
    multipart,
    valid_fields,
)

KIB = 1024
LIMITS = UploadLimits(
    max_files=5, max_file_bytes=100 * KIB, max_body_bytes=5 * 100 * KIB + KIB, max_field_bytes=KIB
)


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", fsync=False)


async def read(feed: ChunkFeed, blobs: BlobStore, content_length: str | None = None):  # type: ignore[no-untyped-def]
    return await read_submission(
        feed.stream(),
        content_type=CONTENT_TYPE,
        content_length=content_length,
        blobs=blobs,
        limits=LIMITS,
    )


def stored_files(blobs: BlobStore) -> list[Path]:
    """Every file under the store's root, finished or not (temporary uploads included)."""
    if not blobs.root.exists():
        return []
    return [p for p in blobs.root.rglob("*") if p.is_file()]


async def test_a_valid_form_lands_in_the_blob_store(blobs: BlobStore) -> None:
    # Given a form with two files, sent in small chunks
    big = bytes(range(256)) * 300  # spans many chunks
    body = multipart(
        valid_fields(),
        [FilePart("cv.pdf", PDF), FilePart("photo.png", PNG + big, "image/png")],
    )
    # When it is read
    form = await read(ChunkFeed(body, chunk_size=1000), blobs)
    # Then the fields are there and each file is stored under its SHA-256
    assert form.program == "MSc Computer Science"
    assert form.personal_statement == "I like queues."
    assert [(d.filename, d.content_type, d.size) for d in form.documents] == [
        ("cv.pdf", "application/pdf", len(PDF)),
        ("photo.png", "image/png", len(PNG + big)),
    ]
    assert blobs.read(form.documents[1].sha256) == PNG + big
    assert form.documents[0].sha256 == hashlib.sha256(PDF).hexdigest()
    assert len({d.document_id for d in form.documents}) == 2


async def test_file_names_are_labels_not_paths(blobs: BlobStore) -> None:
    body = multipart(valid_fields(), [FilePart("../../etc/passwd.pdf", PDF)])
    form = await read(ChunkFeed(body), blobs)
    assert form.documents[0].filename == "passwd.pdf"
    assert all(blobs.root in path.parents for path in stored_files(blobs))


async def test_an_announced_oversized_body_is_refused_before_reading(blobs: BlobStore) -> None:
    feed = ChunkFeed(multipart(valid_fields()))
    with pytest.raises(SubmissionInvalid) as refused:
        await read(feed, blobs, content_length=str(LIMITS.max_body_bytes + 1))
    assert refused.value.status == 413
    assert feed.consumed == 0


async def test_an_unannounced_oversized_body_is_cut_off_at_the_limit(blobs: BlobStore) -> None:
    # Given a body without Content-Length, over the limit (an unknown field, never kept)
    body = multipart({**valid_fields(), "padding": "p" * (2 * LIMITS.max_body_bytes)})
    feed = ChunkFeed(body, chunk_size=8 * KIB)
    # When it is read
    with pytest.raises(SubmissionInvalid) as refused:
        await read(feed, blobs)
    # Then it is refused as soon as the count passes the limit; the rest is never read
    assert refused.value.status == 413
    assert feed.consumed <= LIMITS.max_body_bytes + 8 * KIB
    assert feed.consumed < len(feed.body)


async def test_a_file_over_its_limit_is_refused_and_not_kept(blobs: BlobStore) -> None:
    body = multipart(valid_fields(), [FilePart("huge.pdf", b"x" * (LIMITS.max_file_bytes + 1))])
    feed = ChunkFeed(body, chunk_size=4 * KIB)
    with pytest.raises(SubmissionInvalid) as refused:
        await read(feed, blobs)
    assert refused.value.status == 413
    assert "huge.pdf" in refused.value.detail
    assert stored_files(blobs) == []  # the partial upload was removed


async def test_a_sixth_file_is_refused_as_soon_as_it_starts(blobs: BlobStore) -> None:
    # Given six files of 50 KiB
    files = [FilePart(f"f{i}.pdf", b"z" * 50 * KIB) for i in range(6)]
    feed = ChunkFeed(multipart(valid_fields(), files), chunk_size=4 * KIB)
    # When the form is read
    with pytest.raises(SubmissionInvalid) as refused:
        await read(feed, blobs)
    # Then the sixth file is refused at its headers, its content is never read
    assert refused.value.status == 422
    assert "at most 5 files" in refused.value.detail
    assert feed.consumed < len(feed.body) - 40 * KIB


@pytest.mark.parametrize("declared", ["text/plain", "application/x-msdownload", ""])
async def test_an_unaccepted_type_is_415(blobs: BlobStore, declared: str) -> None:
    body = multipart(valid_fields(), [FilePart("a.exe", b"MZ", declared)])
    with pytest.raises(SubmissionInvalid) as refused:
        await read(ChunkFeed(body), blobs)
    assert refused.value.status == 415
    assert stored_files(blobs) == []


@pytest.mark.parametrize(
    ("fields", "files", "expected"),
    [
        ({"program": "MSc"}, [FilePart("a.pdf", PDF)], "personal_statement"),
        ({"personal_statement": "x"}, [], "program"),
        ({"program": "  ", "personal_statement": "x"}, [], "program"),
        (valid_fields(), [FilePart("empty.pdf", b"")], "empty.pdf is empty"),
        (valid_fields(), [FilePart("a.pdf", PDF, field="attachment")], "unexpected file field"),
        ({**valid_fields(), "personal_statement": "s" * 2000}, [], "longer than"),
    ],
)
async def test_incomplete_or_invalid_forms_are_422(
    blobs: BlobStore, fields: dict[str, str], files: list[FilePart], expected: str
) -> None:
    with pytest.raises(SubmissionInvalid) as refused:
        await read(ChunkFeed(multipart(fields, files)), blobs)
    assert refused.value.status == 422
    assert expected in refused.value.detail


async def test_a_body_cut_short_is_refused_and_leaves_no_partial_file(blobs: BlobStore) -> None:
    # Given a body that stops in the middle of a file
    body = multipart(valid_fields(), [FilePart("cv.pdf", b"y" * 90 * KIB)])
    truncated = body[: len(body) - 10 * KIB]  # past the in-memory spool: already streaming
    with pytest.raises(SubmissionInvalid) as refused:
        await read(ChunkFeed(truncated, chunk_size=4 * KIB), blobs)
    assert refused.value.status == 422
    assert stored_files(blobs) == []


async def test_a_body_that_is_not_multipart_is_415(blobs: BlobStore) -> None:
    with pytest.raises(SubmissionInvalid) as refused:
        await read_submission(
            ChunkFeed(b"{}").stream(),
            content_type="application/json",
            content_length="2",
            blobs=blobs,
            limits=LIMITS,
        )
    assert refused.value.status == 415


async def test_small_files_read_before_a_failure_are_not_kept(blobs: BlobStore) -> None:
    # Given a form whose first (small, staged) file is fine and whose second is too large
    body = multipart(
        valid_fields(),
        [FilePart("cv.pdf", PDF), FilePart("huge.pdf", PDF + b"x" * (LIMITS.max_file_bytes))],
    )
    # When it is read, it is refused
    with pytest.raises(SubmissionInvalid) as refused:
        await read(ChunkFeed(body, chunk_size=4096), blobs)
    assert refused.value.status == 413
    # Then not even the first file's temporary copy is left behind
    assert stored_files(blobs) == []


def part_with_headers(extra_headers: bytes) -> bytes:
    """A valid form whose file part carries ``extra_headers`` before its own."""
    body = multipart(valid_fields(), [FilePart("cv.pdf", PDF)])
    marker = b'Content-Disposition: form-data; name="files"'
    return body.replace(marker, extra_headers + marker, 1)


@pytest.mark.parametrize(
    "extra_headers",
    [
        b"X-Padding: " + b"p" * (400 * KIB) + b"\r\n",  # one huge header
        b"".join(b"X-%d: v\r\n" % n for n in range(40_000)),  # very many small ones
        b"X-" + b"n" * (400 * KIB) + b": v\r\n",  # a huge header name
    ],
    ids=["one huge header", "40000 headers", "a huge header name"],
)
async def test_a_part_with_huge_or_many_headers_is_refused_at_its_headers(
    blobs: BlobStore, extra_headers: bytes
) -> None:
    # issue 14, item 12: our callbacks collect part headers without a bound of their own;
    # the parser's limits (set by us) must stop a hostile part before they grow.
    # Given a form whose file part has 400 KiB of headers (within the body limit)
    feed = ChunkFeed(part_with_headers(extra_headers), chunk_size=4 * KIB)
    assert len(feed.body) < LIMITS.max_body_bytes
    # When it is read
    with pytest.raises(SubmissionInvalid) as refused:
        await read(feed, blobs)
    # Then it is refused with a clear 4xx as soon as the headers pass their bound,
    # long before the rest is read, and nothing is kept
    assert refused.value.status == 422
    assert "header" in refused.value.detail
    assert feed.consumed <= MAX_PART_HEADER_BYTES + 2 * 4 * KIB
    assert stored_files(blobs) == []
