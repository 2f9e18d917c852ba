"""A client that sends its request slowly, over a raw socket: part of the body, then a pause
as long as the test likes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class SlowUpload:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    rest: bytes

    @classmethod
    async def start(
        cls, base_url: str, path: str, headers: dict[str, str], body: bytes, sent: int
    ) -> SlowUpload:
        """Send the headers and the first ``sent`` bytes of ``body``; the rest waits."""
        url = urlsplit(base_url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        head = [f"POST {path} HTTP/1.1", f"Host: {url.netloc}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body[:sent])
        await writer.drain()
        return cls(reader, writer, body[sent:])

    async def finish(self) -> tuple[int, dict[str, str], Any]:
        """Send the rest; the answer's status, headers and JSON body."""
        self.writer.write(self.rest)
        await self.writer.drain()
        return await self.answer()

    async def answer(self) -> tuple[int, dict[str, str], Any]:
        status_line = await self.reader.readline()
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, json.loads(body) if body else None

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
