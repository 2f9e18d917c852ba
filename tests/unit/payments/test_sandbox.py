"""The sandbox PSP in-process (httpx ASGITransport): idempotency, outages, the checkout page,
and signed webhooks delivered until acknowledged, across restarts."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path

from services.payments.sandbox.store import PaymentStore
from shared.signing import SIGNATURE_HEADER, verify_signature
from tests.support.waiting import eventually
from tests.unit.payments.sandbox_harness import (
    PUBLIC_URL,
    SECRET,
    WEBHOOK_URL,
    SentWebhook,
    running_sandbox,
)


def webhook_payload(webhook: SentWebhook) -> dict[str, object]:
    """The body, after checking its signature the way the API does."""
    verify_signature(SECRET, webhook.headers.get(SIGNATURE_HEADER), webhook.body, time.time())
    payload: dict[str, object] = json.loads(webhook.body)
    return payload


async def test_a_checkout_is_created_once_per_idempotency_key(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        # Given a checkout created with a key
        first = await psp.create("key-1")
        # When the same key is sent again, and another key once
        again = await psp.create("key-1")
        other = await psp.create("key-2", application_id="app-2")
    # Then the same key answers the same payment with 200, the new key a new one with 201
    assert first.status_code == 201
    assert again.status_code == 200
    assert other.status_code == 201
    payment_id = first.json()["payment_id"]
    assert again.json()["payment_id"] == payment_id
    assert other.json()["payment_id"] != payment_id
    assert first.json()["checkout_url"] == f"{PUBLIC_URL}/checkout/{payment_id}"


async def test_concurrent_requests_with_one_key_make_one_payment(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        # When twenty requests with the same key arrive at once
        responses = await asyncio.gather(*(psp.create("same-key") for _ in range(20)))
        listed = (await psp.client.get("/v1/payments")).json()
    # Then exactly one created the payment and all name it
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["payment_id"] for r in responses}) == 1
    assert len(listed) == 1


def test_many_connections_to_one_store_make_one_payment_per_key(tmp_path: Path) -> None:
    # Given eight connections to the same file (as several sandbox processes would have)
    stores = [PaymentStore(tmp_path / "payments.sqlite3") for _ in range(8)]
    for store in stores:
        store.open()
    created: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def create(store: PaymentStore) -> None:
        try:
            barrier.wait()
            for n in range(20):
                created.append(store.create(f"key-{n}", f"app-{n}", 5000, "EUR")[1])
        except BaseException as error:
            errors.append(error)

    # When all of them create the same twenty keys at the same time
    threads = [threading.Thread(target=create, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    # Then every call answered, and each key was created exactly once
    assert errors == []
    assert len(created) == 8 * 20
    assert created.count(True) == 20
    reader = PaymentStore(tmp_path / "payments.sqlite3")
    reader.open()
    assert len(reader.search()) == 20
    reader.close()


async def test_the_idempotency_key_is_required(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        response = await psp.client.post(
            "/v1/checkouts", json={"application_id": "a", "amount_cents": 5000, "currency": "EUR"}
        )
        assert response.status_code == 400
        assert (await psp.client.get("/v1/payments")).json() == []


async def test_a_key_reused_for_another_request_is_a_conflict(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        await psp.create("key-1", application_id="app-1")
        response = await psp.create("key-1", application_id="app-2")
    assert response.status_code == 409


async def test_failure_rate_one_answers_503_and_creates_nothing(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path, failure_rate=1.0) as psp:
        responses = [await psp.create(f"key-{n}") for n in range(5)]
        listed = (await psp.client.get("/v1/payments")).json()
    assert [r.status_code for r in responses] == [503] * 5
    assert listed == []


async def test_the_checkout_page_offers_pay_and_decline(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        payment_id = (await psp.create("key-1", application_id="app-42")).json()["payment_id"]
        page = await psp.client.get(f"/checkout/{payment_id}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "50.00 EUR" in html
    assert "app-42" in html
    assert re.search(
        rf'<form method="post" action="/checkout/{payment_id}/pay">\s*'
        r'<button type="submit" class="pay">Pay',
        html,
    )
    assert f'action="/checkout/{payment_id}/decline"' in html
    assert ">Decline</button>" in html


async def test_paying_shows_a_confirmation_and_sends_one_signed_webhook(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        payment_id = (await psp.create("key-1", application_id="app-7")).json()["payment_id"]
        # When the payer clicks "Pay" (twice: a double submit)
        confirmation = await psp.client.post(f"/checkout/{payment_id}/pay")
        await psp.client.post(f"/checkout/{payment_id}/pay")
        delivered = await psp.sandbox.dispatcher.deliver_due()
        status = (await psp.client.get(f"/v1/payments/{payment_id}")).json()["status"]
    # Then the page confirms it, the payment is paid
    assert confirmation.status_code == 200
    assert "Payment received" in confirmation.text
    assert status == "paid"
    # And exactly one webhook went out, signed so that the API accepts it
    assert delivered == 1
    [webhook] = psp.sender.sent
    assert webhook.url == WEBHOOK_URL
    assert webhook_payload(webhook) == {
        "event_id": f"evt_{payment_id}_paid",
        "payment_id": payment_id,
        "application_id": "app-7",
        "status": "paid",
        "failure_reason": None,
    }


async def test_declining_sends_a_failed_webhook(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        payment_id = (await psp.create("key-1")).json()["payment_id"]
        page = await psp.client.post(f"/checkout/{payment_id}/decline")
        too_late = await psp.client.post(f"/checkout/{payment_id}/pay")
        await psp.sandbox.dispatcher.deliver_due()
    assert "Payment declined" in page.text
    assert too_late.status_code == 409
    [webhook] = psp.sender.sent
    payload = webhook_payload(webhook)
    assert (payload["status"], payload["failure_reason"]) == ("failed", "declined by the payer")
    assert payload["event_id"] == f"evt_{payment_id}_failed"


async def test_an_unacknowledged_webhook_is_retried_with_the_same_event(tmp_path: Path) -> None:
    # Given a receiver that answers 500, then refuses, then accepts
    async with running_sandbox(tmp_path, statuses=[500, 503], start=True) as psp:
        payment_id = (await psp.create("key-1")).json()["payment_id"]
        await psp.client.post(f"/checkout/{payment_id}/pay")
        # When the dispatcher runs in the background
        await eventually(lambda: len(psp.sender.sent) == 3, timeout=5, what="3 attempts")
        await eventually(lambda: psp.sandbox.store.undelivered_webhooks() == 0, timeout=5)
        record = psp.sandbox.store.webhook(f"evt_{payment_id}_paid")
    # Then the same body was sent three times, each freshly signed, and it is now delivered
    assert {w.body for w in psp.sender.sent} == {psp.sender.sent[0].body}
    for webhook in psp.sender.sent:
        webhook_payload(webhook)
    assert record is not None and record["attempts"] == 3 and record["delivered_at"]


async def test_pending_webhooks_and_payments_survive_a_restart(tmp_path: Path) -> None:
    # Given a paid payment whose webhook the receiver never acknowledged
    async with running_sandbox(tmp_path, statuses=[500]) as psp:
        payment_id = (await psp.create("key-1")).json()["payment_id"]
        await psp.client.post(f"/checkout/{payment_id}/pay")
        await psp.sandbox.dispatcher.deliver_due()
    # When the sandbox starts again on the same data
    async with running_sandbox(tmp_path, start=True) as restarted:
        await eventually(lambda: len(restarted.sender.sent) == 1, timeout=5, what="redelivery")
        replay = await restarted.create("key-1")
    # Then the webhook is delivered, and the key still names the same payment
    assert webhook_payload(restarted.sender.sent[0])["payment_id"] == payment_id
    assert (replay.status_code, replay.json()["payment_id"]) == (200, payment_id)


async def test_autopay_pays_and_notifies_by_itself(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path, autopay=True, autopay_delay_ms=20, start=True) as psp:
        payment_id = (await psp.create("key-1")).json()["payment_id"]
        await eventually(lambda: len(psp.sender.sent) == 1, timeout=5, what="auto-payment")
    assert webhook_payload(psp.sender.sent[0])["payment_id"] == payment_id
    assert webhook_payload(psp.sender.sent[0])["status"] == "paid"


async def test_autopay_resumes_payments_left_pending_by_a_restart(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        payment_id = (await psp.create("key-1")).json()["payment_id"]
    async with running_sandbox(tmp_path, autopay=True, start=True) as restarted:
        await eventually(lambda: len(restarted.sender.sent) == 1, timeout=5, what="auto-payment")
    assert webhook_payload(restarted.sender.sent[0])["payment_id"] == payment_id


async def test_payments_can_be_listed_by_application(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        await psp.create("key-1", application_id="app-1")
        await psp.create("key-2", application_id="app-2")
        everything = (await psp.client.get("/v1/payments")).json()
        one = (await psp.client.get("/v1/payments", params={"application_id": "app-2"})).json()
    assert len(everything) == 2
    assert [(p["application_id"], p["status"]) for p in one] == [("app-2", "pending")]


async def test_provider_latency_is_added_to_api_calls(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path) as psp:
        psp.sandbox.latency_ms = 150
        started = time.perf_counter()
        await psp.create("key-1")
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.15


async def test_delivered_webhooks_are_forgotten_after_their_retention(tmp_path: Path) -> None:
    """issue 14, item 11: the sandbox's store of webhooks does not grow for ever."""
    # Given one delivered webhook and one the receiver keeps refusing
    async with running_sandbox(tmp_path, statuses=[200, 500, 500]) as psp:
        paid = (await psp.create("key-1")).json()["payment_id"]
        declined = (await psp.create("key-2")).json()["payment_id"]
        await psp.client.post(f"/checkout/{paid}/pay")
        await psp.sandbox.dispatcher.deliver_due()
        await psp.client.post(f"/checkout/{declined}/decline")
        await psp.sandbox.dispatcher.deliver_due()
        dispatcher = psp.sandbox.dispatcher
        store = psp.sandbox.store
        now = time.time()
        # When the retention has not passed yet, nothing goes
        dispatcher.clock = lambda: now + dispatcher.delivered_retention - 60
        assert dispatcher.forget_delivered() == 0
        # When it has, the delivered webhook goes and the undelivered one stays
        dispatcher.clock = lambda: now + dispatcher.delivered_retention + 120
        assert dispatcher.forget_delivered() == 1
        assert store.webhook(f"evt_{paid}_paid") is None
        assert store.webhook(f"evt_{declined}_failed") is not None
        assert store.undelivered_webhooks() == 1


async def test_no_other_site_can_make_a_browser_decline_pay_or_create(tmp_path: Path) -> None:
    """issue 14, item 12: a page elsewhere cannot drive the sandbox through its visitors'
    browsers (a cross-site form POST carries the page's Origin)."""
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    async with running_sandbox(tmp_path) as psp:
        payment_id = (await psp.create("key-1")).json()["payment_id"]
        # When another site's page posts the checkout's buttons, each is refused
        for action in ("decline", "pay"):
            refused = await psp.client.post(f"/checkout/{payment_id}/{action}", headers=evil)
            assert refused.status_code == 403, action
        assert psp.sandbox.store.get(payment_id).status == "pending"  # type: ignore[union-attr]
        # And a browser may not create checkouts at all, even from the sandbox's own pages
        for origin in ("https://evil.example", PUBLIC_URL):
            created = await psp.client.post(
                "/v1/checkouts",
                json={"application_id": "app-2", "amount_cents": 5000, "currency": "EUR"},
                headers={"Idempotency-Key": f"key-{origin}", "Origin": origin},
            )
            assert created.status_code == 403, origin
        # While the checkout page's own button still works
        own = {"Origin": PUBLIC_URL, "Sec-Fetch-Site": "same-origin"}
        declined = await psp.client.post(f"/checkout/{payment_id}/decline", headers=own)
        assert declined.status_code == 200 and "Payment declined" in declined.text
