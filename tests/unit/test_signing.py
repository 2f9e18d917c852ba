"""Event signatures (``shared.events.signing``): keys from settings, what verifies and what not."""

from __future__ import annotations

import pytest

from shared.errors import ForgedEvent
from shared.events.signing import (
    PUBLISHERS,
    SIGNATURE_HEADER,
    SIGNED_BY_HEADER,
    EventSigner,
    generate,
    signers_from,
    verifier_from,
)

BODY = b'{"type": "payment.completed"}'


def test_generated_keys_sign_and_verify_for_every_publisher() -> None:
    private, public = generate()
    signers = signers_from(private, PUBLISHERS)
    verifier = verifier_from(public)
    # the mailer publishes its own announcement deliveries (issue 18)
    assert set(PUBLISHERS) == {"api", "verifier", "payments", "mailer"}
    verifier.verify("payment.completed", BODY, signers["payments"].headers(BODY))
    verifier.verify("documents.verified", BODY, signers["verifier"].headers(BODY))
    # the development keys are other keys
    with pytest.raises(ForgedEvent, match="signature of payments does not match"):
        verifier.verify(
            "payment.completed", BODY, EventSigner.development("payments").headers(BODY)
        )


def test_the_signer_must_be_the_owner_and_the_body_unchanged() -> None:
    verifier = verifier_from("")  # development keys
    genuine = EventSigner.development("payments").headers(BODY)
    verifier.verify("payment.completed", BODY, genuine)
    with pytest.raises(ForgedEvent, match="must be signed by payments, signed by verifier"):
        verifier.verify(
            "payment.completed", BODY, EventSigner.development("verifier").headers(BODY)
        )
    with pytest.raises(ForgedEvent, match="does not match"):
        verifier.verify("payment.completed", BODY + b" ", genuine)
    with pytest.raises(ForgedEvent, match="does not match"):
        verifier.verify("payment.completed", BODY, {**genuine, SIGNATURE_HEADER: "not base64!"})
    with pytest.raises(ForgedEvent, match="signed by nobody"):
        verifier.verify("payment.completed", BODY, {})
    assert genuine[SIGNED_BY_HEADER] == "payments"


@pytest.mark.parametrize(
    "text", ["api", "api=", "api=c2hvcnQ=", "api=!!!", "verifier=" + "A" * 44 + ",api"]
)
def test_malformed_keys_are_refused_with_the_variable_named(text: str) -> None:
    with pytest.raises(ValueError, match="EVENT_PUBLIC_KEYS"):
        verifier_from(text)
    with pytest.raises(ValueError, match="EVENT_SIGNING_KEYS"):
        signers_from(text, ["api"])


def test_every_publisher_needs_a_key() -> None:
    private, public = generate()
    without_payments = ",".join(p for p in public.split(",") if not p.startswith("payments="))
    with pytest.raises(ValueError, match="no key for payments"):
        verifier_from(without_payments)
    with pytest.raises(ValueError, match="no key for payments"):
        signers_from(
            ",".join(p for p in private.split(",") if not p.startswith("payments=")), ["payments"]
        )


def test_a_source_that_owns_no_event_type_needs_no_key_and_cannot_sign_for_another() -> None:
    # Given the relay's real keys, which have none for the mailer (it publishes nothing)
    private, public = generate()
    signers = signers_from(private, ["api", "mailer"])
    # Then a row from the mailer's outbox is signed, but by no key a consumer accepts
    with pytest.raises(ForgedEvent):
        verifier_from(public).verify("payment.completed", BODY, signers["mailer"].headers(BODY))
