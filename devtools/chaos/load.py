"""The load: registered applicants submitting applications over HTTP at a steady rate.

A client that gets no answer (connection refused or reset: the API was killed) or a 5xx
retries with the SAME Idempotency-Key, as a well-behaved client must: so a retry never creates
a second application, and every 202 is an application the system owes an outcome.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
from pypdf import PdfWriter

from services.api.applications.accept import BUSY

PASSWORD = "correct horse battery staple"


def pdf_bytes(title: str) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": title})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@dataclass
class LoadResult:
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> application id
    accepted_at: list[float] = field(default_factory=list)  # seconds since the start, each 202
    server_errors: list[tuple[float, int]] = field(default_factory=list)
    shed: int = 0  # 503 "busy" answers (overload, not a fault): retried after Retry-After
    connection_errors: int = 0
    retries: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # 4xx answers, by status
    gave_up: int = 0
    replayed: int = 0


class Load:
    def __init__(
        self,
        api: str,
        *,
        rng: random.Random,
        started: float,
        applicants: int = 10,
        concurrency: int = 64,
        retry_budget: float = 300.0,
    ) -> None:
        self.api = api
        self.rng = rng
        self.started = started
        self.applicant_count = applicants
        self.retry_budget = retry_budget
        self.slots = asyncio.Semaphore(concurrency)
        self.clients: list[httpx.AsyncClient] = []
        self.documents = [pdf_bytes(f"document {n}") for n in range(4)]
        self.result = LoadResult()

    async def register(self) -> None:
        for _ in range(self.applicant_count):
            client = httpx.AsyncClient(base_url=self.api, timeout=30)
            email = f"chaos-{uuid.uuid4().hex[:10]}@example.org"
            credentials = {"email": email, "password": PASSWORD}
            (await client.post("/auth/register", json=credentials)).raise_for_status()
            token = await client.post("/auth/token", data={"username": email, "password": PASSWORD})
            token.raise_for_status()
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            self.clients.append(client)

    async def close(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self.clients))

    async def run(self, applications: int, rate: float) -> None:
        """Start one submission every 1/rate seconds; wait for all of them."""
        tasks = []
        interval = 1.0 / rate
        begin = time.monotonic()
        for n in range(applications):
            await asyncio.sleep(max(0.0, begin + n * interval - time.monotonic()))
            await self.slots.acquire()
            tasks.append(asyncio.create_task(self._submit(n)))
        await asyncio.gather(*tasks)

    async def _submit(self, n: int) -> None:
        try:
            client = self.clients[n % len(self.clients)]
            key = str(uuid.uuid4())
            count = self.rng.choice((1, 2))
            files = [
                ("files", (f"doc-{i}.pdf", self.rng.choice(self.documents), "application/pdf"))
                for i in range(count)
            ]
            form = {"personal_statement": f"Application {n}. " * 40, "program": "Mathematics"}
            deadline = time.monotonic() + self.retry_budget
            delay = 0.25
            while True:
                told: str | None = None  # the server's Retry-After, when it said how long
                try:
                    response = await client.post(
                        "/applications", data=form, files=files, headers={"Idempotency-Key": key}
                    )
                except httpx.TransportError:
                    self.result.connection_errors += 1
                else:
                    if response.status_code == 202:
                        self.result.accepted[key] = str(response.json()["applicationId"])
                        self.result.accepted_at.append(time.monotonic() - self.started)
                        if response.headers.get("Idempotent-Replayed") == "true":
                            self.result.replayed += 1
                        return
                    if response.status_code < 500:
                        self.result.refused[response.status_code] += 1
                        return
                    if _busy(response):
                        self.result.shed += 1
                    else:
                        self.result.server_errors.append(
                            (time.monotonic() - self.started, response.status_code)
                        )
                    told = response.headers.get("Retry-After")
                if time.monotonic() > deadline:
                    self.result.gave_up += 1
                    return
                self.result.retries += 1
                if told is not None and told.isdigit():
                    await asyncio.sleep(int(told) * self.rng.uniform(1.0, 1.5))
                else:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 4.0)
        finally:
            self.slots.release()


def _busy(response: httpx.Response) -> bool:
    """The API's overload answer (load shedding), as opposed to a fault's 503."""
    try:
        detail = response.json().get("detail", "")
    except ValueError:
        return False
    return response.status_code == 503 and str(detail).startswith(BUSY)
