"""A development SMTP server that keeps every message it receives as a ``.eml`` file.

    python -m devtools.smtp_catcher
    (SMTP_HOST default 127.0.0.1, SMTP_PORT 1025, MAIL_DIR .run/mail)

File names sort by arrival (nanosecond time, then a sequence number). Each file is written
under a temporary name and renamed into place, so a reader never sees half a message.
Tests run the same server in-process (``catching(...)``) and read it with ``read_mailbox``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.lifecycle import run_service
from shared.logs import configure_logging

log = structlog.get_logger("smtp_catcher")

MAIL_SUFFIX = ".eml"


@dataclass(frozen=True)
class CatcherSettings:
    host: str = "127.0.0.1"
    port: int = 1025
    mail_dir: Path = Path(".run/mail")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> CatcherSettings:
        return cls(
            host=environ.get("SMTP_HOST", cls.host),
            port=int(environ.get("SMTP_PORT", cls.port)),
            mail_dir=Path(environ.get("MAIL_DIR", str(cls.mail_dir))),
        )


def store_message(mail_dir: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``mail_dir/name`` atomically: temp file in the same folder, then
    rename (readers only look at ``*.eml``, the temp file has another suffix)."""
    mail_dir.mkdir(parents=True, exist_ok=True)
    final = mail_dir / name
    descriptor, temporary = tempfile.mkstemp(dir=mail_dir, prefix=".", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, final)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return final


def read_mailbox(path: Path | str) -> list[EmailMessage]:
    """Every caught message in ``path``, in arrival order ([] if the folder does not exist)."""
    folder = Path(path)
    if not folder.is_dir():
        return []
    messages: list[EmailMessage] = []
    for file in sorted(folder.glob(f"*{MAIL_SUFFIX}")):
        message = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


class MailDirHandler:
    """aiosmtpd handler: accepts every message (recipients in ``refuse_domains`` get a
    permanent 550, to rehearse a bad address) and stores it in ``mail_dir``."""

    def __init__(self, mail_dir: Path, refuse_domains: Iterable[str] = ()) -> None:
        self.mail_dir = mail_dir
        self.refuse_domains = {domain.lower() for domain in refuse_domains}
        self._sequence = itertools.count()
        self.count = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.rpartition("@")[2].lower() in self.refuse_domains:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        # The envelope is not in the headers (think Bcc): keep it, as a delivering server would.
        trace = (
            f"X-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        # Named on arrival, so names sort by arrival even if writes finish out of order.
        name = f"{time.time_ns():020d}-{next(self._sequence):06d}{MAIL_SUFFIX}"
        path = await asyncio.to_thread(store_message, self.mail_dir, name, trace + content)
        self.count += 1
        # The classic policy: the log line needs two header values, not parsed address objects.
        headers = BytesHeaderParser().parsebytes(content)
        log.info(
            "mail caught",
            mail_from=envelope.mail_from,
            rcpt_to=envelope.rcpt_tos,
            subject=headers.get("Subject"),
            message_id=headers.get("Message-ID"),
            file=str(path),
        )
        return "250 Message accepted for delivery"


async def start_catcher(host: str, port: int, handler: MailDirHandler) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        # hostname given: the default looks up the FQDN, which can hang without DNS
        partial(SMTP, handler, hostname="smtp-catcher", ident="admissions smtp catcher"),
        host=host,
        port=port,
    )


async def stop_catcher(server: asyncio.Server) -> None:
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), timeout=5)
    except TimeoutError:
        log.warning("connections still open at shutdown")


@asynccontextmanager
async def catching(
    host: str, port: int, mail_dir: Path, refuse_domains: Iterable[str] = ()
) -> AsyncIterator[MailDirHandler]:
    """Run the catcher in the current event loop for the duration of the block."""
    handler = MailDirHandler(mail_dir, refuse_domains)
    server = await start_catcher(host, port, handler)
    try:
        yield handler
    finally:
        await stop_catcher(server)


async def run(settings: CatcherSettings, stop: asyncio.Event) -> None:
    handler = MailDirHandler(settings.mail_dir)
    server = await start_catcher(settings.host, settings.port, handler)
    log.info("listening", host=settings.host, port=settings.port, mail_dir=str(settings.mail_dir))
    await stop.wait()
    await stop_catcher(server)
    log.info("stopped", caught=handler.count)


def main() -> None:
    settings = CatcherSettings.from_environment(os.environ)
    configure_logging("smtp_catcher", os.environ.get("LOG_LEVEL", "INFO"))
    # aiosmtpd logs every SMTP command at INFO; our one line per message says what matters.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    run_service(partial(run, settings))


if __name__ == "__main__":
    main()
