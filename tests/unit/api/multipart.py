"""Building multipart bodies and feeding them in chunks, counting what the reader took."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

BOUNDARY = "test-boundary-7d3a"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@dataclass(frozen=True)
class FilePart:
    filename: str
    content: bytes
    content_type: str = "application/pdf"
    field: str = "files"


def multipart(fields: dict[str, str] | None = None, files: list[FilePart] | None = None) -> bytes:
    body = bytearray()
    for name, value in (fields or {}).items():
        body += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        body += value.encode() + b"\r\n"
    for part in files or []:
        body += (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{part.field}"; filename="{part.filename}"\r\n'
            f"Content-Type: {part.content_type}\r\n\r\n"
        ).encode()
        body += part.content + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return bytes(body)


def valid_fields() -> dict[str, str]:
    return {"program": "MSc Computer Science", "personal_statement": "I like queues."}


@dataclass
class ChunkFeed:
    """An async byte stream that records how much of it was consumed."""

    body: bytes
    chunk_size: int = 64 * 1024
    consumed: int = 0
    chunks: list[int] = field(default_factory=list)

    async def stream(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), self.chunk_size):
            chunk = self.body[start : start + self.chunk_size]
            self.consumed += len(chunk)
            self.chunks.append(len(chunk))
            yield chunk
