"""SandboxProvider against the real sandbox app in-process, and against broken answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.payments.provider import (
    Checkout,
    ProviderRejected,
    ProviderUnavailable,
    SandboxProvider,
)
from shared.errors import PermanentError, TransientError
from tests.unit.payments.sandbox_harness import PUBLIC_URL, running_sandbox


async def test_a_checkout_is_created_and_the_same_key_returns_it(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        provider = SandboxProvider(psp.client)
        first = await provider.create_checkout("app-1", 5000, "EUR", idempotency_key="app-1")
        again = await provider.create_checkout("app-1", 5000, "EUR", idempotency_key="app-1")
    assert first == again
    assert first.checkout_url == f"{PUBLIC_URL}/checkout/{first.payment_id}"


async def test_an_outage_is_transient(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path, failure_rate=1.0) as psp:
        with pytest.raises(ProviderUnavailable) as raised:
            await SandboxProvider(psp.client).create_checkout("app-1", 5000, "EUR", "app-1")
    assert isinstance(raised.value, TransientError)
    assert "503" in str(raised.value)


async def test_a_refused_request_is_permanent(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        provider = SandboxProvider(psp.client)
        await provider.create_checkout("app-1", 5000, "EUR", idempotency_key="key")
        with pytest.raises(ProviderRejected) as raised:
            await provider.create_checkout("app-2", 5000, "EUR", idempotency_key="key")
    assert isinstance(raised.value, PermanentError)
    assert "409" in str(raised.value)


def client_answering(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=handler, base_url="http://psp.test")


async def test_a_timeout_is_transient() -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    async with client_answering(httpx.MockTransport(time_out)) as client:
        with pytest.raises(ProviderUnavailable, match="ReadTimeout"):
            await SandboxProvider(client).create_checkout("app-1", 5000, "EUR", "app-1")


async def test_an_unreachable_provider_is_transient() -> None:
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=2) as client:
        with pytest.raises(ProviderUnavailable, match="unreachable"):
            await SandboxProvider(client).create_checkout("app-1", 5000, "EUR", "app-1")


async def test_an_unreadable_answer_is_transient() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(201, text="<html>proxy</html>"))
    async with client_answering(transport) as client:
        with pytest.raises(ProviderUnavailable, match="unreadable"):
            await SandboxProvider(client).create_checkout("app-1", 5000, "EUR", "app-1")


async def test_the_idempotency_key_and_body_are_sent() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"payment_id": "pay_1", "checkout_url": "http://c/1"})

    async with client_answering(httpx.MockTransport(answer)) as client:
        checkout = await SandboxProvider(client).create_checkout("app-9", 1234, "USD", "key-9")
    assert checkout == Checkout("pay_1", "http://c/1")
    [request] = seen
    assert request.headers["Idempotency-Key"] == "key-9"
    assert request.url.path == "/v1/checkouts"
    assert request.read() == b'{"application_id":"app-9","amount_cents":1234,"currency":"USD"}'
