"""The document checks on real files: valid ones pass, each kind of bad one says why."""

from __future__ import annotations

import pytest

from services.verifier.document_rules import (
    Limits,
    Verdict,
    canonical_type,
    check_document,
    sniff_type,
)
from tests.unit.verifier.documents import (
    encrypted_pdf_bytes,
    jpeg_bytes,
    pdf_bytes,
    png_bytes,
    sha256,
)

LIMITS = Limits()


def check(data: bytes, declared: str, limits: Limits = LIMITS) -> Verdict:
    """The upload's own hash and size: what the API recorded for these bytes."""
    return check_document(data, declared, sha256(data), len(data), limits)


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        ("application/pdf", pdf_bytes(1)),
        ("application/pdf", pdf_bytes(3)),
        ("image/png", png_bytes()),
        ("image/jpeg", jpeg_bytes()),
        ("image/jpg", jpeg_bytes()),
        ("Application/PDF; charset=binary", pdf_bytes(1)),
    ],
)
def test_valid_documents_are_accepted(declared: str, data: bytes) -> None:
    # Given a well-formed file of the declared type / When it is checked
    verdict = check(data, declared)
    # Then it passes with no reason
    assert verdict == Verdict(ok=True, reason=None)


@pytest.mark.parametrize(
    ("declared", "data", "reason"),
    [
        ("image/png", pdf_bytes(), "declared as a PNG image but the content is a PDF"),
        ("application/pdf", png_bytes(), "declared as a PDF but the content is a PNG image"),
        ("image/jpeg", png_bytes(), "declared as a JPEG image but the content is a PNG image"),
        ("application/pdf", b"hello, not a pdf", "content is not a PDF, PNG or JPEG file"),
    ],
)
def test_content_that_is_not_the_declared_type_is_rejected(
    declared: str, data: bytes, reason: str
) -> None:
    verdict = check(data, declared)
    assert not verdict.ok
    assert verdict.reason is not None and reason in verdict.reason


def test_an_encrypted_pdf_is_rejected() -> None:
    verdict = check(encrypted_pdf_bytes(), "application/pdf")
    assert verdict == Verdict.reject("PDF is encrypted (password-protected)")


def test_a_pdf_without_pages_is_rejected() -> None:
    verdict = check(pdf_bytes(pages=0), "application/pdf")
    assert verdict == Verdict.reject("PDF has no pages")


def test_a_pdf_over_the_page_limit_is_rejected() -> None:
    verdict = check(pdf_bytes(pages=4), "application/pdf", Limits(max_pdf_pages=3))
    assert verdict == Verdict.reject("PDF has 4 pages, over the limit of 3")


def test_a_pdf_with_only_a_header_is_rejected_as_unopenable() -> None:
    # Given the right magic bytes followed by garbage
    data = b"%PDF-1.7\n" + bytes(range(256)) * 4
    verdict = check(data, "application/pdf")
    assert not verdict.ok
    assert verdict.reason is not None and verdict.reason.startswith("PDF could not be opened")


@pytest.mark.parametrize(
    ("declared", "data"), [("image/png", png_bytes((64, 64))), ("image/jpeg", jpeg_bytes((64, 64)))]
)
def test_a_truncated_image_is_rejected(declared: str, data: bytes) -> None:
    # Given an image cut off halfway, whose header is still intact
    truncated = data[: len(data) // 2]
    verdict = check(truncated, declared)
    assert not verdict.ok
    assert verdict.reason is not None and "could not be decoded" in verdict.reason


def test_corrupt_png_pixel_data_is_rejected() -> None:
    # Given a PNG whose compressed pixel data is flipped (the chunk CRC no longer matches)
    data = bytearray(png_bytes((64, 64)))
    start = data.index(b"IDAT") + 8
    for i in range(start, start + 16):
        data[i] ^= 0xFF
    verdict = check(bytes(data), "image/png")
    assert not verdict.ok
    assert verdict.reason is not None and verdict.reason.startswith("PNG could not be decoded")


def test_an_image_over_the_pixel_limit_is_rejected_from_its_header() -> None:
    data = png_bytes((200, 100))
    verdict = check(data, "image/png", Limits(max_image_pixels=19_999))
    assert verdict == Verdict.reject("image is 200x100 pixels, over the limit of 19999 pixels")


def test_a_file_over_the_size_limit_is_rejected() -> None:
    data = pdf_bytes()
    verdict = check(data, "application/pdf", Limits(max_bytes=len(data) - 1))
    assert verdict == Verdict.reject(
        f"file is {len(data)} bytes, over the limit of {len(data) - 1} bytes"
    )


def test_a_stored_file_that_differs_from_the_upload_is_rejected() -> None:
    # Given the hash of other content of the same size (the blob changed on disk)
    data = pdf_bytes()
    verdict = check_document(data, "application/pdf", sha256(b"other"), len(data), LIMITS)
    assert verdict == Verdict.reject("stored file does not match the SHA-256 of the upload")


def test_a_stored_file_of_another_size_is_rejected() -> None:
    data = png_bytes()
    verdict = check_document(data, "image/png", sha256(data), len(data) + 10, LIMITS)
    assert verdict == Verdict.reject(
        f"stored file is {len(data)} bytes but {len(data) + 10} were uploaded"
    )


def test_an_unaccepted_declared_type_is_rejected() -> None:
    verdict = check(b"GIF89a....", "image/gif")
    assert verdict == Verdict.reject(
        "file type 'image/gif' is not accepted (PDF, PNG or JPEG only)"
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"%PDF-1.4 ...", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0....", "image/jpeg"),
        (b"PK\x03\x04 a zip", None),
        (b"", None),
    ],
)
def test_sniff_type_reads_the_magic_bytes(data: bytes, expected: str | None) -> None:
    assert sniff_type(data) == expected


@pytest.mark.parametrize(
    ("declared", "expected"),
    [("image/JPG", "image/jpeg"), ("application/x-pdf", "application/pdf"), ("text/plain", None)],
)
def test_canonical_type_maps_aliases(declared: str, expected: str | None) -> None:
    assert canonical_type(declared) == expected
