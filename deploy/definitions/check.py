"""Refuse definitions in which a development login still opens: what ``make compose-up`` runs
with ``APP_ENV=production``, and what the Kubernetes README asks of an overlay's file."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deploy.definitions.passwords import password_matches
from deploy.definitions.users import dev_password
from shared.settings import KNOWN_DEVELOPMENT_VALUES


def development_logins(document: Mapping[str, Any]) -> list[str]:
    """The users of a definitions document a development login opens: ``guest``, or a password
    hash matching a known development value (any user's, not only its own)."""
    names = [str(user.get("name", "")) for user in document.get("users", [])]
    candidates = {*KNOWN_DEVELOPMENT_VALUES, *(dev_password(name) for name in names), *names}
    found = []
    for user in document.get("users", []):
        name = str(user.get("name", ""))
        password_hash = str(user.get("password_hash", ""))
        if name == "guest" or any(password_matches(password_hash, p) for p in candidates):
            found.append(name)
    return found


def check(paths: Sequence[str]) -> None:
    """Exit naming every user of these definitions files that a development login opens."""
    weak = [
        f"{path}: {name}"
        for path in paths
        for name in development_logins(json.loads(Path(path).read_text()))
    ]
    if weak:
        raise SystemExit(
            "development logins in the broker's definitions (generate them with "
            f"--passwords-from-env): {', '.join(weak)}"
        )
