"""Pure rules for a submission: accepted types, limits, file names, idempotency fingerprints.

No I/O here; the streaming reader (``upload.py``) and the route call these.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass

ALLOWED_CONTENT_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg"})
FILE_FIELD = "files"
TEXT_FIELDS = ("program", "personal_statement")
MAX_FILENAME_CHARS = 255
MAX_PROGRAM_CHARS = 200
MAX_IDEMPOTENCY_KEY_CHARS = 255
_IDEMPOTENCY_KEY = re.compile(rf"^[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}$")


class SubmissionInvalid(Exception):
    """The request can never be accepted as sent; ``status`` is the HTTP answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class UploadLimits:
    max_files: int
    max_file_bytes: int
    max_body_bytes: int
    max_field_bytes: int


@dataclass(frozen=True)
class UploadedDocument:
    document_id: str
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SubmissionForm:
    program: str
    personal_statement: str
    documents: tuple[UploadedDocument, ...]


def normalise_content_type(declared: str | None) -> str:
    """``Image/PNG; charset=x`` -> ``image/png``; parameters never matter for these types."""
    return (declared or "").split(";", 1)[0].strip().lower()


def check_content_type(declared: str | None, filename: str) -> str:
    content_type = normalise_content_type(declared)
    if content_type not in ALLOWED_CONTENT_TYPES:
        allowed = ", ".join(sorted(ALLOWED_CONTENT_TYPES))
        raise SubmissionInvalid(
            415, f"{filename}: type {content_type or 'missing'!r} is not accepted ({allowed})"
        )
    return content_type


def check_declared_length(content_length: str | None, limit: int) -> None:
    """Refuse an announced oversized body before reading a byte of it."""
    if content_length is None:
        return
    try:
        length = int(content_length)
    except ValueError:
        raise SubmissionInvalid(400, "Content-Length is not a number") from None
    if length > limit:
        raise SubmissionInvalid(413, f"the request body is larger than {limit} bytes")


def sanitise_filename(raw: str | None) -> str:
    """A label safe to show and store: no directories, no control characters, bounded.

    It is never used as a path (blobs are stored under their SHA-256)."""
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().strip(".").strip()
    return name[:MAX_FILENAME_CHARS] or "document"


def clean_text_fields(fields: dict[str, str]) -> tuple[str, str]:
    """The required text fields, stripped; 422 naming the first one missing or invalid."""
    for name in TEXT_FIELDS:
        if not fields.get(name, "").strip():
            raise SubmissionInvalid(422, f"the field {name!r} is required")
        if "\x00" in fields[name]:
            # Postgres text cannot store it; no real form sends it.
            raise SubmissionInvalid(422, f"the field {name!r} contains a NUL character")
    program = fields["program"].strip()
    if len(program) > MAX_PROGRAM_CHARS:
        raise SubmissionInvalid(422, f"program is longer than {MAX_PROGRAM_CHARS} characters")
    return program, fields["personal_statement"].strip()


def parse_idempotency_key(header: str | None) -> str | None:
    if header is None:
        return None
    if not _IDEMPOTENCY_KEY.match(header):
        raise SubmissionInvalid(
            422,
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters",
        )
    return header


def fingerprint(form: SubmissionForm) -> str:
    """What makes two submissions "the same request": fields and file contents, in order.

    Boundaries and document ids differ between two sends of the same form, so the raw body
    cannot be hashed; this canonical form can."""
    canonical = json.dumps(
        {
            "program": form.program,
            "personal_statement": form.personal_statement,
            "documents": [
                [document.filename, document.content_type, document.sha256]
                for document in form.documents
            ],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
