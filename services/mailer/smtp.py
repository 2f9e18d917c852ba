"""Sending mail: the ``MailSender`` port, its SMTP adapter and an in-memory double.

Errors are translated here, at the boundary, into the messaging core's classification:

    SmtpUnavailable(TransientError)        server down, timeout, 4xx, disconnect: retry later
    RecipientRefused(DomainRuleViolation)  5xx on RCPT TO: this address never takes mail
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from shared.errors import DomainRuleViolation, TransientError
from shared.faults import FaultPoint


class SmtpUnavailable(TransientError):
    """The SMTP server could not take the message now."""


class RecipientRefused(DomainRuleViolation):
    """The server refused the recipient permanently."""


class MailSender(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Return once the server accepted ``message``."""


@dataclass(frozen=True)
class SmtpOptions:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0
    simulated_latency: float = 0.0


class SmtpSender:
    """One connection per message: simple, and nothing to keep alive between quiet periods."""

    def __init__(self, options: SmtpOptions, faults: FaultPoint | None = None) -> None:
        self.options = options
        # Chaos runs only: failures and latency around each send (shared.faults).
        self.faults = faults

    async def send(self, message: EmailMessage) -> None:
        options = self.options
        if options.simulated_latency > 0:
            await asyncio.sleep(options.simulated_latency)
        sender, recipients = envelope_addresses(message)
        try:
            # Flattened with the message's own policy (aiosmtplib would re-fold its headers).
            sending = aiosmtplib.send(
                message.as_bytes(),
                sender=sender,
                recipients=recipients,
                hostname=options.host,
                port=options.port,
                username=options.username,
                password=options.password,
                start_tls=options.starttls,
                timeout=options.timeout,
            )
            await (self.faults.around(sending) if self.faults else sending)
        except aiosmtplib.SMTPRecipientsRefused as error:
            raise classify_refusal(error) from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise SmtpUnavailable(
                f"SMTP {options.host}:{options.port}: {error.__class__.__name__}: {error}"
            ) from error


def envelope_addresses(message: EmailMessage) -> tuple[str, list[str]]:
    """MAIL FROM and RCPT TO, from the message's From, To and Cc headers."""
    sender = message["From"].addresses[0].addr_spec
    recipients = [
        address.addr_spec
        for name in ("To", "Cc")
        for header in message.get_all(name, [])
        for address in header.addresses
    ]
    return sender, recipients


def classify_refusal(error: aiosmtplib.SMTPRecipientsRefused) -> Exception:
    """A permanent refusal (5xx) will never change; a 4xx one (greylisting, full mailbox)
    may, so it is retried like an unavailable server."""
    refusals = ", ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
    if error.recipients and all(500 <= r.code < 600 for r in error.recipients):
        return RecipientRefused(f"recipient refused: {refusals}")
    return SmtpUnavailable(f"recipient deferred: {refusals}")


class MemorySender:
    """The double for tests: keeps what it was given; can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.failure: Exception | None = None

    async def send(self, message: EmailMessage) -> None:
        if self.failure is not None:
            raise self.failure
        self.sent.append(message)
