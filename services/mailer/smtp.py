"""Sending mail: the ``MailSender`` port, its SMTP adapter and an in-memory double.

Errors are translated here, at the boundary, into the messaging core's classification:

    SmtpUnavailable(TransientError)        server down, timeout, 4xx, disconnect: retry later
    RecipientRefused(DomainRuleViolation)  5xx on RCPT TO: this address never takes mail
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import aiosmtplib

from services.mailer.mail import OutgoingMail
from shared.errors import DomainRuleViolation, TransientError
from shared.faults import FaultPoint


class SmtpUnavailable(TransientError):
    """The SMTP server could not take the message now."""


class RecipientRefused(DomainRuleViolation):
    """The server refused the recipient permanently."""


class MailSender(Protocol):
    async def send(self, mail: OutgoingMail) -> None:
        """Return once the server accepted ``mail`` (its 250 for the DATA)."""


@dataclass(frozen=True)
class SmtpOptions:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0
    simulated_latency: float = 0.0
    # Open SMTP sessions each lane keeps and reuses (its sends take turns on them).
    sessions_per_lane: int = 4


class LaneSessions:
    """Up to ``size`` SMTP sessions of one lane, kept open between mails and reused."""

    def __init__(self, options: SmtpOptions) -> None:
        self.options = options
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(options.sessions_per_lane)
        self.opened = 0  # sessions opened so far: for tests and logs

    @asynccontextmanager
    async def session(self, *, fresh: bool = False) -> AsyncIterator[tuple[aiosmtplib.SMTP, bool]]:
        """A connected session and whether it was reused, returned to the idle ones afterwards;
        closed instead when the caller failed with it (its state is unknown). ``fresh``: never
        a reused one."""
        async with self._slots:
            session = None if fresh or not self._idle else self._idle.pop()
            reused = session is not None and session.is_connected
            if session is None or not reused:
                session = await self._open()
            try:
                yield session, reused
            except BaseException:
                await _quietly_close(session)
                raise
            self._idle.append(session)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for session in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await session.quit()

    async def _open(self) -> aiosmtplib.SMTP:
        options = self.options
        session = aiosmtplib.SMTP(
            hostname=options.host,
            port=options.port,
            username=options.username,
            password=options.password,
            start_tls=options.starttls,
            timeout=options.timeout,
        )
        await session.connect()
        self.opened += 1
        return session


class SmtpSender:
    """SMTP with sessions kept open per lane: a mail costs MAIL, RCPT and DATA on a warm
    connection, not a TCP (and TLS) handshake, EHLO and QUIT each. A mail counts as sent only
    once the server answered 250 to its DATA. A reused session the server closed while it was
    idle is replaced, and the mail sent on a fresh one, once."""

    def __init__(self, options: SmtpOptions) -> None:
        self.options = options
        self._lanes: dict[str, LaneSessions] = {}

    async def send(self, mail: OutgoingMail) -> None:
        options = self.options
        if options.simulated_latency > 0:
            await asyncio.sleep(options.simulated_latency)
        sessions = self.lane_sessions(mail.lane)
        try:
            await self._send(sessions, mail.envelope_from, list(mail.recipients), mail.data)
        except aiosmtplib.SMTPRecipientsRefused as error:
            raise classify_refusal(error) from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise SmtpUnavailable(
                f"SMTP {options.host}:{options.port}: {error.__class__.__name__}: {error}"
            ) from error

    def lane_sessions(self, lane: str) -> LaneSessions:
        return self._lanes.setdefault(lane, LaneSessions(self.options))

    async def _send(
        self, sessions: LaneSessions, sender: str, recipients: list[str], data: bytes
    ) -> None:
        reused = False
        try:
            async with sessions.session() as (session, reused):
                await session.sendmail(sender, recipients, data)
                return
        except aiosmtplib.SMTPServerDisconnected:
            if not reused:
                raise
            # an idle session the server had closed: once more, on a new one
        async with sessions.session(fresh=True) as (session, _):
            await session.sendmail(sender, recipients, data)

    async def close(self) -> None:
        for sessions in self._lanes.values():
            await sessions.close()


async def _quietly_close(session: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        session.close()


def classify_refusal(error: aiosmtplib.SMTPRecipientsRefused) -> Exception:
    """A permanent refusal (5xx) will never change; a 4xx one (greylisting, full mailbox)
    may, so it is retried like an unavailable server."""
    refusals = ", ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
    if error.recipients and all(500 <= r.code < 600 for r in error.recipients):
        return RecipientRefused(f"recipient refused: {refusals}")
    return SmtpUnavailable(f"recipient deferred: {refusals}")


class FaultySender:
    """A sender behind a fault point, put in place at assembly for chaos runs only
    (``shared.faults``): latency, and failures before a send or of its answer after it."""

    def __init__(self, sender: MailSender, faults: FaultPoint) -> None:
        self.sender = sender
        self.faults = faults

    async def send(self, mail: OutgoingMail) -> None:
        await self.faults.around(self.sender.send(mail))


class MemorySender:
    """The double for tests: keeps what it was given; can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMail] = []
        self.failure: Exception | None = None

    async def send(self, mail: OutgoingMail) -> None:
        if self.failure is not None:
            raise self.failure
        self.sent.append(mail)
