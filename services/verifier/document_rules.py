"""What makes an uploaded document acceptable: pure functions, bytes in, a verdict out.

No I/O and no clock here: the caller reads the blob and bounds the time (the checks run in a
worker process with a timeout, see ``isolation``). Every rejection carries a reason written
for the applicant ("PDF is encrypted"), not for a developer.

Order matters: the cheap checks that need no parsing (size, hash, magic bytes) run first, so a
parser only ever sees bytes that are what the upload claimed, of a size we accept.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image
from pypdf import PdfReader

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"

# Declared types we accept, with the aliases browsers and clients send for them.
ACCEPTED_TYPES: dict[str, str] = {
    "application/pdf": PDF,
    "application/x-pdf": PDF,
    "image/png": PNG,
    "image/jpeg": JPEG,
    "image/jpg": JPEG,
    "image/pjpeg": JPEG,
}

MAGIC_BYTES: dict[str, bytes] = {
    PDF: b"%PDF-",
    PNG: b"\x89PNG\r\n\x1a\n",
    JPEG: b"\xff\xd8\xff",
}

DESCRIPTIONS: dict[str, str] = {PDF: "a PDF", PNG: "a PNG image", JPEG: "a JPEG image"}

# What Pillow reports for the formats we accept (phones save multi-picture JPEGs, read as MPO).
PILLOW_FORMATS: dict[str, set[str]] = {PNG: {"PNG"}, JPEG: {"JPEG", "MPO"}}


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 10 * 1024 * 1024
    max_pdf_pages: int = 500
    max_image_pixels: int = 40_000_000


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None = None

    @classmethod
    def accept(cls) -> Verdict:
        return cls(ok=True)

    @classmethod
    def reject(cls, reason: str) -> Verdict:
        return cls(ok=False, reason=reason)


def canonical_type(declared: str) -> str | None:
    """``"Image/JPG; charset=x"`` -> ``"image/jpeg"``; None for a type we do not accept."""
    return ACCEPTED_TYPES.get(declared.split(";", 1)[0].strip().lower())


def sniff_type(data: bytes) -> str | None:
    """The accepted type the content's first bytes announce, if any."""
    for content_type, magic in MAGIC_BYTES.items():
        if data.startswith(magic):
            return content_type
    return None


def check_document(
    data: bytes,
    declared_type: str,
    expected_sha256: str,
    expected_size: int,
    limits: Limits,
) -> Verdict:
    """The verdict on one uploaded file."""
    content_type = canonical_type(declared_type)
    if content_type is None:
        return Verdict.reject(
            f"file type {declared_type!r} is not accepted (PDF, PNG or JPEG only)"
        )
    if (too_large := check_size(len(data), limits)) is not None:
        return too_large
    if len(data) != expected_size:
        return Verdict.reject(f"stored file is {len(data)} bytes but {expected_size} were uploaded")
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        return Verdict.reject("stored file does not match the SHA-256 of the upload")
    found = sniff_type(data)
    if found != content_type:
        what = DESCRIPTIONS[found] if found else "not a PDF, PNG or JPEG file"
        return Verdict.reject(f"declared as {DESCRIPTIONS[content_type]} but the content is {what}")
    if content_type == PDF:
        return check_pdf(data, limits)
    return check_image(data, content_type, limits)


def check_size(size: int, limits: Limits) -> Verdict | None:
    """A rejection for a file over the size limit, else None (also used before reading)."""
    if size > limits.max_bytes:
        return Verdict.reject(f"file is {size} bytes, over the limit of {limits.max_bytes} bytes")
    return None


# What pypdf logs when it ran out of stack or memory inside an object and kept what it had
# parsed so far (its lenient mode): the file is nested beyond reason, a parser bomb.
_PARSER_GAVE_UP = "Error reading PDF file"


class _ParserGaveUp(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        if _PARSER_GAVE_UP in record.getMessage():
            self.seen = True


@contextmanager
def _watch_pypdf() -> Iterator[_ParserGaveUp]:
    """pypdf's warnings during one parse, seen here and nowhere else (a hostile file makes
    one per nesting level)."""
    logger = logging.getLogger("pypdf")
    watcher = _ParserGaveUp()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(watcher)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield watcher
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(level)
        logger.propagate = propagate


def check_pdf(data: bytes, limits: Limits) -> Verdict:
    try:
        with _watch_pypdf() as parser:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                return Verdict.reject("PDF is encrypted (password-protected)")
            pages = len(reader.pages)
    except MemoryError:
        return Verdict.reject("PDF is too large to process")
    except Exception as error:  # a damaged file can fail anywhere inside the parser
        return Verdict.reject(f"PDF could not be opened: {_describe(error)}")
    if parser.seen:
        return Verdict.reject("PDF could not be opened: its objects are nested too deeply")
    if pages < 1:
        return Verdict.reject("PDF has no pages")
    if pages > limits.max_pdf_pages:
        return Verdict.reject(f"PDF has {pages} pages, over the limit of {limits.max_pdf_pages}")
    return Verdict.accept()


def check_image(data: bytes, content_type: str, limits: Limits) -> Verdict:
    name = "PNG" if content_type == PNG else "JPEG"
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own bomb limit; ours is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
                image_format = header.format
            if image_format not in PILLOW_FORMATS[content_type]:
                return Verdict.reject(f"{name} could not be decoded as {name}")
            # Decided on the header alone, before a single pixel is decompressed.
            if width * height > limits.max_image_pixels:
                return Verdict.reject(
                    f"image is {width}x{height} pixels, over the limit of "
                    f"{limits.max_image_pixels} pixels"
                )
            with Image.open(io.BytesIO(data)) as image:
                image.verify()  # structure and checksums; leaves the object unusable
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # the pixels themselves: catches truncated data
    except MemoryError:
        return Verdict.reject("image is too large to process")
    except Exception as error:
        return Verdict.reject(f"{name} could not be decoded: {_describe(error)}")
    return Verdict.accept()


def _describe(error: Exception) -> str:
    text = str(error).strip() or error.__class__.__name__
    return text if len(text) <= 200 else text[:197] + "..."
