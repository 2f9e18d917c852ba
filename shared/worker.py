"""The composition root every consumer service shares: settings -> connections -> consumers
-> run until signalled -> stop consuming, finish in-flight work, close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

import psycopg
import psycopg_pool
import structlog

from shared.broker.rabbitmq import RabbitBroker
from shared.consumer.runtime import Consumer, ExhaustedHook, Handler, Observer
from shared.control import PostgresPauseStore, QueueControl
from shared.db.pool import create_pool, role_conninfo
from shared.db.transactions import PgTxT, PostgresTransaction, PostgresTransactions
from shared.events.signing import verifier_from
from shared.faults import Faults
from shared.metrics import metrics_observer, serve_configured_metrics
from shared.retention import RetentionRule
from shared.settings import CoreSettings
from shared.sweeper import Sweeper
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.timeline import MessageLog
from shared.topology import Topology

log = structlog.get_logger("worker")

BackgroundTask = Callable[[asyncio.Event], Awaitable[None]]


async def connect_broker(settings: CoreSettings, name: str, stop: asyncio.Event) -> RabbitBroker:
    """Connect, retrying while the broker is not up yet (start order must not matter)."""
    delay = 0.5
    while True:
        try:
            return await RabbitBroker.connect(settings.broker_urls(), connection_name=name)
        except (ConnectionError, OSError) as error:
            if stop.is_set():
                raise
            log.warning("broker not reachable yet", error=str(error), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def open_pool(
    settings: CoreSettings, service: str, max_size: int | None = None, timeout: float = 10.0
) -> psycopg_pool.AsyncConnectionPool:
    conninfo = role_conninfo(
        settings.database_url.get_secret_value(), service, settings.db_password(service)
    )
    pool = create_pool(
        conninfo, name=service, max_size=max_size or settings.db_pool_max, timeout=timeout
    )
    delay = 0.5
    while True:
        try:
            await pool.open(wait=True, timeout=10)
            return pool
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as error:
            log.warning("database not reachable yet", error=str(error), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def open_service(
    opened: contextlib.AsyncExitStack,
    settings: CoreSettings,
    service: str,
    stop: asyncio.Event,
    *,
    topology: Topology = SYSTEM_TOPOLOGY,
    pool_size: int | None = None,
) -> tuple[RabbitBroker, psycopg_pool.AsyncConnectionPool]:
    """A service's metrics server, broker connection and database pool, each closed by
    ``opened`` on the way out, a failed start-up included: a broker connection left open goes
    on reconnecting in the background and keeps the process from exiting (see
    shared.lifecycle). The whole topology is declared, from every service: any start order
    leaves every queue in place."""
    metrics_server = serve_configured_metrics(settings)
    if metrics_server is not None:
        opened.push_async_callback(metrics_server.close)
    broker = await connect_broker(settings, service, stop)
    opened.push_async_callback(broker.close)
    await broker.declare(topology)
    pool = await open_pool(settings, service, max_size=pool_size)
    opened.push_async_callback(pool.close)
    return broker, pool


async def run_worker(
    *,
    service: str,
    settings: CoreSettings,
    handlers: Mapping[str, Handler[PgTxT]],
    stop: asyncio.Event,
    on_exhausted: Mapping[str, ExhaustedHook[PgTxT]] | None = None,
    transaction_type: type[PgTxT] = PostgresTransaction,  # type: ignore[assignment]
    topology: Topology = SYSTEM_TOPOLOGY,
    background: Sequence[BackgroundTask] = (),
    observers: Sequence[Observer] = (),
    retention: Sequence[RetentionRule] = (),
) -> None:
    # On a stop, in the order below, then by the stack: the pool, the broker, the metrics
    # server.
    async with contextlib.AsyncExitStack() as opened:
        broker, pool = await open_service(opened, settings, service, stop, topology=topology)
        transactions = PostgresTransactions(pool, service, transaction_type)
        # Chaos runs inject faults around every handler; off by default (see shared.faults).
        faults = Faults.from_settings(settings)
        authenticity = verifier_from(settings.event_public_keys)
        timeline = MessageLog(pool, service)
        consumers = [
            Consumer(
                service=service,
                spec=topology.queue(queue),
                exchanges=topology.exchanges,
                broker=broker,
                transactions=transactions,
                handler=faults.wrap(handler),
                authenticity=authenticity,
                observers=[metrics_observer(), timeline.observe, *observers],
                on_exhausted=(on_exhausted or {}).get(queue),
            )
            for queue, handler in handlers.items()
        ]
        sweeper = Sweeper(
            pool,
            service,
            schedule=settings.sweeper_schedule,
            retention=settings.sweeper_retention,
            rules=retention,
        )
        tasks = [asyncio.ensure_future(task(stop)) for task in (sweeper.run, *background)]
        timeline.start()
        # Listens for pause/resume first, then starts only the queues not paused. On a
        # connection of its own ("<service>.control" in the management UI) that never
        # publishes: the broker's flow control, which blocks publishing connections, never
        # holds a command back.
        control_broker = await connect_broker(settings, f"{service}.control", stop)
        opened.push_async_callback(control_broker.close)
        control = QueueControl(
            service=service,
            store=PostgresPauseStore(pool, service),
            consumers={consumer.spec.name: consumer for consumer in consumers},
            broker=control_broker,
            exchange=topology.exchanges.control,
        )
        paused = await control.start()
        log.info("started", service=service, queues=list(handlers), paused=paused)
        await stop.wait()
        log.info("stopping", service=service)
        await control.close()
        await control_broker.close()
        await asyncio.gather(*(consumer.stop() for consumer in consumers))
        await timeline.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    log.info("stopped", service=service)
