"""``/auth``: register, token (OAuth2 password flow), password reset, one-time codes, the
account (``/auth/me``).

One-time codes prove that the applicant reads the mail sent to the account's address (where
the portal sends its decisions): ``POST /auth/otp`` mails a six-digit code, ``POST
/auth/otp/verify`` with it marks the address verified. A code expires after
``OTP_TTL_MINUTES``, is used once, is replaced by the next one asked for, and is spent after
``OTP_MAX_ATTEMPTS`` wrong tries; tries per user are rate-limited (429)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, EmailStr, Field

from services.api import rate_limits
from services.api.auth import repository, reset_page, throttle
from services.api.auth.codes import hash_otp_code, hash_reset_token, new_otp_code, new_reset_token
from services.api.auth.dependencies import CurrentUser, revoked
from services.api.auth.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from services.api.auth.repository import OtpCheck
from services.api.auth.tokens import issue_token
from services.api.errors import ErrorBody
from services.api.resources import Resources, request_id, resources
from shared.events.catalog import OtpRequested, PasswordResetRequested
from shared.events.envelope import new_envelope
from shared.events.sealed import SecretSealer, seal_context
from shared.outbox.writer import write_outbox

router = APIRouter(
    prefix="/auth",
    tags=["auth"],
    responses={400: {"model": ErrorBody, "description": "the body could not be parsed"}},
)

Password = Annotated[str, Field(min_length=MIN_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS)]
Deps = Annotated[Resources, Depends(resources)]
RequestId = Annotated[str, Depends(request_id)]


class Registration(BaseModel):
    email: EmailStr
    password: Password


class RegisteredUser(BaseModel):
    id: str
    email: str
    role: str


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class ResetRequest(BaseModel):
    email: EmailStr


class ResetConfirmation(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    new_password: Password


class Accepted(BaseModel):
    detail: str


class OneTimeCode(BaseModel):
    code: str = Field(pattern=r"^[0-9]{6}$", description="the six digits of the e-mail")


class Account(BaseModel):
    id: str
    email: str
    role: str
    email_verified: bool


RESET = PasswordResetRequested.event_type
OTP = OtpRequested.event_type


def seal_for_mailer(deps: Resources, secret: str, event_type: str, recipient: str) -> str:
    """Only the mailer opens it: the outbox, the broker and dead letters keep it sealed."""
    sealer = SecretSealer.from_setting(deps.settings.mail_seal_key.get_secret_value())
    return sealer.seal(secret, seal_context(event_type, recipient))


def normalise_email(email: str) -> str:
    return email.strip().lower()


TOO_MANY = {"model": ErrorBody, "description": "over a rate limit; see Retry-After"}


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=RegisteredUser,
    responses={
        409: {"model": ErrorBody, "description": "the address already has an account"},
        429: TOO_MANY,
    },
    dependencies=[Depends(rate_limits.limit_registrations)],
)
async def register(body: Registration, deps: Deps) -> RegisteredUser:
    email = normalise_email(body.email)
    password_hash = await deps.passwords.hash(body.password)
    user_id = str(uuid.uuid4())
    async with deps.connection() as conn:
        created = await repository.insert_user(conn, user_id, email, password_hash, "applicant")
    if not created:
        raise HTTPException(status.HTTP_409_CONFLICT, "an account with this e-mail already exists")
    return RegisteredUser(id=user_id, email=email, role="applicant")


@router.post(
    "/token",
    response_model=AccessToken,
    responses={
        401: {"model": ErrorBody, "description": "wrong e-mail or password"},
        429: {"model": ErrorBody, "description": "too many failed logins; see Retry-After"},
    },
    dependencies=[Depends(rate_limits.limit_logins)],
)
async def token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], deps: Deps
) -> AccessToken:
    email = normalise_email(form.username)
    client = request.client.host if request.client else "unknown"
    key = throttle.throttle_key(client, email)
    policy = throttle.ThrottlePolicy(
        deps.settings.login_max_failures,
        timedelta(seconds=deps.settings.login_failure_window_seconds),
    )
    async with deps.connection() as conn:
        wait = await throttle.reserve_attempt(conn, key, policy)
        found = None
        # Postgres text cannot hold NUL, so such a name has no account (rather than a 500).
        if wait is None and "\x00" not in email:
            found = await repository.find_credentials(conn, email)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins; try again later",
            headers={"Retry-After": str(throttle.retry_after_seconds(wait))},
        )
    valid = await deps.passwords.verify(form.password, found.password_hash if found else None)
    if found is None or not valid:
        async with deps.connection() as conn:
            await throttle.forget_expired(conn, policy)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "wrong e-mail or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    async with deps.connection() as conn:
        await throttle.clear(conn, key)
    ttl = timedelta(minutes=deps.settings.jwt_ttl_minutes)
    access = issue_token(
        found.principal, deps.settings.jwt_secret.get_secret_value(), ttl, datetime.now(UTC)
    )
    return AccessToken(access_token=access, expires_in=int(ttl.total_seconds()))


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={429: TOO_MANY},
)
async def request_password_reset(
    request: Request, body: ResetRequest, deps: Deps, correlation: RequestId
) -> Accepted:
    """Answers the same whether or not the address has an account (no account discovery)."""
    email = normalise_email(body.email)
    await rate_limits.limit_password_resets(request, deps, email)
    token = new_reset_token()
    ttl = timedelta(minutes=deps.settings.password_reset_ttl_minutes)
    async with deps.connection() as conn, conn.transaction():
        if await repository.store_reset_token(conn, email, hash_reset_token(token), ttl):
            event = PasswordResetRequested(
                email=email, sealed_token=seal_for_mailer(deps, token, RESET, email)
            )
            await write_outbox(
                conn, deps.outbox_schema, [new_envelope(event, correlation_id=correlation)]
            )
    return Accepted(detail="if the address has an account, a reset link is on its way")


@router.get("/password-reset/confirm", response_class=HTMLResponse, include_in_schema=False)
async def password_reset_page() -> HTMLResponse:
    """Where the reset e-mail's link leads: a form that posts the new password below."""
    return HTMLResponse(reset_page.PAGE, headers=reset_page.HEADERS)


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm_password_reset(body: ResetConfirmation, deps: Deps) -> Response:
    new_hash = await deps.passwords.hash(body.new_password)
    async with deps.connection() as conn, conn.transaction():
        changed = await repository.use_reset_token(conn, hash_reset_token(body.token), new_hash)
    if not changed:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid, used or expired reset token")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/otp",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={401: {"model": ErrorBody, "description": "not authenticated"}, 429: TOO_MANY},
    dependencies=[Depends(rate_limits.limit_otp_requests)],
)
async def request_otp(user: CurrentUser, deps: Deps, correlation: RequestId) -> Accepted:
    code = new_otp_code()
    code_hash = hash_otp_code(deps.settings.jwt_secret.get_secret_value(), user.user_id, code)
    ttl = timedelta(minutes=deps.settings.otp_ttl_minutes)
    async with deps.connection() as conn, conn.transaction():
        await repository.store_otp_code(conn, user.user_id, code_hash, ttl)
        event = OtpRequested(
            email=user.email, sealed_code=seal_for_mailer(deps, code, OTP, user.email)
        )
        await write_outbox(
            conn, deps.outbox_schema, [new_envelope(event, correlation_id=correlation)]
        )
    minutes = deps.settings.otp_ttl_minutes
    return Accepted(detail=f"a one-time code is on its way; it expires in {minutes} minutes")


OTP_REFUSALS = {
    OtpCheck.WRONG: "wrong one-time code; try again",
    OtpCheck.SPENT: "wrong one-time code, and that was its last try: ask for a new code",
    OtpCheck.NO_CODE: "no one-time code to try: it expired, was used or replaced, or none was"
    " asked for; ask for a new code",
}


@router.post(
    "/otp/verify",
    response_model=Account,
    responses={
        400: {"model": ErrorBody, "description": "wrong, expired, used or spent code"},
        401: {"model": ErrorBody, "description": "not authenticated"},
        429: TOO_MANY,
    },
    dependencies=[Depends(rate_limits.limit_otp_verifications)],
)
async def verify_otp(body: OneTimeCode, user: CurrentUser, deps: Deps) -> Account:
    """A right code verifies the account's e-mail address; the answer is the account."""
    candidate = hash_otp_code(deps.settings.jwt_secret.get_secret_value(), user.user_id, body.code)
    async with deps.connection() as conn, conn.transaction():
        checked = await repository.check_otp_code(
            conn, user.user_id, candidate, deps.settings.otp_max_attempts
        )
    if checked is not OtpCheck.VERIFIED:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, OTP_REFUSALS[checked])
    return await account(user, deps)


@router.get(
    "/me",
    response_model=Account,
    responses={401: {"model": ErrorBody, "description": "not authenticated"}},
)
async def account(user: CurrentUser, deps: Deps) -> Account:
    """The account of the token: whether its e-mail address is verified, among others."""
    async with deps.connection() as conn:
        found = await repository.find_account(conn, user.user_id)
    if found is None:
        raise revoked()
    return Account(
        id=found.user_id,
        email=found.email,
        role=found.role,
        email_verified=found.email_verified_at is not None,
    )
