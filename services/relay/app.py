"""The relay service: every service's outbox to ``admissions.events``.

Several relays may run side by side: rows are claimed with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
from functools import partial

from pydantic_settings import SettingsConfigDict

from shared.db.pool import role_conninfo
from shared.lifecycle import run_service
from shared.logs import configure_logging
from shared.outbox.relay import Relay, RelayOptions
from shared.settings import CoreSettings
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.worker import connect_broker, open_pool

SERVICE = "relay"


class RelaySettings(CoreSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    relay_sources: list[str] = ["api", "verifier", "payments", "mailer"]
    relay_batch_size: int = 500
    relay_poll_interval: float = 1.0


async def run(settings: RelaySettings, stop: asyncio.Event) -> None:
    broker = await connect_broker(settings, SERVICE, stop)
    await broker.declare(SYSTEM_TOPOLOGY)
    pool = await open_pool(settings, SERVICE, max_size=4)
    relay = Relay(
        pool=pool,
        broker=broker,
        exchange=SYSTEM_TOPOLOGY.exchanges.events,
        schemas=settings.relay_sources,
        listen_conninfo=role_conninfo(
            settings.database_url.get_secret_value(), SERVICE, settings.db_password(SERVICE)
        ),
        options=RelayOptions(
            batch_size=settings.relay_batch_size, poll_interval=settings.relay_poll_interval
        ),
    )
    await relay.run(stop)
    await broker.close()
    await pool.close()


def main() -> None:
    settings = RelaySettings()
    configure_logging(SERVICE, settings.log_level)
    run_service(partial(run, settings))
