"""``current_user`` and ``require_admin``: the token's signature and expiry, then whether a
password reset has revoked it since (the user's token version, one primary-key read).

The submission fast path (``authenticate``) skips that read: its own statement writes only
for a current token version (``applications/repository.py``), so it costs no round trip."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import OAuth2PasswordBearer

from services.api.auth.tokens import InvalidToken, Principal, TokenVerifier
from services.api.resources import Resources, resources

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def current_user(
    token: Annotated[str | None, Depends(oauth2_scheme)],
    deps: Annotated[Resources, Depends(resources)],
) -> Principal:
    user = verified(deps.tokens, token)
    if await deps.token_versions.current(user.user_id) != user.token_version:
        raise revoked()
    return user


def revoked() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "this token is no longer valid (the password was reset, or the account is gone);"
        " log in again",
        headers={"WWW-Authenticate": "Bearer"},
    )


def authenticate(tokens: TokenVerifier, authorization: str | None) -> Principal:
    """``current_user`` for code outside FastAPI's dependencies (the submission fast path):
    the same bearer token rules, the same answers."""
    scheme, _, token = (authorization or "").partition(" ")
    return verified(tokens, token if scheme.lower() == "bearer" and token else None)


def verified(tokens: TokenVerifier, token: str | None) -> Principal:
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "not authenticated",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return tokens.verify(token)
    except InvalidToken:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or expired token",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None


async def require_admin(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "administrators only")
    return user


def viewer(user: Principal) -> str | None:
    """Whose applications the user may see: their own (their id), or everyone's (None)."""
    return None if user.is_admin else user.user_id


CurrentUser = Annotated[Principal, Depends(current_user)]
AdminUser = Annotated[Principal, Depends(require_admin)]
