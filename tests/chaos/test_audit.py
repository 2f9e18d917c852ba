"""The chaos audit's judgement (devtools.chaos.audit), on made-up evidence."""

from __future__ import annotations

from dataclasses import replace

from devtools.chaos.audit import REQUIRED_EMAILS, Announced, DeadLetter, Evidence, Mail, judge
from services.api.statuses import TERMINAL, Status

COMPLETE = ("confirmation", "pay_link", "receipt", "application_complete")


def mails(application_id: str, templates: tuple[str, ...] = COMPLETE) -> list[Mail]:
    return [Mail(application_id, t, f"<{application_id}.{t}@x>") for t in templates]


def clean() -> Evidence:
    return Evidence(
        accepted=frozenset({"a", "b"}),
        statuses={"a": "completed", "b": "completed"},
        provider_payments=[{"application_id": "a"}, {"application_id": "b"}],
        mails=mails("a") + mails("b"),
        unpublished_outbox={"api": 0, "mailer": 0},
        dead_letters=[DeadLetter("verifier.documents.dlq", "p1")],
        poison_ids=frozenset({"p1"}),
        server_errors=[(12.0, 503)],
        postgres_windows=[(10.0, 11.0)],
    )


def test_a_clean_run_passes() -> None:
    # Given evidence where everything happened once, and a 503 just after the Postgres restart
    findings = judge(clean())
    # Then nothing is reported
    assert not findings.failed
    assert findings.api_5xx == {"503": 1}


def test_an_accepted_application_missing_from_the_database_is_lost() -> None:
    # Given a 202 for an application the database does not have
    evidence = replace(clean(), accepted=frozenset({"a", "b", "c"}))
    # Then it is lost
    findings = judge(evidence)
    assert findings.lost == ["c"] and findings.failed


def test_a_second_payment_or_email_is_a_duplicate() -> None:
    # Given two payments for a, and two receipts (distinct Message-IDs) for b
    evidence = replace(
        clean(),
        provider_payments=[*clean().provider_payments, {"application_id": "a"}],
        mails=[*clean().mails, Mail("b", "receipt", "<other@x>")],
    )
    # Then both duplicates are found
    findings = judge(evidence)
    assert findings.duplicate_payments == {"a": 2}
    assert findings.duplicate_emails == {"b/receipt": 2}


def test_the_same_mail_delivered_twice_is_one_email() -> None:
    # Given the same Message-ID twice (a resend after a crash): the receiver dedups it
    evidence = replace(clean(), mails=[*clean().mails, *mails("a", ("receipt",))])
    # Then it is not a duplicate
    assert not judge(evidence).failed


def test_a_missing_email_and_a_foreign_dead_letter_fail() -> None:
    # Given no receipt for a and a dead letter that is not poison
    evidence = replace(
        clean(),
        mails=mails("a", ("confirmation", "pay_link", "application_complete")) + mails("b"),
        dead_letters=[*clean().dead_letters, DeadLetter("mailer.high.dlq", "m9")],
    )
    findings = judge(evidence)
    # Then both are reported
    assert findings.missing_emails == {"a": ["receipt"]}
    assert [d.message_id for d in findings.unexpected_dead_letters] == ["m9"]


def test_a_5xx_outside_the_postgres_window_is_unexpected() -> None:
    # Given a 503 long after the restart, and a 500
    evidence = replace(clean(), server_errors=[(60.0, 503), (10.5, 500)])
    # Then both are unexpected
    assert judge(evidence).unexpected_5xx == 2


def test_the_audit_knows_the_mails_of_every_terminal_status_of_the_api() -> None:
    # The statuses are the API's (services/api/statuses.py), not a copy: each terminal one
    # calls for its mails, and no other status does.
    assert set(REQUIRED_EMAILS) == set(TERMINAL)


def test_an_application_short_of_a_terminal_status_is_reported() -> None:
    # Given one application still waiting for its payment
    evidence = replace(clean(), statuses={"a": "completed", "b": Status.AWAITING_PAYMENT.value})
    # Then the audit names it
    assert judge(evidence).non_terminal == {"b": "awaiting_payment"}


AUDIENCE = frozenset({"ann@example.org", "bob@example.org"})


def announcement(*, sent: int = 2, failed: int = 0) -> Announced:
    return Announced("n1", "Open day", status="done", total=2, sent=sent, failed=failed)


def announced_to(recipient: str, message_id: str | None = None) -> Mail:
    return Mail(None, "announcement", message_id or f"<n1.{recipient}@x>", recipient, "Open day")


def with_announcement(*mails_sent: Mail, sent: int = 2, failed: int = 0) -> Evidence:
    return replace(
        clean(),
        mails=[*clean().mails, *mails_sent],
        announcements=[announcement(sent=sent, failed=failed)],
        announcement_audience=AUDIENCE,
    )


def test_an_announcement_to_each_recipient_once_passes() -> None:
    # Given each recipient's mail, one of them delivered twice under its one Message-ID
    evidence = with_announcement(
        announced_to("ann@example.org"),
        announced_to("bob@example.org"),
        announced_to("bob@example.org"),
    )
    # Then nothing is reported
    assert not judge(evidence).failed


def test_an_announcement_mailed_twice_or_not_at_all_is_reported() -> None:
    # Given ann mailed twice (two Message-IDs) and bob never
    evidence = with_announcement(
        announced_to("ann@example.org"), announced_to("ann@example.org", "<again@x>")
    )
    # Then both are reported against the announcement
    findings = judge(evidence)
    assert findings.failed
    assert findings.announcement_faults == {"n1": "1 got it twice; 1 never got it"}


def test_an_announcement_the_admin_view_shows_unfinished_is_reported() -> None:
    # Given every mail caught, but the view says one failed
    evidence = with_announcement(
        announced_to("ann@example.org"), announced_to("bob@example.org"), sent=1, failed=1
    )
    # Then the run fails on it
    assert "1 failed" in judge(evidence).announcement_faults["n1"]
