"""Templates to an ``OutgoingMail``: plain text and HTML alternatives, stable headers.

The Message-ID comes from the event, not from the clock: a redelivery after a crash (mail
sent, transaction not committed) re-sends the same Message-ID, so the receiving side and the
audit can tell it is the same mail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email import charset, policy
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, parseaddr

import jinja2

from services.mailer.catalog import EmailSpec
from services.mailer.mail import OutgoingMail

MESSAGE_ID_DOMAIN = "admissions.local"

# The mail is built with the standard library's classic (compat32) API: it writes the same
# MIME as ``EmailMessage`` with the modern policy at a sixth of the CPU (2.5 ms -> 0.4 ms a
# mail, measured), because it does not parse back every header it is given. CRLF line ends,
# and headers folded at RFC 5322's hard limit (998) instead of 78: a Message-ID longer than 78
# would otherwise move to a continuation line, and parsers read it back with a leading space,
# so the same mail would no longer compare equal by Message-ID.
MAIL_POLICY = policy.compat32.clone(linesep="\r\n", max_line_length=998)
MAX_LINE_BYTES = 998

# Bodies go as UTF-8 8bit (readable, what the modern API picks) when every line fits SMTP's
# limit, else quoted-printable.
UTF8_8BIT = charset.Charset("utf-8")
UTF8_8BIT.body_encoding = None  # type: ignore[assignment]  # None: 8bit, as documented
UTF8_QUOTED_PRINTABLE = charset.Charset("utf-8")
UTF8_QUOTED_PRINTABLE.body_encoding = charset.QP


def template_environment() -> jinja2.Environment:
    """HTML templates are autoescaped (payload text is untrusted); text templates are not."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("services.mailer", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def message_id_header(event_message_id: str, template: str) -> str:
    return f"<{event_message_id}.{template}@{MESSAGE_ID_DOMAIN}>"


def render_email(
    templates: jinja2.Environment,
    spec: EmailSpec,
    *,
    event_message_id: str,
    lane: str,
    sender: str,
    now: datetime | None = None,
) -> OutgoingMail:
    context = {**spec.context, "subject": spec.subject}
    text = templates.get_template(f"{spec.template}.txt.j2").render(context)
    html = templates.get_template(f"{spec.template}.html.j2").render(context)
    message_id = message_id_header(event_message_id, spec.template)

    message = MIMEMultipart("alternative", policy=MAIL_POLICY)
    message["From"] = sender
    message["To"] = spec.recipient
    message["Subject"] = spec.subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id
    message["X-Email-Template"] = spec.template
    message["X-Lane"] = lane
    if spec.application_id is not None:
        message["X-Application-Id"] = spec.application_id
    for name, value in spec.headers.items():
        message[name] = value
    message.attach(_body(text, "plain"))
    message.attach(_body(html, "html"))
    return OutgoingMail(
        envelope_from=parseaddr(sender)[1],
        recipients=(parseaddr(spec.recipient)[1],),
        message_id=message_id,
        template=spec.template,
        lane=lane,
        data=message.as_bytes(policy=MAIL_POLICY),
    )


def _body(content: str, subtype: str) -> MIMEText:
    fits = all(len(line.encode()) <= MAX_LINE_BYTES for line in content.splitlines())
    encoding = UTF8_8BIT if fits else UTF8_QUOTED_PRINTABLE
    return MIMEText(content, subtype, encoding, policy=MAIL_POLICY)  # type: ignore[arg-type]
