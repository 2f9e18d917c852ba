"""The exactly-once audit: what the databases, the provider, the mailbox and the queues hold,
compared with what the clients were told. Pure: the run collects the evidence, this judges it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.api.statuses import TERMINAL, Status

# The emails each terminal state calls for (pay_link only when the checkout was created).
REQUIRED_EMAILS: Mapping[str, frozenset[str]] = {
    Status.COMPLETED: frozenset({"confirmation", "pay_link", "receipt", "application_complete"}),
    Status.PAYMENT_FAILED: frozenset({"confirmation", "payment_failed"}),
    Status.VERIFICATION_FAILED: frozenset({"confirmation", "documents_rejected"}),
}


@dataclass(frozen=True)
class Mail:
    application_id: str | None
    template: str
    message_id: str
    recipient: str = ""  # the address alone, lower case
    subject: str = ""


@dataclass(frozen=True)
class Announced:
    """An announcement the database holds, with the figures of the API's admin view."""

    announcement_id: str
    subject: str
    status: str
    total: int | None
    sent: int
    failed: int


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str | None
    reason: str = ""


@dataclass(frozen=True)
class Evidence:
    accepted: frozenset[str]  # application ids the clients got a 202 for
    statuses: Mapping[str, str]  # application id -> status, from the API's database
    provider_payments: Sequence[Mapping[str, Any]]  # the sandbox's /v1/payments
    mails: list[Mail]
    unpublished_outbox: Mapping[str, int]  # schema -> rows never published
    dead_letters: list[DeadLetter]
    poison_ids: frozenset[str]
    # (seconds since the start, status) of every 5xx answer, and the Postgres restart windows
    server_errors: list[tuple[float, int]]
    postgres_windows: list[tuple[float, float]]
    # Every announcement of the run, and the addresses each of them is for.
    announcements: Sequence[Announced] = ()
    announcement_audience: frozenset[str] = frozenset()


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    non_terminal: dict[str, str] = field(default_factory=dict)
    duplicate_payments: dict[str, int] = field(default_factory=dict)
    missing_payments: list[str] = field(default_factory=list)
    duplicate_emails: dict[str, int] = field(default_factory=dict)
    missing_emails: dict[str, list[str]] = field(default_factory=dict)
    unpublished_outbox: dict[str, int] = field(default_factory=dict)
    unexpected_dead_letters: list[DeadLetter] = field(default_factory=list)
    poison_missing: int = 0
    api_5xx: dict[str, int] = field(default_factory=dict)
    unexpected_5xx: int = 0
    terminal_states: dict[str, int] = field(default_factory=dict)
    # announcement id -> what went wrong with its mails ("3 twice, 1 never", "sending 80/100")
    announcement_faults: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Any loss or duplicate fails the run."""
        return bool(
            self.lost
            or self.non_terminal
            or self.duplicate_payments
            or self.missing_payments
            or self.duplicate_emails
            or self.missing_emails
            or self.unpublished_outbox
            or self.unexpected_dead_letters
            or self.poison_missing
            or self.unexpected_5xx
            or self.announcement_faults
        )


def judge(evidence: Evidence, grace_seconds: float = 10.0) -> Findings:
    findings = Findings()
    for application_id in sorted(evidence.accepted):
        status = evidence.statuses.get(application_id)
        if status is None:
            findings.lost.append(application_id)
        elif status not in TERMINAL:
            findings.non_terminal[application_id] = status
    findings.terminal_states = dict(
        Counter(evidence.statuses[a] for a in evidence.accepted if a in evidence.statuses)
    )
    _judge_payments(evidence, findings)
    _judge_mails(evidence, findings)
    _judge_announcements(evidence, findings)
    findings.unpublished_outbox = {s: n for s, n in evidence.unpublished_outbox.items() if n}
    found_poison = {d.message_id for d in evidence.dead_letters} & evidence.poison_ids
    findings.unexpected_dead_letters = [
        d for d in evidence.dead_letters if d.message_id not in evidence.poison_ids
    ]
    findings.poison_missing = len(evidence.poison_ids - found_poison)
    findings.api_5xx = dict(Counter(str(status) for _, status in evidence.server_errors))
    findings.unexpected_5xx = sum(
        1
        for at, status in evidence.server_errors
        if not (status == 503 and _inside(at, evidence.postgres_windows, grace_seconds))
    )
    return findings


def _judge_payments(evidence: Evidence, findings: Findings) -> None:
    per_application = Counter(str(p["application_id"]) for p in evidence.provider_payments)
    for application_id in evidence.accepted:
        count = per_application.get(application_id, 0)
        if count > 1:
            findings.duplicate_payments[application_id] = count
        if evidence.statuses.get(application_id) == Status.COMPLETED and count == 0:
            findings.missing_payments.append(application_id)


def _judge_mails(evidence: Evidence, findings: Findings) -> None:
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for mail in evidence.mails:
        if mail.application_id:
            ids[(mail.application_id, mail.template)].add(mail.message_id)
    for (application_id, template), message_ids in ids.items():
        if application_id in evidence.accepted and len(message_ids) > 1:
            findings.duplicate_emails[f"{application_id}/{template}"] = len(message_ids)
    for application_id in evidence.accepted:
        required = REQUIRED_EMAILS.get(evidence.statuses.get(application_id, ""), frozenset())
        missing = sorted(t for t in required if not ids.get((application_id, t)))
        if missing:
            findings.missing_emails[application_id] = missing


def _judge_announcements(evidence: Evidence, findings: Findings) -> None:
    """Each announcement reached every address of its audience once (copies of one mail,
    resent under the same Message-ID after a crash, are one mail), nobody else, and its
    admin view says it is done with every mail sent."""
    by_subject: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for mail in evidence.mails:
        by_subject[mail.subject][mail.recipient].add(mail.message_id)
    audience = evidence.announcement_audience
    for announced in evidence.announcements:
        copies = by_subject.get(announced.subject, {})
        problems = [
            f"{count} {what}"
            for count, what in (
                (sum(1 for ids in copies.values() if len(ids) > 1), "got it twice"),
                (len(audience - copies.keys()), "never got it"),
                (len(copies.keys() - audience), "mails to outsiders"),
            )
            if count
        ]
        if announced.status != "done" or announced.sent != len(audience) or announced.failed:
            problems.append(
                f"{announced.status}: {announced.sent} sent, {announced.failed} failed"
                f" of {announced.total} (audience {len(audience)})"
            )
        if problems:
            findings.announcement_faults[announced.announcement_id] = "; ".join(problems)


def _inside(at: float, windows: Iterable[tuple[float, float]], grace: float) -> bool:
    return any(start <= at <= end + grace for start, end in windows)
