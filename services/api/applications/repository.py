"""SQL for applications: the submission's single transaction, and the read side."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from services.api.applications.validation import SubmissionForm
from services.api.statuses import PROGRESS, Status
from shared.events.catalog import ApplicationSubmitted
from shared.events.envelope import Envelope
from shared.outbox.writer import OUTBOX_CHANNEL


class IdempotencyConflict(Exception):
    """The key was used before with a different request body."""


class TokenRevoked(Exception):
    """The submission's token is of an older version than its user's (a password reset since),
    or its user is gone: nothing of it was written."""


@dataclass(frozen=True)
class IdempotencyClaim:
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Submission:
    application_id: str
    applicant_id: str
    token_version: int  # of the token it came with: written only if still the user's
    form: SubmissionForm
    correlation_id: str
    event: Envelope
    answer: dict[str, Any]
    idempotency: IdempotencyClaim | None


@dataclass(frozen=True)
class Outcome:
    answer: dict[str, Any]
    replayed: bool


# An accepted application is at once being verified (the verifier is already bound to its
# event): the statement writes both steps, so no event has to come back to say so.
ACCEPTED_STATUS = Status.VERIFYING
ACCEPTED_HISTORY: tuple[tuple[Status, str | None], ...] = (
    (Status.SUBMITTED, None),
    (Status.VERIFYING, "documents are being verified"),
)
ACCEPTED_STEPS_JSON = json.dumps(
    [
        {"n": n, "status": step.value, "progress": PROGRESS[step], "note": note}
        for n, (step, note) in enumerate(ACCEPTED_HISTORY, start=1)
    ]
)

# ONE statement writes one or several submissions (their applications, documents, first
# history rows and outbox rows) and wakes the relay (NOTIFY, delivered at commit). On the
# pool's autocommit connections a single statement is a transaction of its own: atomic, and
# one round trip to the server, where BEGIN + statements + COMMIT (or a pipeline) cost two to
# three times the CPU per submission on this, the hottest path. Several submissions in one
# statement (group commit, ``group_commit.py``) share the round trip, the parsing and the
# commit. The outbox rows have the columns and the NOTIFY the payload that
# ``shared.outbox.writer.write_outbox`` gives them; the other paths use it.
#
# A submission is written only if its token's version is still its user's: a password reset
# revokes earlier tokens (``auth/tokens.py``). Checked here, on the users row the foreign key
# reads anyway, rather than by a query of its own before the statement; a refused one is
# returned as such (``written`` false). The join keeps the arrival order (``row_number``): of
# two requests with one key, the first claims it. (No SQL comments in the statement: the
# benchmark's pgbench script is this text on one line.)
#
# A submission with an idempotency key is written only if it claims the key: a concurrent
# request with the same key waits on the key's unique index until the other commits, then
# finds the claim taken (and the caller reads the stored answer). Never check-then-insert.
#
# The submissions and their documents travel as two JSON arrays (documents name their
# submission by its row number): one ``json.dumps`` each, where one array parameter per column
# cost a fifth of the submission's Python time in psycopg's array dumpers.
INSERT_SUBMISSIONS = """
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(submissions)s::jsonb) AS i(
        row_number bigint, application_id uuid, applicant_id uuid, token_version int,
        program text, statement text, correlation_id text, key text, fingerprint text,
        answer jsonb, message_id uuid, event_correlation_id text, event_body text)
),
current_tokens AS (
    SELECT i.* FROM input i
    JOIN users u ON u.id = i.applicant_id AND u.token_version = i.token_version
    ORDER BY i.row_number
),
claimed AS (
    INSERT INTO idempotency_keys (applicant_id, key, fingerprint, application_id, response)
    SELECT applicant_id, key, fingerprint, application_id, answer FROM current_tokens
    WHERE key IS NOT NULL
    ON CONFLICT (applicant_id, key) DO NOTHING
    RETURNING application_id
),
accepted AS (
    SELECT * FROM current_tokens
    WHERE key IS NULL OR application_id IN (SELECT application_id FROM claimed)
),
application AS (
    INSERT INTO applications
        (id, applicant_id, program, personal_statement, status, progress, correlation_id)
    SELECT application_id, applicant_id, program, statement, %(status)s, %(progress)s,
           correlation_id
    FROM accepted
),
documents AS (
    INSERT INTO application_documents
        (application_id, document_id, position, filename, content_type, size, sha256)
    SELECT a.application_id, d.document_id, d.position, d.filename, d.content_type, d.size,
           d.sha256
    FROM jsonb_to_recordset(%(documents)s::jsonb) AS d(
             row_number bigint, position smallint, document_id uuid, filename text,
             content_type text, size bigint, sha256 text)
    JOIN accepted a USING (row_number)
),
history AS (
    INSERT INTO application_history
        (application_id, status, progress, event_type, message_id, note)
    SELECT a.application_id, step.status, step.progress, %(event_type)s, a.message_id, step.note
    FROM accepted a,
         jsonb_to_recordset(%(steps)s::jsonb) AS step(n int, status text, progress smallint,
                                                     note text)
    ORDER BY a.row_number, step.n
),
outboxed AS (
    INSERT INTO outbox (message_id, type, correlation_id, body)
    SELECT message_id, %(event_type)s, event_correlation_id, event_body FROM accepted
    ORDER BY row_number
),
notified AS (
    SELECT pg_notify(%(channel)s, %(outbox_schema)s)
    FROM (SELECT FROM accepted LIMIT 1) AS any_accepted
)
SELECT application_id::text, true AS written
FROM accepted, (SELECT count(*) FROM notified) AS wake_the_relay
UNION ALL
SELECT application_id::text, false AS written FROM input
WHERE application_id NOT IN (SELECT application_id FROM current_tokens)
"""


def submissions_parameters(submissions: list[Submission], outbox_schema: str) -> dict[str, Any]:
    """The statement's parameters: a row per submission, and per document, as JSON."""
    rows = [
        {
            "row_number": row,
            "application_id": s.application_id,
            "applicant_id": s.applicant_id,
            "token_version": s.token_version,
            "program": s.form.program,
            "statement": s.form.personal_statement,
            "correlation_id": s.correlation_id,
            "key": s.idempotency.key if s.idempotency else None,
            "fingerprint": s.idempotency.fingerprint if s.idempotency else None,
            "answer": s.answer,
            "message_id": str(s.event.message_id),
            "event_correlation_id": s.event.correlation_id,
            "event_body": s.event.model_dump_json(),
        }
        for row, s in enumerate(submissions, start=1)
    ]
    documents = [
        {
            "row_number": row,
            "position": position,
            "document_id": d.document_id,
            "filename": d.filename,
            "content_type": d.content_type,
            "size": d.size,
            "sha256": d.sha256,
        }
        for row, s in enumerate(submissions, start=1)
        for position, d in enumerate(s.form.documents, start=1)
    ]
    return {
        "submissions": json.dumps(rows),
        "documents": json.dumps(documents),
        "steps": ACCEPTED_STEPS_JSON,
        "status": ACCEPTED_STATUS.value,
        "progress": PROGRESS[ACCEPTED_STATUS],
        "event_type": ApplicationSubmitted.event_type,
        "channel": OUTBOX_CHANNEL,
        "outbox_schema": outbox_schema,
    }


async def insert_submissions(
    conn: AsyncConnection[Any], outbox_schema: str, submissions: list[Submission]
) -> list[Outcome | IdempotencyConflict | TokenRevoked]:
    """Write the submissions in one statement (one transaction); each one's outcome, in order:
    its own answer, the stored answer of the earlier request with its key, a conflict, or
    its token revoked.
    If the statement fails (one row breaks a rule), none is written: the caller may retry
    them one by one to learn which.

    ``conn`` must be in autocommit mode (the pool's are), or the caller commits."""
    cursor = await conn.execute(
        INSERT_SUBMISSIONS, submissions_parameters(submissions, outbox_schema)
    )
    rows = await cursor.fetchall()
    written = {application_id for application_id, was_written in rows if was_written}
    revoked = {application_id for application_id, was_written in rows if not was_written}
    settled = written | revoked
    unclaimed = [s for s in submissions if s.application_id not in settled]
    earlier = await _earlier_answers(conn, unclaimed) if unclaimed else {}
    return [
        Outcome(s.answer, replayed=False)
        if s.application_id in written
        else TokenRevoked()
        if s.application_id in revoked
        else earlier[s.application_id]
        for s in submissions
    ]


async def _earlier_answers(
    conn: AsyncConnection[Any], unclaimed: list[Submission]
) -> dict[str, Outcome | IdempotencyConflict]:
    """For submissions whose key another request claimed first: that request's answer (a
    replay) if the bodies match, else a conflict. Keyed by the asking submission's id."""
    claims = [s.idempotency for s in unclaimed]
    if any(claim is None for claim in claims):  # without a key the insert is unconditional
        raise RuntimeError("a submission without an idempotency key was not written")
    cursor = await conn.execute(
        "SELECT i.applicant_id::text, i.key, k.fingerprint, k.response"
        " FROM unnest(%s::uuid[], %s::text[]) AS i(applicant_id, key)"
        " JOIN idempotency_keys k USING (applicant_id, key)",
        ([s.applicant_id for s in unclaimed], [c.key for c in claims if c is not None]),
    )
    stored = {(row[0], row[1]): (row[2], row[3]) for row in await cursor.fetchall()}
    outcomes: dict[str, Outcome | IdempotencyConflict] = {}
    for submission in unclaimed:
        claim = submission.idempotency
        assert claim is not None
        found = stored.get((submission.applicant_id, claim.key))
        if found is None:  # cannot happen: keys are never deleted while a claim could conflict
            raise RuntimeError("idempotency key conflicted but is gone")
        fingerprint, answer = found
        outcomes[submission.application_id] = (
            Outcome(answer, replayed=True)
            if fingerprint == claim.fingerprint
            else IdempotencyConflict(claim.key)
        )
    return outcomes


# The read side. ``viewer`` is the applicant asking, or None for an administrator: another
# applicant's application is simply not found.
_DOCUMENTS = """
    COALESCE((
        SELECT json_agg(json_build_object(
                   'documentId', d.document_id, 'filename', d.filename,
                   'contentType', d.content_type, 'size', d.size, 'sha256', d.sha256)
               ORDER BY d.position)
        FROM application_documents d WHERE d.application_id = a.id), '[]'::json)
"""
_HISTORY = """
    COALESCE((
        SELECT json_agg(json_build_object(
                   'status', h.status, 'progress', h.progress, 'at', h.at,
                   'eventType', h.event_type, 'messageId', h.message_id, 'note', h.note)
               ORDER BY h.step, h.kind, h.n)
        FROM ({steps}) h), '[]'::json)
"""
_STEPS = """
    SELECT status, progress, at, event_type, message_id, note, id AS step, 0 AS kind, id AS n
    FROM application_history WHERE application_id = a.id
"""
# The mail sent about the application, from the mailer's own record (a read-only view granted
# to this role), each shown under the step the application had reached when it was sent.
_MAILS = """
    UNION ALL
    SELECT coalesce(step.status, {first_status}), coalesce(step.progress, {first_progress}),
           m.sent_at, 'email.sent', NULL, 'e-mail sent: ' || m.template, coalesce(step.id, 0), 1,
           m.sequence
    FROM {mail_view} m
    LEFT JOIN LATERAL (
        SELECT p.id, p.status, p.progress FROM application_history p
        WHERE p.application_id = a.id AND p.at <= m.sent_at
        ORDER BY p.id DESC LIMIT 1
    ) step ON true
    WHERE m.application_id = a.id::text
"""
MAIL_VIEW = "application_mail"


def history_column(mail_schema: str | None) -> sql.Composable:
    """The history as JSON: the projector's steps, and the mail sent when ``mail_schema`` (the
    mailer's schema) is given."""
    steps: sql.Composable = sql.SQL(_STEPS)
    if mail_schema is not None:
        steps = sql.Composed(
            [
                steps,
                sql.SQL(_MAILS).format(
                    first_status=sql.Literal(Status.SUBMITTED.value),
                    first_progress=sql.Literal(PROGRESS[Status.SUBMITTED]),
                    mail_view=sql.Identifier(mail_schema, MAIL_VIEW),
                ),
            ]
        )
    return sql.SQL(_HISTORY + " AS history").format(steps=steps)


_COLUMNS = """
    a.id, a.applicant_id, a.program, a.status, a.progress, a.docs_verified,
    a.payment_completed, a.checkout_url, a.payment_id, a.created_at, a.updated_at
"""


async def find_application(
    conn: AsyncConnection[Any],
    application_id: uuid.UUID,
    viewer: str | None,
    *,
    with_statement: bool = False,
    with_history: bool = False,
    mail_schema: str | None = None,
) -> dict[str, Any] | None:
    parts: list[sql.Composable] = [sql.SQL(_COLUMNS), sql.SQL(_DOCUMENTS + " AS documents")]
    if with_statement:
        parts.append(sql.SQL("a.personal_statement"))
    if with_history:
        parts.append(history_column(mail_schema))
    query = sql.SQL(
        "SELECT {} FROM applications a"
        " WHERE a.id = %(id)s AND (%(viewer)s::uuid IS NULL OR a.applicant_id = %(viewer)s)"
    ).format(sql.SQL(", ").join(parts))
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, {"id": application_id, "viewer": viewer})
        return await cursor.fetchone()


async def list_applications(
    conn: AsyncConnection[Any], applicant_id: str, limit: int
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_COLUMNS} FROM applications a WHERE a.applicant_id = %s"
            " ORDER BY a.created_at DESC LIMIT %s",
            (applicant_id, limit),
        )
        return await cursor.fetchall()


async def find_checkout(
    conn: AsyncConnection[Any], application_id: uuid.UUID, viewer: str | None
) -> tuple[str, str | None] | None:
    """(status, checkout URL) of the application, if the viewer may see it."""
    cursor = await conn.execute(
        "SELECT status, checkout_url FROM applications"
        " WHERE id = %(id)s AND (%(viewer)s::uuid IS NULL OR applicant_id = %(viewer)s)",
        {"id": application_id, "viewer": viewer},
    )
    row = await cursor.fetchone()
    return (row[0], row[1]) if row else None
