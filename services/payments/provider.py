"""The payment provider behind an interface, and its client for the sandbox PSP.

    ProviderError
    ├── ProviderUnavailable (TransientError)   5xx, 429, timeouts, connection failures,
    │                                          an answer we cannot read: try again later
    └── ProviderRejected (PermanentError)      4xx: this request will never be accepted

httpx's exceptions are translated here, at the boundary; the handler sees only these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from shared.errors import PermanentError, TransientError
from shared.faults import FaultPoint


@dataclass(frozen=True)
class Checkout:
    payment_id: str
    checkout_url: str


class ProviderError(Exception):
    """Base of every failure to talk to the provider."""


class ProviderUnavailable(ProviderError, TransientError):
    pass


class ProviderRejected(ProviderError, PermanentError):
    pass


class PaymentProvider(Protocol):
    async def create_checkout(
        self, application_id: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Checkout:
        """A checkout the applicant can pay; the same key always returns the same one."""
        ...


class SandboxProvider:
    """The client of the sandbox PSP (``services.payments.sandbox``), over HTTP."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        # base_url and timeouts are the client's: the composition root configures them.
        self.client = client

    async def create_checkout(
        self, application_id: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Checkout:
        try:
            response = await self.client.post(
                "/v1/checkouts",
                json={
                    "application_id": application_id,
                    "amount_cents": amount_cents,
                    "currency": currency,
                },
                headers={"Idempotency-Key": idempotency_key},
            )
        except httpx.TransportError as error:  # timeouts, refused connections, resets
            raise ProviderUnavailable(
                f"payment provider unreachable: {error.__class__.__name__}: {error}"
            ) from error
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnavailable(
                f"payment provider answered {response.status_code}: {_excerpt(response)}"
            )
        if response.status_code >= 400:
            raise ProviderRejected(
                f"payment provider refused the checkout ({response.status_code}): "
                f"{_excerpt(response)}"
            )
        try:
            body = response.json()
            return Checkout(
                payment_id=str(body["payment_id"]), checkout_url=str(body["checkout_url"])
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ProviderUnavailable(
                f"unreadable answer from the payment provider ({response.status_code})"
            ) from error


class FaultyProvider:
    """A provider behind a fault point, put in place at assembly for chaos runs only
    (``shared.faults``): latency, and failures before a call or of its answer after it."""

    def __init__(self, provider: PaymentProvider, faults: FaultPoint) -> None:
        self.provider = provider
        self.faults = faults

    async def create_checkout(
        self, application_id: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Checkout:
        return await self.faults.around(
            self.provider.create_checkout(application_id, amount_cents, currency, idempotency_key)
        )


def sandbox_client(base_url: str, timeout_seconds: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout_seconds))


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip()
    return text if len(text) <= 200 else text[:197] + "..."
