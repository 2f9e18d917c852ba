"""The projector's composition root: one consumer on ``api.projector``, run by the shared
worker (connect, declare, pool, consume, sweep, graceful shutdown), and the blob store's
garbage collection (it works as the API's role, which knows which blobs rows reference)."""

from __future__ import annotations

import asyncio
from functools import partial

from services.api.blob_references import blob_sweeper
from services.api.projector.handler import QUEUE, handle
from services.api.projector.repository import PostgresApplications
from services.api.retention import api_retention
from services.api.settings import ApiSettings, ProjectorSettings
from shared.db.transactions import PostgresTransaction
from shared.lifecycle import run_service
from shared.logs import configure_logging
from shared.worker import open_pool, run_worker

SERVICE = "api"


class ProjectionTransaction(PostgresTransaction):
    """The projector's unit of work: the message's transaction and the applications in it."""

    @property
    def applications(self) -> PostgresApplications:
        return PostgresApplications(self.connection)


async def run(settings: ApiSettings, stop: asyncio.Event) -> None:
    # The projector writes the API's tables and outbox: it logs in as the API's role.
    await run_worker(
        service=settings.db_role,
        settings=settings,
        handlers={QUEUE: handle},
        stop=stop,
        transaction_type=ProjectionTransaction,
        background=[partial(sweep_blobs, settings)],
        retention=api_retention(settings),
    )


async def sweep_blobs(settings: ApiSettings, stop: asyncio.Event) -> None:
    pool = await open_pool(settings, settings.db_role, max_size=1)
    try:
        await blob_sweeper(settings, pool).run(stop)
    finally:
        await pool.close()


def main() -> None:
    settings = ProjectorSettings()
    configure_logging(f"{SERVICE}.projector", settings.log_level)
    run_service(partial(run, settings))
