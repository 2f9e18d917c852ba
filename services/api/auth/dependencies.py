"""``current_user`` and ``require_admin``: the token is checked without a database query."""

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
    return verified(deps.tokens, token)


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
