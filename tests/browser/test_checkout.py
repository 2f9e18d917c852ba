"""An applicant follows the pay link, clicks Pay on the sandbox checkout page, and the
application reaches ``completed``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.browser.checkout_page import CheckoutPage
from tests.browser.chromium import save_screenshot
from tests.e2e.conftest import (
    checkout_url_of,
    pdf_bytes,
    provider_payments,
    register,
    status_once,
)
from tests.support.system import RunningSystem


async def provider_payment(system: RunningSystem, application_id: str) -> dict[str, Any]:
    payments = await provider_payments(system.psp, application_id)
    assert len(payments) == 1, payments
    return payments[0]


async def test_paying_on_the_checkout_page_completes_the_application(
    system: RunningSystem, browser: WebDriver, screenshots: Path
) -> None:
    # Given a provider that waits for a person to pay
    await system.restart("sandbox", PSP_AUTOPAY="0")
    try:
        async with httpx.AsyncClient(base_url=system.api, timeout=30) as client:
            applicant = await register(client)
            # and an application with two valid PDFs, waiting for its payment
            accepted = await applicant.submit(
                [
                    ("transcript.pdf", pdf_bytes(2), "application/pdf"),
                    ("id.pdf", pdf_bytes(1), "application/pdf"),
                ]
            )
            assert accepted.status_code == 202, accepted.text
            application_id = accepted.json()["applicationId"]
            checkout_url = await checkout_url_of(applicant, application_id)
            waiting = await status_once(applicant, application_id, "awaiting_payment")
            payment = await provider_payment(system, application_id)
            amount = f"{payment['amount_cents'] / 100:,.2f} {payment['currency']}"
            assert payment["status"] == "pending"

            # When the applicant opens the checkout page and clicks Pay
            page = CheckoutPage(browser)
            checkout = await asyncio.to_thread(page.open, checkout_url)
            assert checkout.amount == amount
            assert checkout.pay_button == f"Pay {amount}"
            result = await asyncio.to_thread(page.pay)
            await asyncio.to_thread(save_screenshot, browser, screenshots / "checkout-paid.png")

            # Then the provider confirms, and the API shows the application completed
            assert result.heading == "Payment received", result.text
            assert f"{amount} received for application {application_id}" in result.text
            assert (await provider_payment(system, application_id))["status"] == "paid"
            done = await status_once(applicant, application_id, "completed")
    finally:
        await system.restart("sandbox", PSP_AUTOPAY="1")
    assert waiting["progress"] == 75
    assert done["progress"] == 100
