"""Argon2 password hashes (pwdlib), computed off the event loop: a hash takes tens of ms."""

from __future__ import annotations

import asyncio

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024


class Passwords:
    def __init__(self) -> None:
        self._hasher = PasswordHash((Argon2Hasher(),))
        # Checked against when the e-mail is unknown, so both answers take as long.
        self._decoy = self._hasher.hash("decoy password, never matches")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        if password_hash is None:
            await asyncio.to_thread(self._hasher.verify, password, self._decoy)
            return False
        return await asyncio.to_thread(self._hasher.verify, password, password_hash)
