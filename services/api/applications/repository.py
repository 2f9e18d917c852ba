"""SQL for applications: the submission's single transaction, and the read side."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.api.applications.validation import SubmissionForm
from services.api.statuses import PROGRESS, Status
from shared.events.envelope import Envelope
from shared.outbox.writer import OUTBOX_CHANNEL


class IdempotencyConflict(Exception):
    """The key was used before with a different request body."""


@dataclass(frozen=True)
class IdempotencyClaim:
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Submission:
    application_id: str
    applicant_id: str
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

# ONE statement writes the application, its documents, its first history row and its outbox
# row, and wakes the relay (NOTIFY, delivered at commit). On the pool's autocommit connections
# a single statement is a transaction of its own: atomic, and one round trip to the server,
# where BEGIN + statements + COMMIT (or a pipeline) cost two to three times the CPU per
# submission on this, the hottest path. The outbox row has the columns and the NOTIFY the
# payload that ``shared.outbox.writer.write_outbox`` gives them; the other paths use it.
#
# With an idempotency key everything is conditional on claiming the key: a concurrent request
# with the same key waits on the key's unique index until this one commits, then finds the
# claim taken (and reads the stored answer). Never check-then-insert.
_CLAIM_WITH_KEY = """
    INSERT INTO idempotency_keys (applicant_id, key, fingerprint, application_id, response)
    VALUES (%(applicant_id)s, %(key)s, %(fingerprint)s, %(application_id)s, %(answer)s)
    ON CONFLICT (applicant_id, key) DO NOTHING
    RETURNING application_id
"""
_CLAIM_WITHOUT_KEY = "SELECT %(application_id)s::uuid AS application_id"
_INSERT_APPLICATION = """
WITH claimed AS ({claim}),
application AS (
    INSERT INTO applications
        (id, applicant_id, program, personal_statement, status, progress, correlation_id)
    SELECT application_id, %(applicant_id)s, %(program)s, %(statement)s, %(status)s,
           %(progress)s, %(correlation_id)s
    FROM claimed
    RETURNING id
),
documents AS (
    INSERT INTO application_documents
        (application_id, document_id, position, filename, content_type, size, sha256)
    SELECT application.id, d.document_id, d.position, d.filename, d.content_type, d.size, d.sha256
    FROM application,
         unnest(%(document_ids)s::uuid[], %(filenames)s::text[], %(content_types)s::text[],
                %(sizes)s::bigint[], %(hashes)s::text[])
             WITH ORDINALITY AS d(document_id, filename, content_type, size, sha256, position)
),
history AS (
    INSERT INTO application_history
        (application_id, status, progress, event_type, message_id, note)
    SELECT application.id, step.status, step.progress, %(event_type)s, %(message_id)s, step.note
    FROM application,
         unnest(%(history_statuses)s::text[], %(history_progress)s::smallint[],
                %(history_notes)s::text[]) WITH ORDINALITY AS step(status, progress, note, n)
    ORDER BY step.n
),
outboxed AS (
    INSERT INTO outbox (message_id, type, correlation_id, body)
    SELECT %(message_id)s, %(event_type)s, %(event_correlation_id)s, %(event_body)s
    FROM application
)
SELECT count(*) FROM (
    SELECT pg_notify(%(channel)s, %(outbox_schema)s) FROM application
) AS accepted
"""
INSERT_WITH_KEY = _INSERT_APPLICATION.format(claim=_CLAIM_WITH_KEY)
INSERT_WITHOUT_KEY = _INSERT_APPLICATION.format(claim=_CLAIM_WITHOUT_KEY)


def submission_parameters(submission: Submission, outbox_schema: str) -> dict[str, Any]:
    documents = submission.form.documents
    key = submission.idempotency
    event = submission.event
    return {
        "application_id": submission.application_id,
        "applicant_id": submission.applicant_id,
        "program": submission.form.program,
        "statement": submission.form.personal_statement,
        "status": ACCEPTED_STATUS.value,
        "progress": PROGRESS[ACCEPTED_STATUS],
        "history_statuses": [step.value for step, _ in ACCEPTED_HISTORY],
        "history_progress": [PROGRESS[step] for step, _ in ACCEPTED_HISTORY],
        "history_notes": [note for _, note in ACCEPTED_HISTORY],
        "correlation_id": submission.correlation_id,
        "document_ids": [d.document_id for d in documents],
        "filenames": [d.filename for d in documents],
        "content_types": [d.content_type for d in documents],
        "sizes": [d.size for d in documents],
        "hashes": [d.sha256 for d in documents],
        "event_type": event.type,
        "message_id": event.message_id,
        "event_correlation_id": event.correlation_id,
        "event_body": event.model_dump_json(),
        "channel": OUTBOX_CHANNEL,
        "outbox_schema": outbox_schema,
        "key": key.key if key else None,
        "fingerprint": key.fingerprint if key else None,
        "answer": Jsonb(submission.answer),
    }


async def insert_submission(
    conn: AsyncConnection[Any], outbox_schema: str, submission: Submission
) -> Outcome:
    """Write the submission (one statement, one transaction) or find the earlier answer.

    ``conn`` must be in autocommit mode (the pool's are), or the caller commits."""
    statement = INSERT_WITH_KEY if submission.idempotency else INSERT_WITHOUT_KEY
    cursor = await conn.execute(statement, submission_parameters(submission, outbox_schema))
    row = await cursor.fetchone()
    if row is not None and row[0] == 1:
        return Outcome(submission.answer, replayed=False)
    assert submission.idempotency is not None  # without a key the insert is unconditional
    return await _earlier_answer(conn, submission.applicant_id, submission.idempotency)


async def _earlier_answer(
    conn: AsyncConnection[Any], applicant_id: str, claim: IdempotencyClaim
) -> Outcome:
    cursor = await conn.execute(
        "SELECT fingerprint, response FROM idempotency_keys WHERE applicant_id = %s AND key = %s",
        (applicant_id, claim.key),
    )
    row = await cursor.fetchone()
    if row is None:  # cannot happen: keys are never deleted while the claim could conflict
        raise RuntimeError("idempotency key conflicted but is gone")
    fingerprint, answer = row
    if fingerprint != claim.fingerprint:
        raise IdempotencyConflict(claim.key)
    return Outcome(answer, replayed=True)


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
