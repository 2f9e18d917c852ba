import asyncio

from bench.loadgen import multipart_request, run_open_loop

ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request read off the connection; returns its head."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)
    return head


async def serve(delay: float) -> tuple[asyncio.Server, int, list[bytes]]:
    """A tiny HTTP/1.1 server answering 202 after ``delay``, recording each request head."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            heads.append(await read_request(reader))
            await asyncio.sleep(delay)
            writer.write(ACCEPTED)
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], heads


async def test_every_request_is_answered_with_a_fresh_idempotency_key() -> None:
    server, port, heads = await serve(0.0)
    build = multipart_request(
        "127.0.0.1",
        port,
        "/applications",
        "tok",
        {"a": "b"},
        [("f.pdf", b"%PDF", "application/pdf")],
    )

    result = await run_open_loop("127.0.0.1", port, build, rate=200, count=100)

    assert result.accepted == 100 and result.errors == 0
    keys = {
        line
        for head in heads
        for line in head.split(b"\r\n")
        if line.startswith(b"Idempotency-Key")
    }
    assert len(keys) == 100
    server.close()


async def test_latency_counts_from_the_due_time_when_the_server_stalls() -> None:
    # One connection and a server that takes 50 ms: requests offered every 10 ms queue up,
    # and an open-loop generator must report that queueing as latency.
    server, port, _ = await serve(0.05)
    build = multipart_request("127.0.0.1", port, "/x", "tok", {}, [])

    result = await run_open_loop("127.0.0.1", port, build, rate=100, count=20, max_connections=1)

    assert result.percentile(50) > 200  # far above the 50 ms service time
    assert result.percentile(100) > 700
    server.close()


def test_a_unique_marker_gives_every_request_documents_of_its_own() -> None:
    marker = b"document-id-placeholder"
    build = multipart_request(
        "127.0.0.1", 1, "/applications", "tok", {}, [("f.pdf", b"%PDF " + marker, "x/y")], marker
    )

    first, second = build(), build()

    assert marker not in first and marker not in second
    assert len(first) == len(second)  # Content-Length still true
    body = first.split(b"\r\n\r\n", 1)[1]
    assert body.split(b"%PDF ")[1][: len(marker)] != second.split(b"%PDF ")[1][: len(marker)]


async def test_a_request_not_answered_by_its_deadline_is_an_error() -> None:
    # One connection, 50 ms per answer, one request due every 10 ms, clients that give up
    # 0.3 s after their due time: the first few are answered, the rest wait past their
    # deadline (most of it for the connection) and count as errors, none is lost.
    server, port, _ = await serve(0.05)
    build = multipart_request("127.0.0.1", port, "/x", "tok", {}, [])

    result = await run_open_loop(
        "127.0.0.1", port, build, rate=100, count=30, max_connections=1, timeout=0.3
    )

    assert 0 < result.accepted < 30
    assert result.accepted + result.errors == 30
    assert result.gave_up == result.errors
    assert max(result.latencies_ms) <= 300
    server.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    # The server answers, then closes the connection after a short keep-alive (as uvicorn
    # does after 5 s); the next request must go out on a new connection, not fail.
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ACCEPTED)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    build = multipart_request("127.0.0.1", port, "/x", "tok", {}, [])

    result = await run_open_loop("127.0.0.1", port, build, rate=20, count=5, max_connections=1)

    assert result.accepted == 5 and result.errors == 0
    server.close()


async def test_a_client_told_503_waits_retry_after_and_sends_the_same_key_again() -> None:
    # A server that is busy for each request's first attempt, and says so with Retry-After
    sent: dict[bytes, list[float]] = {}
    loop = asyncio.get_running_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_request(reader)
            key = next(line for line in head.split(b"\r\n") if line.startswith(b"Idempotency"))
            sent.setdefault(key, []).append(loop.time())
            if len(sent[key]) == 1:
                writer.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
            else:
                writer.write(ACCEPTED)
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    build = multipart_request("127.0.0.1", port, "/applications", "tok", {"a": "b"}, [])

    result = await run_open_loop("127.0.0.1", port, build, rate=100, count=20)

    # Every client got its 202 on the second try, with the same key, at least 1 s later
    assert result.accepted == 20 and result.errors == 0 and result.gave_up == 0
    assert result.statuses == {503: 20, 202: 20} and result.retries == 20
    assert len(sent) == 20 and all(len(times) == 2 for times in sent.values())
    assert all(times[1] - times[0] >= 1.0 for times in sent.values())
    assert min(result.journeys_ms) >= 1000
    server.close()
