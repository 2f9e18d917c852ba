"""SMTP sessions kept open per lane, against the real SMTP catcher."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from devtools.smtp_catcher import read_mailbox
from services.mailer.mail import OutgoingMail
from services.mailer.smtp import RecipientRefused, SmtpOptions, SmtpSender
from tests.integration.mailer.conftest import REFUSED_DOMAIN, SmtpServer
from tests.support.tcp_proxy import TcpProxy


def mail(number: int, lane: str, to: str = "ada@example.org") -> OutgoingMail:
    data = (
        f"From: no-reply@admissions.local\r\nTo: {to}\r\nSubject: mail {number}\r\n"
        f"Message-ID: <{number}@test>\r\n\r\nbody {number}\r\n"
    )
    return OutgoingMail(
        "no-reply@admissions.local", (to,), f"<{number}@test>", "test", lane, data.encode()
    )


async def test_a_lane_reuses_its_sessions_for_many_mails(smtp_server: SmtpServer) -> None:
    # Given a sender keeping at most two sessions per lane
    sender = SmtpSender(
        SmtpOptions(host=smtp_server.host, port=smtp_server.port, sessions_per_lane=2)
    )
    try:
        # When twenty mails of one lane go out at once, then one more
        await asyncio.gather(*(sender.send(mail(n, "high")) for n in range(20)))
        await sender.send(mail(20, "high"))
        # Then every mail arrived, over two sessions opened for the lane
        assert len(read_mailbox(smtp_server.mail_dir)) == 21
        assert sender.lane_sessions("high").opened == 2
    finally:
        await sender.close()


async def test_a_session_whose_connection_dropped_is_replaced_without_losing_the_mail(
    smtp_server: SmtpServer,
) -> None:
    # Given a lane whose one session is open and idle, through a network link
    link = TcpProxy(smtp_server.host, smtp_server.port)
    await link.start()
    sender = SmtpSender(SmtpOptions(host="127.0.0.1", port=link.port, sessions_per_lane=1))
    try:
        await sender.send(mail(1, "medium"))
        # When the link drops that connection while the session is idle
        await link.cut()
        await link.restore()
        # Then the next mail goes out once, on a new session
        await sender.send(mail(2, "medium"))
        ids = [m["Message-ID"] for m in read_mailbox(smtp_server.mail_dir)]
        assert ids == ["<1@test>", "<2@test>"]
        assert sender.lane_sessions("medium").opened == 2
    finally:
        await sender.close()
        await link.cut()


async def test_a_refused_recipient_does_not_spoil_the_lanes_session(
    smtp_server: SmtpServer,
) -> None:
    sender = SmtpSender(
        SmtpOptions(host=smtp_server.host, port=smtp_server.port, sessions_per_lane=1)
    )
    try:
        with pytest.raises(RecipientRefused):
            await sender.send(mail(1, "critical", to=f"nobody@{REFUSED_DOMAIN}"))
        await sender.send(mail(2, "critical"))
        assert [m["Message-ID"] for m in read_mailbox(smtp_server.mail_dir)] == ["<2@test>"]
    finally:
        await sender.close()


async def test_a_reused_session_found_closed_at_sending_is_replaced_once(
    smtp_server: SmtpServer,
) -> None:
    # Given a lane's idle session that the server closed unseen (it fails when used)
    sender = SmtpSender(
        SmtpOptions(host=smtp_server.host, port=smtp_server.port, sessions_per_lane=1)
    )
    try:
        await sender.send(mail(1, "low"))
        [stale] = sender.lane_sessions("low")._idle

        async def closed(*_: object, **__: object) -> None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")

        stale.sendmail = closed  # type: ignore[method-assign]
        # When the next mail is sent
        await sender.send(mail(2, "low"))
        # Then it went out once, on a new session
        assert [m["Message-ID"] for m in read_mailbox(smtp_server.mail_dir)] == [
            "<1@test>",
            "<2@test>",
        ]
        assert sender.lane_sessions("low").opened == 2
    finally:
        await sender.close()
