"""Which browser requests the sandbox takes: a page elsewhere must not make a visitor's browser
decline (or pay) a checkout, nor create checkouts.

Browsers say where a request comes from (``Origin`` on every POST they send across origins,
and on same-origin ones too in current browsers; ``Sec-Fetch-Site``); servers and scripts send
neither. So:
- ``/v1/...`` is the provider API, for the payments service: any browser request is refused;
- ``/checkout/...`` is for the checkout page's own buttons: a browser request is taken only
  from the sandbox's own origin (its public URL).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

SAME_ORIGIN_SITES = frozenset({"same-origin", "none"})


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def browser_refusal(path: str, headers: Mapping[str, str], public_url: str) -> str | None:
    """Why a state-changing request is refused, or ``None`` to take it."""
    origin = headers.get("origin")
    site = headers.get("sec-fetch-site")
    if path.startswith("/v1/"):
        if origin is not None or site is not None:
            return "the provider API is for servers, not browsers"
        return None
    if path.startswith("/checkout/"):
        if origin is not None and origin.lower() != origin_of(public_url):
            return "a checkout is paid or declined from its own page only"
        if site is not None and site not in SAME_ORIGIN_SITES:
            return "a checkout is paid or declined from its own page only"
    return None
