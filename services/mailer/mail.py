"""A mail ready for the wire: its SMTP envelope, the headers the mailer records, its bytes.

Rendering builds it once; the sender hands ``data`` to the server as it is, so nothing parses
the mail's own headers again to find where it goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage


@dataclass(frozen=True)
class OutgoingMail:
    envelope_from: str  # MAIL FROM: an address, no display name
    recipients: tuple[str, ...]  # RCPT TO
    message_id: str  # the Message-ID header, angle brackets included
    template: str
    lane: str
    data: bytes  # RFC 5322, CRLF line ends

    def parsed(self) -> EmailMessage:
        """The mail as a receiving client reads it (for tests and tools)."""
        message = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message
