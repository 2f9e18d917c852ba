"""Reading a submission's multipart body as it streams in, never all of it in memory.

A file part up to ``SPOOL_BYTES`` (most documents) is kept in memory and staged (hashed) when
it ends; a larger one is written to a ``BlobDraft`` by the event loop as its bytes arrive.
Either way no thread is ever held while a client is slow to send. At the end of the body every
file of the request is handed to the ``BlobPublisher``'s thread in one go: it writes what is
still in memory and does everything that waits on the disk (creating files, fsync).

Limits are enforced while counting: an announced oversized body is refused before a byte is
read, an unannounced one as soon as it passes the limit, and the rest is never read. A body
that stops arriving for ``idle_timeout`` seconds is refused (408) and its files dropped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.api.applications.validation import (
    FILE_FIELD,
    TEXT_FIELDS,
    SubmissionForm,
    SubmissionInvalid,
    UploadedDocument,
    UploadLimits,
    check_content_type,
    check_declared_length,
    clean_text_fields,
    sanitise_filename,
)
from shared.blobs import BlobDraft, BlobPublisher, BlobStore, StagedBlob

# Files up to this size stay in memory until the publisher writes them (at most
# ``api_max_submissions_in_flight`` x 5 x this much per process); larger ones are written as
# they arrive.
SPOOL_BYTES = 256 * 1024
# A part's headers: a browser sends two or three short ones. The parser refuses a part with
# more, or with a longer header line, before our callbacks collect them (422), so a hostile
# part cannot make them grow; set here rather than left to the library's defaults.
MAX_PART_HEADERS = 8
MAX_PART_HEADER_BYTES = 4096 + 128


@dataclass
class _FilePart:
    """A file on its way into the blob store: in memory while it is small."""

    filename: str
    content_type: str
    size: int = 0
    spool: bytearray = field(default_factory=bytearray)
    draft: BlobDraft | None = None

    def write(self, data: bytes, blobs: BlobStore) -> None:
        self.size += len(data)
        if self.draft is None and self.size <= SPOOL_BYTES:
            self.spool += data
            return
        if self.draft is None:
            self.draft = blobs.draft()
            self.draft.write(bytes(self.spool))
            self.spool.clear()
        self.draft.write(data)

    def stage(self, blobs: BlobStore) -> StagedBlob:
        return self.draft.seal() if self.draft else blobs.stage(bytes(self.spool))

    def discard(self) -> None:
        if self.draft is not None:
            self.draft.discard()


@dataclass
class _FieldPart:
    name: str
    data: bytearray = field(default_factory=bytearray)


class _PartEvents:
    """The parser's synchronous callbacks, turned into a list the async side works through."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._name = bytearray()
        self._value = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._name).lower()] = bytes(self._value)
        self._name.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        self.events.append(("part", self._headers))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self.events.append(("data", bytes(data[start:end])))

    def _part_end(self) -> None:
        self.events.append(("end", None))

    def _end(self) -> None:
        self.ended = True


def multipart_boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise SubmissionInvalid(415, "the body must be multipart/form-data")
    boundary = options.get(b"boundary")
    if not boundary:
        raise SubmissionInvalid(422, "the multipart body has no boundary")
    return boundary


class SubmissionReader:
    """Works through the parts of one body; ``abort`` if it does not end well."""

    def __init__(self, blobs: BlobStore, limits: UploadLimits) -> None:
        self.blobs = blobs
        self.limits = limits
        self.fields: dict[str, str] = {}
        self.documents: list[UploadedDocument] = []
        # Complete files, written but not yet synced nor in place: ``publish`` or ``abort``.
        self.staged: list[StagedBlob] = []
        self._files_started = 0
        self._part: _FilePart | _FieldPart | None = None

    def handle(self, kind: str, value: object) -> None:
        if kind == "part":
            self._begin(cast(dict[bytes, bytes], value))
        elif kind == "data":
            self._data(cast(bytes, value))
        else:
            self._end()

    def _begin(self, headers: dict[bytes, bytes]) -> None:
        disposition, params = parse_options_header(headers.get(b"content-disposition"))
        if disposition != b"form-data":
            raise SubmissionInvalid(422, "every part needs Content-Disposition: form-data")
        name = params.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = params.get(b"filename")
        if raw_filename is None and name != FILE_FIELD:
            self._part = _FieldPart(name)
            return
        if name != FILE_FIELD:
            raise SubmissionInvalid(422, f"unexpected file field {name!r}: send files as 'files'")
        self._files_started += 1
        if self._files_started > self.limits.max_files:
            raise SubmissionInvalid(422, f"at most {self.limits.max_files} files are accepted")
        filename = sanitise_filename((raw_filename or b"").decode("utf-8", "replace"))
        declared = headers.get(b"content-type", b"").decode("latin-1")
        self._part = _FilePart(filename, check_content_type(declared, filename))

    def _data(self, data: bytes) -> None:
        part = self._part
        if isinstance(part, _FilePart):
            if part.size + len(data) > self.limits.max_file_bytes:
                raise SubmissionInvalid(
                    413, f"{part.filename} is larger than {self.limits.max_file_bytes} bytes"
                )
            part.write(data, self.blobs)
        elif isinstance(part, _FieldPart) and part.name in TEXT_FIELDS:
            # Fields we do not know are skipped, not kept: only the body limit bounds them.
            part.data += data
            if len(part.data) > self.limits.max_field_bytes:
                raise SubmissionInvalid(
                    422,
                    f"the field {part.name!r} is longer than {self.limits.max_field_bytes} bytes",
                )

    def _end(self) -> None:
        part, self._part = self._part, None
        if isinstance(part, _FilePart):
            if part.size == 0:
                raise SubmissionInvalid(422, f"{part.filename} is empty")
            blob = part.stage(self.blobs)
            self.staged.append(blob)
            self.documents.append(
                UploadedDocument(
                    document_id=str(uuid.uuid4()),
                    filename=part.filename,
                    content_type=part.content_type,
                    size=blob.ref.size,
                    sha256=blob.ref.sha256,
                )
            )
        elif isinstance(part, _FieldPart) and part.name in TEXT_FIELDS:
            if part.name in self.fields:
                raise SubmissionInvalid(422, f"the field {part.name!r} is sent twice")
            try:
                self.fields[part.name] = part.data.decode("utf-8")
            except UnicodeDecodeError:
                raise SubmissionInvalid(422, f"the field {part.name!r} is not UTF-8") from None

    def abort(self) -> None:
        """Drop the complete files and a file still being written (an error or a disconnect
        cut the body short). Synchronous: safe even while the task is being cancelled."""
        self.blobs.discard(self.staged)
        part, self._part = self._part, None
        if isinstance(part, _FilePart):
            part.discard()

    def form(self) -> SubmissionForm:
        program, statement = clean_text_fields(self.fields)
        return SubmissionForm(program, statement, tuple(self.documents))


async def read_submission(
    chunks: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: str | None,
    blobs: BlobStore,
    limits: UploadLimits,
    publisher: BlobPublisher | None = None,
    idle_timeout: float | None = None,
) -> SubmissionForm:
    """The form, its files durable in the blob store; ``SubmissionInvalid`` says why not.
    Without a ``publisher`` the files are published by the calling thread (tests, tools)."""
    check_declared_length(content_length, limits.max_body_bytes)
    events = _PartEvents()
    parser = MultipartParser(
        multipart_boundary(content_type),
        events.callbacks(),  # type: ignore[arg-type]
        max_header_count=MAX_PART_HEADERS,
        max_header_size=MAX_PART_HEADER_BYTES,
    )
    reader = SubmissionReader(blobs, limits)
    received = 0
    try:
        while (chunk := await _next_chunk(chunks, idle_timeout)) is not None:
            received += len(chunk)
            if received > limits.max_body_bytes:
                raise SubmissionInvalid(
                    413, f"the request body is larger than {limits.max_body_bytes} bytes"
                )
            try:
                parser.write(chunk)
            except MultipartParseError as error:
                raise SubmissionInvalid(422, f"malformed multipart body: {error}") from None
            pending, events.events = events.events, []
            for kind, value in pending:
                reader.handle(kind, value)
        if not events.ended:
            raise SubmissionInvalid(422, "the multipart body ended before its closing boundary")
        form = reader.form()
    except BaseException:  # refused, or cancelled (client gone): nothing is left behind
        reader.abort()
        raise
    if publisher is None:
        blobs.publish(reader.staged)
    else:
        await publisher.publish(reader.staged)
    return form


async def _next_chunk(chunks: AsyncIterator[bytes], idle_timeout: float | None) -> bytes | None:
    """The next piece of the body, None at its end; 408 if none comes in time."""
    try:
        async with asyncio.timeout(idle_timeout):
            return await anext(chunks)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise SubmissionInvalid(
            408, f"the request body stopped arriving for {idle_timeout:g} s; send it again"
        ) from None
