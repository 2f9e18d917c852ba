"""The administrator account from ADMIN_EMAIL / ADMIN_PASSWORD, created at start-up once."""

from __future__ import annotations

import uuid

from services.api.auth import repository
from services.api.resources import Resources


async def seed_admin(deps: Resources) -> bool:
    """Idempotent: an existing account (and its password) is left alone, and concurrent
    replicas starting together meet the unique constraint, not a duplicate."""
    email = deps.settings.admin_email.strip().lower()
    if not email:
        return False
    async with deps.connection() as conn:
        if await repository.user_exists(conn, email):
            return False
    password_hash = await deps.passwords.hash(deps.settings.admin_password.get_secret_value())
    async with deps.connection() as conn:
        return await repository.seed_admin(conn, str(uuid.uuid4()), email, password_hash)
