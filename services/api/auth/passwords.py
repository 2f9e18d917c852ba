"""Argon2 password hashes (pwdlib), computed off the event loop: a hash takes tens of ms and
64 MiB of memory.

At most ``concurrency`` hashes run at once per replica (a flood of registrations or logins
with random e-mails cannot take every core and gigabytes of memory); up to ``queue`` more
requests wait their turn, and beyond that the request is answered 503 with ``Retry-After`` at
once rather than piling up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException, status
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024


T = TypeVar("T")


class HashingBusy(HTTPException):
    def __init__(self) -> None:
        super().__init__(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "too many password checks at once; try again shortly",
            headers={"Retry-After": "1"},
        )


class Passwords:
    def __init__(self, concurrency: int = 2, queue: int = 64) -> None:
        self._hasher = PasswordHash((Argon2Hasher(),))
        # Checked against when the e-mail is unknown, so both answers take as long.
        self._decoy = self._hasher.hash("decoy password, never matches")
        self._slots = asyncio.Semaphore(concurrency)
        self._admitted = 0  # running or waiting
        self._max_admitted = concurrency + queue

    async def hash(self, password: str) -> str:
        return await self._bounded(self._hasher.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        if password_hash is None:
            await self._bounded(self._hasher.verify, password, self._decoy)
            return False
        return await self._bounded(self._hasher.verify, password, password_hash)

    async def _bounded(self, work: Callable[..., T], *args: str) -> T:
        if self._admitted >= self._max_admitted:
            raise HashingBusy()
        self._admitted += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(work, *args)
        finally:
            self._admitted -= 1
