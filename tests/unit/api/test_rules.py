"""Pure rules: fingerprints, file names, types, idempotency keys, tokens, payment status."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.api.applications.accept import submitted_event
from services.api.applications.validation import (
    SubmissionForm,
    SubmissionInvalid,
    UploadedDocument,
    check_content_type,
    check_declared_length,
    fingerprint,
    parse_idempotency_key,
    sanitise_filename,
)
from services.api.applications.views import payment_status
from services.api.auth.codes import hash_otp_code, hash_reset_token, new_otp_code
from services.api.auth.tokens import (
    InvalidToken,
    Principal,
    TokenVerifier,
    issue_token,
    read_token,
)
from shared.events.catalog import ApplicationSubmitted, parse_payload
from shared.events.envelope import decode_envelope

DOC = UploadedDocument("d1", "cv.pdf", "application/pdf", 10, "a" * 64)
FORM = SubmissionForm("MSc", "statement", (DOC,))


def test_the_same_form_has_the_same_fingerprint_whatever_the_document_ids() -> None:
    again = replace(FORM, documents=(replace(DOC, document_id="other-id"),))
    assert fingerprint(again) == fingerprint(FORM)


@pytest.mark.parametrize(
    "changed",
    [
        replace(FORM, program="MBA"),
        replace(FORM, personal_statement="another statement"),
        replace(FORM, documents=(replace(DOC, sha256="b" * 64),)),
        replace(FORM, documents=(replace(DOC, filename="other.pdf"),)),
        replace(FORM, documents=()),
        replace(FORM, documents=(DOC, DOC)),
    ],
)
def test_any_change_of_content_changes_the_fingerprint(changed: SubmissionForm) -> None:
    assert fingerprint(changed) != fingerprint(FORM)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cv.pdf", "cv.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\cv.pdf", "cv.pdf"),
        ("bad\x00name\r\n.pdf", "badname.pdf"),
        ("..", "document"),
        ("", "document"),
        (None, "document"),
        ("x" * 300 + ".pdf", "x" * 255),
        ("Lebenslauf-Müller.pdf", "Lebenslauf-Müller.pdf"),
    ],
)
def test_file_names_become_safe_labels(raw: str | None, expected: str) -> None:
    assert sanitise_filename(raw) == expected


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("application/pdf", "application/pdf"),
        ("Image/PNG", "image/png"),
        ("image/jpeg; charset=binary", "image/jpeg"),
    ],
)
def test_accepted_types_are_normalised(declared: str, expected: str) -> None:
    assert check_content_type(declared, "f") == expected


@pytest.mark.parametrize("declared", [None, "", "image/gif", "application/pdfx", "text/html"])
def test_other_types_are_415(declared: str | None) -> None:
    with pytest.raises(SubmissionInvalid) as refused:
        check_content_type(declared, "f")
    assert refused.value.status == 415


@pytest.mark.parametrize(("header", "status"), [("101", 413), ("abc", 400)])
def test_declared_length_is_checked_before_reading(header: str, status: int) -> None:
    with pytest.raises(SubmissionInvalid) as refused:
        check_declared_length(header, 100)
    assert refused.value.status == status


@pytest.mark.parametrize("header", [None, "100", "0"])
def test_lengths_within_the_limit_pass(header: str | None) -> None:
    check_declared_length(header, 100)


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_malformed_idempotency_keys_are_422(key: str) -> None:
    with pytest.raises(SubmissionInvalid) as refused:
        parse_idempotency_key(key)
    assert refused.value.status == 422


def test_a_well_formed_idempotency_key_is_kept() -> None:
    assert parse_idempotency_key("3f1c-aa_01") == "3f1c-aa_01"
    assert parse_idempotency_key(None) is None


NOW = datetime(2030, 1, 1, tzinfo=UTC)
ALICE = Principal("u-1", "alice@example.org", "applicant")
SECRET = "a-test-secret-of-at-least-32-bytes!"


def test_a_token_names_its_user() -> None:
    token = issue_token(ALICE, SECRET, timedelta(minutes=5), datetime.now(UTC))
    assert read_token(token, SECRET).principal == ALICE


@pytest.mark.parametrize(
    ("token", "secret"),
    [
        (issue_token(ALICE, SECRET, timedelta(minutes=5), datetime.now(UTC)), SECRET + "x"),
        (issue_token(ALICE, SECRET, timedelta(minutes=5), NOW - timedelta(days=3650)), SECRET),
        ("not-a-jwt", SECRET),
    ],
    ids=["wrong-secret", "expired", "garbage"],
)
def test_bad_tokens_are_refused(token: str, secret: str) -> None:
    with pytest.raises(InvalidToken):
        read_token(token, secret)


def test_a_remembered_token_still_expires() -> None:
    # Given a verifier with a clock we control, and a token valid for 60 s
    issued = datetime.now(UTC)
    now = [issued.timestamp()]
    verifier = TokenVerifier(SECRET, clock=lambda: now[0])
    token = issue_token(ALICE, SECRET, timedelta(seconds=60), issued)
    # When it is used, then used again after its expiry
    assert verifier.verify(token) == ALICE
    assert verifier.verify(token) == ALICE
    now[0] += 61
    # Then the remembered verification does not outlive the token
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_a_refused_token_is_not_remembered_and_memory_is_bounded() -> None:
    issued = datetime.now(UTC)
    verifier = TokenVerifier(SECRET, capacity=2, clock=lambda: issued.timestamp())
    forged = issue_token(ALICE, SECRET + "x", timedelta(minutes=5), issued)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verifier.verify(forged)
    tokens = [
        issue_token(
            Principal(f"u-{i}", "a@example.org", "applicant"), SECRET, timedelta(hours=1), issued
        )
        for i in range(5)
    ]
    assert [verifier.verify(t).user_id for t in tokens] == [f"u-{i}" for i in range(5)]
    assert len(verifier._verified) == 2


def test_one_time_codes_are_six_digits_and_hashed_per_user() -> None:
    code = new_otp_code()
    assert len(code) == 6 and code.isdigit()
    assert hash_otp_code("k", "u-1", code) != hash_otp_code("k", "u-2", code)
    assert hash_otp_code("k", "u-1", code) != hash_otp_code("other key", "u-1", code)
    assert hash_reset_token("t") != "t"


@pytest.mark.parametrize(
    ("status", "paid", "checkout_url", "expected"),
    [
        ("verifying", False, None, "not_started"),
        ("awaiting_payment", False, "https://psp/c/1", "pending"),
        ("completed", True, "https://psp/c/1", "completed"),
        ("payment_failed", False, "https://psp/c/1", "failed"),
    ],
)
def test_payment_status_is_derived_from_the_projection(
    status: str, paid: bool, checkout_url: str | None, expected: str
) -> None:
    assert payment_status(status, paid, checkout_url) == expected


def test_the_submitted_event_built_without_validation_is_valid_on_the_wire() -> None:
    # Given the event the hot path builds without re-validating its fields
    envelope = submitted_event("app-1", ALICE, FORM, "req-1")
    # When a consumer decodes and validates it
    decoded = decode_envelope(envelope.encode())
    payload = parse_payload(decoded.type, decoded.version, decoded.payload)
    # Then it is a valid application.submitted with everything the consumers need
    assert isinstance(payload, ApplicationSubmitted)
    assert payload.applicant_email == "alice@example.org"
    assert [d.sha256 for d in payload.documents] == [DOC.sha256]
    assert decoded.correlation_id == "req-1"
