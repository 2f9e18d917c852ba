"""The mails caught by the compose stack's mail catcher, read through its HTTP API.

The catcher is Mailpit (the official image, where Docker Hub answers) or MailDev (the local
stand-in of deploy/local-images): both are read here, so the tests hold for either.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class CaughtMail:
    recipients: tuple[str, ...]
    subject: str
    template: str  # our X-Email-Template header


def read_inbox(base_url: str) -> list[CaughtMail]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        if client.get("/api/v1/info").status_code == 200:
            return _mailpit(client)
        return _maildev(client)


def templates_to(base_url: str, recipient: str) -> Counter[str]:
    """How many mails of each template ``recipient`` got."""
    return Counter(m.template for m in read_inbox(base_url) if recipient in m.recipients)


def _mailpit(client: httpx.Client) -> list[CaughtMail]:
    listed = client.get("/api/v1/messages", params={"limit": 1000})
    listed.raise_for_status()
    mails = []
    for message in listed.json()["messages"]:
        headers = client.get(f"/api/v1/message/{message['ID']}/headers")
        headers.raise_for_status()
        mails.append(
            CaughtMail(
                tuple(to["Address"] for to in message["To"]),
                message["Subject"],
                _first(headers.json().get("X-Email-Template")),
            )
        )
    return mails


def _maildev(client: httpx.Client) -> list[CaughtMail]:
    listed = client.get("/email")
    listed.raise_for_status()
    return [
        CaughtMail(
            tuple(to["address"] for to in message["to"]),
            message["subject"],
            _first(message["headers"].get("x-email-template")),
        )
        for message in listed.json()
    ]


def _first(value: Any) -> str:
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return str(value or "")
