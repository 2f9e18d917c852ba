"""The relay service: every service's outbox to ``admissions.events``.

Several relays may run side by side: rows are claimed with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import ClassVar

import psycopg
import psycopg_pool
import structlog
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.db.pool import role_conninfo
from shared.events.signing import signers_from
from shared.lifecycle import run_service
from shared.logs import configure_logging
from shared.manifest import outbox_sources
from shared.metrics import Metrics, metrics_for
from shared.outbox.relay import Relay, RelayOptions
from shared.settings import CoreSettings
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.worker import open_service

SERVICE = "relay"

log = structlog.get_logger("relay")


class RelaySettings(CoreSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")
    production_secrets: ClassVar[tuple[str, ...]] = ("relay_db_password", "event_signing_keys")

    # The schemas whose outbox this relay publishes: every service's that has one.
    relay_sources: list[str] = Field(default_factory=outbox_sources)
    # Each source service's Ed25519 seed (``service=<base64>,...``, shared.events.signing):
    # the relay signs every row with its source's key. Empty: the development keys.
    event_signing_keys: SecretStr = SecretStr("")
    relay_batch_size: int = 500
    relay_poll_interval: float = 1.0
    # How often the backlog gauges (unpublished rows, oldest age) are sampled.
    relay_backlog_sample_seconds: float = 5.0


async def sample_backlog(
    relay: Relay, metrics: Metrics, stop: asyncio.Event, interval: float
) -> None:
    """Keep the outbox backlog gauges fresh: one cheap query per source every ``interval``."""
    while not stop.is_set():
        for source in relay.schemas:
            try:
                unpublished, oldest = await relay.backlog(source)
            except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
                log.warning("backlog sample failed", source=source, error=str(error))
                continue
            metrics.record_backlog(source, unpublished, oldest)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def run(settings: RelaySettings, stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as opened:
        broker, pool = await open_service(opened, settings, SERVICE, stop, pool_size=4)
        metrics = metrics_for()
        relay = Relay(
            pool=pool,
            broker=broker,
            exchange=SYSTEM_TOPOLOGY.exchanges.events,
            schemas=settings.relay_sources,
            signers=signers_from(
                settings.event_signing_keys.get_secret_value(), settings.relay_sources
            ),
            listen_conninfo=role_conninfo(
                settings.database_url.get_secret_value(), SERVICE, settings.db_password(SERVICE)
            ),
            options=RelayOptions(
                batch_size=settings.relay_batch_size, poll_interval=settings.relay_poll_interval
            ),
            metrics=metrics,
        )
        sampler = asyncio.create_task(
            sample_backlog(relay, metrics, stop, settings.relay_backlog_sample_seconds)
        )
        try:
            await relay.run(stop)
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)


def main() -> None:
    settings = RelaySettings()
    configure_logging(SERVICE, settings.log_level)
    run_service(partial(run, settings))
