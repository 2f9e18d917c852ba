"""SQL for users, reset tokens and one-time codes. Each function runs on the caller's
connection, inside the caller's transaction when there is one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from psycopg import AsyncConnection

from services.api.auth.codes import otp_matches
from services.api.auth.tokens import Principal, Role


@dataclass(frozen=True)
class Credentials:
    principal: Principal
    password_hash: str


async def insert_user(
    conn: AsyncConnection[Any], user_id: str, email: str, password_hash: str, role: Role
) -> bool:
    """False when the address is taken (the unique constraint decides, not a prior check)."""
    cursor = await conn.execute(
        "INSERT INTO users (id, email, password_hash, role) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (email) DO NOTHING",
        (user_id, email, password_hash, role),
    )
    return cursor.rowcount == 1


async def find_credentials(conn: AsyncConnection[Any], email: str) -> Credentials | None:
    cursor = await conn.execute(
        "SELECT id, email, role, token_version, password_hash FROM users WHERE email = %s",
        (email,),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    user_id, address, role, token_version, password_hash = row
    return Credentials(Principal(str(user_id), address, role, token_version), password_hash)


async def token_version(conn: AsyncConnection[Any], user_id: str) -> int | None:
    """The version a token must carry to be valid; None when the user is gone."""
    cursor = await conn.execute("SELECT token_version FROM users WHERE id = %s", (user_id,))
    row = await cursor.fetchone()
    return None if row is None else int(row[0])


async def store_reset_token(
    conn: AsyncConnection[Any], email: str, token_hash: str, ttl: timedelta
) -> bool:
    """Store the token for the user with this address; False when there is none."""
    cursor = await conn.execute(
        "INSERT INTO password_reset_tokens (token_hash, user_id, expires_at)"
        " SELECT %s, id, now() + %s FROM users WHERE email = %s",
        (token_hash, ttl, email),
    )
    return cursor.rowcount == 1


async def use_reset_token(
    conn: AsyncConnection[Any], token_hash: str, new_password_hash: str
) -> bool:
    """Spend a valid token on a new password; every other open reset token of that user dies
    too, and so does every access token issued before (the token version moves on)."""
    cursor = await conn.execute(
        "UPDATE password_reset_tokens SET used_at = now()"
        " WHERE token_hash = %s AND used_at IS NULL AND expires_at > now()"
        " RETURNING user_id",
        (token_hash,),
    )
    row = await cursor.fetchone()
    if row is None:
        return False
    (user_id,) = row
    await conn.execute(
        "UPDATE users SET password_hash = %s, token_version = token_version + 1,"
        " updated_at = now() WHERE id = %s",
        (new_password_hash, user_id),
    )
    await conn.execute(
        "UPDATE password_reset_tokens SET used_at = now() WHERE user_id = %s AND used_at IS NULL",
        (user_id,),
    )
    return True


async def store_otp_code(
    conn: AsyncConnection[Any], user_id: str, code_hash: str, ttl: timedelta
) -> None:
    """The new code replaces the user's earlier ones: only the newest can be tried, so asking
    for more codes does not multiply the tries."""
    await conn.execute(
        "UPDATE otp_codes SET used_at = now() WHERE user_id = %s AND used_at IS NULL",
        (user_id,),
    )
    await conn.execute(
        "INSERT INTO otp_codes (user_id, code_hash, expires_at) VALUES (%s, %s, now() + %s)",
        (user_id, code_hash, ttl),
    )


class OtpCheck(Enum):
    VERIFIED = "verified"
    WRONG = "wrong"  # tries are left
    SPENT = "spent"  # wrong, and that was the code's last try
    NO_CODE = "no code"  # none asked for, or expired, used or out of tries


async def check_otp_code(
    conn: AsyncConnection[Any], user_id: str, candidate_hash: str, max_attempts: int
) -> OtpCheck:
    """Try ``candidate_hash`` against the user's live code, in the caller's transaction: the
    row is locked, so concurrent tries are counted one by one and a code is used once. A
    right code verifies the user's e-mail address."""
    cursor = await conn.execute(
        "SELECT id, code_hash, attempts FROM otp_codes"
        " WHERE user_id = %s AND used_at IS NULL AND expires_at > now()"
        " ORDER BY id DESC LIMIT 1 FOR UPDATE",
        (user_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        return OtpCheck.NO_CODE
    code_id, code_hash, attempts = row
    if otp_matches(code_hash, candidate_hash):
        await conn.execute("UPDATE otp_codes SET used_at = now() WHERE id = %s", (code_id,))
        await conn.execute(
            "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()),"
            " updated_at = now() WHERE id = %s",
            (user_id,),
        )
        return OtpCheck.VERIFIED
    spent = attempts + 1 >= max_attempts
    await conn.execute(
        "UPDATE otp_codes SET attempts = attempts + 1,"
        " used_at = CASE WHEN %s THEN now() END WHERE id = %s",
        (spent, code_id),
    )
    return OtpCheck.SPENT if spent else OtpCheck.WRONG


@dataclass(frozen=True)
class Account:
    user_id: str
    email: str
    role: Role
    email_verified_at: datetime | None


async def find_account(conn: AsyncConnection[Any], user_id: str) -> Account | None:
    cursor = await conn.execute(
        "SELECT email, role, email_verified_at FROM users WHERE id = %s", (user_id,)
    )
    row = await cursor.fetchone()
    return None if row is None else Account(user_id, row[0], row[1], row[2])


async def seed_admin(
    conn: AsyncConnection[Any], user_id: str, email: str, password_hash: str
) -> bool:
    """Create the administrator once; an existing account (and its password) is left alone."""
    return await insert_user(conn, user_id, email, password_hash, "admin")


async def user_exists(conn: AsyncConnection[Any], email: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM users WHERE email = %s", (email,))
    return await cursor.fetchone() is not None
