"""``/announcements/unsubscribe``: the signed link in every announcement (``shared.unsubscribe``).

No login: the link's MAC is the proof. ``GET`` (a person following the link) shows a page with
one button; ``POST`` (that button, or a mail client's one-click ``List-Unsubscribe-Post``, RFC
8058) records the opt-out. A link scanner that fetches every URL of a mail therefore
unsubscribes nobody. Announcements only: mails about the applicant's own application and the
sign-in mails still go out.
"""

from __future__ import annotations

import html
import re
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import HTMLResponse

from services.api.resources import Resources, resources
from shared.unsubscribe import UnsubscribeSigner

router = APIRouter(
    prefix="/announcements",
    tags=["announcements"],
    responses={400: {"description": "not a valid unsubscribe link"}},
)
Deps = Annotated[Resources, Depends(resources)]
Email = Annotated[str, Query(min_length=3, max_length=320)]
Token = Annotated[str, Query(min_length=10, max_length=100)]
# The shape of an address (the links are made for real ones): one @, no spaces or control
# characters, and text UTF-8 can carry; anything else is refused before it is hashed or stored.
_ADDRESS = re.compile(r"[^\s@\x00-\x1f\x7f\ud800-\udfff]+@[^\s@\x00-\x1f\x7f\ud800-\udfff]+")


def _checked(deps: Resources, email: str, token: str) -> str:
    signer = UnsubscribeSigner.from_seal_setting(deps.settings.mail_seal_key.get_secret_value())
    address = email.strip().lower()
    if not _ADDRESS.fullmatch(address) or not signer.verify(address, token):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "this unsubscribe link is not valid")
    return address


@router.get("/unsubscribe", response_class=HTMLResponse)
async def unsubscribe_page(email: Email, token: Token, deps: Deps) -> HTMLResponse:
    address = html.escape(_checked(deps, email, token))
    return HTMLResponse(
        "<!DOCTYPE html><html lang=en><meta charset=utf-8><title>Unsubscribe</title>"
        f"<p>Stop sending announcements to <strong>{address}</strong>? Mails about your own"
        " application still come.</p>"
        '<form method="post"><button type="submit">Unsubscribe</button></form></html>'
    )


@router.post("/unsubscribe", response_class=HTMLResponse)
async def unsubscribe(email: Email, token: Token, deps: Deps) -> HTMLResponse:
    address = _checked(deps, email, token)
    async with deps.connection() as conn:
        await conn.execute(
            "INSERT INTO announcement_opt_outs (email) VALUES (%s) ON CONFLICT DO NOTHING",
            (address,),
        )
    return HTMLResponse(
        "<!DOCTYPE html><html lang=en><meta charset=utf-8><title>Unsubscribed</title>"
        f"<p>{html.escape(address)} receives no more announcements.</p></html>"
    )
