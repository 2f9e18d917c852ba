"""An open-loop HTTP load generator that stays out of the way.

Requests are pre-encoded bytes sent over persistent HTTP/1.1 connections by a few lines of
asyncio: no HTTP library on the hot path, so the generator's CPU is a small fraction of the
server's. Open loop: request ``i`` is due at ``start + i / rate`` whether or not earlier ones
have been answered, and its latency is measured from that due time (no coordinated omission:
a stalled server shows up as latency, not as a slower offered rate). A request not answered
``timeout`` seconds after its due time is an error: the client gave up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Result:
    offered: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # no answer: connection failures, and the clients that gave up
    gave_up: int = 0  # of those, the clients whose deadline passed first
    answered_at: list[float] = field(default_factory=list)
    seconds: float = 0.0
    started_at: float = 0.0  # time.monotonic() when the first request was due
    cpu_seconds: float = 0.0
    bodies: list[bytes] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def multipart_request(
    host: str,
    port: int,
    path: str,
    token: str,
    fields: dict[str, str],
    files: list[tuple[str, bytes, str]],
    unique_marker: bytes | None = None,
) -> Callable[[], bytes]:
    """A factory of complete request bytes; each call carries a fresh Idempotency-Key.

    With ``unique_marker`` (at most 32 bytes), every occurrence of it in the body becomes a
    fresh hex string of the same length in each request, so each request uploads documents
    no other request has (the lengths, and so Content-Length, stay the same).
    """
    if unique_marker is not None and not 0 < len(unique_marker) <= 32:
        raise ValueError("unique_marker must be 1 to 32 bytes")
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for filename, content, content_type in files:
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n"
    )

    def build() -> bytes:
        request_head = (head + f"Idempotency-Key: {uuid.uuid4()}\r\n\r\n").encode()
        if unique_marker is None:
            return request_head + body
        fresh = uuid.uuid4().hex.encode()[: len(unique_marker)]
        return request_head + body.replace(unique_marker, fresh)

    return build


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


class _Connections:
    """Persistent connections, at most ``limit`` in use at once."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(limit)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request`` on a free connection and read its answer. An idle connection the
        server has closed meanwhile (its keep-alive timeout) is replaced by a new one, as HTTP
        clients do: the request never reached the server (and carries its Idempotency-Key)."""
        async with self.slots:
            if self.idle:
                try:
                    return await self._exchange_on(*self.idle.pop(), request)
                except ConnectionError:
                    pass
            reader, writer = await asyncio.open_connection(self.host, self.port)
            return await self._exchange_on(reader, writer, request)

    async def _exchange_on(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        """A connection whose exchange failed or was cancelled (a deadline) is closed, never
        reused."""
        try:
            writer.write(request)
            answer = await _read_response(reader)
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer))
        return answer


async def run_open_loop(
    host: str,
    port: int,
    build_request: Callable[[], bytes],
    rate: float,
    count: int,
    *,
    max_connections: int = 256,
    timeout: float = 30.0,
    keep_bodies: bool = False,
) -> Result:
    result = Result(offered=count)
    connections = _Connections(host, port, max_connections)
    requests = [build_request() for _ in range(count)]  # encoded before the clock starts
    cpu_before = time.process_time()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    result.started_at = start  # the event loop's clock is time.monotonic()

    async def one(index: int) -> None:
        due = start + index / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            # The client gives up ``timeout`` seconds after it meant to send, however much
            # of that it spent waiting for a connection.
            async with asyncio.timeout_at(due + timeout):
                status, body = await connections.exchange(requests[index])
        except TimeoutError:
            result.errors += 1
            result.gave_up += 1
            return
        except (OSError, asyncio.IncompleteReadError, ValueError):  # ConnectionError included
            result.errors += 1
            return
        now = loop.time()
        result.latencies_ms.append((now - due) * 1000)
        result.answered_at.append(now - start)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if keep_bodies:
            result.bodies.append(body)

    await asyncio.gather(*(one(i) for i in range(count)))
    result.seconds = loop.time() - start
    result.cpu_seconds = time.process_time() - cpu_before
    for _, writer in connections.idle:
        writer.close()
    return result
