"""``python -m deploy.asyncapi > deploy/asyncapi.json``: the AsyncAPI document of every event
(``shared.asyncapi``, the one the API serves at ``/asyncapi.json``), in its committed form.

A unit test fails when the committed file and a fresh export differ, and checks the document
against the AsyncAPI 3.0.0 JSON schema (``tests/unit/deploy/test_asyncapi.py``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from shared.asyncapi import asyncapi_document


def render(document: Mapping[str, Any]) -> str:
    """The committed form: the document's own order (``asyncapi`` and ``info`` first, as
    readers expect), two-space indent, a final newline."""
    return json.dumps(document, indent=2) + "\n"


def main() -> None:
    sys.stdout.write(render(asyncapi_document()))


if __name__ == "__main__":
    main()
