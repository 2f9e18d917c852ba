"""The backlog scenario: a large backlog queued while every worker is paused, then drained.

Accepting 200,000 submissions over HTTP would take longer than the whole benchmark may, so
the backlog is written straight into the API's database with the API's own accept statement
(``INSERT_SUBMISSIONS``: applications, documents, history, idempotency claims and outbox
rows), a thousand per statement over a few connections; the relay then publishes every row
to the paused queues exactly as it would have after 200,000 requests. Measured: accept
latency at the same offered rate without and with the backlog sitting in the queues, and the
resident memory of every process (and the broker's) while the workers drain it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import make_conninfo

from bench.processes import current_rss_mb
from bench.workload import PDF_SEEDS, STATEMENT, pdf_of_about
from devtools.system import RunningSystem
from services.api.applications.accept import new_submission
from services.api.applications.repository import INSERT_SUBMISSIONS, submissions_parameters
from services.api.applications.validation import SubmissionForm, UploadedDocument
from services.api.auth.tokens import Principal
from shared.blobs import BlobStore
from shared.system_topology import SYSTEM_TOPOLOGY

ADMIN = {"username": "admin@example.org", "password": "admin-dev-password"}
WORK_QUEUES = [spec.name for spec in SYSTEM_TOPOLOGY.queues]
RESEND_SECONDS = 10.0


async def admin_client(api: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=api, timeout=60)
    token = await client.post("/auth/token", data=ADMIN)
    token.raise_for_status()
    client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return client


async def set_paused(admin: httpx.AsyncClient, paused: bool, timeout: float = 180) -> None:
    """Pause (or resume) every work queue and wait until the workers have applied it.

    A command reaches the workers listening when it is sent, and one that fails is logged and
    dropped (the operator sees the state unchanged): a queue not yet showing the state is sent
    the command again every few seconds (a repeated command changes nothing). A worker applies
    its commands one at a time, and stopping a queue waits for the messages in hand (mail
    waiting for its lane's rate limit: up to 30 s a queue), hence the generous timeout."""
    action = "pause" if paused else "resume"
    behind, sent_at = list(WORK_QUEUES), -RESEND_SECONDS
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if time.monotonic() - sent_at >= RESEND_SECONDS:
            sent_at = time.monotonic()
            for queue in behind:
                sent = await admin.post(f"/admin/queues/{queue}/{action}")
                if sent.status_code != 409:  # 409: no worker listens yet
                    sent.raise_for_status()
        await asyncio.sleep(0.5)
        view = (await admin.get("/admin/queues")).json()["queues"]
        behind = [q["name"] for q in view if q["name"] in WORK_QUEUES and q["paused"] is not paused]
        if not behind:
            return
    raise TimeoutError(f"{', '.join(behind)} did not {action} within {timeout}s")


async def backlog_applicant(system: RunningSystem) -> Principal:
    """A registered applicant the backlog's applications belong to."""
    email = f"backlog-{uuid.uuid4().hex[:10]}@example.org"
    async with httpx.AsyncClient(base_url=system.api, timeout=30) as client:
        registered = await client.post(
            "/auth/register", json={"email": email, "password": "benchmark password"}
        )
        registered.raise_for_status()
    async with await psycopg.AsyncConnection.connect(system.database_url) as db:
        row = await (
            await db.execute("SELECT id::text FROM api.users WHERE email = %s", (email,))
        ).fetchone()
    assert row is not None
    return Principal(user_id=row[0], email=email, role="applicant")


def _standard_form(blobs: BlobStore) -> SubmissionForm:
    """The standard submission's fields and documents (their blobs stored, as an upload
    would have stored them; the verifier reads them)."""
    documents = []
    for filename, seed in zip(("transcript.pdf", "passport.pdf"), PDF_SEEDS, strict=True):
        blob = blobs.put_bytes(pdf_of_about(20 * 1024, seed))
        documents.append(
            UploadedDocument(str(uuid.uuid4()), filename, "application/pdf", blob.size, blob.sha256)
        )
    return SubmissionForm("Computer Science", STATEMENT, tuple(documents))


def _submissions(
    applicant: Principal, form: SubmissionForm, public_url: str, outbox_schema: str
) -> Callable[[int], dict[str, Any]]:
    """Parameters of the accept statement for ``size`` new applications, as the API builds
    them (a fresh Idempotency-Key each)."""

    def batch(size: int) -> dict[str, Any]:
        submissions = [
            new_submission(applicant, form, str(uuid.uuid4()), public_url, key=str(uuid.uuid4()))
            for _ in range(size)
        ]
        return submissions_parameters(submissions, outbox_schema)

    return batch


async def seed_backlog(
    system: RunningSystem, applicant: Principal, size: int, connections: int = 4
) -> float:
    """Write ``size`` accepted submissions; returns the seconds it took."""
    api_login = make_conninfo(
        system.database_url,
        user="api",
        password=system.env.get("API_DB_PASSWORD", "api-dev-password"),
    )
    form = _standard_form(BlobStore(Path(system.env["BLOB_DIR"])))
    batch = _submissions(applicant, form, system.api, "api")
    remaining = size
    started = time.monotonic()

    async def writer() -> None:
        nonlocal remaining
        async with await psycopg.AsyncConnection.connect(api_login, autocommit=True) as db:
            while remaining > 0:
                take = min(1000, remaining)
                remaining -= take
                await db.execute(INSERT_SUBMISSIONS, batch(take))

    await asyncio.gather(*(writer() for _ in range(connections)))
    return time.monotonic() - started


async def outbox_drained(database_url: str, timeout: float) -> float:
    """Seconds until the API's outbox has nothing unpublished."""
    started = time.monotonic()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        while time.monotonic() - started < timeout:
            row = await (
                await db.execute("SELECT count(*) FROM api.outbox WHERE published_at IS NULL")
            ).fetchone()
            if row is not None and row[0] == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the outbox still had rows after {timeout}s")


async def broker_memory_mb(system: RunningSystem) -> float:
    """The RabbitMQ node's own memory figure (management API), in MB."""
    url = system.env["RABBITMQ_MANAGEMENT_URL"].rstrip("/") + "/api/nodes"
    auth = (system.env["RABBITMQ_MANAGEMENT_USER"], system.env["RABBITMQ_MANAGEMENT_PASSWORD"])
    async with httpx.AsyncClient(timeout=10, auth=auth) as client:
        nodes = (await client.get(url)).json()
    return round(max(float(node.get("mem_used", 0)) for node in nodes) / 2**20, 1)


async def peak_memory_while(
    system: RunningSystem, seconds: float, interval: float = 0.5
) -> dict[str, float]:
    """The largest resident memory of each process (and the broker) over ``seconds``."""
    peaks: dict[str, float] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, rss in current_rss_mb(system.supervisor.pids()).items():
            peaks[name] = max(peaks.get(name, 0.0), rss)
        peaks["rabbitmq"] = max(peaks.get("rabbitmq", 0.0), await broker_memory_mb(system))
        await asyncio.sleep(interval)
    return peaks
