"""Reading a submission's multipart body as it streams in, never all of it in memory.

A file part up to ``SPOOL_BYTES`` (most documents) is kept in memory and staged in the blob
store when its part ends (hashed, written unsynced); at the end of the body one worker-thread
hop fsyncs and publishes every staged file of the request. A larger part goes straight to
``BlobStore.put`` running in a worker thread, fed chunk by chunk through a small bounded pipe
(so a slow disk slows the client down instead of filling memory). Limits are enforced while
counting: an announced oversized body is refused before a byte is read, an unannounced one as
soon as it passes the limit, and the rest is never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import BinaryIO, cast

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
from shared.blobs import BlobRef, BlobStore, BlobTooLarge, StagedBlob

# Chunks queued between the event loop and one writer thread (each at most one network read).
PIPE_CREDITS = 8
# A file up to this size is kept in memory and staged by the event loop (most documents are
# small; per-chunk hand-offs to a thread cost more than the write). Larger ones stream.
SPOOL_BYTES = 64 * 1024


class _Aborted(Exception):
    """Tells the writer thread to drop the file (the request failed before its end)."""


class _Pipe:
    """A ``read()`` for the writer thread, fed from the event loop; credits bound the queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, credits: int) -> None:
        self.loop = loop
        self.items: queue.SimpleQueue[bytes | BaseException | None] = queue.SimpleQueue()
        self.credits = asyncio.Semaphore(credits)
        self.reader_gone = False
        self._pending = b""
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        """Runs in the writer thread; blocks until the event loop sends more."""
        if not self._pending:
            if self._eof:
                return b""
            item = self.items.get()
            self.loop.call_soon_threadsafe(self.credits.release)
            if item is None:
                self._eof = True
                return b""
            if isinstance(item, BaseException):
                raise item
            self._pending = item
        if size < 0 or size >= len(self._pending):
            chunk, self._pending = self._pending, b""
        else:
            chunk, self._pending = self._pending[:size], self._pending[size:]
        return chunk

    def mark_reader_gone(self) -> None:
        """Event loop side: the thread stopped reading, so never wait for a credit again."""
        self.reader_gone = True
        self.credits.release()


class StreamingBlobWrite:
    """One file on its way into the blob store."""

    def __init__(self, blobs: BlobStore, max_bytes: int, executor: Executor | None) -> None:
        loop = asyncio.get_running_loop()
        self._pipe = _Pipe(loop, PIPE_CREDITS)
        self._result = loop.run_in_executor(executor, self._put, blobs, max_bytes)

    def _put(self, blobs: BlobStore, max_bytes: int) -> BlobRef:
        try:
            return blobs.put(cast(BinaryIO, self._pipe), max_bytes)
        finally:
            self._pipe.loop.call_soon_threadsafe(self._pipe.mark_reader_gone)

    async def write(self, data: bytes) -> None:
        # If the thread has stopped, its error comes out of ``finish``.
        if self._pipe.reader_gone:
            return
        await self._pipe.credits.acquire()
        if not self._pipe.reader_gone:
            self._pipe.items.put(data)

    async def finish(self) -> BlobRef:
        self._pipe.items.put(None)
        return await self._result

    def abort(self) -> None:
        """Synchronous on purpose: safe even while the task is being cancelled."""
        self._pipe.items.put(_Aborted())
        self._result.add_done_callback(_ignore_outcome)

    async def aborted(self) -> None:
        """Wait until the thread has dropped its temporary file."""
        self.abort()
        with contextlib.suppress(Exception):
            await self._result


def _ignore_outcome(future: asyncio.Future[BlobRef]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass
class _FilePart:
    """A file on its way in: held in memory while it is small (one thread hop at its end),
    streamed to a writer thread once it outgrows ``SPOOL_BYTES``."""

    filename: str
    content_type: str
    size: int = 0
    spool: bytearray = field(default_factory=bytearray)
    writer: StreamingBlobWrite | None = None


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
    """Works through the parts of one body; call ``close`` whatever happens."""

    def __init__(self, blobs: BlobStore, limits: UploadLimits, executor: Executor | None) -> None:
        self.blobs = blobs
        self.limits = limits
        self.executor = executor
        self.fields: dict[str, str] = {}
        self.documents: list[UploadedDocument] = []
        # Small files written but not yet synced nor in place: ``publish`` or ``abort``.
        self.staged: list[StagedBlob] = []
        self._files_started = 0
        self._part: _FilePart | _FieldPart | None = None

    async def handle(self, kind: str, value: object) -> None:
        if kind == "part":
            self._begin(cast(dict[bytes, bytes], value))
        elif kind == "data":
            await self._data(cast(bytes, value))
        else:
            await self._end()

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

    async def _data(self, data: bytes) -> None:
        part = self._part
        if isinstance(part, _FilePart):
            part.size += len(data)
            if part.size > self.limits.max_file_bytes:
                raise SubmissionInvalid(
                    413, f"{part.filename} is larger than {self.limits.max_file_bytes} bytes"
                )
            if part.writer is not None:
                await part.writer.write(data)
            elif part.size <= SPOOL_BYTES:
                part.spool += data
            else:
                part.writer = StreamingBlobWrite(
                    self.blobs, self.limits.max_file_bytes, self.executor
                )
                if part.spool:  # an empty write would read as the end of the file
                    await part.writer.write(bytes(part.spool))
                part.spool.clear()
                await part.writer.write(data)
        elif isinstance(part, _FieldPart) and part.name in TEXT_FIELDS:
            # Fields we do not know are skipped, not kept: only the body limit bounds them.
            part.data += data
            if len(part.data) > self.limits.max_field_bytes:
                raise SubmissionInvalid(
                    422,
                    f"the field {part.name!r} is longer than {self.limits.max_field_bytes} bytes",
                )

    async def _end(self) -> None:
        part, self._part = self._part, None
        if isinstance(part, _FilePart):
            if part.size == 0:
                raise SubmissionInvalid(422, f"{part.filename} is empty")
            try:
                blob = await self._store(part)
            except BlobTooLarge as error:  # the count above should have caught it first
                raise SubmissionInvalid(413, f"{part.filename}: {error}") from error
            self.documents.append(
                UploadedDocument(
                    document_id=str(uuid.uuid4()),
                    filename=part.filename,
                    content_type=part.content_type,
                    size=blob.size,
                    sha256=blob.sha256,
                )
            )
        elif isinstance(part, _FieldPart) and part.name in TEXT_FIELDS:
            if part.name in self.fields:
                raise SubmissionInvalid(422, f"the field {part.name!r} is sent twice")
            try:
                self.fields[part.name] = part.data.decode("utf-8")
            except UnicodeDecodeError:
                raise SubmissionInvalid(422, f"the field {part.name!r} is not UTF-8") from None

    async def _store(self, part: _FilePart) -> BlobRef:
        if part.writer is not None:
            return await part.writer.finish()
        staged = self.blobs.stage(bytes(part.spool))
        self.staged.append(staged)
        return staged.ref

    async def publish(self) -> None:
        """Make the staged files durable, in one worker-thread hop for all of them. Once the
        hop has started the thread owns the files: a cancelled request leaves them to it."""
        if self.staged:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.executor, self.blobs.publish, self.staged)

    def abort(self) -> StreamingBlobWrite | None:
        """Drop the staged files and a file still being written (an error or a disconnect cut
        the body short)."""
        self.blobs.discard(self.staged)
        part, self._part = self._part, None
        if isinstance(part, _FilePart) and part.writer is not None:
            part.writer.abort()
            return part.writer
        return None

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
    executor: Executor | None = None,
) -> SubmissionForm:
    """The form, its files already in the blob store; ``SubmissionInvalid`` says why not."""
    check_declared_length(content_length, limits.max_body_bytes)
    events = _PartEvents()
    parser = MultipartParser(multipart_boundary(content_type), events.callbacks())  # type: ignore[arg-type]
    reader = SubmissionReader(blobs, limits, executor)
    received = 0
    try:
        async for chunk in chunks:
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
                await reader.handle(kind, value)
        if not events.ended:
            raise SubmissionInvalid(422, "the multipart body ended before its closing boundary")
        form = reader.form()
    except Exception:
        if unfinished := reader.abort():
            await unfinished.aborted()
        raise
    except BaseException:  # cancelled (client gone): no waiting, but never a stuck thread
        reader.abort()
        raise
    await reader.publish()
    return form
