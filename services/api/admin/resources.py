"""What the admin routes use, opened on first use and closed with the app.

Lazily on purpose: the API must start and accept applications while the broker is down (the
outbox absorbs that), so nothing here may hold the start-up back. The first admin request
connects; a failure answers 503 and the next request tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import psycopg_pool
import structlog
from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from services.api.admin.dead_letters import DeadLetterQueues
from services.api.admin.management import ManagementApi, vhost_of
from services.api.settings import ApiSettings
from shared.broker.base import Broker
from shared.broker.rabbitmq import RabbitBroker
from shared.db.pool import create_pool, role_conninfo
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import Topology

log = structlog.get_logger("api.admin")


def unavailable(what: str, error: BaseException) -> HTTPException:
    log.warning("admin dependency unavailable", dependency=what, error=repr(error))
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{what} unavailable: {error}")


class AdminResources:
    def __init__(self, settings: ApiSettings, topology: Topology = SYSTEM_TOPOLOGY) -> None:
        self.settings = settings
        self.topology = topology
        self.management = ManagementApi(
            settings.rabbitmq_management_url,
            settings.rabbitmq_management_user,
            settings.rabbitmq_management_password.get_secret_value(),
            vhost_of(settings.rabbitmq_url.get_secret_value()),
        )
        self._ops_pool: AsyncConnectionPool | None = None
        self._ops_broker: Broker | None = None
        self._lock = asyncio.Lock()

    @property
    def ops_schemas(self) -> list[str]:
        return self.settings.ops_schemas

    async def ops_pool(self) -> AsyncConnectionPool:
        """A small pool logged in as the read-only ``ops`` role."""
        async with self._lock:
            if self._ops_pool is None:
                conninfo = role_conninfo(
                    self.settings.database_url.get_secret_value(),
                    self.settings.ops_db_role,
                    self.settings.ops_db_password.get_secret_value(),
                )
                pool = create_pool(conninfo, name="api-ops", min_size=1, max_size=2, timeout=5)
                try:
                    await pool.open(wait=True, timeout=5)
                except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
                    await pool.close()
                    raise unavailable("the operations database role", error) from error
                self._ops_pool = pool
            return self._ops_pool

    async def ops_broker(self) -> Broker:
        """For dead letters and control commands: the broker as the operations login (the
        api's own login may not read a dead-letter queue: reading one allows purging it)."""
        login = self.settings.ops_rabbitmq_url or self.settings.rabbitmq_url
        async with self._lock:
            if self._ops_broker is None:
                try:
                    self._ops_broker = await asyncio.wait_for(
                        RabbitBroker.connect(
                            self.settings.broker_urls(login), connection_name="api.admin"
                        ),
                        timeout=5,
                    )
                except (ConnectionError, OSError, TimeoutError) as error:
                    raise unavailable("RabbitMQ", error) from error
            return self._ops_broker

    async def dead_letter_queues(self) -> DeadLetterQueues:
        return DeadLetterQueues(await self.ops_broker(), self.topology.exchanges)

    async def close(self) -> None:
        await self.management.close()
        if self._ops_broker is not None:
            await self._ops_broker.close()
        if self._ops_pool is not None:
            await self._ops_pool.close()


async def broker_login_refused(request: Request, error: Exception) -> JSONResponse:
    """The broker refused the login dead letters or control commands use (the api's own login,
    when OPS_RABBITMQ_URL is unset): a configuration to fix, not a fault of the request."""
    log.warning("broker refused the admin login", path=request.url.path, error=repr(error))
    return JSONResponse(
        {
            "detail": "RabbitMQ refused this replica's login for dead letters and control "
            "commands: set OPS_RABBITMQ_URL to the ops login"
        },
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


@asynccontextmanager
async def admin_lifespan(app: FastAPI) -> AsyncIterator[None]:
    admin = AdminResources(app.state.settings)
    app.state.admin = admin
    try:
        yield
    finally:
        await admin.close()


async def admin_resources(request: Request) -> AdminResources:
    """FastAPI dependency: the admin resources of the running app."""
    found: AdminResources = request.app.state.admin
    return found
