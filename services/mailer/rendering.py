"""Templates to an ``EmailMessage``: plain text and HTML alternatives, stable headers.

The Message-ID comes from the event, not from the clock: a redelivery after a crash (mail
sent, transaction not committed) re-sends the same Message-ID, so the receiving side and the
audit can tell it is the same mail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

import jinja2

from services.mailer.catalog import EmailSpec

MESSAGE_ID_DOMAIN = "admissions.local"

# CRLF line ends, and headers folded at RFC 5322's hard limit (998) instead of 78: a Message-ID
# longer than 78 would otherwise move to a continuation line, and parsers read it back with a
# leading space, so the same mail would no longer compare equal by Message-ID.
MAIL_POLICY = policy.SMTP.clone(max_line_length=998)


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
) -> EmailMessage:
    context = {**spec.context, "subject": spec.subject}
    text = templates.get_template(f"{spec.template}.txt.j2").render(context)
    html = templates.get_template(f"{spec.template}.html.j2").render(context)

    message = EmailMessage(policy=MAIL_POLICY)
    message["From"] = sender
    message["To"] = spec.recipient
    message["Subject"] = spec.subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id_header(event_message_id, spec.template)
    message["X-Email-Template"] = spec.template
    message["X-Lane"] = lane
    if spec.application_id is not None:
        message["X-Application-Id"] = spec.application_id
    for name, value in spec.headers.items():
        message[name] = value
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message
