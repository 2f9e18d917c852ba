"""Group commit: submissions that arrive together share one statement, and each keeps its own
outcome (its answer, a replay, a conflict), against the real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import psycopg
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from services.api.applications.accept import new_submission
from services.api.applications.group_commit import GroupCommit
from services.api.applications.repository import (
    IdempotencyConflict,
    Outcome,
    Submission,
    TokenRevoked,
)
from services.api.applications.validation import SubmissionForm, UploadedDocument
from services.api.auth.tokens import Principal
from tests.integration.api.conftest import Applicant, scalar

SHA = "ab" * 32


def form(statement: str) -> SubmissionForm:
    document = UploadedDocument(str(uuid.uuid4()), "cv.pdf", "application/pdf", 10, SHA)
    return SubmissionForm("MSc Computer Science", statement, (document,))


async def principal(db: AsyncConnectionPool, who: Applicant) -> Principal:
    user_id = await scalar(db, "SELECT id::text FROM users WHERE email = %s", who.email)
    return Principal(user_id, who.email, "applicant")


async def db_execute(db: AsyncConnectionPool, query: str, *params: Any) -> None:
    async with db.connection() as conn:
        await conn.execute(query, params)


def group_commit(app: FastAPI) -> GroupCommit:
    found: GroupCommit = app.state.resources.intake.group_commit
    return found


def submission(user: Principal, statement: str, key: str | None) -> Submission:
    return new_submission(user, form(statement), str(uuid.uuid4()), "http://api.test", key)


async def test_submissions_that_arrive_together_share_a_statement_and_keep_their_outcomes(
    app: FastAPI, alice: Applicant, db: AsyncConnectionPool
) -> None:
    writer = group_commit(app)
    user = await principal(db, alice)
    earlier = await writer.write(submission(user, "first", key="earlier"))
    statements_before = writer.statements
    # Given five submissions arriving in the same instant
    together = [
        submission(user, "a", key="k1"),
        submission(user, "a", key="k1"),  # the same key and body: one application for both
        submission(user, "b", key="k1"),  # the same key, another body
        submission(user, "first", key="earlier"),  # a retry of a request written before
        submission(user, "c", key=None),
    ]
    # When they are written
    results = await asyncio.gather(*(writer.write(s) for s in together), return_exceptions=True)

    # Then one statement wrote them, and each got its own outcome
    assert writer.statements == statements_before + 1
    first, second, other_body, retry, keyless = results
    assert isinstance(first, Outcome) and isinstance(second, Outcome)
    assert first.answer == second.answer and sorted([first.replayed, second.replayed]) == [
        False,
        True,
    ]
    assert isinstance(other_body, IdempotencyConflict)
    assert retry == Outcome(earlier.answer, replayed=True)
    assert keyless == Outcome(together[4].answer, replayed=False)
    # and the database holds three applications, each with its document, its two first steps
    # (submitted, verifying) and its event
    for table in ("applications", "application_documents", "outbox"):
        assert await scalar(db, f"SELECT count(*) FROM {table}") == 3, table
    assert await scalar(db, "SELECT count(*) FROM application_history") == 6
    assert await scalar(db, "SELECT count(*) FROM idempotency_keys") == 2


async def test_a_row_that_breaks_a_rule_fails_alone(
    app: FastAPI, alice: Applicant, db: AsyncConnectionPool
) -> None:
    writer = group_commit(app)
    user = await principal(db, alice)
    empty = UploadedDocument(str(uuid.uuid4()), "cv.pdf", "application/pdf", 0, SHA)
    breaking = new_submission(
        user, SubmissionForm("MSc", "x", (empty,)), str(uuid.uuid4()), "http://api.test", "k-x"
    )
    together = [
        submission(user, "a", key="k-a"),
        breaking,  # a document of 0 bytes: the table's CHECK refuses it
        submission(user, "b", key=None),
    ]

    results = await asyncio.gather(*(writer.write(s) for s in together), return_exceptions=True)

    assert isinstance(results[0], Outcome) and not results[0].replayed
    assert isinstance(results[1], psycopg.errors.CheckViolation)
    assert isinstance(results[2], Outcome) and not results[2].replayed
    assert await scalar(db, "SELECT count(*) FROM applications") == 2
    assert await scalar(db, "SELECT count(*) FROM outbox") == 2


async def test_submissions_with_revoked_tokens_are_refused_in_the_shared_statement(
    app: FastAPI, alice: Applicant, db: AsyncConnectionPool
) -> None:
    # issue 14, item 12: a token issued before a password reset (an older token version), or
    # for an account that does not exist, writes nothing, claims no key, and costs no
    # statement of its own
    writer = group_commit(app)
    user = await principal(db, alice)
    await db_execute(db, "UPDATE users SET token_version = 1 WHERE id = %s", user.user_id)
    current = replace(user, token_version=1)
    stranger = Principal(str(uuid.uuid4()), "nobody@example.org", "applicant")
    statements_before = writer.statements
    together = [
        submission(current, "a", key="k-a"),
        submission(user, "stale", key="k-stale"),  # version 0: issued before the reset
        submission(stranger, "x", key=None),
        submission(current, "b", key=None),
    ]

    results = await asyncio.gather(*(writer.write(s) for s in together), return_exceptions=True)

    written, stale, unknown, keyless = results
    assert isinstance(written, Outcome) and isinstance(keyless, Outcome)
    assert isinstance(stale, TokenRevoked) and isinstance(unknown, TokenRevoked)
    assert writer.statements == statements_before + 1
    assert await scalar(db, "SELECT count(*) FROM applications") == 2
    assert await scalar(db, "SELECT count(*) FROM outbox") == 2
    assert await scalar(db, "SELECT array_agg(key) FROM idempotency_keys") == ["k-a"]


async def test_a_client_gone_before_its_turn_is_not_written(
    app: FastAPI, alice: Applicant, db: AsyncConnectionPool
) -> None:
    writer = group_commit(app)
    user = await principal(db, alice)
    kept = asyncio.ensure_future(writer.write(submission(user, "kept", key=None)))
    gone = asyncio.ensure_future(writer.write(submission(user, "gone", key=None)))
    await asyncio.sleep(0)  # both are waiting for the writer, which has not run yet
    gone.cancel()

    assert not (await kept).replayed
    assert await scalar(db, "SELECT count(*) FROM applications") == 1
