"""RabbitMQ's password hashing (``rabbit_password_hashing_sha256``), as definitions carry it.

Development exports salt each password with 4 bytes derived from the user name, so that the
committed file is the same on every export; production exports salt at random (``cli``).
"""

from __future__ import annotations

import base64
import hashlib

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"


def stable_salt(user: str) -> bytes:
    """4 bytes derived from the user name: the same file on every export."""
    return hashlib.sha256(f"admissions-definitions:{user}".encode()).digest()[:4]


def hash_password(password: str, salt: bytes) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    if len(salt) != 4:
        raise ValueError("RabbitMQ password salts are 4 bytes")
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def password_matches(password_hash: str, password: str) -> bool:
    raw = base64.b64decode(password_hash)
    return hash_password(password, raw[:4]) == password_hash
