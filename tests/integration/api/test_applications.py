"""Submitting and reading applications through the app, against the real Postgres."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from services.api.settings import ApiSettings
from shared.blobs import BlobStore
from shared.db.pool import role_conninfo
from shared.outbox.writer import OUTBOX_CHANNEL
from tests.integration.api.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Applicant, log_in, scalar
from tests.support.infra import Infra
from tests.unit.api.multipart import CONTENT_TYPE, PDF, PNG, FilePart, multipart, valid_fields

FILES = [FilePart("cv.pdf", PDF), FilePart("photo.png", PNG, "image/png")]


async def submit(
    client: httpx.AsyncClient,
    who: Applicant,
    *,
    fields: dict[str, str] | None = None,
    files: list[FilePart] | None = None,
    key: str | None = None,
    request_id: str | None = None,
) -> httpx.Response:
    headers = {**who.headers, "content-type": CONTENT_TYPE}
    if key:
        headers["Idempotency-Key"] = key
    if request_id:
        headers["X-Request-ID"] = request_id
    body = multipart(fields or valid_fields(), FILES if files is None else files)
    return await client.post("/applications", content=body, headers=headers)


async def count(db: AsyncConnectionPool, table: str) -> int:
    return int(await scalar(db, f"SELECT count(*) FROM {table}"))


async def test_a_submission_is_accepted_with_its_links_and_an_outbox_row(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool, api_settings: ApiSettings
) -> None:
    # When Alice submits a form with two files
    response = await submit(client, alice, request_id="req-alice-1")
    # Then the answer is 202 with the links
    assert response.status_code == 202, response.text
    answer = response.json()
    application_id = answer["applicationId"]
    assert answer == {
        "applicationId": application_id,
        "status": "submitted",
        "statusUrl": f"http://api.test/applications/{application_id}/status",
        "payUrl": f"http://api.test/payments/checkout/{application_id}",
    }
    assert response.headers["location"] == f"/applications/{application_id}"
    # And the application, its documents, its history and the outbox row were all written
    assert await count(db, "applications") == 1
    assert await count(db, "application_documents") == 2
    assert await count(db, "application_history") == 2  # submitted, and at once verifying
    async with db.connection() as conn:
        rows = await (
            await conn.execute("SELECT type, correlation_id, body FROM outbox")
        ).fetchall()
    assert len(rows) == 1
    event_type, correlation_id, body = rows[0]
    envelope = json.loads(body)
    assert event_type == "application.submitted"
    assert correlation_id == "req-alice-1"
    payload = envelope["payload"]
    assert payload["application_id"] == application_id
    assert payload["applicant_email"] == "alice@example.org"
    assert [d["filename"] for d in payload["documents"]] == ["cv.pdf", "photo.png"]
    # And the files are in the blob store under the hashes the event carries
    blobs = BlobStore(api_settings.blob_dir)
    assert blobs.read(payload["documents"][0]["sha256"]) == PDF


async def test_a_submission_wakes_the_relay(
    client: httpx.AsyncClient, alice: Applicant, infra: Infra, api_schema: str
) -> None:
    # Given a relay-like listener on the outbox channel
    conninfo = role_conninfo(infra.database_url, api_schema, f"pw-{api_schema}")
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as listener:
        await listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
        # When a submission commits
        assert (await submit(client, alice)).status_code == 202
        # Then the listener is told which schema's outbox has news
        notices = [n async for n in listener.notifies(timeout=5, stop_after=1)]
    assert [(n.channel, n.payload) for n in notices] == [(OUTBOX_CHANNEL, api_schema)]


async def test_the_application_and_its_event_commit_together(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    # Given several submissions
    for _ in range(3):
        assert (await submit(client, alice)).status_code == 202
    # Then every application has exactly one application.submitted outbox row
    joined = await scalar(
        db,
        "SELECT count(*) FROM applications a JOIN outbox o"
        " ON o.type = 'application.submitted'"
        " AND (o.body::jsonb -> 'payload' ->> 'application_id')::uuid = a.id",
    )
    assert joined == await count(db, "applications") == await count(db, "outbox") == 3


async def test_the_same_key_and_body_give_the_same_answer_once(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    # Given a first submission with an Idempotency-Key
    first = await submit(client, alice, key="key-1")
    # When the same request is sent again
    again = await submit(client, alice, key="key-1")
    # Then the stored answer comes back, and nothing was written twice
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await count(db, "applications") == 1
    assert await count(db, "outbox") == 1


async def test_the_same_key_with_another_body_is_409(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    await submit(client, alice, key="key-2")
    other = await submit(client, alice, key="key-2", fields={**valid_fields(), "program": "MBA"})
    assert other.status_code == 409
    assert "key-2" in other.json()["detail"]
    assert await count(db, "applications") == 1


async def test_keys_belong_to_their_applicant(
    client: httpx.AsyncClient, alice: Applicant, bob: Applicant, db: AsyncConnectionPool
) -> None:
    first = await submit(client, alice, key="shared-key")
    second = await submit(client, bob, key="shared-key")
    assert second.status_code == 202
    assert second.json()["applicationId"] != first.json()["applicationId"]
    assert await count(db, "applications") == 2


async def test_a_concurrent_double_submit_creates_one_application(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    # When the same request is sent eight times at once
    responses = await asyncio.gather(*(submit(client, alice, key="burst") for _ in range(8)))
    # Then all get the same 202 answer and one application exists
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["applicationId"] for r in responses}) == 1
    assert await count(db, "applications") == 1
    assert await count(db, "outbox") == 1


async def test_refused_submissions_write_nothing(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    six = await submit(client, alice, files=[FilePart(f"f{i}.pdf", PDF) for i in range(6)])
    gif = await submit(client, alice, files=[FilePart("a.gif", b"GIF89a", "image/gif")])
    big = await submit(client, alice, files=[FilePart("big.pdf", b"x" * (10 * 1024 * 1024 + 1))])
    missing = await submit(client, alice, fields={"program": "MSc"})
    assert (six.status_code, gif.status_code, big.status_code, missing.status_code) == (
        422,
        415,
        413,
        422,
    )
    assert all(isinstance(r.json()["detail"], str) for r in (six, gif, big, missing))
    assert await count(db, "applications") == 0
    assert await count(db, "outbox") == 0


async def test_another_applicants_application_is_not_found(
    client: httpx.AsyncClient, alice: Applicant, bob: Applicant
) -> None:
    application_id = (await submit(client, alice)).json()["applicationId"]
    for path in (
        f"/applications/{application_id}",
        f"/applications/{application_id}/status",
        f"/payments/checkout/{application_id}",
    ):
        assert (await client.get(path, headers=bob.headers)).status_code == 404, path
        assert (await client.get(path, headers=alice.headers)).status_code in (200, 202), path
    assert (await client.get("/applications/not-a-uuid", headers=alice.headers)).status_code == 404
    missing = f"/applications/{uuid.uuid4()}/status"
    assert (await client.get(missing, headers=alice.headers)).status_code == 404


async def test_administrators_see_every_application(
    client: httpx.AsyncClient, alice: Applicant
) -> None:
    # Given the administrator seeded at start-up
    admin = await log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    application_id = (await submit(client, alice)).json()["applicationId"]
    # Then they can read Alice's application
    response = await client.get(f"/applications/{application_id}/status", headers=admin.headers)
    assert response.status_code == 200


async def test_status_lists_documents_payment_and_history(
    client: httpx.AsyncClient, alice: Applicant
) -> None:
    application_id = (await submit(client, alice)).json()["applicationId"]
    response = await client.get(f"/applications/{application_id}/status", headers=alice.headers)
    assert response.status_code == 200
    status = response.json()
    assert status["applicationId"] == application_id
    assert (status["status"], status["progress"]) == ("verifying", 30)
    assert [d["filename"] for d in status["documents"]] == ["cv.pdf", "photo.png"]
    assert status["documents"][0]["contentType"] == "application/pdf"
    assert status["payment"] == {"status": "not_started", "checkoutUrl": None, "paymentId": None}
    assert [(e["status"], e["progress"], e["eventType"], e["note"]) for e in status["history"]] == [
        ("submitted", 25, "application.submitted", None),
        ("verifying", 30, "application.submitted", "documents are being verified"),
    ]
    assert all(entry["at"] for entry in status["history"])


async def test_my_applications_and_one_application(
    client: httpx.AsyncClient, alice: Applicant, bob: Applicant
) -> None:
    mine = {(await submit(client, alice)).json()["applicationId"] for _ in range(2)}
    await submit(client, bob)
    listed = (await client.get("/applications", headers=alice.headers)).json()
    assert {a["applicationId"] for a in listed} == mine
    one = (await client.get(f"/applications/{next(iter(mine))}", headers=alice.headers)).json()
    assert one["personalStatement"] == "I like queues."
    assert one["program"] == "MSc Computer Science"
    assert len(one["documents"]) == 2


async def test_checkout_waits_for_the_projector(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    application_id = (await submit(client, alice)).json()["applicationId"]
    waiting = await client.get(f"/payments/checkout/{application_id}", headers=alice.headers)
    assert waiting.status_code == 202
    assert waiting.headers["retry-after"] == "1"
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE applications SET checkout_url = 'https://psp.test/c/1' WHERE id = %s",
            (application_id,),
        )
    ready = await client.get(f"/payments/checkout/{application_id}", headers=alice.headers)
    assert ready.status_code == 200
    assert ready.json() == {"checkoutUrl": "https://psp.test/c/1"}


async def test_readiness_checks_the_database_and_the_broker(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "rabbitmq": "ok"}
