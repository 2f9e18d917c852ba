"""The sandbox PSP over HTTP: the provider API (``/v1``) and the checkout pages people click.

POST /v1/checkouts            Idempotency-Key required; 201 new, 200 the same key again
GET  /v1/payments[?application_id=]   every payment, for audits
GET  /v1/payments/{id}
GET  /checkout/{id}           the page with "Pay" and "Decline"
POST /checkout/{id}/pay       -> confirmation page; the signed webhook follows
POST /checkout/{id}/decline
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, Field

from services.payments.sandbox.origins import browser_refusal
from services.payments.sandbox.service import PaymentSandbox
from services.payments.sandbox.store import IdempotencyConflict, SandboxPayment


class CheckoutRequest(BaseModel):
    application_id: str = Field(min_length=1, max_length=200)
    amount_cents: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


def money(payment: SandboxPayment) -> str:
    return f"{payment.amount_cents / 100:,.2f} {payment.currency}"


def create_app(
    sandbox: PaymentSandbox, on_shutdown: Callable[[], Awaitable[None]] | None = None
) -> FastAPI:
    templates = Environment(
        loader=PackageLoader("services.payments.sandbox", "templates"),
        autoescape=select_autoescape(["html"]),
    )

    def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await sandbox.start()
        yield
        await sandbox.stop()
        if on_shutdown is not None:
            await on_shutdown()

    app = FastAPI(title="Sandbox payment provider", lifespan=lifespan)

    @app.middleware("http")
    async def provider_latency(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if sandbox.latency_ms and request.url.path.startswith("/v1/"):
            await asyncio.sleep(sandbox.latency_ms / 1000)
        return await call_next(request)

    @app.middleware("http")
    async def no_cross_site_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method not in {"GET", "HEAD", "OPTIONS"}:
            refusal = browser_refusal(request.url.path, request.headers, sandbox.public_url)
            if refusal is not None:
                return JSONResponse({"detail": refusal}, status_code=403)
        return await call_next(request)

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/checkouts", status_code=201)
    async def create_checkout(
        request: CheckoutRequest,
        response: Response,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> Any:
        if not idempotency_key:
            return JSONResponse({"detail": "the Idempotency-Key header is required"}, 400)
        if sandbox.should_fail():
            return JSONResponse(
                {"detail": "simulated provider outage (PSP_FAILURE_RATE)"},
                503,
                headers={"Retry-After": "1"},
            )
        try:
            payment, created = sandbox.create(
                idempotency_key, request.application_id, request.amount_cents, request.currency
            )
        except IdempotencyConflict as conflict:
            return JSONResponse({"detail": str(conflict)}, 409)
        if not created:
            response.status_code = 200
        return {**payment.as_json(), "checkout_url": sandbox.checkout_url(payment.payment_id)}

    @app.get("/v1/payments")
    async def list_payments(application_id: str | None = None) -> list[dict[str, Any]]:
        return [
            {**payment.as_json(), "checkout_url": sandbox.checkout_url(payment.payment_id)}
            for payment in sandbox.store.search(application_id)
        ]

    @app.get("/v1/payments/{payment_id}")
    async def get_payment(payment_id: str) -> Any:
        payment = sandbox.store.get(payment_id)
        if payment is None:
            return JSONResponse({"detail": f"no payment {payment_id}"}, 404)
        return {**payment.as_json(), "checkout_url": sandbox.checkout_url(payment.payment_id)}

    @app.get("/checkout/{payment_id}", response_class=HTMLResponse)
    async def checkout_page(payment_id: str) -> HTMLResponse:
        payment = sandbox.store.get(payment_id)
        if payment is None:
            return page("not_found.html", 404, payment_id=payment_id)
        return page("checkout.html", payment=payment, amount=money(payment))

    @app.post("/checkout/{payment_id}/pay", response_class=HTMLResponse)
    async def pay(payment_id: str) -> HTMLResponse:
        payment = sandbox.pay(payment_id)
        if payment is None:
            return page("not_found.html", 404, payment_id=payment_id)
        if payment.status != "paid":  # declined earlier: it cannot be paid now
            return page(
                "result.html",
                409,
                payment=payment,
                amount=money(payment),
                heading="Payment declined",
            )
        return page(
            "result.html", payment=payment, amount=money(payment), heading="Payment received"
        )

    @app.post("/checkout/{payment_id}/decline", response_class=HTMLResponse)
    async def decline(payment_id: str) -> HTMLResponse:
        payment = sandbox.decline(payment_id)
        if payment is None:
            return page("not_found.html", 404, payment_id=payment_id)
        if payment.status == "paid":  # paid earlier: too late to decline
            return page(
                "result.html",
                409,
                payment=payment,
                amount=money(payment),
                heading="Payment received",
            )
        return page(
            "result.html", payment=payment, amount=money(payment), heading="Payment declined"
        )

    return app
