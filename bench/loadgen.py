"""An open-loop HTTP load generator that stays out of the way.

Requests are pre-encoded bytes sent over persistent HTTP/1.1 connections by a few lines of
asyncio: no HTTP library on the hot path, so the generator's CPU is a small fraction of the
server's. Open loop: request ``i`` is due at ``start + i / rate`` whether or not earlier ones
have been answered, and its latency is measured from that due time (no coordinated omission:
a stalled server shows up as latency, not as a slower offered rate). A request not answered
``timeout`` seconds after its due time is an error: the client gave up.

A client behaves as the API asks (``POST /applications``' description): on ``503`` with
``Retry-After`` it waits that long plus up to half as much again of random jitter and sends
the same request (same Idempotency-Key) again, until it gets another answer or
``retry_deadline`` seconds have passed since it first meant to send.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Result:
    offered: int = 0
    # Every answer, retries' included, from the time its request was due.
    latencies_ms: list[float] = field(default_factory=list)
    accepted_latencies_ms: list[float] = field(default_factory=list)  # the 202 answers'
    # Per client that got a 202: from its first due time to the 202, retries included.
    journeys_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)  # every answer, retries' included
    retries: int = 0  # requests sent again after a 503 with Retry-After
    errors: int = 0  # no answer: connection failures, and the clients that gave up
    gave_up: int = 0  # of those, the clients whose deadline passed first
    answered_at: list[float] = field(default_factory=list)  # per answer, seconds from start
    last_accepted_at: float = 0.0  # seconds from start to the last 202
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


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    retry_after: float | None = None


async def _read_response(reader: asyncio.StreamReader) -> _Answer:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length = 0
    retry_after: float | None = None
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"retry-after" and value.strip().isdigit():
            retry_after = float(value)
    return _Answer(status, await reader.readexactly(length), retry_after)


class _Connections:
    """Persistent connections, at most ``limit`` in use at once."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(limit)

    async def exchange(self, request: bytes) -> _Answer:
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
    ) -> _Answer:
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
    retry_deadline: float = 600.0,
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
        first_due = due = start + index / rate
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                # The client gives up ``timeout`` seconds after it meant to send, however
                # much of that it spent waiting for a connection.
                async with asyncio.timeout_at(due + timeout):
                    answer = await connections.exchange(requests[index])
            except TimeoutError:
                result.errors += 1
                result.gave_up += 1
                return
            except (OSError, asyncio.IncompleteReadError, ValueError):  # ConnectionError too
                result.errors += 1
                return
            now = loop.time()
            result.latencies_ms.append((now - due) * 1000)
            result.answered_at.append(now - start)
            result.statuses[answer.status] = result.statuses.get(answer.status, 0) + 1
            if answer.status != 503 or answer.retry_after is None:
                break
            due = now + answer.retry_after * random.uniform(1.0, 1.5)
            if due > first_due + retry_deadline:
                result.errors += 1
                result.gave_up += 1
                return
            result.retries += 1
        if answer.status == 202:
            result.last_accepted_at = max(result.last_accepted_at, now - start)
            result.accepted_latencies_ms.append((now - due) * 1000)
            result.journeys_ms.append((now - first_due) * 1000)
        if keep_bodies:
            result.bodies.append(answer.body)

    await asyncio.gather(*(one(i) for i in range(count)))
    result.seconds = loop.time() - start
    result.cpu_seconds = time.process_time() - cpu_before
    for _, writer in connections.idle:
        writer.close()
    return result
